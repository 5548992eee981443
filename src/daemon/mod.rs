//! `meetsync run`: one long-running process for all pairs.
//!
//! The scheduler loop owns the per-pair schedule (cron + jitter + backoff),
//! starts jobs (never two for one pair, at most `max_concurrent_jobs` at
//! once), and reacts to signals: SIGHUP re-reads the config (a broken one is
//! rejected and the old one keeps running), SIGTERM/SIGINT stop starting jobs,
//! let the running ones finish their current organizer and commit, and exit 0.
//! It tells systemd what it does (READY, STATUS, WATCHDOG from the loop
//! itself, so a hung loop gets the service restarted).

pub mod listener;
pub mod notify;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::{self, Config, PairConfig};
use crate::cycle::{self, JobOptions, Outcome, PairReport};
use crate::metrics;
use crate::state::State;
use ::notify as notify_crate;
use notify::Notifier;

/// A calendar folder must be quiet this long before its edits are synced.
const DEBOUNCE: Duration = Duration::from_millis(1000);

/// What the listener and the loop share.
pub struct Shared {
    /// Unix time of the last loop iteration (for /healthz).
    pub last_tick: AtomicI64,
    /// Per pair: since when it has been failing (None = last job ok or none yet).
    pub failing_since: Mutex<BTreeMap<String, Option<i64>>>,
    pub unhealthy_after: AtomicI64,
    pub triggers: mpsc::UnboundedSender<String>,
}

impl Shared {
    /// `Ok` or the reason the daemon is unhealthy.
    pub fn health(&self, now: i64) -> Result<(), String> {
        let tick = self.last_tick.load(Ordering::Relaxed);
        if now - tick > 30 {
            return Err(format!(
                "the scheduler loop has not run for {} s",
                now - tick
            ));
        }
        let f = self.failing_since.lock().unwrap_or_else(|p| p.into_inner());
        let limit = self.unhealthy_after.load(Ordering::Relaxed);
        if !f.is_empty() && f.values().all(|s| s.is_some_and(|t| now - t > limit)) {
            return Err(format!(
                "every pair has been failing for more than {limit} s"
            ));
        }
        Ok(())
    }

    pub fn has_pair(&self, name: &str) -> bool {
        self.failing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }
}

struct PairSched {
    cfg: PairConfig,
    next: DateTime<Utc>,
    running: bool,
    failures: u32,
    /// Triggered while running: run again right after.
    again: bool,
}

struct Daemon {
    config_path: PathBuf,
    config: Config,
    pairs: BTreeMap<String, PairSched>,
    state: Arc<Mutex<State>>,
    shared: Arc<Shared>,
    notifier: Notifier,
    running: usize,
    last_status: String,
    /// Two-way pairs whose calendar folder changed, and when it last did.
    dirty: BTreeMap<String, std::time::Instant>,
    watcher: Option<notify_crate::RecommendedWatcher>,
    edits: mpsc::UnboundedSender<String>,
    /// Per (pair, organizer key): the item notes already logged, so that each
    /// is logged once when it appears, not after every run.
    logged_notes: BTreeMap<(String, String), BTreeSet<String>>,
}

fn schedule_next(cfg: &PairConfig, after: DateTime<Utc>, jitter_secs: u64) -> DateTime<Utc> {
    let next = match config::parse_schedule(&cfg.schedule) {
        Ok(_) => config::next_by_schedule(cfg, after).unwrap_or(after + chrono::Duration::hours(1)),
        Err(_) => after + chrono::Duration::minutes(15),
    };
    let jitter = if jitter_secs > 0 {
        rand::random_range(0..=jitter_secs * 1000)
    } else {
        0
    };
    next + chrono::Duration::milliseconds(jitter as i64)
}

/// The delay before the next attempt after `failures` failed jobs in a row.
pub fn backoff(failures: u32, base: u64, max: u64) -> Duration {
    let exp = base.saturating_mul(1u64 << failures.saturating_sub(1).min(30));
    Duration::from_secs(exp.min(max))
}

