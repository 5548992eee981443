//! One two-way job for one organizer: read both sides, plan with the pure
//! planner (`reconcile`), write the calendar atomically, push to the platform
//! one request at a time, then commit the new base.
//!
//! Exactly-once creates: an intent is committed before the POST; after a crash
//! the planner adopts the meeting the feed then shows instead of sending a
//! second POST. The link between a local event and its meeting lives in the
//! state (keyed by the event's UID, so it survives file renames).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use crate::config::PairConfig;
use crate::ics::{self, props};
use crate::model::Field;
use crate::provider::meeting_body;
use crate::provider::webmeeting::{Client, Organizer, ProviderError, FEED_PROPERTIES};
use crate::reconcile::{self, Base, BaseOp, Local, LocalOp, Plan, Policy, Remote, RemoteOp};
use crate::report::{shorten, JobOptions, OrganizerReport, Outcome};
use crate::state::{CachedFile, FeedState, LinkCommit, PendingLink, State};
use crate::store::vdir::Vdir;

/// Marks a conflict copy: a local-only event, never pushed.
pub const CONFLICT_COPY_PROP: &str = "X-MEETSYNC-CONFLICT-COPY";

const DAY: i64 = 86_400;

/// The feed as fetched for this job.
pub enum RemoteInput {
    /// 304, or the same body as last time.
    Unchanged,
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// The remote side parsed: planner items plus their bytes.
struct RemoteSide {
    items: Vec<Remote>,
    bytes: HashMap<String, Vec<u8>>,
    broken: HashSet<String>,
    feed: FeedState,
}

fn parse_remote(
    body: &[u8],
    etag: Option<String>,
    last_modified: Option<String>,
    report: &mut OrganizerReport,
) -> Result<RemoteSide, String> {
    let split = ics::split_feed(body)
        .map_err(|e| format!("the feed is not a usable calendar: {e}; nothing was changed"))?;
    let mut side = RemoteSide {
        items: Vec::new(),
        bytes: HashMap::new(),
        broken: HashSet::new(),
        feed: FeedState {
            etag,
            last_modified,
            body_hash: Some(ics::content_hash(body).to_vec()),
            items: 0,
        },
    };
    // a UID is broken when it was skipped whole; a replaced duplicate
    // override leaves the item itself usable
    let synced: HashSet<&str> = split.items().iter().map(|i| i.uid.as_str()).collect();
    for s in split.skipped() {
        report.note_skipped(s);
        if let Some(u) = s.uid.as_ref().filter(|u| !synced.contains(u.as_str())) {
            side.broken.insert(u.clone());
        }
    }
    for item in split.items() {
        if item.cancelled {
            continue;
        }
        let bytes = split.render(item);
        let info = match props::read_event(&bytes) {
            Ok(i) => i,
            Err(e) => {
                report.item_errors += 1;
                report
                    .notes
                    .push(format!("UID {}: {e}", shorten(&item.uid)));
                side.broken.insert(item.uid.clone());
                continue;
            }
        };
        let mut fields = info.fields;
        meeting_body::normalize(&mut fields);
        side.items.push(Remote {
            uid: item.uid.clone(),
            meeting_id: meeting_body::meeting_id_from_uid(&item.uid),
            fields,
            hash: ics::content_hash(&bytes),
            last_end: item.span.last_end,
        });
        side.bytes.insert(item.uid.clone(), bytes);
    }
    side.feed.items = side.items.len() as i64;
    Ok(side)
}

/// The local side: every event file of the collection (re-reading only files
/// whose size, mtime or inode changed since the last scan).
struct LocalSide {
    items: Vec<Local>,
    cache: Vec<CachedFile>,
    /// UIDs that must not be planned this time (unreadable or duplicated files).
    broken: HashSet<String>,
    /// Files that could not be read or parsed: their links are left alone.
    broken_files: HashSet<String>,
}

fn scan_local(
    dir: &Path,
    cache: &HashMap<String, CachedFile>,
    report: &mut OrganizerReport,
) -> Result<LocalSide, String> {
    use std::os::unix::fs::MetadataExt;
    let mut side = LocalSide {
        items: Vec::new(),
        cache: Vec::new(),
        broken: HashSet::new(),
        broken_files: HashSet::new(),
    };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(side),
        Err(e) => {
            return Err(format!(
                "cannot list the calendar folder {}: {e}",
                dir.display()
            ))
        }
    };
    let mut by_uid: HashMap<String, String> = HashMap::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !name.ends_with(".ics") {
            continue;
        }
        let Ok(md) = entry.metadata() else { continue };
        if !md.is_file() {
            continue;
        }
        let key = (
            md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            md.size() as i64,
            md.ino() as i64,
        );
        let cached = cache
            .get(&name)
            .filter(|c| (c.mtime_ns, c.size, c.ino) == key)
            .cloned();
        let row = match cached {
            Some(c) => c,
            None => {
                let bytes = match std::fs::read(entry.path()) {
                    Ok(b) => b,
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!("{name}: cannot read: {e}"));
                        side.broken_files.insert(name.clone());
                        if let Some(c) = cache.get(&name) {
                            side.broken.insert(c.uid.clone());
                        }
                        continue;
                    }
                };
                let info = match props::read_event(&bytes) {
                    Ok(i) => i,
                    Err(e) => {
                        report.item_errors += 1;
                        report
                            .notes
                            .push(format!("{name}: not a usable event ({e}); left alone"));
                        side.broken_files.insert(name.clone());
                        if let Some(c) = cache.get(&name) {
                            side.broken.insert(c.uid.clone());
                        }
                        continue;
                    }
                };
                let copy = info
                    .x_props
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case(CONFLICT_COPY_PROP));
                let mut fields = info.fields;
                meeting_body::normalize(&mut fields);
                CachedFile {
                    file: name.clone(),
                    mtime_ns: key.0,
                    size: key.1,
                    ino: key.2,
                    // conflict copies stay local: cached (so the folder's
                    // state is known) with no UID, never planned
                    uid: if copy { String::new() } else { info.uid },
                    hash: ics::content_hash(&bytes).to_vec(),
                    fields,
                }
            }
        };
        if row.uid.is_empty() {
            side.cache.push(row);
            continue;
        }
        if let Some(other) = by_uid.insert(row.uid.clone(), name.clone()) {
            report.item_errors += 1;
            report.notes.push(format!(
                "UID {} is in two files ({other}, {name}): both left alone until one is removed",
                shorten(&row.uid)
            ));
            side.broken.insert(row.uid.clone());
        }
        let mut hash = [0u8; 32];
        if row.hash.len() == 32 {
            hash.copy_from_slice(&row.hash);
        }
        side.items.push(Local {
            uid: row.uid.clone(),
            file: row.file.clone(),
            fields: row.fields.clone(),
            hash,
        });
        side.cache.push(row);
    }
    let broken = side.broken.clone();
    side.items.retain(|l| !broken.contains(&l.uid));
    side.items.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(side)
}

