//! One sync job per pair: discover organizers, and for each one fetch the feed
//! (conditional GET) → split it by UID → plan against the sync state → write
//! the vdir atomically → commit the state. Returns a report; per-item
//! problems go into the report, they do not abort the job, and a failed
//! organizer does not stop the others.
//!
//! Nothing here knows about schedules or signals.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::config::{Direction, Layout, OrganizerSource, PairConfig};
use crate::ics::{self, FeedItem, SplitFeed};
use crate::provider::webmeeting::{Client, FeedFetch, Organizer, FEED_PROPERTIES};
use crate::state::{
    Claim, Commit, FeedState, ItemState, PendingWrite, RunOrganizer, RunRecord, State, StateError,
};
use crate::store::vdir::Vdir;
use crate::twoway;

pub use crate::report::{shorten, JobOptions, OrganizerReport, Outcome, PairReport};

/// Progress on a terminal: "pair: 1200/10000 files".
struct Progress {
    enabled: bool,
    pair: String,
    done: AtomicUsize,
    total: AtomicUsize,
}

impl Progress {
    fn add_total(&self, n: usize) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    fn tick(&self) {
        let d = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.enabled && d % 200 == 0 {
            eprint!(
                "\r{}: {d}/{} files written",
                self.pair,
                self.total.load(Ordering::Relaxed)
            );
        }
    }

    fn finish(&self) {
        if self.enabled && self.done.load(Ordering::Relaxed) >= 200 {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Run one job for one pair.
pub async fn sync_pair(
    pair: &PairConfig,
    state: Arc<Mutex<State>>,
    opts: &JobOptions,
) -> PairReport {
    let started = std::time::Instant::now();
    let mut report = PairReport {
        pair: pair.name.clone(),
        dry_run: opts.dry_run,
        organizers: Vec::new(),
        error: None,
        seconds: 0.0,
    };
    match run_pair(pair, state.clone(), opts).await {
        Ok(orgs) => report.organizers = orgs,
        Err(e) => report.error = Some(e),
    }
    report.seconds = started.elapsed().as_secs_f64();
    // a run that did nothing because other processes held every organizer
    // leaves the history to them
    let all_busy = !report.organizers.is_empty() && report.busy() == report.organizers.len();
    if !opts.dry_run && !all_busy {
        let rec = RunRecord {
            pair: pair.name.clone(),
            started: opts.now,
            finished: opts.now + report.seconds.ceil() as i64,
            ok: report.ok(),
            summary: report.summary(),
            error: first_error(&report),
            organizers: report.organizers.iter().map(run_organizer).collect(),
        };
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = st.record_run(&rec) {
            tracing::warn!(pair = %pair.name, error = %e, "cannot record the run");
        }
    }
    report
}

fn first_error(r: &PairReport) -> Option<String> {
    r.error.clone().or_else(|| {
        r.organizers
            .iter()
            .find_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.organizer)))
    })
}

/// What `status` shows of one organizer of a run.
fn run_organizer(o: &OrganizerReport) -> RunOrganizer {
    let summary = match o.outcome {
        Outcome::NotModified => "not modified (304)".to_string(),
        Outcome::Unchanged => "unchanged (same content)".to_string(),
        Outcome::Synced => {
            let mut s = format!("+{} ~{} -{}", o.added, o.changed, o.deleted);
            if o.pushed != (0, 0, 0) {
                let (a, c, d) = o.pushed;
                let _ = write!(s, "; to the platform +{a} ~{c} -{d}");
            }
            if o.conflicts > 0 {
                let _ = write!(s, ", {} conflict(s)", o.conflicts);
            }
            s
        }
        Outcome::Refused => "REFUSED".to_string(),
        Outcome::Failed => "FAILED".to_string(),
        Outcome::Cancelled => "not started (shutting down)".to_string(),
        Outcome::Busy => "skipped (synced by another process)".to_string(),
    };
    RunOrganizer {
        key: o.key.clone(),
        label: o.organizer.clone(),
        collection: o.collection.clone(),
        read: o.outcome == Outcome::Synced,
        summary,
        error: o.error.clone(),
        notes: o.notes.clone(),
    }
}