/// Run the daemon until SIGTERM/SIGINT. Returns the exit code.
pub async fn run(config_path: &Path) -> i32 {
    let config = match app::load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let state = match State::open(&config.state_dir) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            return app::EXIT_FAILED;
        }
    };
    let (tx, mut triggers) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        last_tick: AtomicI64::new(Utc::now().timestamp()),
        failing_since: Mutex::new(BTreeMap::new()),
        unhealthy_after: AtomicI64::new(config.daemon.unhealthy_after_secs as i64),
        triggers: tx,
    });
    let shutdown = CancellationToken::new();
    if let Some(addr) = config.daemon.listen {
        match listener::start(addr, shared.clone(), shutdown.clone()).await {
            Ok(bound) => tracing::info!(%bound, "metrics, health and trigger listener started"),
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot start the listener");
                eprintln!("error: cannot listen on {addr}: {e}");
                return app::EXIT_FAILED;
            }
        }
    }
    let (edits_tx, mut edits) = mpsc::unbounded_channel::<String>();
    let mut d = Daemon {
        config_path: config_path.to_path_buf(),
        config: config.clone(),
        pairs: BTreeMap::new(),
        state,
        shared,
        notifier: Notifier::from_env(),
        running: 0,
        last_status: String::new(),
        dirty: BTreeMap::new(),
        watcher: None,
        edits: edits_tx,
        logged_notes: BTreeMap::new(),
    };
    d.apply_config(config);
    let signals = Signals::new();
    let Ok(mut signals) = signals else {
        eprintln!("error: cannot install signal handlers");
        return app::EXIT_FAILED;
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, PairReport)>();
    let mut jobs = JoinSet::new();
    d.notifier.send("READY=1");
    d.status_line(None);
    tracing::info!(pairs = d.pairs.len(), "meetsync daemon started");
    // a short tick keeps triggers and folder edits snappy; the watchdog is
    // pinged at most every half watchdog interval (and at least every second)
    let tick = Duration::from_millis(250);
    let ping_every = Notifier::watchdog_interval()
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let mut last_ping = std::time::Instant::now() - ping_every;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            Some(sig) = signals.next() => match sig {
                Sig::Hup => d.reload(),
                Sig::Term => break,
                Sig::Usr1 => {
                    let now = Utc::now();
                    for p in d.pairs.values_mut() { p.next = now; }
                }
            },
            Some(name) = triggers.recv() => d.trigger(&name),
            Some(name) = edits.recv() => {
                d.dirty.insert(name, std::time::Instant::now());
            }
            Some((name, report)) = done_rx.recv() => d.finished(&name, report),
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
        let now = Utc::now();
        d.shared.last_tick.store(now.timestamp(), Ordering::Relaxed);
        metrics::global()
            .scheduler_last_tick_timestamp_seconds
            .set(now.timestamp());
        if last_ping.elapsed() >= ping_every {
            d.notifier.send("WATCHDOG=1");
            last_ping = std::time::Instant::now();
        }
        d.sync_quiet_edits();
        d.start_due(Utc::now(), &mut jobs, &done_tx, &shutdown);
    }
    tracing::info!(
        running = d.running,
        "stopping: no new jobs; waiting for running jobs to commit"
    );
    d.notifier.send("STOPPING=1");
    d.notifier.send(&format!(
        "STATUS=stopping, waiting for {} job(s)",
        d.running
    ));
    shutdown.cancel();
    while d.running > 0 {
        tokio::select! {
            Some((name, report)) = done_rx.recv() => d.finished(&name, report),
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => d.notifier.send("WATCHDOG=1"),
        }
    }
    while jobs.join_next().await.is_some() {}
    tracing::info!("stopped");
    app::EXIT_OK
}

