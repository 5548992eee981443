//! The one-shot commands for people: `sync --once`, `check-config`, `status`.
//! They print to stdout and return the process exit code.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::{self, Config};
use crate::cycle::{self, JobOptions, PairReport};
use crate::state::State;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
/// sysexits EX_TEMPFAIL: an organizer was skipped because another process
/// was syncing it (and nothing failed); try again later.
pub const EXIT_BUSY: i32 = 75;
/// sysexits EX_CONFIG
pub const EXIT_CONFIG: i32 = 78;

/// Load the config or print every problem; `Err` carries the exit code.
pub fn load_config(path: &Path) -> Result<Config, i32> {
    config::load(path).map_err(|e| {
        eprintln!("{e}");
        eprintln!(
            "{} problem{} in {}",
            e.problems.len(),
            if e.problems.len() == 1 { "" } else { "s" },
            path.display()
        );
        EXIT_CONFIG
    })
}

pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `meetsync sync --once`.
pub async fn sync_once(
    cfg: &Config,
    pair: Option<&str>,
    mut opts: JobOptions,
) -> (i32, Vec<PairReport>) {
    let selected: Vec<_> = cfg
        .pairs
        .iter()
        .filter(|p| pair.is_none_or(|n| n == p.name))
        .collect();
    if selected.is_empty() {
        let names: Vec<_> = cfg.pairs.iter().map(|p| p.name.as_str()).collect();
        eprintln!(
            "error: no pair named `{}` in {} (pairs: {})",
            pair.unwrap_or(""),
            cfg.path.display(),
            names.join(", ")
        );
        return (EXIT_CONFIG, Vec::new());
    }
    let state = match State::open(&cfg.state_dir) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            eprintln!("error: {e}");
            return (EXIT_FAILED, Vec::new());
        }
    };
    opts.progress = true;
    opts.lease = std::time::Duration::from_secs(cfg.lease_secs);
    let mut code = EXIT_OK;
    let mut reports = Vec::new();
    for p in selected {
        let r = cycle::sync_pair(p, state.clone(), &opts).await;
        print!("{}", r.render());
        if r.ok() {
            tracing::info!(pair = %p.name, summary = %r.summary(), "sync finished");
        } else {
            tracing::error!(pair = %p.name, summary = %r.summary(), "sync failed");
            code = EXIT_FAILED;
        }
        for o in r
            .organizers
            .iter()
            .filter(|o| o.outcome == cycle::Outcome::Busy)
        {
            eprintln!(
                "meetsync: {} (not synced by this run; exit code {EXIT_BUSY})",
                o.error.as_deref().unwrap_or("")
            );
            if code == EXIT_OK {
                code = EXIT_BUSY;
            }
        }
        reports.push(r);
    }
    (code, reports)
}

/// `meetsync check-config`.
pub fn check_config(path: &Path) -> i32 {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let secrets = config::check_secrets(&cfg);
    let mut code = EXIT_OK;
    println!("{}: syntax and settings are valid", path.display());
    for p in &cfg.pairs {
        let store = p.store.path.display();
        let schedule = &p.schedule;
        println!(
            "  pair {}: {} → {store} (schedule `{schedule}`)",
            p.name, p.platform.base_url
        );
        if let Some(msgs) = secrets.get(&p.name) {
            for m in msgs {
                println!("    {m}");
                if m.starts_with("error") {
                    code = EXIT_CONFIG;
                }
            }
        }
    }
    println!("  state: {}", cfg.state_dir.display());
    code
}

/// `meetsync status`.
pub fn status(cfg: &Config) -> i32 {
    let state = match State::open(&cfg.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let fmt_time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    for p in &cfg.pairs {
        let (last, failed) = match state.last_runs(&p.name) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        };
        let items = state.item_count(&p.name).unwrap_or(0);
        println!("pair {} ({items} meetings synced)", p.name);
        match last {
            None => println!("  last run: never"),
            Some(r) => println!(
                "  last run: {} — {} — {}",
                fmt_time(r.started),
                if r.ok { "ok" } else { "failed" },
                r.summary
            ),
        }
        match state.schedule(&p.name) {
            Ok(Some((next, failures))) => {
                let backoff = if failures > 0 {
                    format!(" (backing off after {failures} failed run(s))")
                } else {
                    String::new()
                };
                println!("  next run: {}{backoff}", fmt_time(next));
            }
            _ => {
                if let Some(next) = crate::daemon::next_by_schedule(p, chrono::Utc::now()) {
                    let when = match p.schedule_timezone {
                        Some(tz) => next.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                        None => next
                            .with_timezone(&chrono::Local)
                            .format("%Y-%m-%d %H:%M %Z"),
                    };
                    println!(
                        "  next run: {when} by the schedule `{}` (the daemon has not run yet)",
                        p.schedule
                    );
                }
            }
        }
        match state.claims(&p.name) {
            Ok(claims) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                for c in claims {
                    let note = if c.holder.alive() == Some(false) {
                        " (that process is gone: the next run takes over)".to_string()
                    } else if c.expires_ms <= now_ms {
                        " (expired: the next run takes over)".to_string()
                    } else {
                        format!(" (lease until {})", fmt_time(c.expires_ms.div_euclid(1000)))
                    };
                    println!(
                        "  being synced: organizer {} by {}{note}",
                        c.organizer,
                        c.holder_text()
                    );
                }
            }
            Err(e) => eprintln!("error: {e}"),
        }
        if let Some(f) = failed {
            println!(
                "  last error: {} — {}",
                fmt_time(f.started),
                f.error.unwrap_or(f.summary)
            );
        }
    }
    EXIT_OK
}