async fn run_pair(
    pair: &PairConfig,
    state: Arc<Mutex<State>>,
    opts: &JobOptions,
) -> Result<Vec<OrganizerReport>, String> {
    let key = pair
        .platform
        .api_key
        .load()
        .map_err(|e| format!("API key ({}): {e}", pair.platform.api_key.describe()))?;
    if let Some(w) = &key.warning {
        tracing::warn!(pair = %pair.name, "{w}");
    }
    let timeout = Duration::from_secs(pair.platform.timeout_secs);
    let mut client = Client::new(
        &pair.name,
        &pair.platform.base_url,
        key.value,
        timeout,
        pair.platform.max_feed_bytes,
    )
    .map_err(|e| e.to_string())?
    .with_rate_limit(pair.platform.max_requests_per_second);
    if let Some(r) = &opts.retry {
        client = client
            .with_retry(r.clone(), timeout)
            .map_err(|e| e.to_string())?;
    }
    let organizers = match &pair.platform.organizers {
        OrganizerSource::Account { account_id, only } => {
            let orgs = client
                .organizers(account_id, only)
                .await
                .map_err(|e| format!("organizer lookup failed: {e}"))?;
            if orgs.is_empty() {
                return Err(format!(
                    "account {account_id} has no organizers{}",
                    if only.is_empty() {
                        ""
                    } else {
                        " matching `only`"
                    }
                ));
            }
            orgs
        }
        OrganizerSource::Feeds(feeds) => {
            let mut v = Vec::new();
            for f in feeds {
                let p = f.ics_path.load().map_err(|e| {
                    format!("feed path of {} ({}): {e}", f.name, f.ics_path.describe())
                })?;
                if let Some(w) = &p.warning {
                    tracing::warn!(pair = %pair.name, "{w}");
                }
                v.push(Organizer::from_feed(&f.name, p.value));
            }
            v
        }
    };
    let progress = Arc::new(Progress {
        enabled: opts.progress && std::io::stderr().is_terminal(),
        pair: pair.name.clone(),
        done: AtomicUsize::new(0),
        total: AtomicUsize::new(0),
    });
    let client = Arc::new(client);
    let reports: Vec<OrganizerReport> = stream::iter(organizers.into_iter().map(|org| {
        let client = client.clone();
        let state = state.clone();
        let progress = progress.clone();
        let pair = pair.clone();
        let opts = opts.clone();
        async move {
            let key = org.key.clone();
            let mut r = if opts.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                let mut r = OrganizerReport::new(&org.label, &collection_for(&pair, &org));
                r.outcome = Outcome::Cancelled;
                r
            } else {
                claimed_job(&pair, &client, org, state, &opts, progress).await
            };
            r.key = key;
            r
        }
    }))
    .buffered(opts.concurrency.max(1))
    .collect()
    .await;
    progress.finish();
    Ok(reports)
}

fn collection_for(pair: &PairConfig, org: &Organizer) -> String {
    match pair.store.layout {
        Layout::Merged => pair.store.collection.clone(),
        Layout::PerOrganizer => ics::file_stem_for_uid(&org.label.to_lowercase()),
    }
}