impl Daemon {
    fn apply_config(&mut self, config: Config) {
        let now = Utc::now();
        let jitter = config.daemon.jitter_secs;
        let mut names = BTreeMap::new();
        for p in &config.pairs {
            names.insert(p.name.clone(), ());
            match self.pairs.get_mut(&p.name) {
                Some(s) => {
                    let schedule_changed = s.cfg.schedule != p.schedule
                        || s.cfg.schedule_timezone != p.schedule_timezone;
                    s.cfg = p.clone();
                    if schedule_changed {
                        s.next = schedule_next(p, now, jitter);
                    }
                }
                None => {
                    // a new pair syncs right away, then follows its schedule
                    self.pairs.insert(
                        p.name.clone(),
                        PairSched {
                            cfg: p.clone(),
                            next: now,
                            running: false,
                            failures: 0,
                            again: false,
                        },
                    );
                }
            }
        }
        self.pairs.retain(|name, s| {
            let keep = names.contains_key(name);
            if !keep && s.running {
                tracing::info!(pair = %name, "pair removed from the config; its running job finishes");
            }
            keep
        });
        {
            let mut f = self
                .shared
                .failing_since
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            f.retain(|k, _| names.contains_key(k));
            for k in names.keys() {
                f.entry(k.clone()).or_insert(None);
            }
        }
        if config.daemon.listen != self.config.daemon.listen {
            tracing::warn!("a new `listen` address takes effect after a restart");
        }
        if config.state_dir != self.config.state_dir {
            tracing::warn!("a new `state_dir` takes effect after a restart");
        }
        self.shared
            .unhealthy_after
            .store(config.daemon.unhealthy_after_secs as i64, Ordering::Relaxed);
        metrics::global().pairs.set(self.pairs.len() as i64);
        let folders: Vec<(String, PathBuf)> = config
            .pairs
            .iter()
            .filter(|p| p.direction == crate::config::Direction::TwoWay)
            .map(|p| (p.name.clone(), p.store.path.clone()))
            .collect();
        self.watcher = None; // stop the old one first
        match watch::start(&folders, self.edits.clone()) {
            Ok(w) => self.watcher = w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the calendar folders; local edits wait for the schedule")
            }
        }
        self.config = config;
        self.persist_schedule();
    }

    /// Trigger two-way pairs whose folder changed and has been quiet since.
    fn sync_quiet_edits(&mut self) {
        let quiet: Vec<String> = self
            .dirty
            .iter()
            .filter(|(_, t)| t.elapsed() >= DEBOUNCE)
            .map(|(n, _)| n.clone())
            .collect();
        for name in quiet {
            let Some(p) = self.pairs.get(&name) else {
                self.dirty.remove(&name);
                continue;
            };
            if p.running {
                continue; // decided once the job is done: its own writes wake the watcher
            }
            self.dirty.remove(&name);
            let unchanged = {
                let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                crate::twoway::folder_matches_cache(&p.cfg, &st)
            };
            if unchanged {
                tracing::debug!(pair = %name, "the calendar folder is as the last job left it");
                continue;
            }
            tracing::info!(pair = %name, "local changes in the calendar folder");
            self.trigger(&name);
        }
    }

    fn reload(&mut self) {
        self.notifier.send("RELOADING=1");
        match config::load(&self.config_path) {
            Ok(c) => {
                let before: Vec<String> = self.pairs.keys().cloned().collect();
                self.apply_config(c);
                let after: Vec<String> = self.pairs.keys().cloned().collect();
                tracing::info!(before = ?before, after = ?after, "configuration reloaded");
            }
            Err(e) => {
                tracing::error!(
                    "the new configuration is invalid and was rejected; the previous one keeps running:\n{e}"
                );
            }
        }
        self.notifier.send("READY=1");
        self.status_line(None);
    }

    fn trigger(&mut self, name: &str) {
        if let Some(p) = self.pairs.get_mut(name) {
            tracing::info!(pair = %name, "sync triggered");
            if p.running {
                p.again = true;
            } else {
                p.next = Utc::now();
            }
        }
    }

    fn start_due(
        &mut self,
        now: DateTime<Utc>,
        jobs: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<(String, PairReport)>,
        shutdown: &CancellationToken,
    ) {
        let max = self.config.daemon.max_concurrent_jobs;
        let mut due: Vec<(DateTime<Utc>, String)> = self
            .pairs
            .iter()
            .filter(|(_, p)| !p.running && p.next <= now)
            .map(|(n, p)| (p.next, n.clone()))
            .collect();
        due.sort();
        for (_, name) in due {
            if self.running >= max {
                break;
            }
            let Some(p) = self.pairs.get_mut(&name) else {
                continue;
            };
            p.running = true;
            self.running += 1;
            metrics::global().jobs_running.set(self.running as i64);
            let cfg = p.cfg.clone();
            let state = self.state.clone();
            let done = done.clone();
            let mut opts = JobOptions::new(now.timestamp());
            opts.cancel = Some(shutdown.clone());
            opts.lease = Duration::from_secs(self.config.lease_secs);
            tracing::info!(pair = %name, "sync started");
            jobs.spawn(async move {
                let report = cycle::sync_pair(&cfg, state, &opts).await;
                let _ = done.send((cfg.name.clone(), report));
            });
        }
    }

    fn finished(&mut self, name: &str, report: PairReport) {
        self.running = self.running.saturating_sub(1);
        metrics::global().jobs_running.set(self.running as i64);
        record_metrics(&report);
        let now = Utc::now();
        let ok = report.ok();
        if ok {
            tracing::info!(pair = %name, summary = %report.summary(), "sync finished");
        } else {
            tracing::error!(pair = %name, summary = %report.summary(), "sync failed");
            for o in report.organizers.iter().filter(|o| o.error.is_some()) {
                tracing::error!(pair = %name, organizer = %o.organizer, error = %o.error.as_deref().unwrap_or(""), "organizer failed");
            }
        }
        self.log_new_notes(name, &report);
        {
            let mut f = self
                .shared
                .failing_since
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = f.get_mut(name) {
                *slot = if ok {
                    None
                } else {
                    Some(slot.unwrap_or(now.timestamp()))
                };
            }
        }
        let (jitter, base, max) = (
            self.config.daemon.jitter_secs,
            self.config.daemon.backoff_base_secs,
            self.config.daemon.backoff_max_secs,
        );
        if let Some(p) = self.pairs.get_mut(name) {
            p.running = false;
            let cron_next = schedule_next(&p.cfg, now, jitter);
            if ok {
                p.failures = 0;
                p.next = cron_next;
            } else {
                p.failures += 1;
                let delay = backoff(p.failures, base, max);
                let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                p.next = cron_next.max(retry_at);
                tracing::warn!(pair = %name, failures = p.failures, next = %p.next, "backing off");
            }
            if p.again {
                p.again = false;
                p.next = now;
            }
        }
        self.persist_schedule();
        self.status_line(Some((name, &report)));
    }

    /// Log each item problem (item and reason) at warn level when it first
    /// appears. A run that read an organizer's feed replaces what is known of
    /// it, so a problem that went away and comes back is logged again; a run
    /// that did not (304, failure) keeps it.
    fn log_new_notes(&mut self, name: &str, report: &PairReport) {
        for o in &report.organizers {
            let known = self
                .logged_notes
                .entry((name.to_string(), o.key.clone()))
                .or_default();
            for n in o.notes.iter().filter(|n| !known.contains(*n)) {
                tracing::warn!(pair = %name, organizer = %o.organizer, "item problem: {n}");
            }
            if o.outcome == Outcome::Synced {
                *known = o.notes.iter().cloned().collect();
            } else {
                known.extend(o.notes.iter().cloned());
            }
        }
    }

    fn persist_schedule(&self) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (name, p) in &self.pairs {
            if let Err(e) = st.set_schedule(name, p.next.timestamp(), p.failures) {
                tracing::warn!(error = %e, "cannot record the schedule");
                break;
            }
        }
    }

    fn status_line(&mut self, last: Option<(&str, &PairReport)>) {
        let next = self
            .pairs
            .iter()
            .filter(|(_, p)| !p.running)
            .min_by_key(|(_, p)| p.next)
            .map(|(n, p)| {
                format!(
                    "next {n} at {}",
                    p.next.with_timezone(&chrono::Local).format("%H:%M:%S")
                )
            })
            .unwrap_or_else(|| "nothing scheduled".into());
        let failing = self.pairs.values().filter(|p| p.failures > 0).count();
        let mut s = format!(
            "{} pair(s), {} running, {failing} failing; {next}",
            self.pairs.len(),
            self.running
        );
        if let Some((name, r)) = last {
            s = format!("{name}: {}; {s}", r.summary());
        } else if !self.last_status.is_empty() {
            return self.notifier.send(&format!("STATUS={}", self.last_status));
        }
        self.last_status = s.clone();
        self.notifier.send(&format!("STATUS={s}"));
    }
}

