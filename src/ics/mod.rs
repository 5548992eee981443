//! Splitting an organizer's ICS feed into one calendar object per event, byte-exact.
//!
//! We never re-serialize: [`split_feed`] scans the feed once, remembers byte ranges, and
//! [`SplitFeed::render`] reassembles the original bytes of the pieces an event needs. Unknown
//! and `X-` properties, nested components (VALARM), folding and line ends survive untouched.
//!
//! # Rules and choices
//!
//! * **Feed shape.** A UTF-8 BOM and leading blank (whitespace-only) lines are skipped; the first
//!   content line must be `BEGIN:VCALENDAR` (names and values case-insensitive), else
//!   [`FeedError::NotICalendar`]; a body with nothing but blank lines is [`FeedError::Empty`].
//!   A calendar without `END:VCALENDAR` (including one cut off by a `BEGIN:VCALENDAR`) is
//!   [`FeedError::Truncated`]. Text after `END:VCALENDAR` is ignored, **except** another
//!   `BEGIN:VCALENDAR`: several calendars in one body are accepted and merged (each item is
//!   rendered with the prolog of the calendar its first component came from; VTIMEZONEs are
//!   shared, first TZID wins).
//! * **Line ends.** CRLF, LF and lone CR are all line ends; a line starting with a space or tab
//!   continues the previous one. *Bad folding* — a continuation line with nothing to continue
//!   (right after an empty line), or one following a `BEGIN:`/`END:` line such as
//!   `BEGIN:VEVENT` — makes the enclosing component skipped; at calendar level the line is
//!   dropped with a warning. Before `BEGIN:VCALENDAR` it makes the body [`FeedError::NotICalendar`].
//!   Malformed lines *inside* components (no `:`, odd names) are kept: they are bytes we copy.
//! * **Prolog.** Calendar-level properties except `METHOD` are copied into every rendered file,
//!   in feed order, wherever they appear among the components. Malformed calendar-level lines
//!   (no `:`, bad name) and lines with invalid UTF-8 are dropped with a warning (they would
//!   otherwise break every file). `METHOD:CANCEL` marks every item of that calendar cancelled.
//! * **Components.** VTIMEZONEs are indexed by TZID; a broken one is reported in
//!   [`SplitFeed::skipped`] (`uid: None`) and events render without it. VTODO, VJOURNAL,
//!   VFREEBUSY and unknown top-level components are *ignored* (only counted, see
//!   [`SplitFeed::ignored_components`]) — they are not ours to sync and reporting them on every
//!   poll would be noise.
//! * **Bad components.** A VEVENT is skipped when it is unterminated (a `BEGIN:VEVENT` or
//!   `END:VCALENDAR` arrives before its `END`), has an `END` that does not match the open
//!   `BEGIN`, nests deeper than [`MAX_DEPTH`] levels (VCALENDAR = 1), contains bad folding,
//!   contains invalid UTF-8 (anywhere in its bytes), has no (or an empty) UID, or has several
//!   different UIDs. **If any component of a UID is skipped, the whole UID is skipped** (every
//!   component of it is listed in `skipped`), so a broken master never turns into a file of
//!   overrides only; a sync should leave the existing file of a skipped UID alone.
//! * **Grouping.** VEVENTs group by UID (exact, case-sensitive, unfolded value). Two masters
//!   with different bytes and the same revision: the UID is skipped (reason "duplicate UID
//!   with different content");
//!   byte-identical duplicates are merged silently. Two overrides with the same RECURRENCE-ID
//!   (compared as instants when they parse, else as text): the later one is kept and the
//!   earlier one is reported in `skipped` *while the item is still synced* (so a UID can be in
//!   both lists); identical duplicates merge silently. Revisions (several masters, or several
//!   overrides of one RECURRENCE-ID) are ordered as iTIP orders them: SEQUENCE, then
//!   LAST-MODIFIED, then DTSTAMP; the newest is used without a report, and only a tie between
//!   different masters skips the UID. Overrides without a master form an item
//!   of their own.
//! * **Span.** See [`Span`]. `first_start` is the earliest DTSTART over the master *and* the
//!   overrides (an override may move an instance before the master's start; it equals the
//!   master's DTSTART otherwise). Floating times use the calendar's `X-WR-TIMEZONE` when that is
//!   an IANA name, else UTC. An override's end uses its own DTEND/DURATION, else the master's
//!   duration. RDATEs are included; EXDATEs ignored (they only shrink). An override with
//!   `RANGE=THISANDFUTURE` makes `last_end` unknown.
//! * **Size caps.** The prolog and VTIMEZONEs are copied into every file, so calendar-level
//!   lines over [`MAX_PROLOG_LINE`] or past [`MAX_PROLOG`] in total are dropped (warning), and a
//!   VTIMEZONE over [`MAX_VTIMEZONE`] is skipped. Components themselves are never capped.
//! * **Robustness.** Linear time and memory in the input size; the hostile cases (nesting
//!   bombs, megabyte lines, 100k components, NUL bytes) are covered by tests and proptests.

