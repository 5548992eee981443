//! The three-way planner of two-way pairs: a pure function from (remote,
//! local, base, intents, policy, now) to a `Plan`. No I/O, no clock reads.
//!
//! `base` is the last version both sides agreed on. For every item the
//! planner knows which side changed since then: one side changed → that side
//! wins; both changed → field-level merge (different fields both survive);
//! the same field changed to different values → the pair's policy decides
//! (`remote-wins`, `local-wins`, `keep-both`), and the conflict is reported
//! whatever the policy.
//!
//! Identity: a base row links a local UID (the file's UID, so the link
//! survives renames) to a remote UID and a meeting id; a remote item whose UID
//! changed is still found by its meeting id.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::model::{Field, Fields};

pub type Hash = [u8; 32];

/// One meeting as the platform's feed shows it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub uid: String,
    pub meeting_id: Option<String>,
    pub fields: Fields,
    pub hash: Hash,
    pub last_end: Option<i64>,
}

/// One event file of the local store.
#[derive(Debug, Clone)]
pub struct Local {
    pub uid: String,
    pub file: String,
    pub fields: Fields,
    pub hash: Hash,
}

/// The last agreed state of one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    pub local_uid: String,
    pub remote_uid: Option<String>,
    pub meeting_id: Option<String>,
    pub file: String,
    pub fields: Fields,
    pub local_hash: Vec<u8>,
    pub remote_hash: Vec<u8>,
    pub last_end: Option<i64>,
    /// The local copy was deleted and `on_local_delete = "ignore"`: do not bring it back.
    pub tombstone: bool,
}

/// A create that was sent (or about to be) but not yet confirmed.
#[derive(Debug, Clone)]
pub struct Intent {
    pub local_uid: String,
    pub summary: String,
    pub start: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    RemoteWins,
    LocalWins,
    KeepBoth,
}

impl ConflictPolicy {
    pub fn name(self) -> &'static str {
        match self {
            ConflictPolicy::RemoteWins => "remote-wins",
            ConflictPolicy::LocalWins => "local-wins",
            ConflictPolicy::KeepBoth => "keep-both",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub conflict: ConflictPolicy,
    /// `on_local_delete = "delete"`: a local delete deletes the meeting.
    pub delete_remote: bool,
    /// Items whose last occurrence ended before this (unix) have aged out:
    /// gone from the feed is not a deletion, and they are not added.
    pub aged_before: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOp {
    None,
    /// Write the remote item as a new file.
    Create,
    /// Replace the file with the remote item (the local file was unchanged).
    Replace,
    /// Copy these fields' properties from the remote item into the local file.
    Transplant(Vec<Field>),
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemoteOp {
    None,
    Create(Fields),
    Update { fields: Fields, changed: Vec<Field> },
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BaseOp {
    Keep,
    /// Record this as the agreed version.
    Set(Fields),
    Forget,
    /// Remember that the local copy was deleted on purpose.
    Tombstone,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub fields: Vec<Field>,
    /// What happened, e.g. "remote wins" or "delete vs change: kept the local edit".
    pub resolution: String,
}

/// What happens to one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub local_uid: Option<String>,
    pub remote_uid: Option<String>,
    pub meeting_id: Option<String>,
    pub file: Option<String>,
    pub summary: String,
    pub local: LocalOp,
    pub remote: RemoteOp,
    pub base: BaseOp,
    pub conflict: Option<Conflict>,
    /// keep-both: the local version is kept as a conflict copy (own UID, not synced).
    pub keep_local_copy: bool,
    /// Linked to a meeting this pair created before a crash (no second POST).
    pub adopted: bool,
}

impl Step {
    fn new(local: Option<&Local>, remote: Option<&Remote>, base: Option<&Base>) -> Step {
        Step {
            local_uid: local
                .map(|l| l.uid.clone())
                .or_else(|| base.map(|b| b.local_uid.clone())),
            remote_uid: remote
                .map(|r| r.uid.clone())
                .or_else(|| base.and_then(|b| b.remote_uid.clone())),
            meeting_id: remote
                .and_then(|r| r.meeting_id.clone())
                .or_else(|| base.and_then(|b| b.meeting_id.clone())),
            file: local
                .map(|l| l.file.clone())
                .or_else(|| base.map(|b| b.file.clone())),
            summary: remote
                .map(|r| r.fields.summary.clone())
                .or_else(|| local.map(|l| l.fields.summary.clone()))
                .or_else(|| base.map(|b| b.fields.summary.clone()))
                .unwrap_or_default(),
            local: LocalOp::None,
            remote: RemoteOp::None,
            base: BaseOp::Keep,
            conflict: None,
            keep_local_copy: false,
            adopted: false,
        }
    }

    /// Nothing to do at all.
    pub fn is_noop(&self) -> bool {
        self.local == LocalOp::None
            && self.remote == RemoteOp::None
            && self.base == BaseOp::Keep
            && self.conflict.is_none()
            && !self.keep_local_copy
    }

    pub fn writes_remote(&self) -> bool {
        self.remote != RemoteOp::None
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn remote_writes(&self) -> usize {
        self.steps.iter().filter(|s| s.writes_remote()).count()
    }

    pub fn remote_deletes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.remote == RemoteOp::Delete)
            .count()
    }

    pub fn local_deletes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.local == LocalOp::Delete)
            .count()
    }