/// The pending links an interrupted job left, sorted out.
struct Recovered {
    /// Links taken over: their files are the job's.
    links: Vec<Base>,
    /// UIDs whose rows were checked (taken over or not); the rows of files
    /// that cannot be read now wait for a later run.
    checked: Vec<String>,
}

/// A job that died between moving its files into place and committing their
/// links left those files ahead of the state. Where a file in place is that
/// job's (see [`PendingLink`]), the link it was about to commit becomes the
/// base: else the job's own write would look like a calendar edit, and a
/// platform change made since like a conflict.
fn take_pending_links(
    bases: &mut Vec<Base>,
    pending: Vec<PendingLink>,
    local: &LocalSide,
    dir: &Path,
) -> Recovered {
    let by_uid: HashMap<&str, &CachedFile> = local
        .cache
        .iter()
        .filter(|c| !local.broken.contains(&c.uid))
        .map(|c| (c.uid.as_str(), c))
        .collect();
    let mut out = Recovered {
        links: Vec::new(),
        checked: Vec::new(),
    };
    for p in pending {
        let uid = p.base.local_uid.clone();
        if local.broken.contains(&uid) || local.broken_files.contains(&p.base.file) {
            continue; // decided once the file can be read again
        }
        if out.checked.contains(&uid) {
            continue;
        }
        out.checked.push(uid.clone());
        // the job's file is in place: as written; or renamed in (its temp
        // file is gone) and edited in place since, or where there was none
        let renamed = || !p.temp_name.is_empty() && !dir.join(&p.temp_name).exists();
        let ours = by_uid.get(uid.as_str()).is_some_and(|c| {
            c.hash[..] == p.file_hash[..] || (renamed() && (c.ino as u64 == p.file_ino || p.fresh))
        });
        if !ours {
            continue;
        }
        match bases.iter_mut().find(|b| b.local_uid == uid) {
            Some(b) => *b = p.base.clone(),
            None => bases.push(p.base.clone()),
        }
        out.links.push(p.base);
    }
    out
}

/// The platform's file under the calendar's UID (events made in the calendar keep theirs).
fn with_local_uid(
    remote: &[u8],
    local_uid: &str,
    remote_uid: Option<&str>,
) -> Result<Vec<u8>, props::PropsError> {
    if local_uid.is_empty() || remote_uid == Some(local_uid) {
        return Ok(remote.to_vec());
    }
    props::with_uid(remote, local_uid)
}

