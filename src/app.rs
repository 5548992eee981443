//! The one-shot commands for people: `sync --once`, `check-config`, `status`.
//! They print to stdout and return the process exit code.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::{self, Config, Direction, PairConfig};
use crate::cycle::{self, JobOptions, PairReport};
use crate::state::{State, StateError};

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

/// `meetsync status`: per pair the last run, the next, the last error; per
/// organizer what the store holds, the last run's result, its last error and
/// every item problem of the last run that read its feed.
pub fn status(cfg: &Config) -> i32 {
    let state = match State::open(&cfg.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    for p in &cfg.pairs {
        match pair_status(&state, p) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        }
    }
    EXIT_OK
}

fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// The `status` text of one pair.
pub fn pair_status(state: &State, p: &PairConfig) -> Result<String, StateError> {
    use std::fmt::Write as _;
    let two_way = p.direction == Direction::TwoWay;
    let (last, failed) = state.last_runs(&p.name)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pair {} ({}, {})",
        p.name,
        if two_way { "two-way" } else { "pull" },
        p.store.path.display()
    );
    match &last {
        None => {
            let _ = writeln!(out, "  last run: never");
        }
        Some(r) => {
            let _ = writeln!(
                out,
                "  last run: {} — {} — {}",
                fmt_time(r.started),
                if r.ok { "ok" } else { "failed" },
                r.summary
            );
        }
    }
    match state.schedule(&p.name)? {
        Some((next, failures)) => {
            let backoff = if failures > 0 {
                format!(" (backing off after {failures} failed run(s))")
            } else {
                String::new()
            };
            let _ = writeln!(out, "  next run: {}{backoff}", fmt_time(next));
        }
        None => {
            if let Some(next) = config::next_by_schedule(p, chrono::Utc::now()) {
                let when = match p.schedule_timezone {
                    Some(tz) => next.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                    None => next
                        .with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M %Z"),
                };
                let _ = writeln!(
                    out,
                    "  next run: {when} by the schedule `{}` (the daemon has not run yet)",
                    p.schedule
                );
            }
        }
    }
    if let Some(f) = &failed {
        let _ = writeln!(
            out,
            "  last error: {} — {}",
            fmt_time(f.started),
            f.error.as_deref().unwrap_or(&f.summary)
        );
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    for c in state.claims(&p.name)? {
        let note = if c.holder.alive() == Some(false) {
            " (that process is gone: the next run takes over)".to_string()
        } else if c.expires_ms <= now_ms {
            " (expired: the next run takes over)".to_string()
        } else {
            format!(" (lease until {})", fmt_time(c.expires_ms.div_euclid(1000)))
        };
        let _ = writeln!(
            out,
            "  being synced: organizer {} by {}{note}",
            c.organizer,
            c.holder_text()
        );
    }
    // the organizers of the last run; if it failed before reaching any, those
    // of the last run that did
    let (orgs, as_of) = match &last {
        Some(r) if !r.organizers.is_empty() => (r.organizers.clone(), None),
        _ => state.last_organizers(&p.name)?,
    };
    if let Some(t) = as_of {
        let _ = writeln!(out, "  organizers, as of the run of {}:", fmt_time(t));
    }
    for o in &orgs {
        let counts = state.organizer_counts(&p.name, &o.key, &o.collection)?;
        let held = if two_way {
            format!(
                "{} event(s) in the calendar, {} linked to meetings",
                counts.local, counts.linked
            )
        } else {
            format!("{} meeting(s) in the store", counts.items)
        };
        if o.collection == o.label {
            let _ = writeln!(out, "  {}/: {held}", o.label);
        } else {
            let _ = writeln!(out, "  {} → {}/: {held}", o.label, o.collection);
        }
        let _ = writeln!(out, "    last run: {}", o.summary);
        if let Some((t, e)) = state.last_organizer_error(&p.name, &o.key)? {
            let _ = writeln!(
                out,
                "    last error: {} — {}",
                fmt_time(t),
                e.error.as_deref().unwrap_or("")
            );
        }
        // item problems: those of the last run; when it did not read the
        // feed (304, unchanged), also those of the last run that did
        let mut notes: Vec<(Option<i64>, &str)> =
            o.notes.iter().map(|n| (None, n.as_str())).collect();
        let earlier = if o.read {
            None
        } else {
            state.last_read(&p.name, &o.key)?
        };
        if let Some((t, e)) = &earlier {
            for n in &e.notes {
                if !o.notes.contains(n) {
                    notes.push((Some(*t), n.as_str()));
                }
            }
        }
        if notes.is_empty() {
            let _ = writeln!(out, "    item problems: none");
        }
        for (t, n) in notes {
            match t {
                None => {
                    let _ = writeln!(out, "    ! {n}");
                }
                Some(t) => {
                    let _ = writeln!(out, "    ! {n} (as of the run of {})", fmt_time(t));
                }
            }
        }
    }
    Ok(out)
}