mod lines;
pub mod props;
mod scan;
mod stem;
#[cfg(test)]
mod tests;
mod time;
mod windows_zones;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use lines::{parse_content, trim, LineKind, Lines};
use scan::{ByteRange, Calendar, EventProps, EventRec, Scan};
use time::{TzCache, Zone, DAY};

pub use props::{
    apply_fields, new_event, read_event, set_property, transplant, update_from_platform, with_uid,
    EventInfo, PropsError,
};
pub use scan::{MAX_DEPTH, MAX_PROLOG, MAX_PROLOG_LINE, MAX_VTIMEZONE};
pub use stem::file_stem_for_uid;

/// Why a body is not a usable feed. Every error means "do not sync from this body".
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FeedError {
    /// The first content line is not `BEGIN:VCALENDAR` (typically an HTML error page).
    #[error("not an iCalendar feed (starts with {found:?})")]
    NotICalendar {
        /// The first ≤ 60 printable characters, whitespace runs collapsed.
        found: String,
    },
    /// No `END:VCALENDAR`: the body was cut off.
    #[error("truncated iCalendar feed (no END:VCALENDAR)")]
    Truncated,
    /// Nothing but blank lines.
    #[error("empty feed body")]
    Empty,
}

/// The time range an item covers, for the sync window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Unix seconds of the first DTSTART (see the module docs); `None` if there is none.
    pub first_start: Option<i64>,
    /// End of the last occurrence, unix seconds; `None` = unbounded or unknown.
    pub last_end: Option<i64>,
}

/// One event of the feed: a master VEVENT and/or its RECURRENCE-ID overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    /// The unfolded UID value, exactly as in the feed.
    pub uid: String,
    /// The master has `STATUS:CANCELLED`, or the calendar has `METHOD:CANCEL`.
    pub cancelled: bool,
    pub span: Span,
    /// Number of VEVENTs rendered: the master (if any) plus the overrides.
    pub components: usize,
    cal: usize,
    master: Option<ByteRange>,
    overrides: Vec<ByteRange>,
    /// Indices into `SplitFeed::vtimezones`, ascending (= feed order).
    vtimezones: Vec<u32>,
}

impl FeedItem {
    /// Whether the item has a master VEVENT (false: overrides only).
    pub fn has_master(&self) -> bool {
        self.master.is_some()
    }
}

/// A component that could not be used; the rest of the feed still syncs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedItem {
    /// The UID, when one could be read.
    pub uid: Option<String>,
    /// Number of the top-level component in the feed (0-based, counting every component:
    /// VTIMEZONE, VEVENT, VTODO, … across all calendars of the body).
    pub index: usize,
    pub reason: String,
}

/// A feed cut into items; owns the body and renders each item from its bytes.
#[derive(Clone)]
pub struct SplitFeed {
    body: Vec<u8>,
    calendars: Vec<Calendar>,
    vtimezones: Vec<ByteRange>,
    items: Vec<FeedItem>,
    skipped: Vec<SkippedItem>,
    warnings: Vec<String>,
    ignored: usize,
    /// The feed's line end, used for the lines a rendered file adds: a file
    /// keeps one style (mixed ends confuse line-based tools).
    eol: &'static [u8],
}