/// Run the two-way job of one organizer.
#[allow(clippy::too_many_arguments)]
pub async fn sync_organizer(
    pair: &PairConfig,
    client: &Client,
    org: &Organizer,
    state: &Mutex<State>,
    opts: &JobOptions,
    known_feed: &FeedState,
    input: RemoteInput,
    mut report: OrganizerReport,
) -> OrganizerReport {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let collection = report.collection.clone();
    let unchanged_outcome = report.outcome;
    let vdir = Vdir::new(&pair.store.path);
    let dir = vdir.collection_dir(&collection);

    // --- remote side ---
    let remote = match input {
        RemoteInput::Unchanged => None,
        RemoteInput::Body {
            body,
            etag,
            last_modified,
        } => {
            if known_feed.body_hash.as_deref() == Some(&ics::content_hash(&body)[..]) {
                None
            } else {
                match parse_remote(&body, etag, last_modified, &mut report) {
                    Ok(r) => Some(r),
                    Err(e) => return fail(report, e),
                }
            }
        }
    };

    // --- local side and base ---
    let (cache, mut bases, intents, pending) = {
        let st = lock();
        let c = st.local_cache(&pair.name, &collection);
        let b = st.links(&pair.name, &org.key);
        let i = st.intents(&pair.name, &org.key);
        let p = st.pending_links(&pair.name, &org.key);
        match (c, b, i, p) {
            (Ok(c), Ok(b), Ok(i), Ok(p)) => (c, b, i, p),
            (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
                return fail(report, e.to_string())
            }
        }
    };
    let local = match scan_local(&dir, &cache, &mut report) {
        Ok(l) => l,
        Err(e) => return fail(report, e),
    };
    let recovered = take_pending_links(&mut bases, pending, &local, &dir);
    if !recovered.links.is_empty() {
        report.notes.push(format!(
            "{} file(s) written by an interrupted run recognised as its own",
            recovered.links.len()
        ));
    }
    // settled before this job writes anything: rows never outlive one job
    if !opts.dry_run && !recovered.checked.is_empty() {
        if let Err(e) =
            lock().settle_pending_links(&pair.name, &org.key, &recovered.links, &recovered.checked)
        {
            return fail(report, format!("{e}; nothing was changed"));
        }
    }
    let broken_remote = remote
        .as_ref()
        .map(|r| r.broken.clone())
        .unwrap_or_default();
    let plannable: Vec<Base> = bases
        .iter()
        .filter(|b| {
            !local.broken.contains(&b.local_uid)
                && !local.broken_files.contains(&b.file)
                && !b
                    .remote_uid
                    .as_ref()
                    .is_some_and(|u| broken_remote.contains(u))
        })
        .cloned()
        .collect();
    // the meetings of items left out (their file cannot be read) wait too:
    // they are not new meetings
    let waiting: HashSet<&str> = bases
        .iter()
        .filter(|b| !plannable.iter().any(|p| p.local_uid == b.local_uid))
        .flat_map(|b| [b.remote_uid.as_deref(), b.meeting_id.as_deref()])
        .flatten()
        .collect();
    let remote_items: Option<Vec<Remote>> = remote.as_ref().map(|r| {
        r.items
            .iter()
            .filter(|i| {
                !waiting.contains(i.uid.as_str())
                    && !i.meeting_id.as_deref().is_some_and(|m| waiting.contains(m))
            })
            .cloned()
            .collect()
    });
    let remote_waiting = remote
        .as_ref()
        .zip(remote_items.as_ref())
        .is_some_and(|(r, kept)| kept.len() < r.items.len());
    let policy = Policy {
        conflict: pair.two_way.conflict,
        delete_remote: pair.two_way.delete_remote_on_local_delete,
        aged_before: opts.now - i64::from(pair.sync.past_days) * DAY,
    };
    let plan = reconcile::plan(
        remote_items.as_deref(),
        &local.items,
        &plannable,
        &intents,
        &policy,
    );

    // --- safety ---
    if let Some(why) = guard(
        pair,
        &plan,
        &plannable,
        remote.as_ref().map(|r| r.items.len()),
        local.items.len(),
        opts,
    ) {
        report.outcome = Outcome::Refused;
        report.error = Some(why);
        return report;
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        for line in plan.render().lines() {
            tracing::debug!(pair = %pair.name, organizer = %report.organizer, "plan: {line}");
        }
    }
    report.conflicts += plan.conflicts();
    for s in plan.steps.iter().filter(|s| s.conflict.is_some()) {
        let c = s.conflict.as_ref().expect("filtered");
        report.notes.push(format!(
            "conflict on \"{}\"{}: {}",
            s.summary,
            if c.fields.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    c.fields
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            c.resolution
        ));
    }
    if !plan.is_empty() || remote.is_some() {
        report.outcome = Outcome::Synced;
    } else {
        report.outcome = unchanged_outcome;
    }
    if opts.dry_run {
        count_plan(&plan, &mut report);
        report.plan = plan.render().lines().map(str::to_string).collect();
        return report;
    }

    // --- execute: the calendar first (atomic, durable) ---
    if let Err(e) = vdir.prepare_collection(&collection, &org.display_name) {
        return fail(report, e.to_string());
    }
    let mut batch = vdir.batch(&collection);
    let mut written: HashMap<String, Vec<u8>> = HashMap::new(); // local uid → new file bytes
    let mut placed: HashMap<String, (String, u64, bool)> = HashMap::new(); // local uid → (temp file, inode, new file)
    let mut touched: HashSet<String> = HashSet::new(); // files this job writes or deletes
    let bases_by_uid: HashMap<&str, &Base> =
        bases.iter().map(|b| (b.local_uid.as_str(), b)).collect();
    let mut skip: HashSet<usize> = HashSet::new();
    for (idx, s) in plan.steps.iter().enumerate() {
        let luid = s.local_uid.clone().unwrap_or_default();
        let file = s
            .file
            .clone()
            .unwrap_or_else(|| format!("{}.ics", ics::file_stem_for_uid(&luid)));
        let remote_bytes = s
            .remote_uid
            .as_ref()
            .and_then(|u| remote.as_ref().and_then(|r| r.bytes.get(u)));
        if s.keep_local_copy {
            if let Ok(Some(cur)) = vdir.read(&collection, &file) {
                let copy_uid = format!("{luid}-conflict-{}", opts.now);
                let copy = props::with_uid(&cur, &copy_uid)
                    .and_then(|b| props::set_property(&b, CONFLICT_COPY_PROP, &luid));
                match copy {
                    Ok(b) => {
                        let name = format!("{}.ics", ics::file_stem_for_uid(&copy_uid));
                        if let Err(e) = batch.stage(&name, &b) {
                            return fail(report, format!("{e}; nothing was committed"));
                        }
                        touched.insert(name.clone());
                        report
                            .notes
                            .push(format!("conflict copy of \"{}\" kept as {name}", s.summary));
                    }
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!(
                            "{file}: cannot make a conflict copy ({e}); item left alone"
                        ));
                        skip.insert(idx);
                        continue;
                    }
                }
            }
        }
        if s.local == LocalOp::Create {
            // never overwrite another event's file that happens to have this name
            if let Ok(Some(existing)) = vdir.read(&collection, &file) {
                let theirs = ics::uid_of_ics(&existing);
                if theirs.as_deref() != Some(luid.as_str()) {
                    report.item_errors += 1;
                    report.notes.push(format!(
                        "{file} already holds another event (UID {}); the meeting \"{}\" was not written",
                        shorten(theirs.as_deref().unwrap_or("?")),
                        s.summary
                    ));
                    skip.insert(idx);
                    continue;
                }
            }
        }
        let new_bytes = match &s.local {
            LocalOp::None => None,
            // an event made in the calendar keeps its own UID: the link is keyed by it
            // the platform's version written into the calendar's file: what the
            // user added there (alarms, categories, X- properties) stays
            LocalOp::Replace | LocalOp::Transplant(_) => {
                let keep: Vec<Field> = match &s.local {
                    LocalOp::Transplant(take) => Field::ALL
                        .into_iter()
                        .filter(|f| !take.contains(f))
                        .collect(),
                    _ => Vec::new(),
                };
                let cur = vdir.read(&collection, &file).ok().flatten();
                match (cur, remote_bytes) {
                    (Some(cur), Some(rb)) => {
                        match props::update_from_platform(&cur, rb, FEED_PROPERTIES, &keep) {
                            Ok(b) => Some(b),
                            Err(e) => {
                                report.item_errors += 1;
                                report
                                    .notes
                                    .push(format!("{file}: cannot merge ({e}); item left alone"));
                                skip.insert(idx);
                                continue;
                            }
                        }
                    }
                    _ => None,
                }
            }
            LocalOp::Create => match remote_bytes {
                Some(rb) => match with_local_uid(rb, &luid, s.remote_uid.as_deref()) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!(
                            "{file}: cannot take the platform's version ({e}); item left alone"
                        ));
                        skip.insert(idx);
                        continue;
                    }
                },
                None => None,
            },
            LocalOp::Delete => {
                batch.delete(&file);
                touched.insert(file.clone());
                report.deleted += 1;
                None
            }
        };
        if let Some(b) = new_bytes {
            let fresh = s.local == LocalOp::Create && !dir.join(&file).exists();
            match batch.stage_tracked(&file, &b) {
                Ok((tmp, ino)) => {
                    placed.insert(luid.clone(), (tmp, ino, fresh));
                    touched.insert(file.clone());
                }
                Err(e) => return fail(report, format!("{e}; nothing was committed")),
            }
            match s.local {
                LocalOp::Create => report.added += 1,
                _ => report.changed += 1,
            }
            written.insert(luid, b);
        } else if matches!(
            s.local,
            LocalOp::Create | LocalOp::Replace | LocalOp::Transplant(_)
        ) {
            skip.insert(idx);
        }
    }
    // --- base rows for steps without remote writes ---
    let mut upserts: Vec<Base> = Vec::new();
    let mut removals: Vec<String> = Vec::new();
    let mut intents_done: Vec<String> = Vec::new();
    let local_hash_of = |luid: &str, fallback: Option<&Local>| -> Vec<u8> {
        written
            .get(luid)
            .map(|b| ics::content_hash(b).to_vec())
            .or_else(|| fallback.map(|l| l.hash.to_vec()))
            .unwrap_or_default()
    };
    let locals_by_uid: HashMap<&str, &Local> =
        local.items.iter().map(|l| (l.uid.as_str(), l)).collect();
    let remotes_by_uid: HashMap<&str, &Remote> = remote
        .as_ref()
        .map(|r| r.items.iter().map(|i| (i.uid.as_str(), i)).collect())
        .unwrap_or_default();
    let mut remote_steps = Vec::new();
    for (idx, s) in plan.steps.iter().enumerate() {
        if skip.contains(&idx) {
            continue;
        }
        let luid = s.local_uid.clone().unwrap_or_default();
        let old = bases_by_uid.get(luid.as_str()).copied();
        let r = s
            .remote_uid
            .as_deref()
            .and_then(|u| remotes_by_uid.get(u))
            .copied();
        if s.remote != RemoteOp::None {
            remote_steps.push(idx);
            // the file now holds the platform's version plus the calendar's
            // changes still to push: until the push is committed, the base is
            // the platform's version with the file counted as changed
            if let (true, Some(r)) = (written.contains_key(&luid), r) {
                upserts.push(Base {
                    local_uid: luid.clone(),
                    remote_uid: Some(r.uid.clone()),
                    meeting_id: s.meeting_id.clone().or_else(|| r.meeting_id.clone()),
                    file: s
                        .file
                        .clone()
                        .unwrap_or_else(|| format!("{}.ics", ics::file_stem_for_uid(&luid))),
                    fields: r.fields.clone(),
                    local_hash: Vec::new(),
                    remote_hash: r.hash.to_vec(),
                    last_end: r.last_end,
                    tombstone: false,
                });
            }
            continue;
        }
        match &s.base {
            BaseOp::Keep => {}
            BaseOp::Forget => removals.push(luid.clone()),
            BaseOp::Tombstone => {
                if let Some(b) = old {
                    let mut b = b.clone();
                    b.tombstone = true;
                    upserts.push(b);
                }
            }
            BaseOp::Set(fields) => {
                let file = s
                    .file
                    .clone()
                    .unwrap_or_else(|| format!("{}.ics", ics::file_stem_for_uid(&luid)));
                upserts.push(Base {
                    local_uid: luid.clone(),
                    remote_uid: s.remote_uid.clone(),
                    meeting_id: s.meeting_id.clone(),
                    file,
                    fields: fields.clone(),
                    local_hash: local_hash_of(&luid, locals_by_uid.get(luid.as_str()).copied()),
                    remote_hash: r
                        .map(|r| r.hash.to_vec())
                        .or_else(|| old.map(|b| b.remote_hash.clone()))
                        .unwrap_or_default(),
                    last_end: r
                        .and_then(|r| r.last_end)
                        .or_else(|| old.and_then(|b| b.last_end)),
                    tombstone: false,
                });
                if s.adopted {
                    intents_done.push(luid.clone());
                    report.notes.push(format!(
                        "adopted meeting {} for \"{}\" (created before an interruption)",
                        s.meeting_id.as_deref().unwrap_or("?"),
                        s.summary
                    ));
                }
            }
        }
    }
    // Recorded before the files move into place: a job that dies before the
    // link commit below leaves files the next run recognises as its own.
    let pending: Vec<PendingLink> = upserts
        .iter()
        .filter_map(|b| {
            let (temp_name, file_ino, fresh) = placed.get(&b.local_uid).cloned()?;
            written.get(&b.local_uid).map(|bytes| PendingLink {
                file_hash: ics::content_hash(bytes).to_vec(),
                file_ino,
                fresh,
                temp_name,
                base: b.clone(),
            })
        })
        .collect();
    // files are moved only while the claim holds (a stalled job lost it)
    if let Err(e) = lock().renew_claim(&pair.name, &org.key) {
        return fail(report, e.to_string());
    }
    if !pending.is_empty() {
        if let Err(e) = lock().add_pending_links(&pair.name, &org.key, &pending) {
            return fail(report, format!("{e}; nothing was committed"));
        }
    }
    let pending_uids: Vec<String> = pending.iter().map(|p| p.base.local_uid.clone()).collect();
    if let Err(e) = batch.commit() {
        // the rows of files that did not reach their place go: a later
        // file there must not be taken for this job's
        let not_placed: Vec<String> = pending
            .iter()
            .filter(|p| {
                !matches!(vdir.read(&collection, &p.base.file),
                    Ok(Some(b)) if ics::content_hash(&b)[..] == p.file_hash[..])
            })
            .map(|p| p.base.local_uid.clone())
            .collect();
        if !not_placed.is_empty() {
            let done = LinkCommit {
                pending_done: &not_placed,
                ..LinkCommit::default()
            };
            if let Err(e) = lock().commit_links(&pair.name, &org.key, &done) {
                tracing::warn!(error = %e, "cannot forget the pending links of unwritten files");
            }
        }
        return fail(report, format!("{e}; the sync state was not changed"));
    }

    // Store the feed's validators only when every platform change was applied:
    // else the next run must read the feed in full to see the rest again.
    let feed_after_local = if skip.is_empty() && broken_remote.is_empty() && !remote_waiting {
        remote.as_ref().map(|r| r.feed.clone())
    } else {
        None
    };
    if let Err(e) = lock().commit_links(
        &pair.name,
        &org.key,
        &LinkCommit {
            upserts: &upserts,
            removals: &removals,
            intents_done: &intents_done,
            feed: feed_after_local.as_ref(),
            pending_done: &pending_uids,
        },
    ) {
        return fail(
            report,
            format!("{e}; files were written and will be reconciled on the next run"),
        );
    }

    // --- push: one request at a time, each committed on its own ---
    let mut pushed = Vec::new();
    for idx in remote_steps {
        // each request is sent only while the claim holds
        if let Err(e) = lock().renew_claim(&pair.name, &org.key) {
            return fail(report, e.to_string());
        }
        let s = &plan.steps[idx];
        let luid = s.local_uid.clone().unwrap_or_default();
        let old = bases_by_uid.get(luid.as_str()).copied();
        let fields = match &s.base {
            BaseOp::Set(f) => f.clone(),
            _ => old.map(|b| b.fields.clone()).unwrap_or_default(),
        };
        let file = s
            .file
            .clone()
            .unwrap_or_else(|| format!("{}.ics", ics::file_stem_for_uid(&luid)));
        let local_now = locals_by_uid.get(luid.as_str()).copied();
        // what the platform cannot hold is refused per item, never silently dropped
        let (exdates, rdates) = match vdir.read(&collection, &file) {
            Ok(Some(b)) => props::read_event(&b)
                .map(|i| (i.exdates, i.rdates))
                .unwrap_or((0, 0)),
            _ => (0, 0),
        };
        if rdates > 0 && matches!(s.remote, RemoteOp::Create(_) | RemoteOp::Update { .. }) {
            report.item_errors += 1;
            report.notes.push(format!(
                "\"{}\" ({file}) has RDATE occurrences, which the platform cannot hold; not pushed",
                s.summary
            ));
            continue;
        }
        match &s.remote {
            RemoteOp::None => {}
            RemoteOp::Create(f) => {
                let body = match meeting_body::meeting_body(f, exdates, None, None) {
                    Ok(b) => b,
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!("\"{}\" ({file}) cannot be created on the platform: {e}; it stays local", s.summary));
                        continue;
                    }
                };
                let intent = reconcile::Intent {
                    local_uid: luid.clone(),
                    summary: f.summary.clone(),
                    start: f.start.as_ref().map(|w| w.unix()),
                };
                if let Err(e) = lock().add_intent(&pair.name, &org.key, &intent, opts.now) {
                    return fail(report, e.to_string());
                }
                match client.create_meeting(&org.key, &body).await {
                    Ok(created) => {
                        let b = Base {
                            local_uid: luid.clone(),
                            remote_uid: None,
                            meeting_id: Some(created.id.clone()),
                            file,
                            fields,
                            local_hash: local_hash_of(&luid, local_now),
                            remote_hash: Vec::new(),
                            last_end: f.end.as_ref().map(|w| w.unix()),
                            tombstone: false,
                        };
                        if let Err(e) = lock().commit_links(
                            &pair.name,
                            &org.key,
                            &LinkCommit {
                                upserts: &[b],
                                intents_done: std::slice::from_ref(&luid),
                                ..Default::default()
                            },
                        ) {
                            return fail(report, format!("{e}; the meeting {} was created and will be adopted on the next run", created.id));
                        }
                        report.pushed.0 += 1;
                        pushed.push(created.id);
                    }
                    Err(e) => {
                        report.item_errors += 1;
                        let definite = !e.outcome_unknown();
                        if definite {
                            let _ = lock().commit_links(
                                &pair.name,
                                &org.key,
                                &LinkCommit {
                                    intents_done: std::slice::from_ref(&luid),
                                    ..Default::default()
                                },
                            );
                        }
                        report.notes.push(format!(
                            "creating \"{}\" failed: {e}{}",
                            s.summary,
                            if definite {
                                ""
                            } else {
                                "; if it reached the platform it is adopted on the next run"
                            }
                        ));
                    }
                }
            }
            RemoteOp::Update { fields: f, .. } => {
                let Some(id) = s.meeting_id.clone() else {
                    continue;
                };
                let server = client.get_meeting(&org.key, &id).await.ok().flatten();
                let body = match meeting_body::meeting_body(f, exdates, server.as_ref(), Some(&id))
                {
                    Ok(b) => b,
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!("\"{}\" cannot be updated on the platform: {e}; the local change stays local", s.summary));
                        continue;
                    }
                };
                match client
                    .update_meeting(&org.key, &id, &body, pair.two_way.notify_participants)
                    .await
                {
                    Ok(_) => {
                        let b = Base {
                            local_uid: luid.clone(),
                            remote_uid: s.remote_uid.clone(),
                            meeting_id: Some(id.clone()),
                            file,
                            fields,
                            local_hash: local_hash_of(&luid, local_now),
                            remote_hash: old.map(|b| b.remote_hash.clone()).unwrap_or_default(),
                            last_end: f
                                .end
                                .as_ref()
                                .map(|w| w.unix())
                                .or(old.and_then(|b| b.last_end)),
                            tombstone: false,
                        };
                        // an adopted create that also needed an update: its intent is done too
                        let done: &[String] = if s.adopted {
                            std::slice::from_ref(&luid)
                        } else {
                            &[]
                        };
                        if let Err(e) = lock().commit_links(
                            &pair.name,
                            &org.key,
                            &LinkCommit {
                                upserts: &[b],
                                intents_done: done,
                                ..Default::default()
                            },
                        ) {
                            return fail(report, e.to_string());
                        }
                        if s.adopted {
                            report.notes.push(format!(
                                "adopted meeting {id} for \"{}\" (created before an interruption)",
                                s.summary
                            ));
                        }
                        report.pushed.1 += 1;
                        pushed.push(id);
                    }
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!(
                            "updating \"{}\" failed: {e}; retried on the next run",
                            s.summary
                        ));
                    }
                }
            }
            RemoteOp::Delete => {
                let Some(id) = s.meeting_id.clone() else {
                    continue;
                };
                match client.delete_meeting(&org.key, &id).await {
                    Ok(()) | Err(ProviderError::NotFound { .. }) => {
                        if let Err(e) = lock().commit_links(
                            &pair.name,
                            &org.key,
                            &LinkCommit {
                                removals: std::slice::from_ref(&luid),
                                ..Default::default()
                            },
                        ) {
                            return fail(report, e.to_string());
                        }
                        report.pushed.2 += 1;
                        pushed.push(id);
                    }
                    Err(e) => {
                        report.item_errors += 1;
                        report.notes.push(format!(
                            "deleting \"{}\" failed: {e}; retried on the next run",
                            s.summary
                        ));
                    }
                }
            }
        }
    }

    // --- settle: read the feed once more so the base holds the platform's new versions ---
    if !pushed.is_empty() {
        settle(pair, client, org, state, &mut report).await;
    }

    // --- remember what the calendar files look like now ---
    let cache = lock()
        .local_cache(&pair.name, &collection)
        .unwrap_or_default();
    let mut scratch = OrganizerReport::new(&report.organizer, &collection);
    if let Ok(now) = scan_local(&dir, &cache, &mut scratch) {
        let rows = keep_others_changes_visible(now.cache, &local.cache, &touched);
        if let Err(e) = lock().set_local_cache(&pair.name, &collection, &rows) {
            tracing::warn!(error = %e, "cannot update the local file cache");
        }
    }
    report
}