fn record_metrics(r: &PairReport) {
    let m = metrics::global();
    let pair = r.pair.as_str();
    let ok = r.ok();
    m.jobs
        .get_or_create(&metrics::result(pair, if ok { "ok" } else { "failed" }))
        .inc();
    m.job_duration_seconds
        .get_or_create(&metrics::pair(pair))
        .observe(r.seconds);
    if ok {
        m.last_success_timestamp_seconds
            .get_or_create(&metrics::pair(pair))
            .set(Utc::now().timestamp());
    }
    let (a, c, d) = r.totals();
    for (action, n) in [("added", a), ("changed", c), ("deleted", d)] {
        m.items
            .get_or_create(&metrics::action(pair, action))
            .inc_by(n as u64);
    }
    if r.error.is_some() {
        m.errors.get_or_create(&metrics::kind(pair, "pair")).inc();
    }
    for o in &r.organizers {
        let result = match o.outcome {
            Outcome::NotModified => "not_modified",
            Outcome::Unchanged => "unchanged",
            Outcome::Synced => "changed",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Cancelled | Outcome::Busy => continue,
        };
        m.feed_fetches
            .get_or_create(&metrics::result(pair, result))
            .inc();
        match o.outcome {
            Outcome::Failed => {
                m.errors
                    .get_or_create(&metrics::kind(pair, "organizer"))
                    .inc();
            }
            Outcome::Refused => {
                m.errors
                    .get_or_create(&metrics::kind(pair, "refused"))
                    .inc();
            }
            _ => {}
        }
        if o.item_errors > 0 {
            m.errors
                .get_or_create(&metrics::kind(pair, "item"))
                .inc_by(o.item_errors as u64);
        }
        if o.conflicts > 0 {
            m.conflicts
                .get_or_create(&metrics::pair(pair))
                .inc_by(o.conflicts as u64);
        }
    }
    let fetches = |r: &str| {
        m.feed_fetches
            .get(&metrics::result(pair, r))
            .map_or(0, |c| c.get())
    };
    let total: u64 = ["not_modified", "unchanged", "changed", "refused", "failed"]
        .into_iter()
        .map(fetches)
        .sum();
    if total > 0 {
        m.feed_not_modified_ratio
            .get_or_create(&metrics::pair(pair))
            .set(fetches("not_modified") as f64 / total as f64);
    }
}