impl fmt::Debug for SplitFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitFeed")
            .field("body_len", &self.body.len())
            .field("items", &self.items)
            .field("skipped", &self.skipped)
            .field("warnings", &self.warnings)
            .field("ignored", &self.ignored)
            .finish()
    }
}

impl SplitFeed {
    /// One item per UID, in feed order of first appearance.
    pub fn items(&self) -> &[FeedItem] {
        &self.items
    }

    /// Components that were skipped, by component index.
    pub fn skipped(&self) -> &[SkippedItem] {
        &self.skipped
    }

    /// Things dropped outside components (stray END lines, malformed or non-UTF-8
    /// calendar-level lines, conflicting VTIMEZONEs). At most ~100 are listed.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How many top-level components were neither VEVENT nor VTIMEZONE (ignored).
    pub fn ignored_components(&self) -> usize {
        self.ignored
    }

    /// No items and nothing skipped.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.skipped.is_empty()
    }

    /// A complete VCALENDAR holding just `item`: `BEGIN:VCALENDAR`, the prolog, the VTIMEZONEs
    /// the item references, the master, the overrides in feed order, `END:VCALENDAR`.
    /// `item` must come from this feed.
    pub fn render(&self, item: &FeedItem) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(item, &mut out);
        out
    }

    /// [`render`](Self::render), appending to `out`.
    pub fn render_into(&self, item: &FeedItem, out: &mut Vec<u8>) {
        let eol = self.eol;
        let prolog: &[ByteRange] = self
            .calendars
            .get(item.cal)
            .map_or(&[], |c| c.prolog.as_slice());
        let vtz = item
            .vtimezones
            .iter()
            .filter_map(|&i| self.vtimezones.get(i as usize).copied());
        let pieces = || {
            prolog
                .iter()
                .copied()
                .chain(vtz.clone())
                .chain(item.master)
                .chain(item.overrides.iter().copied())
        };
        let size: usize = pieces().map(|r| r.len() + 2).sum();
        out.reserve(32 + size);
        out.extend_from_slice(b"BEGIN:VCALENDAR");
        out.extend_from_slice(eol);
        for r in pieces() {
            if let Some(bytes) = self.body.get(r.start..r.end) {
                out.extend_from_slice(bytes);
                if !matches!(bytes.last(), Some(b'\n' | b'\r')) {
                    out.extend_from_slice(eol);
                }
            }
        }
        out.extend_from_slice(b"END:VCALENDAR");
        out.extend_from_slice(eol);
    }
}

/// Splits a feed body into items. See the module docs for the rules.
pub fn split_feed(body: &[u8]) -> Result<SplitFeed, FeedError> {
    let scan = scan::scan(body)?;
    Ok(build(body.to_vec(), scan))
}

/// [`split_feed`] without copying the body.
pub fn split_feed_owned(body: Vec<u8>) -> Result<SplitFeed, FeedError> {
    let scan = scan::scan(&body)?;
    Ok(build(body, scan))
}

/// The UID of the first VEVENT in a calendar file (as [`FeedItem::uid`] would give it), used to
/// recognise local files. `None` if there is no VEVENT, it has no UID, or the UID is not UTF-8.
pub fn uid_of_ics(bytes: &[u8]) -> Option<String> {
    let start = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut scratch = Vec::new();
    // Depth relative to the first VEVENT (1 = its own properties).
    let mut depth: usize = 0;
    for line in Lines::new(bytes, start) {
        if line.kind != LineKind::Content {
            continue;
        }
        let c = parse_content(line.text(bytes, &mut scratch));
        if c.name.eq_ignore_ascii_case(b"BEGIN") {
            if depth > 0 {
                depth += 1;
            } else if trim(c.value).eq_ignore_ascii_case(b"VEVENT") {
                depth = 1;
            }
        } else if c.name.eq_ignore_ascii_case(b"END") {
            match depth {
                0 => {}
                1 => return None,
                _ => depth -= 1,
            }
        } else if depth == 1 && c.name.eq_ignore_ascii_case(b"UID") {
            if c.value.is_empty() {
                return None;
            }
            return String::from_utf8(c.value.to_vec()).ok();
        }
    }
    None
}

/// SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn content_hash_hex(bytes: &[u8]) -> String {
    hex::encode(content_hash(bytes))
}

/// The key under which overrides of one UID are de-duplicated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RidKey {
    At(i64),
    Raw(Box<[u8]>),
}

#[derive(Default)]
struct Group {
    uid: String,
    master: Option<usize>,
    /// Masters whose bytes differ from `master`.
    conflicts: Vec<usize>,
    /// Overrides in feed order (`None`: replaced by a later one).
    overrides: Vec<Option<usize>>,
    /// (replaced override, the one that replaced it)
    replaced: Vec<(usize, usize)>,
    /// Unusable components, with the reason.
    bad: Vec<(usize, String)>,
}

/// The UID of an event and, if something is wrong with its UID properties, why.
fn uid_of(body: &[u8], p: &EventProps, scratch: &mut Vec<u8>) -> (Option<String>, Option<String>) {
    let Some(line) = p.uid else {
        return (None, None);
    };
    let value = parse_content(line.text(body, scratch)).value;
    if value.is_empty() {
        return (None, Some("empty UID".to_owned()));
    }
    let Ok(uid) = String::from_utf8(value.to_vec()) else {
        return (None, Some("UID is not valid UTF-8".to_owned()));
    };
    for more in &p.more_uids {
        if parse_content(more.text(body, scratch)).value != uid.as_bytes() {
            return (
                Some(uid),
                Some("several different UID properties".to_owned()),
            );
        }
    }
    (Some(uid), None)
}

/// Turns the scan into items: grouping, conflicts, spans, VTIMEZONE references.
/// The line end of a body's first line: CRLF, LF, or CR when the body has no
/// LF at all (CRLF when there is no line end).
fn line_end_of(body: &[u8]) -> &'static [u8] {
    match body.iter().position(|&c| c == b'\n' || c == b'\r') {
        Some(p) if body[p] == b'\n' => b"\n",
        Some(p) if body.get(p + 1) != Some(&b'\n') && !body.contains(&b'\n') => b"\r",
        _ => b"\r\n",
    }
}