/// The cache rows to store after a job: this job's own files as they are
/// now; a file someone else changed while the job ran keeps the row from the
/// job's start (or none if it is new), so the next run reads it again and the
/// daemon sees the folder differ from the cache (and syncs again).
fn keep_others_changes_visible(
    now: Vec<CachedFile>,
    at_start: &[CachedFile],
    touched: &HashSet<String>,
) -> Vec<CachedFile> {
    let start: HashMap<&str, &CachedFile> = at_start.iter().map(|c| (c.file.as_str(), c)).collect();
    now.into_iter()
        .filter_map(|row| {
            if touched.contains(&row.file) {
                return Some(row);
            }
            match start.get(row.file.as_str()) {
                Some(s) if (s.mtime_ns, s.size, s.ino) == (row.mtime_ns, row.size, row.ino) => {
                    Some(row)
                }
                Some(s) => Some((*s).clone()),
                None => None,
            }
        })
        .collect()
}

/// Whether a two-way pair's calendar folders are exactly as its last job
/// left them (every `.ics` file with the size, mtime and inode in the cache):
/// then a folder event came from the job's own writes, and no sync is needed.
pub fn folder_matches_cache(pair: &PairConfig, state: &State) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(collections) = std::fs::read_dir(&pair.store.path) else {
        return false;
    };
    for c in collections.flatten() {
        let name = c.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !c.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(cache) = state.local_cache(&pair.name, &name) else {
            return false;
        };
        let mut seen = 0usize;
        let Ok(files) = std::fs::read_dir(c.path()) else {
            return false;
        };
        for f in files.flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') || !file.ends_with(".ics") {
                continue;
            }
            let Ok(md) = f.metadata() else { return false };
            if !md.is_file() {
                continue;
            }
            let key = (
                md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                md.size() as i64,
                md.ino() as i64,
            );
            match cache.get(&file) {
                Some(row) if (row.mtime_ns, row.size, row.ino) == key => seen += 1,
                _ => return false,
            }
        }
        if seen != cache.len() {
            return false;
        }
    }
    true
}