/// Run one organizer's job under its claim: claimed before anything is read
/// (waiting up to `claim_wait` for another process's job), renewed while the
/// job runs, released at the end. Dry runs write nothing and claim nothing.
async fn claimed_job(
    pair: &PairConfig,
    client: &Client,
    org: Organizer,
    state: Arc<Mutex<State>>,
    opts: &JobOptions,
    progress: Arc<Progress>,
) -> OrganizerReport {
    if opts.dry_run {
        return sync_organizer(pair, client, org, state, opts, progress).await;
    }
    let collection = collection_for(pair, &org);
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let deadline = std::time::Instant::now() + opts.claim_wait;
    loop {
        let claim = lock().try_claim(&pair.name, &org.key, &collection, opts.lease);
        let mut report = OrganizerReport::new(&org.label, &collection);
        match claim {
            Ok(Claim::Taken { took_over, .. }) => {
                if let Some(c) = took_over {
                    tracing::warn!(pair = %pair.name, organizer = %org.label,
                        "taking over the claim of {} (it ended without releasing it, or stalled past lease_secs)", c.holder_text());
                }
                break;
            }
            Ok(Claim::Busy(c)) => {
                let now = std::time::Instant::now();
                let cancelled = opts.cancel.as_ref().is_some_and(|c| c.is_cancelled());
                if now >= deadline || cancelled {
                    let msg = format!(
                        "pair {}, organizer {} is being synced by {}",
                        pair.name,
                        org.label,
                        c.holder_text()
                    );
                    tracing::info!(pair = %pair.name, organizer = %org.label, "skipped: {msg}");
                    report.outcome = Outcome::Busy;
                    report.error = Some(msg);
                    return report;
                }
                tokio::time::sleep((deadline - now).min(Duration::from_millis(200))).await;
            }
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(format!("cannot claim the organizer: {e}"));
                return report;
            }
        }
    }
    // released when the job ends, also if its future is dropped
    let guard = ClaimGuard {
        state: state.clone(),
        pair: pair.name.clone(),
        organizer: org.label.clone(),
        key: org.key.clone(),
        stop: CancellationToken::new(),
    };
    // renewed in the background at a third of the lease (every commit renews too)
    let renewer = {
        let (stop, state, pair_name, key) = (
            guard.stop.clone(),
            state.clone(),
            pair.name.clone(),
            org.key.clone(),
        );
        let every = (opts.lease / 3).max(Duration::from_millis(50));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let r = {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    st.renew_claim(&pair_name, &key)
                };
                match r {
                    Ok(()) => {}
                    Err(e @ StateError::ClaimLost { .. }) => {
                        // every later write of the job is refused by the fence
                        tracing::warn!(pair = %pair_name, "{e}");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(pair = %pair_name, error = %e, "claim renewal failed; retried")
                    }
                }
            }
        })
    };
    let report = sync_organizer(pair, client, org, state.clone(), opts, progress).await;
    guard.stop.cancel();
    let _ = renewer.await;
    drop(guard);
    report
}

/// Stops the renewal of a job's claim and releases it.
struct ClaimGuard {
    state: Arc<Mutex<State>>,
    pair: String,
    organizer: String,
    key: String,
    stop: CancellationToken,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = st.release_claim(&self.pair, &self.key) {
            tracing::warn!(pair = %self.pair, organizer = %self.organizer, error = %e,
                "cannot release the claim; it expires after lease_secs");
        }
    }
}

async fn sync_organizer(
    pair: &PairConfig,
    client: &Client,
    org: Organizer,
    state: Arc<Mutex<State>>,
    opts: &JobOptions,
    progress: Arc<Progress>,
) -> OrganizerReport {
    let collection = collection_for(pair, &org);
    let mut report = OrganizerReport::new(&org.label, &collection);
    let known_feed = {
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.feed(&pair.name, &org.key)
    };
    let known_feed = match known_feed {
        Ok(f) => f,
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
            return report;
        }
    };
    let fetched = client.fetch_feed(&org, &known_feed).await;
    if pair.direction == Direction::TwoWay {
        let input = match fetched {
            Ok(FeedFetch::NotModified) => {
                report.outcome = Outcome::NotModified;
                twoway::RemoteInput::Unchanged
            }
            Ok(FeedFetch::Body {
                body,
                etag,
                last_modified,
            }) => {
                if known_feed.body_hash.as_deref() == Some(&ics::content_hash(&body)[..]) {
                    report.outcome = Outcome::Unchanged;
                }
                twoway::RemoteInput::Body {
                    body,
                    etag,
                    last_modified,
                }
            }
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        };
        return twoway::sync_organizer(
            pair,
            client,
            &org,
            &state,
            opts,
            &known_feed,
            input,
            report,
        )
        .await;
    }
    let (body, etag, last_modified) = match fetched {
        Ok(FeedFetch::NotModified) => {
            report.outcome = Outcome::NotModified;
            return report;
        }
        Ok(FeedFetch::Body {
            body,
            etag,
            last_modified,
        }) => (body, etag, last_modified),
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
            return report;
        }
    };
    let pair = pair.clone();
    let opts = opts.clone();
    let org_key = org.key.clone();
    let display = org.display_name.clone();
    let res = tokio::task::spawn_blocking(move || {
        apply_feed(
            &pair,
            &org_key,
            &display,
            &known_feed,
            FetchedFeed {
                body,
                etag,
                last_modified,
            },
            &state,
            &opts,
            &progress,
            report,
        )
    })
    .await;
    match res {
        Ok(r) => r,
        Err(e) => {
            let mut r = OrganizerReport::new(&org.label, &collection);
            r.outcome = Outcome::Failed;
            r.error = Some(format!("internal error while applying the feed: {e}"));
            r
        }
    }
}

