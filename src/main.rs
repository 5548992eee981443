//! Thin entry point: parse the command line, set up logging, run the command,
//! map the outcome to an exit code.

use clap::Parser;
use meetsync::cli::{Cli, Command, LogFormat};
use meetsync::cycle::JobOptions;
use meetsync::{app, config, demo};
use tracing_subscriber::EnvFilter;

fn init_logging(cli: &Cli) {
    let default = match cli.verbose {
        0 if matches!(cli.command, Command::Run) => "info",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Under systemd, stderr goes to the journal: send structured fields instead.
    if cli.log_format == LogFormat::Human && std::env::var_os("JOURNAL_STREAM").is_some() {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(journald.with_syslog_identifier("meetsync".into()))
                .init();
            return;
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.with_target(false).init(),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(app::EXIT_FAILED);
        }
    };
    let code = rt.block_on(run(cli));
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(config::default_config_path);
    match &cli.command {
        Command::CheckConfig => app::check_config(&config_path),
        Command::Run => meetsync::daemon::run(&config_path).await,
        Command::Sync(args) => {
            let cfg = match app::load_config(&config_path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let mut opts = JobOptions::new(app::now_unix());
            opts.dry_run = args.dry_run;
            opts.force_delete = args.force_delete;
            opts.claim_wait = std::time::Duration::from_secs(args.wait);
            app::sync_once(&cfg, args.pair.as_deref(), opts).await.0
        }
        Command::Status => match app::load_config(&config_path) {
            Ok(cfg) => app::status(&cfg),
            Err(code) => code,
        },
        Command::Demo(args) => match demo::run(args).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: demo failed: {e:#}");
                app::EXIT_FAILED
            }
        },
        Command::Completions { shell } => {
            meetsync::manpages::completions(*shell, &mut std::io::stdout());
            app::EXIT_OK
        }
        Command::Man(args) => match meetsync::manpages::write_pages(&args.dir) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                app::EXIT_OK
            }
            Err(e) => {
                eprintln!(
                    "error: cannot write the man pages into {}: {e}",
                    args.dir.display()
                );
                app::EXIT_FAILED
            }
        },
        Command::Sim(args) => match demo::run_sim(args).await {
            Ok(()) => app::EXIT_OK,
            Err(e) => {
                eprintln!("error: simulator failed: {e:#}");
                app::EXIT_FAILED
            }
        },
    }
}