    pub fn conflicts(&self) -> usize {
        self.steps.iter().filter(|s| s.conflict.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.iter().all(Step::is_noop)
    }

    /// One line per step that does something, for `sync --dry-run` and reports.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in self.steps.iter().filter(|s| !s.is_noop()) {
            let who = s
                .local_uid
                .as_deref()
                .or(s.remote_uid.as_deref())
                .unwrap_or("?");
            let mut parts: Vec<String> = Vec::new();
            match &s.local {
                LocalOp::None => {}
                LocalOp::Create => parts.push("create in the calendar".into()),
                LocalOp::Replace => parts.push("update the calendar from the platform".into()),
                LocalOp::Transplant(f) => {
                    parts.push(format!("update the calendar's {}", field_names(f)))
                }
                LocalOp::Delete => parts.push("delete from the calendar".into()),
            }
            match &s.remote {
                RemoteOp::None => {}
                RemoteOp::Create(_) => parts.push("create the meeting".into()),
                RemoteOp::Update { changed, .. } => {
                    parts.push(format!("update the meeting's {}", field_names(changed)))
                }
                RemoteOp::Delete => parts.push("delete the meeting".into()),
            }
            if s.adopted {
                parts.push("adopt the meeting created earlier".into());
            }
            match &s.base {
                BaseOp::Tombstone => parts.push("remember the local delete".into()),
                BaseOp::Forget if parts.is_empty() => parts.push("stop tracking".into()),
                BaseOp::Set(_) if parts.is_empty() => parts.push("record as in sync".into()),
                _ => {}
            }
            if s.keep_local_copy {
                parts.push("keep the local version as a conflict copy".into());
            }
            let _ = write!(out, "{who} \"{}\": {}", s.summary, parts.join(", "));
            if let Some(m) = &s.meeting_id {
                let _ = write!(out, " [meeting {m}]");
            }
            if let Some(c) = &s.conflict {
                if c.fields.is_empty() {
                    let _ = write!(out, " — CONFLICT: {}", c.resolution);
                } else {
                    let _ = write!(
                        out,
                        " — CONFLICT on {}: {}",
                        field_names(&c.fields),
                        c.resolution
                    );
                }
            }
            out.push('\n');
        }
        out
    }
}