struct FetchedFeed {
    body: Vec<u8>,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Planned writes hold hashes, not bytes: items are rendered again when
/// written, so a big first sync never holds a second copy of the feed.
enum Action<'a> {
    Add(&'a FeedItem, [u8; 32]),
    Change(&'a FeedItem, [u8; 32], ItemState),
    Delete(ItemState, &'static str),
}

const DAY: i64 = 86_400;

/// Decide and apply what one fetched feed means for the store. Blocking.
#[allow(clippy::too_many_arguments)]
fn apply_feed(
    pair: &PairConfig,
    org_key: &str,
    display_name: &str,
    known_feed: &FeedState,
    fetched: FetchedFeed,
    state: &Mutex<State>,
    opts: &JobOptions,
    progress: &Progress,
    mut report: OrganizerReport,
) -> OrganizerReport {
    let collection = report.collection.clone();
    let body_hash = ics::content_hash(&fetched.body).to_vec();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    if known_feed.body_hash.as_deref() == Some(&body_hash[..]) {
        report.outcome = Outcome::Unchanged;
        if !opts.dry_run
            && (known_feed.etag != fetched.etag
                || known_feed.last_modified != fetched.last_modified)
        {
            // same content, new validators: remember them so the next fetch can be a 304
            let feed = FeedState {
                etag: fetched.etag,
                last_modified: fetched.last_modified,
                ..known_feed.clone()
            };
            if let Err(e) = lock().commit(
                &pair.name,
                org_key,
                &Commit {
                    feed: Some(feed),
                    ..Commit::default()
                },
            ) {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
            }
        }
        return report;
    }
    let FetchedFeed {
        body,
        etag: new_etag,
        last_modified: new_last_modified,
    } = fetched;
    let split: SplitFeed = match ics::split_feed_owned(body) {
        Ok(s) => s,
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(format!(
                "the feed is not a usable calendar: {e}; nothing was changed"
            ));
            return report;
        }
    };
    for s in split.skipped() {
        report.note_skipped(s);
    }
    let known = match lock().items(&pair.name, org_key) {
        Ok(k) => k,
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
            return report;
        }
    };
    // files a job killed before its commit had moved into place: they are
    // ours (overwritten or removed like synced ones), not a user's
    let pending = match lock().pending(&pair.name, org_key) {
        Ok(p) => p,
        Err(e) => {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
            return report;
        }
    };
    let ours = |uid: &str, bytes: &[u8]| {
        let h = ics::content_hash(bytes);
        pending
            .get(uid)
            .is_some_and(|ws| ws.iter().any(|p| p.hash[..] == h[..]))
    };

    // --- plan ---
    let lo = opts.now - i64::from(pair.sync.past_days) * DAY;
    let hi = opts.now + i64::from(pair.sync.future_days) * DAY;
    let mut actions: Vec<Action> = Vec::new();
    let mut scratch: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut seen: HashSet<&str> = HashSet::with_capacity(split.items().len());
    let mut live_items = 0usize;
    for item in split.items() {
        if item.cancelled {
            continue; // handled as absent below
        }
        live_items += 1;
        seen.insert(item.uid.as_str());
        let row = known.get(&item.uid);
        if row.is_none() {
            let ends_before = item.span.last_end.is_some_and(|e| e < lo - DAY);
            let starts_after = item.span.first_start.is_some_and(|s| s > hi + DAY);
            if ends_before || starts_after {
                report.outside_window += 1;
                continue;
            }
        }
        scratch.clear();
        split.render_into(item, &mut scratch);
        let hash = ics::content_hash(&scratch);
        match row {
            // an interrupted run may have left another version in place:
            // check the file even if the platform's item is back to the synced one
            Some(r) if r.remote_hash[..] == hash[..] && !pending.contains_key(&item.uid) => {}
            Some(r) => actions.push(Action::Change(item, hash, r.clone())),
            None => actions.push(Action::Add(item, hash)),
        }
    }
    let mut removals: Vec<String> = Vec::new();
    let mut deletes = 0usize;
    let cancelled: HashSet<&str> = split
        .items()
        .iter()
        .filter(|i| i.cancelled)
        .map(|i| i.uid.as_str())
        .collect();
    // a UID whose components are broken this time is not gone: keep its file
    let broken: HashSet<&str> = split
        .skipped()
        .iter()
        .filter_map(|s| s.uid.as_deref())
        .collect();
    let mut gone: Vec<&ItemState> = known
        .values()
        .filter(|r| !seen.contains(r.uid.as_str()) && !broken.contains(r.uid.as_str()))
        .collect();
    gone.sort_by(|a, b| a.uid.cmp(&b.uid));
    for row in gone {
        let aged = row.last_end.is_some_and(|e| e < lo);
        if aged && !cancelled.contains(row.uid.as_str()) {
            report.aged_out += 1;
            removals.push(row.uid.clone());
            if opts.dry_run {
                report.plan.push(format!(
                    "= {} aged out of the window: kept locally",
                    shorten(&row.uid)
                ));
            }
        } else {
            deletes += 1;
            let why = if cancelled.contains(row.uid.as_str()) {
                "cancelled on the platform"
            } else {
                "gone from the feed"
            };
            actions.push(Action::Delete(row.clone(), why));
        }
    }

    // --- safety: mass deletion ---
    if !opts.force_delete && !known.is_empty() {
        let before = known.len();
        if live_items == 0 && deletes > 0 {
            report.outcome = Outcome::Refused;
            report.error = Some(format!(
                "the feed came back with no meetings although {before} were synced before; nothing was deleted. \
                 If the meetings really are gone, run `meetsync sync --once --pair {} --force-delete`",
                pair.name
            ));
            return report;
        }
        let share = deletes as f64 / before as f64;
        if before >= pair.sync.delete_guard_min_items as usize && share > pair.sync.max_delete_share
        {
            report.outcome = Outcome::Refused;
            report.error = Some(format!(
                "the feed would delete {deletes} of {before} meetings ({:.0} %, more than max_delete_share = {}); \
                 nothing was changed. If this is intended, run `meetsync sync --once --pair {} --force-delete`",
                share * 100.0,
                pair.sync.max_delete_share,
                pair.name
            ));
            return report;
        }
    }

    let vdir = Vdir::new(&pair.store.path);
    if opts.dry_run {
        for a in &actions {
            match a {
                Action::Add(i, ..) => {
                    report.added += 1;
                    report.plan.push(format!(
                        "+ {} ({}.ics)",
                        shorten(&i.uid),
                        ics::file_stem_for_uid(&i.uid)
                    ));
                }
                Action::Change(i, _, r) => {
                    report.changed += 1;
                    report
                        .plan
                        .push(format!("~ {} ({})", shorten(&i.uid), r.file));
                }
                Action::Delete(r, why) => {
                    report.deleted += 1;
                    report
                        .plan
                        .push(format!("- {} ({}): {why}", shorten(&r.uid), r.file));
                }
            }
        }
        return report;
    }

    // --- execute ---
    if let Err(e) = vdir.prepare_collection(&collection, display_name) {
        report.outcome = Outcome::Failed;
        report.error = Some(e.to_string());
        return report;
    }
    let staged_total = actions
        .iter()
        .filter(|a| !matches!(a, Action::Delete(..)))
        .count();
    let mut batch = vdir.batch_for(&collection, staged_total);
    let mut upserts: Vec<ItemState> = Vec::new();
    // one folder listing and one owner query instead of a lookup per new file
    let adds = actions.iter().any(|a| matches!(a, Action::Add(..)));
    let (present, owners) = if adds {
        let present = match vdir.names(&collection) {
            Ok(p) => p,
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        };
        match lock().file_owners(&pair.name, &collection) {
            Ok(o) => (present, o),
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        }
    } else {
        Default::default()
    };
    progress.add_total(staged_total);
    let added: HashSet<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Add(i, _) => Some(i.uid.clone()),
            _ => None,
        })
        .collect();
    let mut writes: Vec<PendingWrite> = Vec::new();
    let mut files_in_job: HashMap<String, &str> = HashMap::new();
    for a in actions {
        match a {
            Action::Add(item, hash) => {
                scratch.clear();
                split.render_into(item, &mut scratch);
                let bytes = &scratch;
                let file = format!("{}.ics", ics::file_stem_for_uid(&item.uid));
                if let Some(other) = files_in_job.insert(file.clone(), item.uid.as_str()) {
                    report.item_errors += 1;
                    report.notes.push(format!(
                        "UID {} maps to the same file as UID {}: skipped",
                        shorten(&item.uid),
                        shorten(other)
                    ));
                    continue;
                }
                if let Some((o, u)) = owners.get(&file) {
                    if o != org_key || *u != item.uid {
                        report.item_errors += 1;
                        report.notes.push(format!(
                            "UID {}: the file {file} already belongs to another organizer's meeting; skipped",
                            shorten(&item.uid)
                        ));
                        continue;
                    }
                }
                let existing = if !present.contains(&file) {
                    Ok(None)
                } else {
                    vdir.read(&collection, &file)
                };
                let existing = match existing {
                    Ok(x) => x,
                    Err(e) => {
                        report.item_errors += 1;
                        report
                            .notes
                            .push(format!("UID {}: {e}", shorten(&item.uid)));
                        continue;
                    }
                };
                let merged = match existing {
                    Some(cur) if cur == *bytes => {
                        // written by an interrupted run: adopt it
                        upserts.push(row_for(item, &collection, file, hash, hash));
                        report.added += 1;
                        continue;
                    }
                    // another event's file: left alone
                    Some(cur)
                        if !ours(&item.uid, &cur)
                            && ics::uid_of_ics(&cur).as_deref() != Some(item.uid.as_str()) =>
                    {
                        report.item_errors += 1;
                        report.notes.push(format!(
                            "{file} exists with other content (UID {}); the local file was kept",
                            shorten(&item.uid)
                        ));
                        continue;
                    }
                    // this meeting's file as an interrupted run wrote it, maybe edited
                    // by the user since: the platform's version, what the user added
                    // merged in
                    Some(cur) => {
                        let edited = !ours(&item.uid, &cur);
                        match merge_into_edited(&cur, bytes, &file) {
                            Ok((merged, note)) => {
                                if edited {
                                    report.notes.extend(note);
                                }
                                Some(merged)
                            }
                            Err(_) if !edited => None,
                            Err(e) => {
                                report.item_errors += 1;
                                report.notes.push(format!(
                                    "{file} holds this meeting but cannot take the platform's version ({e}); the local file was kept"
                                ));
                                continue;
                            }
                        }
                    }
                    None => None,
                };
                let local_hash = merged.as_ref().map_or(hash, |b| ics::content_hash(b));
                if let Err(e) = batch.stage(&file, merged.as_ref().unwrap_or(bytes)) {
                    report.outcome = Outcome::Failed;
                    report.error = Some(format!("{e}; nothing was committed"));
                    return report;
                }
                writes.push(PendingWrite {
                    uid: item.uid.clone(),
                    collection: collection.clone(),
                    file: file.clone(),
                    hash: local_hash.to_vec(),
                });
                progress.tick();
                upserts.push(row_for(item, &collection, file, hash, local_hash));
                report.added += 1;
            }
            Action::Change(item, hash, row) => {
                scratch.clear();
                split.render_into(item, &mut scratch);
                let bytes = &scratch;
                let cur = match vdir.read(&row.collection, &row.file) {
                    Ok(x) => x,
                    Err(e) => {
                        report.item_errors += 1;
                        report
                            .notes
                            .push(format!("UID {}: {e}", shorten(&item.uid)));
                        continue;
                    }
                };
                let locally_edited = match &cur {
                    None => false, // deleted locally: the platform's version comes back
                    Some(c) if *c == *bytes => {
                        upserts.push(row_for(item, &row.collection, row.file.clone(), hash, hash));
                        report.changed += 1;
                        continue;
                    }
                    Some(c) => {
                        ics::content_hash(c)[..] != row.local_hash[..] && !ours(&item.uid, c)
                    }
                };
                // a file that is not the platform's last version as it came (edited,
                // or holding additions kept earlier) takes the platform's version of
                // what the platform holds; what the user added stays, and a local
                // value we overwrite is reported
                let plain = |c: &[u8]| ics::content_hash(c)[..] == row.remote_hash[..];
                let merged = match &cur {
                    Some(c) if !plain(c) => match merge_into_edited(c, bytes, &row.file) {
                        Ok((b, note)) => {
                            if locally_edited {
                                report.notes.extend(note);
                            }
                            Some(b)
                        }
                        Err(e) => {
                            report.item_errors += 1;
                            report.notes.push(format!(
                                "{} was edited locally and cannot take the platform's change ({e}); the local file was kept",
                                row.file
                            ));
                            continue;
                        }
                    },
                    _ => None,
                };
                let bytes = merged.as_ref().unwrap_or(bytes);
                let local_hash = merged.as_ref().map_or(hash, |b| ics::content_hash(b));
                if row.collection != collection {
                    report.notes.push(format!(
                        "{}: collection changed; kept in {}",
                        row.file, row.collection
                    ));
                }
                let mut b = if row.collection == collection {
                    None
                } else {
                    Some(vdir.batch(&row.collection))
                };
                let target = b.as_mut().unwrap_or(&mut batch);
                if let Err(e) = target.stage(&row.file, bytes) {
                    report.outcome = Outcome::Failed;
                    report.error = Some(format!("{e}; nothing was committed"));
                    return report;
                }
                let w = PendingWrite {
                    uid: item.uid.clone(),
                    collection: row.collection.clone(),
                    file: row.file.clone(),
                    hash: local_hash.to_vec(),
                };
                if let Some(b) = b {
                    if let Err(e) = lock().add_pending(&pair.name, org_key, &[w]) {
                        report.outcome = Outcome::Failed;
                        report.error = Some(format!("{e}; nothing was committed"));
                        return report;
                    }
                    if let Err(e) = b.commit() {
                        report.outcome = Outcome::Failed;
                        report.error = Some(e.to_string());
                        return report;
                    }
                } else {
                    writes.push(w);
                }
                progress.tick();
                upserts.push(row_for(
                    item,
                    &row.collection,
                    row.file.clone(),
                    hash,
                    local_hash,
                ));
                report.changed += 1;
            }
            Action::Delete(row, why) => {
                match vdir.read(&row.collection, &row.file) {
                    Ok(None) => {}
                    Ok(Some(c))
                        if ics::content_hash(&c)[..] == row.local_hash[..]
                            || ours(&row.uid, &c) =>
                    {
                        if row.collection == collection {
                            batch.delete(&row.file);
                        } else {
                            let mut b = vdir.batch(&row.collection);
                            b.delete(&row.file);
                            if let Err(e) = b.commit() {
                                report.item_errors += 1;
                                report.notes.push(e.to_string());
                                continue;
                            }
                        }
                    }
                    Ok(Some(_)) => {
                        report.notes.push(format!(
                            "{} is {why} but was edited locally: the local file was kept and is no longer synced",
                            row.file
                        ));
                    }
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!("UID {}: {e}", shorten(&row.uid)));
                        continue;
                    }
                }
                removals.push(row.uid.clone());
                report.deleted += 1;
            }
        }
    }
    // an interrupted run's file for a meeting that is not synced (gone since,
    // or outside the window now) would otherwise stay forever
    let mut orphans: Vec<&PendingWrite> = pending
        .iter()
        .filter(|(uid, _)| {
            !known.contains_key(*uid) && !added.contains(*uid) && !broken.contains(uid.as_str())
        })
        .filter_map(|(_, ws)| ws.first())
        .collect();
    orphans.sort_by(|a, b| a.uid.cmp(&b.uid));
    for p in orphans {
        if let Ok(Some(c)) = vdir.read(&p.collection, &p.file) {
            if ours(&p.uid, &c) {
                let mut other = (p.collection != collection).then(|| vdir.batch(&p.collection));
                other.as_mut().unwrap_or(&mut batch).delete(&p.file);
                if let Some(b) = other {
                    if let Err(e) = b.commit() {
                        report.item_errors += 1;
                        report.notes.push(e.to_string());
                        continue;
                    }
                }
                report.notes.push(format!(
                    "{}: written by an interrupted run for a meeting that is not synced; removed",
                    p.file
                ));
            }
        }
    }
    // files are moved only while the claim holds (a stalled job lost it)
    if let Err(e) = lock().renew_claim(&pair.name, org_key) {
        report.outcome = Outcome::Failed;
        report.error = Some(e.to_string());
        return report;
    }
    if !writes.is_empty() {
        // recorded before the renames: a run killed after them knows its files
        if let Err(e) = lock().add_pending(&pair.name, org_key, &writes) {
            report.outcome = Outcome::Failed;
            report.error = Some(format!("{e}; nothing was committed"));
            return report;
        }
    }
    if let Err(e) = batch.commit() {
        report.outcome = Outcome::Failed;
        report.error = Some(format!("{e}; the sync state was not changed"));
        return report;
    }
    let commit = Commit {
        clear_pending: true,
        upserts,
        removals,
        feed: Some(FeedState {
            etag: new_etag,
            last_modified: new_last_modified,
            body_hash: Some(body_hash),
            items: live_items as i64,
        }),
    };
    if let Err(e) = lock().commit(&pair.name, org_key, &commit) {
        report.outcome = Outcome::Failed;
        report.error = Some(format!(
            "{e}; files were written and will be adopted on the next run"
        ));
    }
    report
}