/// After pushes: fetch the feed, link created meetings to their feed UID and
/// record the platform's new versions, so the next run plans nothing.
async fn settle(
    pair: &PairConfig,
    client: &Client,
    org: &Organizer,
    state: &Mutex<State>,
    report: &mut OrganizerReport,
) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let fetched = match client.fetch_feed(org, &FeedState::default()).await {
        Ok(crate::provider::webmeeting::FeedFetch::Body {
            body,
            etag,
            last_modified,
        }) => (body, etag, last_modified),
        Ok(_) => return,
        Err(e) => {
            report.notes.push(format!(
                "re-reading the feed after pushing failed: {e}; the next run settles it"
            ));
            return;
        }
    };
    let mut scratch = OrganizerReport::new(&report.organizer, &report.collection);
    let Ok(side) = parse_remote(&fetched.0, fetched.1, fetched.2, &mut scratch) else {
        return;
    };
    let bases = match lock().links(&pair.name, &org.key) {
        Ok(b) => b,
        Err(_) => return,
    };
    let by_id: HashMap<&str, &Remote> = side
        .items
        .iter()
        .filter_map(|r| r.meeting_id.as_deref().map(|m| (m, r)))
        .collect();
    let by_uid: HashMap<&str, &Remote> = side.items.iter().map(|r| (r.uid.as_str(), r)).collect();
    let mut upserts = Vec::new();
    // a meeting nobody is linked to yet (added meanwhile) keeps the feed unsettled
    let linked: HashSet<&str> = bases
        .iter()
        .flat_map(|b| [b.remote_uid.as_deref(), b.meeting_id.as_deref()])
        .flatten()
        .collect();
    let mut all_settled = side.broken.is_empty()
        && side.items.iter().all(|r| {
            linked.contains(r.uid.as_str())
                || r.meeting_id.as_deref().is_some_and(|m| linked.contains(m))
        });
    for b in bases {
        let r = b
            .remote_uid
            .as_deref()
            .and_then(|u| by_uid.get(u))
            .or_else(|| b.meeting_id.as_deref().and_then(|m| by_id.get(m)))
            .copied();
        let Some(r) = r else { continue };
        // only when the platform shows what we agreed on: else the next run merges
        if r.fields != b.fields {
            all_settled = false;
            continue;
        }
        if b.remote_hash[..] != r.hash[..] || b.remote_uid.as_deref() != Some(&r.uid) {
            let mut nb = b.clone();
            nb.remote_uid = Some(r.uid.clone());
            nb.remote_hash = r.hash.to_vec();
            nb.last_end = r.last_end;
            upserts.push(nb);
        }
    }
    // the feed's validators are only stored when every item is settled;
    // else the next run reads the feed in full and merges the difference
    let feed = all_settled.then_some(&side.feed);
    if let Err(e) = lock().commit_links(
        &pair.name,
        &org.key,
        &LinkCommit {
            upserts: &upserts,
            feed,
            ..Default::default()
        },
    ) {
        report
            .notes
            .push(format!("cannot record the settled state: {e}"));
    }
}