fn build(body: Vec<u8>, scan: Scan) -> SplitFeed {
    let Scan {
        calendars,
        events,
        vtimezones,
        tzid_names,
        tz_refs,
        mut skipped,
        warnings,
        ignored,
    } = scan;
    let b = body.as_slice();
    let mut warn = warnings.list;
    let mut scratch = Vec::new();
    let mut tzs = TzCache::default();

    let floats: Vec<Zone> = calendars
        .iter()
        .map(|c| {
            c.float_tz
                .and_then(|l| tzs.resolve(trim(parse_content(l.text(b, &mut scratch)).value)))
                .map_or(Zone::Utc, Zone::Tz)
        })
        .collect();

    // TZID parameter value -> VTIMEZONE (first one wins).
    let mut vtz_by_name: HashMap<&str, u32> = HashMap::new();
    for (i, v) in vtimezones.iter().enumerate() {
        match vtz_by_name.entry(&v.tzid) {
            Entry::Vacant(e) => {
                e.insert(u32::try_from(i).unwrap_or(u32::MAX));
            }
            Entry::Occupied(e) => {
                let first = vtimezones[*e.get() as usize].range;
                if b[first.start..first.end] != b[v.range.start..v.range.end] && warn.len() < 100 {
                    warn.push(format!(
                        "two different VTIMEZONEs for TZID {}; using the first",
                        scan::show(v.tzid.as_bytes())
                    ));
                }
            }
        }
    }
    let tz_to_vtz: Vec<Option<u32>> = tzid_names
        .iter()
        .map(|n| vtz_by_name.get(&**n).copied())
        .collect();
    drop(vtz_by_name);

    // Group by UID.
    let mut groups: Vec<Group> = Vec::new();
    let mut by_uid: HashMap<String, usize> = HashMap::new();
    let mut rid_pos: HashMap<(usize, RidKey), usize> = HashMap::new();
    let same =
        |x: &EventRec, y: &EventRec| b[x.range.start..x.range.end] == b[y.range.start..y.range.end];
    for (ei, ev) in events.iter().enumerate() {
        let (uid, uid_problem) = uid_of(b, &ev.props, &mut scratch);
        let bad = ev.bad.clone().or(uid_problem);
        let Some(uid) = uid else {
            skipped.push(SkippedItem {
                uid: None,
                index: ev.index,
                reason: bad.unwrap_or_else(|| "VEVENT without UID".to_owned()),
            });
            continue;
        };
        let gi = match by_uid.get(&uid) {
            Some(&gi) => gi,
            None => {
                by_uid.insert(uid.clone(), groups.len());
                groups.push(Group {
                    uid,
                    ..Group::default()
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        if let Some(bad) = bad {
            g.bad.push((ei, bad));
            continue;
        }
        let Some(rid) = ev.props.rid else {
            match g.master {
                None => g.master = Some(ei),
                Some(m) if same(&events[m], ev) => {}
                Some(_) => g.conflicts.push(ei),
            }
            continue;
        };
        let c = parse_content(rid.text(b, &mut scratch));
        let float = floats.get(ev.cal).copied().unwrap_or(Zone::Utc);
        let key = match time::stamp(c.params, c.value, float, &mut tzs) {
            Some(s) => RidKey::At(s.unix()),
            None => RidKey::Raw(trim(c.value).into()),
        };
        match rid_pos.entry((gi, key)) {
            Entry::Vacant(e) => {
                g.overrides.push(Some(ei));
                e.insert(g.overrides.len() - 1);
            }
            Entry::Occupied(mut e) => {
                let pos = *e.get();
                let Some(old) = g.overrides[pos] else {
                    continue;
                };
                if same(&events[old], ev) {
                    continue;
                }
                // the newer revision wins (iTIP order), silently: an older
                // revision is not a problem; on a tie the later one, reported
                let (old_rev, new_rev) = (revision(b, &events[old]), revision(b, ev));
                if old_rev > new_rev {
                    continue;
                }
                g.overrides[pos] = None;
                if old_rev == new_rev {
                    g.replaced.push((old, ei));
                }
                g.overrides.push(Some(ei));
                *e.get_mut() = g.overrides.len() - 1;
            }
        }
    }
    drop(rid_pos);
    drop(by_uid);
    for g in groups.iter_mut().filter(|g| !g.conflicts.is_empty()) {
        pick_revision(b, &events, g, &mut warn);
    }

    let mut items = Vec::with_capacity(groups.len());
    for g in groups {
        let live = g.overrides.iter().flatten().copied();
        if !g.bad.is_empty() || !g.conflicts.is_empty() {
            let uid = Some(g.uid);
            let mut report = |ei: usize, reason: String| {
                skipped.push(SkippedItem {
                    uid: uid.clone(),
                    index: events[ei].index,
                    reason,
                });
            };
            let why = match g.bad.first() {
                Some(&(ei, ref r)) => format!(
                    "another component with this UID (#{}) was skipped: {r}",
                    events[ei].index
                ),
                None => "duplicate UID with different content".to_owned(),
            };
            for (ei, r) in g.bad {
                report(ei, r);
            }
            let masters: Vec<usize> = g.master.into_iter().chain(g.conflicts).collect();
            let conflict = if masters.len() > 1 {
                let list: Vec<String> = masters
                    .iter()
                    .take(5)
                    .map(|&m| format!("#{}", events[m].index))
                    .collect();
                format!(
                    "duplicate UID with different content (components {}{})",
                    list.join(", "),
                    if masters.len() > 5 { ", …" } else { "" }
                )
            } else {
                why.clone()
            };
            for m in masters {
                report(m, conflict.clone());
            }
            for o in live.chain(g.replaced.iter().map(|&(old, _)| old)) {
                report(o, why.clone());
            }
            continue;
        }

        let master = g.master.map(|m| &events[m]);
        let overrides: Vec<&EventRec> = live.map(|o| &events[o]).collect();
        let Some(first) = master.or(overrides.first().copied()) else {
            continue;
        };
        let cal = first.cal;
        let float = floats.get(cal).copied().unwrap_or(Zone::Utc);
        let cancelled = calendars.get(cal).is_some_and(|c| c.cancel)
            || master.is_some_and(|m| {
                m.props.status.is_some_and(|l| {
                    trim(parse_content(l.text(b, &mut scratch)).value)
                        .eq_ignore_ascii_case(b"CANCELLED")
                })
            });

        // Span: master first (its duration is inherited by overrides without an end).
        let mut span = Span::default();
        let mut unknown_end = false;
        let mut inherit = None;
        for (i, ev) in master.iter().chain(overrides.iter()).enumerate() {
            let t = comp_times(b, &ev.props, float, inherit, &mut tzs, &mut scratch);
            if i == 0 && master.is_some() {
                inherit = t.dur;
            }
            if let Some(s) = t.start {
                span.first_start = Some(span.first_start.map_or(s, |f| f.min(s)));
            }
            match t.end {
                Some(e) => span.last_end = Some(span.last_end.map_or(e, |l| l.max(e))),
                None => unknown_end = true,
            }
        }
        if unknown_end {
            span.last_end = None;
        }

        let mut vtz: Vec<u32> = master
            .iter()
            .chain(overrides.iter())
            .flat_map(|ev| tz_refs[ev.tz_refs.start..ev.tz_refs.end].iter())
            .filter_map(|&id| tz_to_vtz.get(id as usize).copied().flatten())
            .collect();
        vtz.sort_unstable();
        vtz.dedup();

        for &(old, new) in &g.replaced {
            skipped.push(SkippedItem {
                uid: Some(g.uid.clone()),
                index: events[old].index,
                reason: format!(
                    "duplicate RECURRENCE-ID: the later component #{} is used",
                    events[new].index
                ),
            });
        }
        items.push(FeedItem {
            uid: g.uid,
            cancelled,
            span,
            components: usize::from(master.is_some()) + overrides.len(),
            cal,
            master: master.map(|m| m.range),
            overrides: overrides.iter().map(|o| o.range).collect(),
            vtimezones: vtz,
        });
    }
    skipped.sort_by_key(|s| s.index);
    if warnings.more > 0 {
        warn.push(format!("… and {} more warnings", warnings.more));
    }

    let eol = line_end_of(&body);
    SplitFeed {
        eol,
        body,
        calendars,
        vtimezones: vtimezones.iter().map(|v| v.range).collect(),
        items,
        skipped,
        warnings: warn,
        ignored,
    }
}

/// The order of revisions of one event, as iTIP (RFC 5546) orders them:
/// SEQUENCE (absent = 0), then LAST-MODIFIED, then DTSTAMP (absent or
/// unreadable = oldest). Only the VEVENT's own lines count, not a VALARM's.
type Revision = (i64, i64, i64);

fn revision(b: &[u8], ev: &EventRec) -> Revision {
    let mut rev = (0, i64::MIN, i64::MIN);
    let mut depth = 0usize;
    let mut scratch = Vec::new();
    let mut tzs = TzCache::default();
    for line in Lines::new(&b[..ev.range.end], ev.range.start) {
        if line.kind != LineKind::Content {
            continue;
        }
        let c = parse_content(line.text(b, &mut scratch));
        if c.name.eq_ignore_ascii_case(b"BEGIN") {
            depth += 1;
        } else if c.name.eq_ignore_ascii_case(b"END") {
            depth = depth.saturating_sub(1);
        } else if depth == 1 {
            let stamp = |tzs: &mut TzCache| {
                time::stamp(c.params, c.value, Zone::Utc, tzs).map(|s| s.unix())
            };
            if c.name.eq_ignore_ascii_case(b"SEQUENCE") {
                if let Some(n) = std::str::from_utf8(trim(c.value))
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    rev.0 = n;
                }
            } else if c.name.eq_ignore_ascii_case(b"LAST-MODIFIED") {
                rev.1 = stamp(&mut tzs).unwrap_or(i64::MIN);
            } else if c.name.eq_ignore_ascii_case(b"DTSTAMP") {
                rev.2 = stamp(&mut tzs).unwrap_or(i64::MIN);
            }
        }
    }
    rev
}

/// Several masters with one UID and different bytes: revisions of one event
/// (exports do this). The newest one is the event; only a true tie between
/// different contents leaves the UID skipped.
fn pick_revision(b: &[u8], events: &[EventRec], g: &mut Group, warn: &mut Vec<String>) {
    let masters: Vec<usize> = g.master.into_iter().chain(g.conflicts.clone()).collect();
    let revs: Vec<Revision> = masters.iter().map(|&m| revision(b, &events[m])).collect();
    let Some(&newest) = revs.iter().max() else {
        return;
    };
    let top: Vec<usize> = masters
        .iter()
        .zip(&revs)
        .filter(|(_, r)| **r == newest)
        .map(|(&m, _)| m)
        .collect();
    let range = |m: usize| &b[events[m].range.start..events[m].range.end];
    if top.iter().any(|&m| range(m) != range(top[0])) {
        return; // a true tie: skipped below
    }
    g.master = Some(top[0]);
    g.conflicts.clear();
    if warn.len() < 100 {
        warn.push(format!(
            "UID {}: {} older revision(s) ignored, SEQUENCE {} used",
            scan::show(g.uid.as_bytes()),
            masters.len() - top.len(),
            newest.0
        ));
    }
}

/// Start, last end and duration of one VEVENT.
struct Times {
    start: Option<i64>,
    /// `None`: unbounded or unknown.
    end: Option<i64>,
    dur: Option<i64>,
}

fn comp_times(
    b: &[u8],
    p: &EventProps,
    float: Zone,
    inherit: Option<i64>,
    tzs: &mut TzCache,
    scratch: &mut Vec<u8>,
) -> Times {
    let mut stamp_of = |l: lines::Line, tzs: &mut TzCache| {
        let c = parse_content(l.text(b, scratch));
        time::stamp(c.params, c.value, float, tzs)
    };
    // An override without DTSTART starts at its RECURRENCE-ID.
    let Some(start) = p.dtstart.or(p.rid).and_then(|l| stamp_of(l, tzs)) else {
        return Times {
            start: None,
            end: None,
            dur: None,
        };
    };
    let s = start.unix();
    let dur = if let Some(l) = p.dtend {
        stamp_of(l, tzs).map(|e| e.unix() - s)
    } else if let Some(l) = p.duration {
        time::parse_duration(parse_content(l.text(b, scratch)).value)
    } else {
        Some(inherit.unwrap_or(if start.all_day { DAY } else { 0 }))
    };
    let unknown = Times {
        start: Some(s),
        end: None,
        dur,
    };
    let Some(dur) = dur.map(|d| d.max(0)) else {
        return unknown;
    };
    let mut last = s.saturating_add(dur);
    if let Some(rid) = p.rid {
        if time::is_this_and_future(parse_content(rid.text(b, scratch)).params) {
            return unknown;
        }
    }
    for l in &p.rrules {
        match time::rrule_last_start(parse_content(l.text(b, scratch)).value, &start) {
            Some(t) => last = last.max(t.saturating_add(dur)),
            None => return unknown,
        }
    }
    for l in &p.rdates {
        let c = parse_content(l.text(b, scratch));
        match time::rdate_last_end(c.params, c.value, dur, float, tzs) {
            Some(e) => last = last.max(e),
            None => return unknown,
        }
    }
    Times {
        start: Some(s),
        end: Some(last),
        dur: Some(dur),
    }
}