/// The platform's new version written into a file the user edited (pull
/// pairs): the platform's properties follow the platform, the user's additions
/// stay. The note names each synced field whose local value was replaced, with
/// that value.
fn merge_into_edited(
    local: &[u8],
    remote: &[u8],
    file: &str,
) -> Result<(Vec<u8>, Option<String>), ics::PropsError> {
    let merged = ics::update_from_platform(local, remote, FEED_PROPERTIES, &[])?;
    let before = ics::read_event(local)?.fields;
    let after = ics::read_event(&merged)?.fields;
    let replaced: Vec<String> = before
        .diff(&after)
        .into_iter()
        .map(|f| format!("{} was {}", f.name(), show_field(&before, f)))
        .collect();
    let note = (!replaced.is_empty()).then(|| {
        format!(
            "{file} was edited locally: the platform's change replaced the local values ({}); \
             what you added (alarms, categories, notes) was kept",
            replaced.join("; ")
        )
    });
    Ok((merged, note))
}

/// A field's value for a report line (bounded).
fn show_field(f: &crate::model::Fields, field: crate::model::Field) -> String {
    use crate::model::Field;
    let v = match field {
        Field::Summary => format!("\"{}\"", f.summary),
        Field::Description => format!("\"{}\"", f.description),
        Field::Start => f.start.as_ref().map_or("none".into(), |w| w.to_string()),
        Field::End => f.end.as_ref().map_or("none".into(), |w| w.to_string()),
        Field::Rrule => f.rrule.clone().unwrap_or_else(|| "none".into()),
        Field::Attendees => f.attendees.iter().cloned().collect::<Vec<_>>().join(", "),
    };
    shorten(&v)
}

fn row_for(
    item: &FeedItem,
    collection: &str,
    file: String,
    remote: [u8; 32],
    local: [u8; 32],
) -> ItemState {
    ItemState {
        uid: item.uid.clone(),
        collection: collection.to_string(),
        file,
        remote_hash: remote.to_vec(),
        local_hash: local.to_vec(),
        last_end: item.span.last_end,
    }
}