fn guard(
    pair: &PairConfig,
    plan: &Plan,
    bases: &[Base],
    remote_len: Option<usize>,
    local_len: usize,
    opts: &JobOptions,
) -> Option<String> {
    if opts.force_delete {
        return None;
    }
    let known = bases.iter().filter(|b| !b.tombstone).count();
    let force = format!(
        "If this is intended, run `meetsync sync --once --pair {} --force-delete`",
        pair.name
    );
    if known > 0 {
        if remote_len == Some(0) && plan.local_deletes() > 0 {
            return Some(format!(
                "the feed came back with no meetings although {known} were synced before; nothing was deleted. {force}"
            ));
        }
        if local_len == 0 && plan.remote_deletes() > 0 {
            return Some(format!(
                "the calendar folder is empty although {known} events were synced before; no meeting was deleted. {force}"
            ));
        }
        let min = pair.sync.delete_guard_min_items as usize;
        for (n, side) in [
            (plan.local_deletes(), "calendar events"),
            (plan.remote_deletes(), "meetings"),
        ] {
            let share = n as f64 / known as f64;
            if known >= min && share > pair.sync.max_delete_share {
                return Some(format!(
                    "this run would delete {n} of {known} {side} ({:.0} %, more than max_delete_share = {}); nothing was changed. {force}",
                    share * 100.0,
                    pair.sync.max_delete_share
                ));
            }
        }
    }
    let writes = plan.remote_writes();
    if writes > pair.two_way.max_remote_writes as usize {
        return Some(format!(
            "this run would send {writes} changes to the platform, more than max_remote_writes = {}; nothing was changed. \
             Check the calendar folder; raise max_remote_writes if this is intended",
            pair.two_way.max_remote_writes
        ));
    }
    None
}