fn field_names(f: &[Field]) -> String {
    f.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// Plan one organizer's items. `remote = None` means the feed did not change
/// since the base (304 or the same body): every base item is unchanged there
/// and there is nothing new.
pub fn plan(
    remote: Option<&[Remote]>,
    local: &[Local],
    base: &[Base],
    intents: &[Intent],
    policy: &Policy,
) -> Plan {
    let mut steps = Vec::new();
    let locals: HashMap<&str, &Local> = local.iter().map(|l| (l.uid.as_str(), l)).collect();
    let remotes_by_uid: HashMap<&str, &Remote> = remote
        .unwrap_or(&[])
        .iter()
        .map(|r| (r.uid.as_str(), r))
        .collect();
    let remotes_by_id: HashMap<&str, &Remote> = remote
        .unwrap_or(&[])
        .iter()
        .filter_map(|r| r.meeting_id.as_deref().map(|m| (m, r)))
        .collect();
    let mut used_remote: HashSet<&str> = HashSet::new();
    let mut used_local: HashSet<&str> = HashSet::new();

    let mut bases: Vec<&Base> = base.iter().collect();
    bases.sort_by(|a, b| a.local_uid.cmp(&b.local_uid));
    for b in bases {
        let l = locals.get(b.local_uid.as_str()).copied();
        // Which remote item is this one? `Unchanged` when the feed did not change.
        let r = match remote {
            None => RemoteSide::Unchanged,
            Some(_) => {
                let found = b
                    .remote_uid
                    .as_deref()
                    .and_then(|u| remotes_by_uid.get(u))
                    .or_else(|| b.meeting_id.as_deref().and_then(|m| remotes_by_id.get(m)))
                    .copied();
                match found {
                    Some(r) => RemoteSide::Present(r),
                    // a created meeting not yet in the feed is not a deletion
                    None if b.remote_uid.is_none() => RemoteSide::Unchanged,
                    None => RemoteSide::Gone,
                }
            }
        };
        if let RemoteSide::Present(r) = r {
            used_remote.insert(r.uid.as_str());
        }
        if l.is_some() {
            used_local.insert(b.local_uid.as_str());
        }
        steps.push(plan_known(b, l, r, policy));
    }

    // Pending creates: adopt the meeting if the feed shows it.
    let mut adopted: HashMap<&str, &Remote> = HashMap::new();
    for i in intents {
        if used_local.contains(i.local_uid.as_str()) {
            continue;
        }
        let candidate = remote.unwrap_or(&[]).iter().find(|r| {
            !used_remote.contains(r.uid.as_str())
                && r.fields.summary == i.summary
                && r.fields.start.as_ref().map(|w| w.unix()) == i.start
        });
        if let Some(r) = candidate {
            used_remote.insert(r.uid.as_str());
            adopted.insert(i.local_uid.as_str(), r);
        }
    }

    // New on the platform (or present on both sides with no base yet).
    for r in remote.unwrap_or(&[]) {
        if used_remote.contains(r.uid.as_str()) {
            continue;
        }
        let same_uid_local = locals
            .get(r.uid.as_str())
            .copied()
            .filter(|l| !used_local.contains(l.uid.as_str()));
        if let Some(l) = same_uid_local {
            used_local.insert(l.uid.as_str());
            steps.push(plan_first_meeting(l, r, policy));
            continue;
        }
        if r.last_end.is_some_and(|e| e < policy.aged_before) {
            continue; // outside the sync window
        }
        let mut s = Step::new(None, Some(r), None);
        s.local_uid = Some(r.uid.clone());
        s.local = LocalOp::Create;
        s.base = BaseOp::Set(r.fields.clone());
        steps.push(s);
    }

    // New in the calendar.
    let mut new_locals: Vec<&Local> = local
        .iter()
        .filter(|l| !used_local.contains(l.uid.as_str()))
        .collect();
    new_locals.sort_by(|a, b| a.uid.cmp(&b.uid));
    for l in new_locals {
        if let Some(r) = adopted.get(l.uid.as_str()) {
            let mut s = Step::new(Some(l), Some(r), None);
            s.adopted = true;
            let changed = r.fields.diff(&l.fields);
            if !changed.is_empty() {
                s.remote = RemoteOp::Update {
                    fields: l.fields.clone(),
                    changed,
                };
            }
            s.base = BaseOp::Set(l.fields.clone());
            steps.push(s);
            continue;
        }
        let mut s = Step::new(Some(l), None, None);
        s.remote = RemoteOp::Create(l.fields.clone());
        s.base = BaseOp::Set(l.fields.clone());
        steps.push(s);
    }
    Plan { steps }
}

#[derive(Clone, Copy)]
enum RemoteSide<'a> {
    Present(&'a Remote),
    Unchanged,
    Gone,
}

fn plan_known(b: &Base, l: Option<&Local>, r: RemoteSide<'_>, policy: &Policy) -> Step {
    let rr = match r {
        RemoteSide::Present(r) => Some(r),
        _ => None,
    };
    let mut s = Step::new(l, rr, Some(b));
    let local_changed = l.is_some_and(|l| l.hash[..] != b.local_hash[..]);
    let remote_changed = rr.is_some_and(|r| r.hash[..] != b.remote_hash[..]);
    match (l, r) {
        (None, RemoteSide::Gone) => s.base = BaseOp::Forget,
        (Some(l), RemoteSide::Gone) => {
            let aged = b.last_end.is_some_and(|e| e < policy.aged_before);
            // only an edit of a synced field makes it a conflict: alarms or
            // categories added to a meeting that is gone go with it
            let field_edited = local_changed && !l.fields.diff(&b.fields).is_empty();
            if aged {
                s.base = BaseOp::Forget; // aged out of the platform's window: keep the file
            } else if !field_edited {
                s.local = LocalOp::Delete;
                s.base = BaseOp::Forget;
            } else {
                delete_vs_change_local_edit(&mut s, l, policy);
            }
        }
        (None, RemoteSide::Unchanged) | (None, RemoteSide::Present(_)) => {
            if b.tombstone {
                return s;
            }
            // only an edit of a synced field makes a local delete a conflict:
            // a feed that merely looks different (line ends, DTSTAMP) does not
            let remote_edited =
                remote_changed && rr.is_some_and(|r| !b.fields.diff(&r.fields).is_empty());
            if remote_edited {
                // deleted here, changed there
                let fields = b
                    .fields
                    .diff(&rr.map(|r| r.fields.clone()).unwrap_or_default());
                match policy.conflict {
                    ConflictPolicy::LocalWins => {
                        s.remote = RemoteOp::Delete;
                        s.base = BaseOp::Forget;
                        s.conflict = Some(Conflict {
                            fields,
                            resolution: "deleted locally, changed on the platform: local wins, the meeting is deleted".into(),
                        });
                    }
                    _ => {
                        s.local = LocalOp::Create;
                        s.base = BaseOp::Set(rr.map(|r| r.fields.clone()).unwrap_or_default());
                        s.conflict = Some(Conflict {
                            fields,
                            resolution:
                                "deleted locally, changed on the platform: the meeting comes back"
                                    .into(),
                        });
                    }
                }
            } else if policy.delete_remote && b.meeting_id.is_some() {
                s.remote = RemoteOp::Delete;
                s.base = BaseOp::Forget;
            } else {
                s.base = BaseOp::Tombstone;
            }
        }
        (Some(l), RemoteSide::Unchanged) => {
            if local_changed {
                push_local_changes(&mut s, l, b);
            }
        }
        (Some(l), RemoteSide::Present(r)) => match (local_changed, remote_changed) {
            (false, false) => {}
            (false, true) => {
                s.local = LocalOp::Replace;
                s.base = BaseOp::Set(r.fields.clone());
            }
            (true, false) => push_local_changes(&mut s, l, b),
            (true, true) => merge(&mut s, l, r, Some(&b.fields), policy),
        },
    }
    s
}

/// Local edit, platform unchanged: push the synced fields that changed.
fn push_local_changes(s: &mut Step, l: &Local, b: &Base) {
    let changed = l.fields.diff(&b.fields);
    if changed.is_empty() {
        // only local-only properties changed (alarms, categories, …)
        s.base = BaseOp::Set(b.fields.clone());
        return;
    }
    if b.meeting_id.is_none() {
        // not linked to a meeting we can write: keep it local
        s.base = BaseOp::Keep;
        return;
    }
    s.remote = RemoteOp::Update {
        fields: l.fields.clone(),
        changed,
    };
    s.base = BaseOp::Set(l.fields.clone());
}

/// Both sides changed since the base: field-level merge.
/// With no base, every field that differs counts as changed on both sides.
fn merge(s: &mut Step, l: &Local, r: &Remote, base: Option<&Fields>, policy: &Policy) {
    let (dl, dr, mut merged) = match base {
        Some(b) => (l.fields.diff(b), r.fields.diff(b), b.clone()),
        None => {
            let d = l.fields.diff(&r.fields);
            (d.clone(), d, l.fields.clone())
        }
    };
    let mut conflicts = Vec::new();
    for f in Field::ALL {
        let lc = dl.contains(&f);
        let rc = dr.contains(&f);
        match (lc, rc) {
            (true, false) => merged.take(&l.fields, f),
            (false, true) => merged.take(&r.fields, f),
            (true, true) => {
                if l.fields.same(&r.fields, f) {
                    merged.take(&r.fields, f);
                } else {
                    conflicts.push(f);
                    match policy.conflict {
                        ConflictPolicy::LocalWins => merged.take(&l.fields, f),
                        ConflictPolicy::RemoteWins | ConflictPolicy::KeepBoth => {
                            merged.take(&r.fields, f)
                        }
                    }
                }
            }
            (false, false) => {}
        }
    }
    let to_local: Vec<Field> = Field::ALL
        .into_iter()
        .filter(|f| !merged.same(&l.fields, *f))
        .collect();
    let to_remote: Vec<Field> = Field::ALL
        .into_iter()
        .filter(|f| !merged.same(&r.fields, *f))
        .collect();
    if !to_local.is_empty() {
        s.local = LocalOp::Transplant(to_local);
    }
    if !to_remote.is_empty() && s.meeting_id.is_some() {
        s.remote = RemoteOp::Update {
            fields: merged.clone(),
            changed: to_remote,
        };
    }
    if !conflicts.is_empty() {
        let resolution = match policy.conflict {
            ConflictPolicy::RemoteWins => "remote wins".to_string(),
            ConflictPolicy::LocalWins => "local wins".to_string(),
            ConflictPolicy::KeepBoth => {
                s.keep_local_copy = true;
                "remote wins; the local version is kept as a conflict copy".to_string()
            }
        };
        s.conflict = Some(Conflict {
            fields: conflicts,
            resolution,
        });
    }
    s.base = BaseOp::Set(merged);
}

/// The meeting is gone on the platform but was edited locally.
fn delete_vs_change_local_edit(s: &mut Step, l: &Local, policy: &Policy) {
    let fields = Vec::new();
    match policy.conflict {
        ConflictPolicy::LocalWins => {
            s.remote = RemoteOp::Create(l.fields.clone());
            s.base = BaseOp::Set(l.fields.clone());
            s.remote_uid = None;
            s.meeting_id = None;
            s.conflict = Some(Conflict {
                fields,
                resolution: "deleted on the platform, edited locally: local wins, the meeting is created again".into(),
            });
        }
        ConflictPolicy::RemoteWins => {
            s.local = LocalOp::Delete;
            s.base = BaseOp::Forget;
            s.conflict = Some(Conflict {
                fields,
                resolution: "deleted on the platform, edited locally: remote wins, the local copy is deleted".into(),
            });
        }
        ConflictPolicy::KeepBoth => {
            s.keep_local_copy = true;
            s.local = LocalOp::Delete;
            s.base = BaseOp::Forget;
            s.conflict = Some(Conflict {
                fields,
                resolution: "deleted on the platform, edited locally: the local version is kept as a conflict copy".into(),
            });
        }
    }
}

/// The same UID on both sides and no base (e.g. a first sync over an
/// existing calendar): equal → link; else every differing field is a conflict.
fn plan_first_meeting(l: &Local, r: &Remote, policy: &Policy) -> Step {
    let mut s = Step::new(Some(l), Some(r), None);
    let differ = l.fields.diff(&r.fields);
    if differ.is_empty() {
        s.base = BaseOp::Set(r.fields.clone());
        return s;
    }
    merge(&mut s, l, r, None, policy);
    s
}

#[cfg(test)]
mod tests;