enum Sig {
    Hup,
    Term,
    Usr1,
}

struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    async fn next(&mut self) -> Option<Sig> {
        tokio::select! {
            _ = self.hup.recv() => Some(Sig::Hup),
            _ = self.term.recv() => Some(Sig::Term),
            _ = self.int.recv() => Some(Sig::Term),
            _ = self.usr1.recv() => Some(Sig::Usr1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_land_on_whole_seconds_and_minutes() {
        let mut cfg = crate::config::parse(
            "[[pair]]\nname = \"p\"\nschedule = \"*/15 * * * *\"\nschedule_timezone = \"UTC\"\n[pair.platform]\nbase_url = \"http://h\"\napi_key_env = \"K\"\naccount_id = \"a\"\n[pair.store]\npath = \"/x\"\n",
            Path::new("/t.toml"),
        )
        .unwrap()
        .pairs
        .remove(0);
        let t = DateTime::parse_from_rfc3339("2026-01-01T10:00:00.512Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            schedule_next(&cfg, t, 0).to_rfc3339(),
            "2026-01-01T10:15:00+00:00"
        );
        cfg.schedule = "* * * * * *".into();
        assert_eq!(
            schedule_next(&cfg, t, 0).to_rfc3339(),
            "2026-01-01T10:00:01+00:00"
        );
        cfg.schedule = "0 9 * * *".into();
        cfg.schedule_timezone = Some(chrono_tz::Europe::Zurich);
        // 09:00 in Zurich is 08:00 UTC in winter
        assert_eq!(
            schedule_next(&cfg, t, 0).to_rfc3339(),
            "2026-01-02T08:00:00+00:00"
        );
        let j = schedule_next(&cfg, t, 30);
        assert!(
            j >= schedule_next(&cfg, t, 0)
                && j <= schedule_next(&cfg, t, 0) + chrono::Duration::seconds(30)
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1, 60, 3600), Duration::from_secs(60));
        assert_eq!(backoff(2, 60, 3600), Duration::from_secs(120));
        assert_eq!(backoff(4, 60, 3600), Duration::from_secs(480));
        assert_eq!(backoff(20, 60, 3600), Duration::from_secs(3600));
        assert_eq!(backoff(200, 60, 3600), Duration::from_secs(3600));
    }
}