fn count_plan(plan: &Plan, report: &mut OrganizerReport) {
    for s in &plan.steps {
        match s.local {
            LocalOp::Create => report.added += 1,
            LocalOp::Replace | LocalOp::Transplant(_) => report.changed += 1,
            LocalOp::Delete => report.deleted += 1,
            LocalOp::None => {}
        }
        match s.remote {
            RemoteOp::Create(_) => report.pushed.0 += 1,
            RemoteOp::Update { .. } => report.pushed.1 += 1,
            RemoteOp::Delete => report.pushed.2 += 1,
            RemoteOp::None => {}
        }
    }
}

fn fail(mut report: OrganizerReport, e: String) -> OrganizerReport {
    report.outcome = Outcome::Failed;
    report.error = Some(e);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(file: &str, mtime_ns: i64) -> CachedFile {
        CachedFile {
            file: file.into(),
            mtime_ns,
            size: 10,
            ino: 1,
            uid: format!("{file}-uid"),
            hash: vec![mtime_ns as u8; 32],
            fields: Default::default(),
        }
    }

    #[test]
    fn files_others_changed_during_a_job_stay_visible_as_changed() {
        let at_start = vec![row("ours.ics", 1), row("same.ics", 1), row("theirs.ics", 1)];
        let now = vec![
            row("ours.ics", 2),   // written by the job
            row("same.ics", 1),   // untouched
            row("theirs.ics", 2), // saved by a user while the job ran
            row("new.ics", 2),    // made by a user while the job ran
        ];
        let touched = HashSet::from(["ours.ics".to_string()]);
        let kept = keep_others_changes_visible(now, &at_start, &touched);
        let got: Vec<(&str, i64)> = kept.iter().map(|r| (r.file.as_str(), r.mtime_ns)).collect();
        assert_eq!(
            got,
            vec![("ours.ics", 2), ("same.ics", 1), ("theirs.ics", 1)]
        );
    }
}
