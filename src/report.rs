//! What a job is asked to do and what it reports: `JobOptions`, `Outcome`,
//! `OrganizerReport`, `PairReport`. Shared by the pull and two-way paths, the
//! daemon and the commands; no I/O.

use std::fmt::Write as _;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::http::RetryPolicy;
use crate::ics;

/// How a job runs.
#[derive(Debug, Clone)]
pub struct JobOptions {
    pub dry_run: bool,
    pub force_delete: bool,
    /// Unix seconds; injected so tests control time.
    pub now: i64,
    /// Organizers processed at once.
    pub concurrency: usize,
    /// Show a progress line on a terminal.
    pub progress: bool,
    /// Override the HTTP retry policy (tests, demo).
    pub retry: Option<RetryPolicy>,
    /// Set when the daemon shuts down: organizers not yet started are skipped,
    /// the ones in flight finish and commit.
    pub cancel: Option<CancellationToken>,
    /// How long a claim on an organizer lasts unless renewed (`lease_secs`).
    pub lease: Duration,
    /// How long to wait for an organizer another process is syncing before
    /// skipping it (`sync --once --wait`; the daemon does not wait).
    pub claim_wait: Duration,
}

impl JobOptions {
    pub fn new(now: i64) -> JobOptions {
        JobOptions {
            dry_run: false,
            force_delete: false,
            now,
            concurrency: 4,
            progress: false,
            retry: None,
            cancel: None,
            lease: Duration::from_secs(crate::config::DEFAULT_LEASE_SECS),
            claim_wait: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 304 from the platform.
    NotModified,
    /// 200 with the same body as last time.
    Unchanged,
    /// The feed was processed (maybe with nothing to do).
    Synced,
    /// Refused by a safety check; nothing touched.
    Refused,
    Failed,
    /// Not started because the daemon is shutting down; the next run does it.
    Cancelled,
    /// Not started because another process is syncing this organizer (its
    /// claim is in `error`); not a failure.
    Busy,
}

/// What happened to one organizer's feed.
#[derive(Debug, Clone)]
pub struct OrganizerReport {
    pub organizer: String,
    /// The organizer's key in the sync state (user id or feed name).
    pub key: String,
    pub collection: String,
    pub outcome: Outcome,
    pub added: usize,
    pub changed: usize,
    pub deleted: usize,
    /// Gone from the feed after ageing out of the window: kept locally.
    pub aged_out: usize,
    pub outside_window: usize,
    /// Items not written: local edits kept, bad components, name clashes.
    pub notes: Vec<String>,
    pub item_errors: usize,
    /// Local edits kept instead of the platform's version, or two-way conflicts.
    pub conflicts: usize,
    /// Two-way: meetings created, updated, deleted on the platform.
    pub pushed: (usize, usize, usize),
    pub error: Option<String>,
    /// Planned actions, filled on dry runs.
    pub plan: Vec<String>,
}

impl OrganizerReport {
    /// Report a component of the feed that was skipped as broken.
    pub fn note_skipped(&mut self, s: &ics::SkippedItem) {
        self.item_errors += 1;
        self.notes.push(format!(
            "skipped component #{}{}: {}",
            s.index,
            s.uid
                .as_deref()
                .map(|u| format!(" (UID {})", shorten(u)))
                .unwrap_or_default(),
            s.reason
        ));
    }

    pub fn new(organizer: &str, collection: &str) -> OrganizerReport {
        OrganizerReport {
            organizer: organizer.to_string(),
            key: String::new(),
            collection: collection.to_string(),
            outcome: Outcome::Synced,
            added: 0,
            changed: 0,
            deleted: 0,
            aged_out: 0,
            outside_window: 0,
            notes: Vec::new(),
            item_errors: 0,
            conflicts: 0,
            pushed: (0, 0, 0),
            error: None,
            plan: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PairReport {
    pub pair: String,
    pub dry_run: bool,
    pub organizers: Vec<OrganizerReport>,
    /// A failure before any organizer could be processed.
    pub error: Option<String>,
    pub seconds: f64,
}

impl PairReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self
                .organizers
                .iter()
                .all(|o| !matches!(o.outcome, Outcome::Failed | Outcome::Refused))
    }

    /// Organizers skipped because another process was syncing them.
    pub fn busy(&self) -> usize {
        self.organizers
            .iter()
            .filter(|o| o.outcome == Outcome::Busy)
            .count()
    }

    pub fn totals(&self) -> (usize, usize, usize) {
        self.organizers.iter().fold((0, 0, 0), |(a, c, d), o| {
            (a + o.added, c + o.changed, d + o.deleted)
        })
    }

    /// One line for logs, `status` and sd_notify.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("failed: {e}");
        }
        let (a, c, d) = self.totals();
        let count = |o: Outcome| self.organizers.iter().filter(|r| r.outcome == o).count();
        let mut s = format!(
            "{} organizer{}: +{a} ~{c} -{d}",
            self.organizers.len(),
            if self.organizers.len() == 1 { "" } else { "s" }
        );
        let pushed = self.organizers.iter().fold((0, 0, 0), |(a, b, c), o| {
            (a + o.pushed.0, b + o.pushed.1, c + o.pushed.2)
        });
        if pushed != (0, 0, 0) {
            let _ = write!(
                s,
                ", to the platform +{} ~{} -{}",
                pushed.0, pushed.1, pushed.2
            );
        }
        let conflicts: usize = self.organizers.iter().map(|o| o.conflicts).sum();
        if conflicts > 0 {
            let _ = write!(
                s,
                ", {conflicts} conflict{}",
                if conflicts == 1 { "" } else { "s" }
            );
        }
        let busy = count(Outcome::Busy);
        if busy > 0 {
            let _ = write!(s, ", {busy} skipped (synced by another process)");
        }
        let nm = count(Outcome::NotModified);
        let un = count(Outcome::Unchanged);
        if nm > 0 {
            let _ = write!(s, ", {nm} not modified (304)");
        }
        if un > 0 {
            let _ = write!(s, ", {un} unchanged");
        }
        let failed = count(Outcome::Failed);
        let refused = count(Outcome::Refused);
        let item_errors: usize = self.organizers.iter().map(|o| o.item_errors).sum();
        let _ = write!(
            s,
            ", {} error{}",
            failed + refused,
            if failed + refused == 1 { "" } else { "s" }
        );
        if item_errors > 0 {
            let _ = write!(
                s,
                ", {item_errors} item problem{}",
                if item_errors == 1 { "" } else { "s" }
            );
        }
        s
    }

    /// The human report printed by `sync --once`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.dry_run {
            "dry run"
        } else if self.ok() {
            "ok"
        } else {
            "FAILED"
        };
        let _ = writeln!(
            out,
            "pair {}: {verdict} — {} ({:.2} s)",
            self.pair,
            self.summary(),
            self.seconds
        );
        for o in &self.organizers {
            let what = match o.outcome {
                Outcome::NotModified => "not modified (304)".to_string(),
                Outcome::Unchanged => "unchanged (same content)".to_string(),
                Outcome::Synced => {
                    let mut s = format!("+{} ~{} -{}", o.added, o.changed, o.deleted);
                    if o.pushed != (0, 0, 0) {
                        let _ = write!(
                            s,
                            "; to the platform +{} ~{} -{}",
                            o.pushed.0, o.pushed.1, o.pushed.2
                        );
                    }
                    if o.aged_out > 0 {
                        let _ = write!(s, ", {} aged out (kept)", o.aged_out);
                    }
                    if o.outside_window > 0 {
                        let _ = write!(s, ", {} outside the sync window", o.outside_window);
                    }
                    s
                }
                Outcome::Refused => format!("REFUSED: {}", o.error.as_deref().unwrap_or("")),
                Outcome::Failed => format!("FAILED: {}", o.error.as_deref().unwrap_or("")),
                Outcome::Cancelled => "not started (shutting down)".to_string(),
                Outcome::Busy => format!("skipped: {}", o.error.as_deref().unwrap_or("")),
            };
            if o.collection == o.organizer {
                let _ = writeln!(out, "  {}/: {what}", o.organizer);
            } else {
                let _ = writeln!(out, "  {} → {}/: {what}", o.organizer, o.collection);
            }
            for n in &o.notes {
                let _ = writeln!(out, "    ! {n}");
            }
            const MAX_PLAN_LINES: usize = 50;
            for p in o.plan.iter().take(MAX_PLAN_LINES) {
                let _ = writeln!(out, "    {p}");
            }
            if o.plan.len() > MAX_PLAN_LINES {
                let _ = writeln!(out, "    … and {} more", o.plan.len() - MAX_PLAN_LINES);
            }
        }
        out
    }
}

/// UIDs can be long or hostile; show a bounded, printable form.
pub fn shorten(uid: &str) -> String {
    let clean: String = uid
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > 60 {
        format!("{}…", clean.chars().take(60).collect::<String>())
    } else {
        clean
    }
}
