//! Command-line definitions (clap). No logic here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "meetsync",
    version,
    about = "Keep web meeting platforms and your calendar in step",
    long_about = "meetsync pulls each organizer's meetings from a web meeting platform \
(Web Meeting API v6) and keeps them as a calendar on disk: a vdir, one .ics file per \
meeting, which khal, vdirsyncer and other tools read.\n\n\
Start with `meetsync demo`: it runs a local simulator of the platform, syncs into a \
folder and shows what happened. Then write a config (see meetsync.toml(5) or \
config/meetsync.example.toml), \
check it with `meetsync check-config` and run `meetsync sync --once`.",
    after_help = "Exit codes: 0 success, 1 a sync job failed, 75 an organizer was skipped because another \
process (the daemon, another `sync --once`) was syncing it, 78 the configuration is invalid."
)]
pub struct Cli {
    /// Config file [default: $MEETSYNC_CONFIG, $CONFIGURATION_DIRECTORY/meetsync.toml or ~/.config/meetsync/meetsync.toml]
    #[arg(short, long, global = true, env = "MEETSYNC_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sync every pair (or one) now and print a summary per pair
    #[command(
        after_help = "Examples:\n  meetsync sync --once\n  meetsync sync --once --pair work --dry-run\n\n\
A 304 from the platform (or an identical feed) ends a job without writing anything. \
Jobs refuse mass deletions (an empty feed, or more than max_delete_share of the meetings \
gone); --force-delete lets one run through.\n\n\
Each organizer is claimed in the sync state while a job syncs it, so a daemon, cron jobs and \
manual runs never sync the same organizer at once. An organizer another process is syncing is \
waited for up to --wait seconds, then skipped with a message naming that process; the exit code \
is then 75 (if nothing failed). The claim of a process that died is taken over once its lease \
(lease_secs in the config) runs out, at once if it ran on this machine.\n\n\
Exit codes: 0 success, 1 a job failed, 75 an organizer was skipped (being synced by another \
process), 78 the configuration is invalid."
    )]
    Sync(SyncArgs),
    /// Run as a daemon: every pair on its schedule, until SIGTERM
    #[command(
        after_help = "Signals: SIGHUP re-reads the config (a broken one is rejected, the old one keeps running); \
SIGTERM/SIGINT stop starting jobs, let running ones commit, exit 0; SIGUSR1 syncs every pair now.\n\
With [daemon] listen = \"127.0.0.1:9187\": GET /metrics, GET /healthz, POST /trigger/{pair}.\n\
Under systemd (Type=notify) it sends READY=1, STATUS=… after each job and WATCHDOG=1 from the scheduler loop."
    )]
    Run,
    /// Validate the config file: every problem with file:line:column and a hint
    CheckConfig,
    /// Show the last run of every pair, from the sync state
    Status,
    /// Run a local simulator, sync it both ways with a folder and show the result
    #[command(
        after_help = "Everything stays on this machine: the simulator listens on 127.0.0.1.\n\
Example:\n  meetsync demo --dir /tmp/meetsync-demo --meetings 200"
    )]
    Demo(DemoArgs),
    /// Run the Web Meeting API v6 simulator on 127.0.0.1 until interrupted
    #[command(
        after_help = "Prints the base URL, the API key and the account id to use in a config.\n\
Control surface (JSON): GET /_sim/counters, GET /_sim/writes, POST /_sim/meetings, PATCH|DELETE /_sim/meetings/{id}, POST /_sim/faults, POST /_sim/options"
    )]
    Sim(SimArgs),
    /// Print the shell completion script for bash, zsh or fish (also elvish, powershell)
    #[command(after_help = "Install for yourself:\n  \
meetsync completions bash > ~/.local/share/bash-completion/completions/meetsync\n  \
meetsync completions zsh > ~/.zfunc/_meetsync    (with fpath+=~/.zfunc before compinit in ~/.zshrc)\n  \
meetsync completions fish > ~/.config/fish/completions/meetsync.fish\n\
The Debian package installs all three.")]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages meetsync(1), meetsync-COMMAND(1) and meetsync.toml(5) into DIR/man1 and DIR/man5
    #[command(
        after_help = "The pages are generated from these help texts and from the documented example config.\n\
Example (man finds ~/.local/share/man when ~/.local/bin is on PATH):\n  \
meetsync man --dir ~/.local/share/man && man meetsync.toml"
    )]
    Man(ManArgs),
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Folder of the man1/ and man5/ sub-folders (created if missing)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// Run every job once and exit (the daemon is `meetsync run`)
    #[arg(long, required = true)]
    pub once: bool,
    /// Only this pair
    #[arg(long, value_name = "NAME")]
    pub pair: Option<String>,
    /// Show what would change; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Let this run delete even when the mass-deletion guard would refuse
    #[arg(long)]
    pub force_delete: bool,
    /// Wait up to SECS for an organizer another process is syncing, then skip it (exit code 75)
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub wait: u64,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where the demo writes its config, state and calendars [default: a new folder under the system temp dir]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Meetings per organizer
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub meetings: usize,
    /// Organizers in the demo account
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub organizers: usize,
}

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Port on 127.0.0.1 (0 picks a free one)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Organizers to create in the demo account
    #[arg(long, default_value_t = 2)]
    pub organizers: usize,
    /// Meetings per organizer
    #[arg(long, default_value_t = 20)]
    pub meetings: usize,
    /// Seed of the generated meetings
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// API key the simulator accepts
    #[arg(long, default_value = "sim-api-key")]
    pub api_key: String,
}
