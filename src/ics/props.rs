//! Reading and editing the synced properties of one item file (a VCALENDAR holding one UID:
//! a master VEVENT and its RECURRENCE-ID overrides), byte-exact everywhere else.
//!
//! Nothing is re-serialized: a file is cut into logical lines (`super::lines`), and an edit
//! is a list of removed lines plus bytes inserted before given lines. Unknown and `X-`
//! properties, nested components (VALARM), other components, folding and line ends of every
//! line that is not rewritten survive untouched.
//!
//! # Rules and choices
//!
//! * **Shape.** A UTF-8 BOM and leading blank lines are skipped; the first content line must be
//!   `BEGIN:VCALENDAR`, every `BEGIN` needs its matching `END` and the calendar needs
//!   `END:VCALENDAR`, else [`PropsError::Malformed`]. Bytes after `END:VCALENDAR` are kept but
//!   not read. A file without a VEVENT is [`PropsError::NoEvent`]. Every unfolded line of every
//!   VEVENT (nested VALARMs included) must be UTF-8, else [`PropsError::NotUtf8`] (a fold that
//!   splits a UTF-8 sequence is fine).
//! * **Master.** The first VEVENT without RECURRENCE-ID, else the first VEVENT. Only its own
//!   property lines count (never those of a nested VALARM). When a property occurs several
//!   times, the first one is read.
//! * **Line ends.** The file's style is the one of its first line end (CRLF, LF or CR; CRLF if
//!   there is none). New and transplanted lines use it, so a file never mixes styles.
//! * **Times.** See [`read_event`]. TZIDs are IANA names (also behind a prefix such as
//!   `/mozilla.org/…/`) or Windows zone ids and display names (Outlook, Exchange); a TZID
//!   that is neither reads as UTC, like the feed splitter does. UTC-like zones (`UTC`, `Etc/UTC`, `GMT`,
//!   …) read as `tzid: None`. When DTEND is absent the end is DTSTART + DURATION (exact
//!   seconds; an all-day start with a whole number of days gives a date).
//! * **Writing times.** An instant with an IANA `tzid` is written as wall-clock time in that
//!   zone, reusing the TZID string of a VTIMEZONE of the file that resolves to the same zone
//!   (e.g. `/mozilla.org/…/Europe/Berlin`), else `TZID=<IANA name>` plus a generated
//!   VTIMEZONE inserted before the first VEVENT. The later instant of an ambiguous wall-clock
//!   time (the repeated hour) cannot be written with a TZID (it reads as the earlier one), so
//!   it is written in UTC; so are instants whose zone is unknown or UTC-like.
//! * **Text.** Written TEXT is escaped (`\\` `\;` `\,`, CR LF / LF / CR → `\n`); reading
//!   unescapes `\n` `\N` `\,` `\;` `\\` and keeps any other backslash pair as it is. An empty
//!   summary or description removes the property (a missing one reads as "").
//! * **Raw values** (UID, RRULE, attendee emails, [`set_property`]) are written as given;
//!   CR and LF are dropped from them (or refused by [`with_uid`] / [`set_property`]).
//! * **Folding.** Generated lines are folded at 75 octets (a continuation line is a space plus
//!   at most 74 octets), never inside a UTF-8 sequence.

use std::borrow::Cow;
use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone, Weekday};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use super::lines::{find_eol, is_valid_name, param, parse_content, trim, unfold_into};
use super::lines::{Line, LineKind, Lines};
use super::time::{local_to_unix, parse_duration, stamp, TzCache, Zone, DAY};
use crate::model::{Field, Fields, When};

/// Why an item file cannot be read or edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropsError {
    /// The calendar object holds no VEVENT.
    #[error("no VEVENT in the calendar object")]
    NoEvent,
    /// A line of a VEVENT is not valid UTF-8.
    #[error("a VEVENT is not valid UTF-8")]
    NotUtf8,
    /// The structure is broken (no `BEGIN:VCALENDAR`, unbalanced `BEGIN`/`END`, no UID, …).
    #[error("malformed calendar object: {0}")]
    Malformed(String),
    /// [`set_property`] was given a name that is not an iana-token / x-name, or BEGIN/END.
    #[error("invalid property name {0:?}")]
    InvalidName(String),
    /// A value that cannot be written (a line break in a raw value, a year outside 0..=9999).
    #[error("invalid value: {0}")]
    InvalidValue(String),
}

/// What one item file (a VCALENDAR holding one UID: master VEVENT + RECURRENCE-ID overrides)
/// says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    /// The master's UID, unfolded, as written.
    pub uid: String,
    /// Of the master VEVENT (or of the first VEVENT if there is no master).
    pub fields: Fields,
    /// VEVENTs with RECURRENCE-ID.
    pub overrides: usize,
    /// EXDATE values on the master (a comma list counts each value).
    pub exdates: usize,
    /// RDATE values on the master.
    pub rdates: usize,
    /// Lowercase email from `ORGANIZER…:mailto:…`.
    pub organizer: Option<String>,
    /// `X-*` properties of the master in file order: name in ASCII uppercase, raw value
    /// (unfolded, not unescaped).
    pub x_props: Vec<(String, String)>,
    /// The master has `STATUS:CANCELLED`.
    pub status_cancelled: bool,
}

impl EventInfo {
    /// The value of the first `X-` property called `name` (case-insensitive).
    pub fn x_prop(&self, name: &str) -> Option<&str> {
        self.x_props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the UID, the synced fields and a few facts of an item file. See the module docs.
///
/// * summary/description: unescaped TEXT, "" when missing;
/// * start/end: [`When::Instant`] for DATE-TIME (TZID resolved with chrono-tz; an ambiguous
///   wall-clock time takes the earlier instant, one in a DST gap moves forward an hour;
///   `tzid` is the IANA name, None for UTC and floating times, which read as UTC),
///   [`When::Date`] for DATE values; the end from DTEND, else DTSTART + DURATION, else None;
/// * rrule: the first RRULE value, unfolded and trimmed;
/// * attendees: lowercase emails of `ATTENDEE…:mailto:…` (non-mailto values are ignored).
///
/// Every VEVENT must carry the same, non-empty UID, else [`PropsError::Malformed`].
pub fn read_event(bytes: &[u8]) -> Result<EventInfo, PropsError> {
    let doc = Doc::parse(bytes)?;
    let m = &doc.comps[doc.master()?];
    let uid = doc
        .find(m, &["UID"])
        .first()
        .map(|&i| doc.value(i))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| PropsError::Malformed("VEVENT without UID".into()))?;
    let mut overrides = 0;
    for c in doc.events() {
        overrides += usize::from(c.rid);
        if let Some(&i) = doc.find(c, &["UID"]).first() {
            if doc.value(i) != uid {
                return Err(PropsError::Malformed(
                    "several UIDs in one item file".into(),
                ));
            }
        }
    }
    let mut tzs = TzCache::default();
    let fields = read_fields(&doc, m, &mut tzs);
    let count_values = |name: &str| -> usize {
        doc.find(m, &[name])
            .iter()
            .map(|&i| {
                let t = doc.text(i);
                parse_content(&t)
                    .value
                    .split(|&b| b == b',')
                    .filter(|v| !trim(v).is_empty())
                    .count()
            })
            .sum()
    };
    let exdates = count_values("EXDATE");
    let rdates = count_values("RDATE");
    let organizer = doc
        .find(m, &["ORGANIZER"])
        .first()
        .and_then(|&i| mailto(&doc.value(i)));
    let status_cancelled = doc
        .find(m, &["STATUS"])
        .first()
        .is_some_and(|&i| doc.value(i).trim().eq_ignore_ascii_case("CANCELLED"));
    let x_props = m
        .props
        .iter()
        .filter(|&&i| doc.names[i].starts_with("X-"))
        .map(|&i| (doc.names[i].clone(), doc.value(i)))
        .collect();
    Ok(EventInfo {
        uid,
        fields,
        overrides,
        exdates,
        rdates,
        organizer,
        x_props,
        status_cancelled,
    })
}

/// Copies the properties of `fields` from the master VEVENT of `remote` into the master VEVENT
/// of `local` (see [`update_from_platform`] for how lines are placed and which ones stay). The
/// overrides, the calendar-level lines and every other property of `local` stay byte-exact.
pub fn transplant(local: &[u8], remote: &[u8], fields: &[Field]) -> Result<Vec<u8>, PropsError> {
    let names: BTreeSet<&'static str> = fields
        .iter()
        .flat_map(|f| f.properties().iter().copied())
        .collect();
    let l = Doc::parse(local)?;
    let r = Doc::parse(remote)?;
    let mut m = Merge::new(&l, &r);
    m.comp(&l.comps[l.master()?], &r.comps[r.master()?], &names);
    Ok(m.finish())
}

/// Properties that are the user's even when a platform's rendering has them: never rewritten
/// from the platform (the UID is the local event's identity; the rest are personal settings).
pub const USER_OWNED: &[&str] = &[
    "UID",
    "RECURRENCE-ID",
    "CATEGORIES",
    "COLOR",
    "CLASS",
    "RESOURCES",
    "TRANSP",
];

/// The platform's version of an event, written into the user's file: rewrites only what the
/// platform holds and keeps everything the user added.
///
/// The platform holds, in the master and in each override: the properties of every [`Field`],
/// the names in `platform_props` (what the platform always renders: e.g. SEQUENCE, EXDATE,
/// ORGANIZER) and every property name its rendering (`remote`) has, except [`USER_OWNED`] ones.
/// For each such name the local lines are replaced by the remote ones (at the place of the
/// first local line, else before the component's first sub-component, else before its END);
/// a name the remote lacks is removed. ATTENDEEs are matched by address: a local line whose
/// address stays is kept byte-exact (with its CN, PARTSTAT, ROLE, …), one whose address left is
/// removed, new addresses get the remote line; non-mailto attendees stay.
///
/// Everything else of `local` stays byte-exact: other properties (CATEGORIES, COLOR, X- ones,
/// notes), sub-components (VALARM), calendar-level lines, the UID. Overrides are matched by
/// RECURRENCE-ID: matched ones are merged the same way, new remote ones are added (with the
/// local UID), local ones the platform no longer has are removed. VTIMEZONEs the copied lines
/// need are added. A local file without a master VEVENT takes the remote file (with its UID).
///
/// A local file that holds nothing of the user's (nothing but what the platform holds) takes
/// the remote file as it is, under the local UID: the platform's bytes, line ends and order.
///
/// `keep_local` names fields whose local value stays in the master (a merge where the local
/// value wins or still has to be pushed).
pub fn update_from_platform(
    local: &[u8],
    remote: &[u8],
    platform_props: &[&str],
    keep_local: &[Field],
) -> Result<Vec<u8>, PropsError> {
    let l = Doc::parse(local)?;
    let r = Doc::parse(remote)?;
    let lm_idx = l.master()?;
    let rm_idx = r.master()?;
    let uid = l
        .find(&l.comps[lm_idx], &["UID"])
        .first()
        .map(|&i| l.value(i))
        .unwrap_or_default();
    if l.comps[lm_idx].rid && !r.comps[rm_idx].rid {
        // overrides only here, a whole event there: the platform's file, our UID
        return with_uid(remote, &uid);
    }
    let owned = |d: &Doc, c: &Comp| -> BTreeSet<String> {
        let mut n: BTreeSet<String> = Field::ALL
            .iter()
            .flat_map(|f| f.properties().iter().map(|p| p.to_string()))
            .chain(platform_props.iter().map(|p| p.to_ascii_uppercase()))
            .collect();
        n.extend(c.props.iter().map(|&i| d.names[i].clone()));
        n.retain(|x| !x.is_empty() && !USER_OWNED.contains(&x.as_str()));
        n
    };
    let mut m = Merge::new(&l, &r);
    let names = owned(&r, &r.comps[rm_idx]);
    let plain = keep_local.is_empty() && {
        let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        !m.additions(&l.comps[lm_idx], &r.comps[rm_idx], &names)
    };
    let kept: BTreeSet<&str> = keep_local
        .iter()
        .flat_map(|f| f.properties().iter().copied())
        .collect();
    let names: BTreeSet<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !kept.contains(n))
        .collect();
    m.comp(&l.comps[lm_idx], &r.comps[rm_idx], &names);

    let rid_of = |d: &Doc, c: &Comp| -> Option<String> {
        d.find(c, &["RECURRENCE-ID"]).first().map(|&i| {
            let t = d.text(i);
            let c = parse_content(&t);
            format!(
                "{}:{}",
                String::from_utf8_lossy(c.params).to_ascii_uppercase(),
                String::from_utf8_lossy(trim(c.value)).to_ascii_uppercase()
            )
        })
    };
    let overrides = |d: &'_ Doc, master: usize| -> Vec<(String, usize)> {
        d.comps
            .iter()
            .enumerate()
            .filter(|(k, c)| *k != master && c.name == "VEVENT" && c.rid)
            .filter_map(|(k, c)| rid_of(d, c).map(|rid| (rid, k)))
            .collect()
    };
    let lo = overrides(&l, lm_idx);
    let ro = overrides(&r, rm_idx);
    let plain = plain
        && ro.iter().all(|(rid, rk)| {
            lo.iter().find(|(x, _)| x == rid).is_none_or(|(_, lk)| {
                let names = owned(&r, &r.comps[*rk]);
                let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
                !m.additions(&l.comps[*lk], &r.comps[*rk], &names)
            })
        });
    if plain {
        return if uid.is_empty() {
            Ok(remote.to_vec())
        } else {
            with_uid(remote, &uid)
        };
    }
    let mut added = false;
    for (rid, rk) in &ro {
        match lo.iter().find(|(x, _)| x == rid) {
            Some((_, lk)) => {
                let names = owned(&r, &r.comps[*rk]);
                let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
                m.comp(&l.comps[*lk], &r.comps[*rk], &names);
            }
            None => {
                m.copy_comp(&r.comps[*rk]);
                added = true;
            }
        }
    }
    for (rid, lk) in &lo {
        if !ro.iter().any(|(x, _)| x == rid) {
            let c = &l.comps[*lk];
            for i in c.begin..=c.end {
                m.plan.remove(i);
            }
        }
    }
    let out = m.finish();
    if added && !uid.is_empty() {
        return with_uid(&out, &uid);
    }
    Ok(out)
}

/// An edit of a local [`Doc`] that takes lines from a remote one.
struct Merge<'d, 'a> {
    l: &'d Doc<'a>,
    r: &'d Doc<'a>,
    plan: Plan,
    /// TZIDs used by copied lines.
    tzids: Vec<String>,
    /// Whole components copied from the remote, placed after the last local VEVENT.
    appended: Vec<u8>,
}

impl<'d, 'a> Merge<'d, 'a> {
    fn new(l: &'d Doc<'a>, r: &'d Doc<'a>) -> Self {
        Merge {
            l,
            r,
            plan: Plan::new(l),
            tzids: Vec::new(),
            appended: Vec::new(),
        }
    }

    fn copy(&mut self, i: usize, out: &mut Vec<u8>) {
        self.r.copy_line(i, self.l.eol, out);
        let t = self.r.text(i);
        let c = parse_content(&t);
        if let Some(z) = param(c.params, "TZID") {
            let z = String::from_utf8_lossy(trim(z)).into_owned();
            if !self.tzids.contains(&z) {
                self.tzids.push(z);
            }
        }
    }

    /// Where a new property of `c` goes: before its first sub-component, else its END.
    fn prop_end(&self, c: &Comp) -> usize {
        (c.begin + 1..c.end)
            .find(|&i| self.l.names[i] == "BEGIN")
            .unwrap_or(c.end)
    }

    /// Whether local component `lc` holds something of the user's: a property the platform
    /// does not hold (not in `names`), an attendee line other than the platform's for that
    /// address (parameters), a non-mailto attendee, or sub-components other than the remote's.
    fn additions(&self, lc: &Comp, rc: &Comp, names: &BTreeSet<&str>) -> bool {
        let remote_attendees: Vec<(String, usize)> = self
            .r
            .find(rc, &["ATTENDEE"])
            .into_iter()
            .filter_map(|i| mailto(&self.r.value(i)).map(|e| (e, i)))
            .collect();
        for &i in &lc.props {
            let name = self.l.names[i].as_str();
            match name {
                "" | "UID" | "RECURRENCE-ID" => {}
                "ATTENDEE" => {
                    let Some(e) = mailto(&self.l.value(i)) else {
                        return true;
                    };
                    if let Some((_, j)) = remote_attendees.iter().find(|(x, _)| *x == e) {
                        if self.l.text(i) != self.r.text(*j) {
                            return true;
                        }
                    }
                }
                n if names.contains(n) => {}
                _ => return true,
            }
        }
        let nested = |d: &Doc, c: &Comp| -> Vec<Vec<u8>> {
            (c.begin + 1..c.end)
                .filter(|i| !c.props.contains(i) && d.lines[*i].kind == LineKind::Content)
                .map(|i| d.text(i).into_owned())
                .collect()
        };
        nested(self.l, lc) != nested(self.r, rc)
    }

    /// Rewrites the properties `names` of local component `lc` from remote component `rc`.
    fn comp(&mut self, lc: &Comp, rc: &Comp, names: &BTreeSet<&str>) {
        let tail = self.prop_end(lc);
        for &name in names {
            let local = self.l.find(lc, &[name]);
            let remote = self.r.find(rc, &[name]);
            if name == "ATTENDEE" {
                self.attendees(&local, &remote, tail);
                continue;
            }
            let same = local.len() == remote.len()
                && local
                    .iter()
                    .zip(&remote)
                    .all(|(&a, &b)| self.l.text(a) == self.r.text(b));
            if same {
                continue;
            }
            let mut new = Vec::new();
            for &i in &remote {
                self.copy(i, &mut new);
            }
            for &i in &local {
                self.plan.remove(i);
            }
            self.plan
                .insert(local.first().copied().unwrap_or(tail), &new);
        }
    }

    fn attendees(&mut self, local: &[usize], remote: &[usize], tail: usize) {
        let want: Vec<(String, usize)> = remote
            .iter()
            .filter_map(|&i| mailto(&self.r.value(i)).map(|e| (e, i)))
            .collect();
        let mut have = BTreeSet::new();
        for &i in local {
            if let Some(e) = mailto(&self.l.value(i)) {
                if want.iter().any(|(w, _)| *w == e) {
                    have.insert(e);
                } else {
                    self.plan.remove(i);
                }
            }
        }
        let mut new = Vec::new();
        for (e, i) in &want {
            if have.insert(e.clone()) {
                self.copy(*i, &mut new);
            }
        }
        let pos = local.last().map_or(tail, |&i| i + 1);
        self.plan.insert(pos, &new);
    }

    fn copy_comp(&mut self, c: &Comp) {
        let mut out = Vec::new();
        for i in c.begin..=c.end {
            if self.r.lines[i].kind == LineKind::Content {
                self.copy(i, &mut out);
            }
        }
        self.appended.extend(out);
    }

    fn finish(mut self) -> Vec<u8> {
        let after_events = self
            .l
            .events()
            .last()
            .map_or(self.l.lines.len(), |c| c.end + 1);
        let appended = std::mem::take(&mut self.appended);
        self.plan.insert(after_events, &appended);
        // in the remote's order
        let mut zones: Vec<&Comp> = self
            .tzids
            .iter()
            .filter(|z| self.l.vtimezone(z).is_none())
            .filter_map(|z| self.r.vtimezone(z))
            .collect();
        zones.sort_by_key(|c| c.begin);
        zones.dedup_by_key(|c| c.begin);
        let mut vtz = Vec::new();
        for c in zones {
            for i in c.begin..=c.end {
                self.r.copy_line(i, self.l.eol, &mut vtz);
            }
        }
        self.plan.insert(self.l.first_event_begin(), &vtz);
        self.plan.render(self.l)
    }
}

/// Writes `fields` into the master VEVENT of `bytes`, rewriting only the properties whose value
/// differs from what [`read_event`] reads now; the other lines stay byte-exact.
///
/// * summary/description: one escaped, folded line (none when empty);
/// * start/end: see the module docs for zones; a file that used DURATION keeps it as long as
///   DTSTART + DURATION still gives `fields.end`, else DURATION is replaced by DTEND;
/// * attendees: existing ATTENDEE lines whose email stays are kept byte-exact (with their
///   parameters; non-mailto ones too), those whose email leaves are removed, and new ones are
///   added after the last ATTENDEE line (else before `END:VEVENT`) as
///   `ATTENDEE;CN=<email>;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:<email>`;
/// * rrule: `Some(v)` → `RRULE:v`, None → removed.
///
/// A changed field's new lines go where its first old line was, else before `END:VEVENT`.
/// SEQUENCE, DTSTAMP and LAST-MODIFIED are left alone.
pub fn apply_fields(bytes: &[u8], fields: &Fields) -> Result<Vec<u8>, PropsError> {
    let doc = Doc::parse(bytes)?;
    let m = &doc.comps[doc.master()?];
    let eol = doc.eol;
    let mut tzs = TzCache::default();
    let cur = read_fields(&doc, m, &mut tzs);
    let mut zones = Zones::new(&doc);
    let mut plan = Plan::new(&doc);

    for (name, old, new) in [
        ("SUMMARY", &cur.summary, &fields.summary),
        ("DESCRIPTION", &cur.description, &fields.description),
    ] {
        if old != new {
            let mut out = Vec::new();
            if !new.is_empty() {
                fold_into(&mut out, &format!("{name}:{}", escape_text(new)), eol);
            }
            plan.replace(m, &doc.find(m, &[name]), &out);
        }
    }

    let start_changed = cur.start != fields.start;
    if start_changed {
        let out = zones.when_lines("DTSTART", fields.start.as_ref(), eol)?;
        plan.replace(m, &doc.find(m, &["DTSTART"]), &out);
    }
    let end_now = if start_changed {
        end_after(&doc, m, fields.start.as_ref(), &mut tzs)
    } else {
        cur.end.clone()
    };
    if end_now != fields.end {
        let out = zones.when_lines("DTEND", fields.end.as_ref(), eol)?;
        plan.replace(m, &doc.find(m, &["DTEND", "DURATION"]), &out);
    }

    if cur.rrule != fields.rrule {
        let mut out = Vec::new();
        if let Some(v) = &fields.rrule {
            fold_into(&mut out, &format!("RRULE:{}", raw_value(v.trim())), eol);
        }
        plan.replace(m, &doc.find(m, &["RRULE"]), &out);
    }

    if cur.attendees != fields.attendees {
        let want: BTreeSet<String> = fields.attendees.iter().map(|a| a.to_lowercase()).collect();
        let lines = doc.find(m, &["ATTENDEE"]);
        let mut have = BTreeSet::new();
        for &i in &lines {
            if let Some(e) = mailto(&doc.value(i)) {
                if want.contains(&e) {
                    have.insert(e);
                } else {
                    plan.remove(i);
                }
            }
        }
        let mut out = Vec::new();
        for a in &fields.attendees {
            if !have.contains(&a.to_lowercase()) {
                fold_into(&mut out, &attendee_line(a), eol);
            }
        }
        let pos = lines.last().map_or(m.end, |&i| i + 1);
        plan.insert(pos, &out);
    }

    plan.insert(doc.first_event_begin(), &zones.render_added(eol));
    Ok(plan.render(&doc))
}

/// A new item file: VCALENDAR with `VERSION:2.0` and `PRODID:-//meetsync//EN`, the
/// VTIMEZONEs the times need, and one VEVENT with UID, DTSTAMP (`dtstamp_unix`, UTC), the
/// fields (as [`apply_fields`] writes them; empty text, None values and times outside years
/// 0..=9999 are left out) and `extra` lines verbatim (a CRLF is added to those without a line
/// end). Lines end with CRLF.
pub fn new_event(uid: &str, fields: &Fields, dtstamp_unix: i64, extra: &[String]) -> Vec<u8> {
    const EOL: &[u8] = b"\r\n";
    let mut zones = Zones::default();
    let mut ev = Vec::new();
    ev.extend_from_slice(b"BEGIN:VEVENT\r\n");
    fold_into(&mut ev, &format!("UID:{}", raw_value(uid)), EOL);
    let stamp = When::Instant {
        unix: dtstamp_unix,
        tzid: None,
    };
    ev.extend(
        zones
            .when_lines("DTSTAMP", Some(&stamp), EOL)
            .unwrap_or_default(),
    );
    if !fields.summary.is_empty() {
        fold_into(
            &mut ev,
            &format!("SUMMARY:{}", escape_text(&fields.summary)),
            EOL,
        );
    }
    for (name, w) in [("DTSTART", &fields.start), ("DTEND", &fields.end)] {
        ev.extend(zones.when_lines(name, w.as_ref(), EOL).unwrap_or_default());
    }
    if let Some(r) = &fields.rrule {
        fold_into(&mut ev, &format!("RRULE:{}", raw_value(r.trim())), EOL);
    }
    if !fields.description.is_empty() {
        fold_into(
            &mut ev,
            &format!("DESCRIPTION:{}", escape_text(&fields.description)),
            EOL,
        );
    }
    for a in &fields.attendees {
        fold_into(&mut ev, &attendee_line(a), EOL);
    }
    for x in extra {
        ev.extend_from_slice(x.as_bytes());
        if !x.ends_with(['\n', '\r']) {
            ev.extend_from_slice(EOL);
        }
    }
    ev.extend_from_slice(b"END:VEVENT\r\n");

    let mut out = Vec::with_capacity(ev.len() + 1024);
    out.extend_from_slice(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//meetsync//EN\r\n");
    out.extend(zones.render_added(EOL));
    out.extend(ev);
    out.extend_from_slice(b"END:VCALENDAR\r\n");
    out
}

/// Rewrites the UID of every VEVENT (master and overrides; nested components are not
/// touched). A VEVENT without UID gets one right after its `BEGIN:VEVENT`; extra UID lines of a
/// VEVENT are removed; a UID line that already says `uid` is kept byte-exact.
pub fn with_uid(bytes: &[u8], uid: &str) -> Result<Vec<u8>, PropsError> {
    check_raw(uid)?;
    let doc = Doc::parse(bytes)?;
    doc.master()?;
    let mut line = Vec::new();
    fold_into(&mut line, &format!("UID:{uid}"), doc.eol);
    let mut plan = Plan::new(&doc);
    for c in doc.events() {
        let uids = doc.find(c, &["UID"]);
        match uids.as_slice() {
            [] => plan.insert(c.begin + 1, &line),
            [i] if doc.value(*i) == uid => {}
            _ => plan.replace(c, &uids, &line),
        }
    }
    Ok(plan.render(&doc))
}

/// Sets a property of the master VEVENT: the first line called `name` (case-insensitive) is
/// replaced by `NAME:value` (name in uppercase, value raw and folded) and further ones are
/// removed; without one, the line is added before `END:VEVENT`. When the property occurs once
/// and already has this value, the input is returned unchanged (its parameters stay).
/// `value` is not escaped: use [`escape_text`] for TEXT properties.
pub fn set_property(bytes: &[u8], name: &str, value: &str) -> Result<Vec<u8>, PropsError> {
    let upper = name.to_ascii_uppercase();
    if !is_valid_name(name.as_bytes()) || upper == "BEGIN" || upper == "END" {
        return Err(PropsError::InvalidName(name.to_owned()));
    }
    check_raw(value)?;
    let doc = Doc::parse(bytes)?;
    let m = &doc.comps[doc.master()?];
    let lines = doc.find(m, &[upper.as_str()]);
    if let [i] = lines.as_slice() {
        if doc.value(*i) == value {
            return Ok(bytes.to_vec());
        }
    }
    let mut out = Vec::new();
    fold_into(&mut out, &format!("{upper}:{value}"), doc.eol);
    let mut plan = Plan::new(&doc);
    plan.replace(m, &lines, &out);
    Ok(plan.render(&doc))
}

/// Escapes TEXT (RFC 5545 §3.3.11): `\` `;` `,` are backslash-escaped, line breaks (CRLF, LF,
/// CR) become `\n`.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Unescapes TEXT: `\n` and `\N` → newline, `\,` `\;` `\\` → the character; any other
/// backslash (unknown pair, trailing) is kept as it is.
pub fn unescape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(c @ (',' | ';' | '\\')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The parsed file.

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A top-level component (a direct child of VCALENDAR).
#[derive(Debug)]
struct Comp {
    /// Uppercase component name (VEVENT, VTIMEZONE, …).
    name: String,
    /// Line indices of its BEGIN and END lines.
    begin: usize,
    end: usize,
    /// Line indices of its own property lines (not those of nested components).
    props: Vec<usize>,
    /// Has a RECURRENCE-ID.
    rid: bool,
    /// The TZID of a VTIMEZONE, trimmed.
    tzid: Option<String>,
}

/// An item file cut into logical lines.
struct Doc<'a> {
    b: &'a [u8],
    /// After the BOM.
    start: usize,
    /// Every logical line from `start` to the end of the file, contiguous.
    lines: Vec<Line>,
    /// Uppercase property name per line ("" for blank, orphan and colon-less lines).
    names: Vec<String>,
    comps: Vec<Comp>,
    eol: &'static [u8],
}

impl<'a> Doc<'a> {
    fn parse(b: &'a [u8]) -> Result<Self, PropsError> {
        let start = if b.starts_with(BOM) { BOM.len() } else { 0 };
        let lines: Vec<Line> = Lines::new(b, start).collect();
        let mut names = vec![String::new(); lines.len()];
        let mut comps: Vec<Comp> = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut open: Option<usize> = None;
        let mut started = false;
        let mut closed = false;
        for (i, line) in lines.iter().enumerate() {
            let raw = &b[line.start..line.content_end];
            if line.kind != LineKind::Content {
                if !started && !trim(raw).is_empty() {
                    return Err(PropsError::Malformed(
                        "does not start with BEGIN:VCALENDAR".into(),
                    ));
                }
                continue;
            }
            let text = unfolded(b, line);
            if open.is_some_and(|k| comps[k].name == "VEVENT")
                && std::str::from_utf8(&text).is_err()
            {
                return Err(PropsError::NotUtf8);
            }
            let c = parse_content(&text);
            let name = String::from_utf8_lossy(c.name).to_ascii_uppercase();
            let value_upper = || String::from_utf8_lossy(trim(c.value)).to_ascii_uppercase();
            if !started {
                if name == "BEGIN" && value_upper() == "VCALENDAR" {
                    started = true;
                    stack.push("VCALENDAR".into());
                    continue;
                }
                return Err(PropsError::Malformed(
                    "does not start with BEGIN:VCALENDAR".into(),
                ));
            }
            if !c.has_value {
                continue;
            }
            match name.as_str() {
                "BEGIN" => {
                    let comp = value_upper();
                    if stack.len() == 1 {
                        comps.push(Comp {
                            name: comp.clone(),
                            begin: i,
                            end: i,
                            props: Vec::new(),
                            rid: false,
                            tzid: None,
                        });
                        open = Some(comps.len() - 1);
                    }
                    stack.push(comp);
                }
                "END" => {
                    let comp = value_upper();
                    let top = stack.pop().unwrap_or_default();
                    if top != comp {
                        return Err(PropsError::Malformed(format!(
                            "END:{comp} does not close BEGIN:{top}"
                        )));
                    }
                    match stack.len() {
                        0 => {
                            closed = true;
                            break;
                        }
                        1 => {
                            if let Some(k) = open.take() {
                                comps[k].end = i;
                            }
                        }
                        _ => {}
                    }
                }
                _ => {
                    if let (2, Some(k)) = (stack.len(), open) {
                        let comp = &mut comps[k];
                        comp.props.push(i);
                        if name == "RECURRENCE-ID" {
                            comp.rid = true;
                        } else if name == "TZID" && comp.tzid.is_none() {
                            comp.tzid = Some(String::from_utf8_lossy(trim(c.value)).into_owned());
                        }
                    }
                }
            }
            names[i] = name;
        }
        if !started {
            return Err(PropsError::Malformed("no BEGIN:VCALENDAR".into()));
        }
        if !closed {
            return Err(PropsError::Malformed(
                "truncated: no END:VCALENDAR".to_owned(),
            ));
        }
        let eol: &'static [u8] = match find_eol(&b[start..]) {
            None => b"\r\n",
            Some(p) => match (b[start + p], b.get(start + p + 1)) {
                (b'\r', Some(b'\n')) => b"\r\n",
                // lone CR only when no LF follows anywhere: an added line ending
                // in CR right before an LF would merge with it into one line end
                (b'\r', _) if !b[start..].contains(&b'\n') => b"\r",
                (b'\r', _) => b"\r\n",
                _ => b"\n",
            },
        };
        Ok(Doc {
            b,
            start,
            lines,
            names,
            comps,
            eol,
        })
    }

    /// Index (into `comps`) of the master VEVENT.
    fn master(&self) -> Result<usize, PropsError> {
        let ev = |c: &Comp| c.name == "VEVENT";
        self.comps
            .iter()
            .position(|c| ev(c) && !c.rid)
            .or_else(|| self.comps.iter().position(ev))
            .ok_or(PropsError::NoEvent)
    }

    fn events(&self) -> impl Iterator<Item = &Comp> {
        self.comps.iter().filter(|c| c.name == "VEVENT")
    }

    /// Line index of the first `BEGIN:VEVENT` (where VTIMEZONEs are inserted).
    fn first_event_begin(&self) -> usize {
        self.events().next().map_or(self.lines.len(), |c| c.begin)
    }

    fn vtimezone(&self, tzid: &str) -> Option<&Comp> {
        self.comps
            .iter()
            .find(|c| c.name == "VTIMEZONE" && c.tzid.as_deref() == Some(tzid))
    }

    /// The property lines of `c` called one of `names` (uppercase), in file order.
    fn find(&self, c: &Comp, names: &[&str]) -> Vec<usize> {
        c.props
            .iter()
            .copied()
            .filter(|&i| names.contains(&self.names[i].as_str()))
            .collect()
    }

    /// The unfolded content of line `i`.
    fn text(&self, i: usize) -> Cow<'a, [u8]> {
        unfolded(self.b, &self.lines[i])
    }

    /// The unfolded value of line `i`.
    fn value(&self, i: usize) -> String {
        let t = self.text(i);
        String::from_utf8_lossy(parse_content(&t).value).into_owned()
    }

    /// Appends line `i` with every physical line end replaced by `eol`.
    fn copy_line(&self, i: usize, eol: &[u8], out: &mut Vec<u8>) {
        let l = &self.lines[i];
        let mut s = &self.b[l.start..l.content_end];
        while let Some(p) = find_eol(s) {
            out.extend_from_slice(&s[..p]);
            out.extend_from_slice(eol);
            let n = if s[p] == b'\r' && s.get(p + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            s = &s[p + n..];
        }
        out.extend_from_slice(s);
        out.extend_from_slice(eol);
    }
}

fn unfolded<'a>(b: &'a [u8], l: &Line) -> Cow<'a, [u8]> {
    let raw = &b[l.start..l.content_end];
    if l.is_folded() {
        let mut v = Vec::with_capacity(raw.len());
        unfold_into(raw, &mut v);
        Cow::Owned(v)
    } else {
        Cow::Borrowed(raw)
    }
}

/// An edit of a [`Doc`]: removed lines and bytes inserted before lines.
struct Plan {
    removed: Vec<bool>,
    /// `before[i]` goes before line `i`; `before[lines.len()]` at the very end.
    before: Vec<Vec<u8>>,
}

impl Plan {
    fn new(doc: &Doc) -> Self {
        Plan {
            removed: vec![false; doc.lines.len()],
            before: vec![Vec::new(); doc.lines.len() + 1],
        }
    }

    fn remove(&mut self, i: usize) {
        self.removed[i] = true;
    }

    fn insert(&mut self, pos: usize, bytes: &[u8]) {
        self.before[pos].extend_from_slice(bytes);
    }

    /// Removes `lines` of `comp` and puts `new` where the first of them was, else before the
    /// component's END line.
    fn replace(&mut self, comp: &Comp, lines: &[usize], new: &[u8]) {
        for &i in lines {
            self.remove(i);
        }
        self.insert(lines.first().copied().unwrap_or(comp.end), new);
    }

    fn render(&self, doc: &Doc) -> Vec<u8> {
        let extra: usize = self.before.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(doc.b.len() + extra);
        out.extend_from_slice(&doc.b[..doc.start]);
        for (i, l) in doc.lines.iter().enumerate() {
            out.extend_from_slice(&self.before[i]);
            if !self.removed[i] {
                out.extend_from_slice(&doc.b[l.start..l.end]);
            }
        }
        out.extend_from_slice(&self.before[doc.lines.len()]);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Reading values.

fn read_fields(doc: &Doc, m: &Comp, tzs: &mut TzCache) -> Fields {
    let first = |name: &str| doc.find(m, &[name]).first().copied();
    let text = |name: &str| first(name).map_or_else(String::new, |i| unescape_text(&doc.value(i)));
    let start = first("DTSTART").and_then(|i| when_of(doc, i, tzs));
    let end = end_after(doc, m, start.as_ref(), tzs);
    Fields {
        summary: text("SUMMARY"),
        description: text("DESCRIPTION"),
        start,
        end,
        rrule: first("RRULE").map(|i| doc.value(i).trim().to_owned()),
        attendees: doc
            .find(m, &["ATTENDEE"])
            .iter()
            .filter_map(|&i| mailto(&doc.value(i)))
            .collect(),
    }
}

/// The end `m` has when it starts at `start`: DTEND, else `start` + DURATION, else None.
fn end_after(doc: &Doc, m: &Comp, start: Option<&When>, tzs: &mut TzCache) -> Option<When> {
    if let Some(&i) = doc.find(m, &["DTEND"]).first() {
        return when_of(doc, i, tzs);
    }
    let i = *doc.find(m, &["DURATION"]).first()?;
    let d = parse_duration(doc.value(i).as_bytes())?;
    Some(match start? {
        When::Instant { unix, tzid } => When::Instant {
            unix: unix.checked_add(d)?,
            tzid: tzid.clone(),
        },
        When::Date(day) if d % DAY == 0 => {
            When::Date(day.checked_add_signed(chrono::TimeDelta::days(d / DAY))?)
        }
        w @ When::Date(_) => When::Instant {
            unix: w.unix().checked_add(d)?,
            tzid: None,
        },
    })
}

/// A DATE / DATE-TIME property line as a [`When`].
fn when_of(doc: &Doc, i: usize, tzs: &mut TzCache) -> Option<When> {
    let t = doc.text(i);
    let c = parse_content(&t);
    let s = stamp(c.params, c.value, Zone::Utc, tzs)?;
    if s.all_day {
        return Some(When::Date(s.local.date()));
    }
    let tzid = match s.zone {
        Zone::Tz(tz) if !is_utc(tz) => Some(tz.name().to_owned()),
        _ => None,
    };
    Some(When::Instant {
        unix: s.unix(),
        tzid,
    })
}

/// The lowercase address of a `mailto:` URI (case-insensitive scheme), None for anything else.
fn mailto(v: &str) -> Option<String> {
    let v = v.trim();
    let head = v.get(..7)?;
    if !head.eq_ignore_ascii_case("mailto:") {
        return None;
    }
    let addr = v[7..].trim();
    (!addr.is_empty()).then(|| addr.to_lowercase())
}

fn is_utc(tz: Tz) -> bool {
    matches!(
        tz.name(),
        "UTC"
            | "UCT"
            | "Universal"
            | "Zulu"
            | "GMT"
            | "GMT0"
            | "GMT+0"
            | "GMT-0"
            | "Greenwich"
            | "Etc/UTC"
            | "Etc/UCT"
            | "Etc/Universal"
            | "Etc/Zulu"
            | "Etc/GMT"
            | "Etc/GMT0"
            | "Etc/GMT+0"
            | "Etc/GMT-0"
            | "Etc/Greenwich"
    )
}

// ---------------------------------------------------------------------------------------------
// Writing values.

/// Appends `line` folded at 75 octets (continuations: a space plus ≤ 74 octets), never inside
/// a UTF-8 sequence, each physical line ended with `eol`.
fn fold_into(out: &mut Vec<u8>, line: &str, eol: &[u8]) {
    let mut rest = line;
    let mut limit = 75;
    while rest.len() > limit {
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.extend_from_slice(&rest.as_bytes()[..cut]);
        out.extend_from_slice(eol);
        out.push(b' ');
        rest = &rest[cut..];
        limit = 74;
    }
    out.extend_from_slice(rest.as_bytes());
    out.extend_from_slice(eol);
}

/// A raw value without CR and LF (they would break the line structure).
fn raw_value(v: &str) -> Cow<'_, str> {
    if v.contains(['\r', '\n']) {
        Cow::Owned(v.chars().filter(|&c| c != '\r' && c != '\n').collect())
    } else {
        Cow::Borrowed(v)
    }
}

fn check_raw(v: &str) -> Result<(), PropsError> {
    if v.contains(['\r', '\n']) {
        return Err(PropsError::InvalidValue(format!(
            "line break in a raw value: {v:?}"
        )));
    }
    Ok(())
}

/// A parameter value, quoted when it contains `:` `;` or `,` (DQUOTE cannot be represented and
/// is dropped).
fn param_value(v: &str) -> Cow<'_, str> {
    let v = raw_value(v);
    if v.contains('"') || v.contains([':', ';', ',']) {
        let inner: String = v.chars().filter(|&c| c != '"').collect();
        if inner.contains([':', ';', ',']) {
            return Cow::Owned(format!("\"{inner}\""));
        }
        return Cow::Owned(inner);
    }
    v
}

fn attendee_line(email: &str) -> String {
    let email = raw_value(email.trim());
    format!(
        "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{email}",
        param_value(&email)
    )
}

fn year_ok(y: i32) -> bool {
    (0..=9999).contains(&y)
}

/// The zones a file has (VTIMEZONE TZIDs) and the ones an edit adds.
#[derive(Default)]
struct Zones {
    /// TZID of each VTIMEZONE of the file, with the zone it resolves to.
    existing: Vec<(String, Option<Tz>)>,
    /// Zones to generate a VTIMEZONE for, with the year to take the rules from.
    added: Vec<(Tz, i32)>,
    tzs: TzCache,
}

impl Zones {
    fn new(doc: &Doc) -> Self {
        let mut tzs = TzCache::default();
        let existing = doc
            .comps
            .iter()
            .filter(|c| c.name == "VTIMEZONE")
            .filter_map(|c| c.tzid.clone())
            .map(|z| {
                let tz = tzs.resolve(z.as_bytes());
                (z, tz)
            })
            .collect();
        Zones {
            existing,
            added: Vec::new(),
            tzs,
        }
    }

    /// The TZID to write for `tz`, remembering to generate a VTIMEZONE when the file has none.
    fn tzid_for(&mut self, tz: Tz, year: i32) -> String {
        if let Some((z, _)) = self.existing.iter().find(|(z, _)| z == tz.name()) {
            return z.clone();
        }
        if let Some((z, _)) = self.existing.iter().find(|(_, t)| *t == Some(tz)) {
            return z.clone();
        }
        if !self.added.iter().any(|(t, _)| *t == tz) {
            self.added.push((tz, year));
        }
        tz.name().to_owned()
    }

    /// `NAME…:value` for `w` (nothing for None), folded; see the module docs.
    fn when_lines(
        &mut self,
        name: &str,
        w: Option<&When>,
        eol: &[u8],
    ) -> Result<Vec<u8>, PropsError> {
        let mut out = Vec::new();
        let Some(w) = w else {
            return Ok(out);
        };
        let range = || PropsError::InvalidValue(format!("{name} out of range: {w}"));
        let line = match w {
            When::Date(d) => {
                if !year_ok(d.year()) {
                    return Err(range());
                }
                format!("{name};VALUE=DATE:{}", d.format("%Y%m%d"))
            }
            When::Instant { unix, tzid } => {
                let utc = DateTime::from_timestamp(*unix, 0)
                    .filter(|t| year_ok(t.year()))
                    .ok_or_else(range)?;
                let zoned = tzid
                    .as_deref()
                    .and_then(|z| self.tzs.resolve(z.as_bytes()))
                    .filter(|&tz| !is_utc(tz))
                    .map(|tz| (tz, utc.with_timezone(&tz).naive_local()))
                    // The later of two equal wall-clock times would read as the earlier one.
                    .filter(|&(tz, local)| {
                        year_ok(local.year()) && local_to_unix(local, Zone::Tz(tz)) == *unix
                    });
                match zoned {
                    Some((tz, local)) => {
                        let id = self.tzid_for(tz, local.year());
                        format!(
                            "{name};TZID={}:{}",
                            param_value(&id),
                            local.format("%Y%m%dT%H%M%S")
                        )
                    }
                    None => format!("{name}:{}", utc.format("%Y%m%dT%H%M%SZ")),
                }
            }
        };
        fold_into(&mut out, &line, eol);
        Ok(out)
    }

    fn render_added(&self, eol: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(tz, year) in &self.added {
            for line in vtimezone_lines(tz, year) {
                fold_into(&mut out, &line, eol);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// VTIMEZONE generation.

/// The offset of `tz` at `unix`: (total seconds east of UTC, is DST, abbreviation).
fn offset_at(tz: Tz, unix: i64) -> Option<(i32, bool, String)> {
    let t = DateTime::from_timestamp(unix, 0)?.naive_utc();
    let o = tz.offset_from_utc_datetime(&t);
    Some((
        o.fix().local_minus_utc(),
        o.dst_offset().num_seconds() != 0,
        o.abbreviation().unwrap_or_default().to_owned(),
    ))
}

/// The instants in `year` (UTC) at which the offset or DST flag of `tz` changes.
fn transitions(tz: Tz, year: i32) -> Vec<i64> {
    let key = |t: i64| offset_at(tz, t).map(|(o, d, _)| (o, d));
    let at = |y: i32| {
        NaiveDate::from_ymd_opt(y, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp())
    };
    let (Some(from), Some(to)) = (at(year), at(year + 1)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut t = from;
    let mut prev = key(t);
    while t < to {
        let next = t + 3600;
        let k = key(next);
        if k != prev {
            // Smallest instant in (t, next] with the new offset.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if key(mid) == prev {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(hi);
            prev = k;
        }
        t = next;
    }
    out
}

fn fmt_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    if s == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{s:02}")
    }
}

fn weekday_code(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// The `n`-th (`-1` = last) weekday `w` of month `m` in year `y`.
fn nth_weekday(y: i32, m: u32, w: Weekday, n: i32) -> Option<NaiveDate> {
    if n > 0 {
        return NaiveDate::from_weekday_of_month_opt(y, m, w, u8::try_from(n).ok()?);
    }
    let mut d = NaiveDate::from_ymd_opt(y, m, days_in_month(y, m))?;
    while d.weekday() != w {
        d = d.pred_opt()?;
    }
    Some(d)
}

/// One STANDARD/DAYLIGHT sub-component.
struct Observance<'a> {
    dst: bool,
    start: NaiveDateTime,
    from: i32,
    to: i32,
    abbr: &'a str,
    rrule: Option<String>,
}

impl Observance<'_> {
    fn push(self, lines: &mut Vec<String>) {
        let kind = if self.dst { "DAYLIGHT" } else { "STANDARD" };
        lines.push(format!("BEGIN:{kind}"));
        lines.push(format!("DTSTART:{}", self.start.format("%Y%m%dT%H%M%S")));
        lines.push(format!("TZOFFSETFROM:{}", fmt_offset(self.from)));
        lines.push(format!("TZOFFSETTO:{}", fmt_offset(self.to)));
        if !self.abbr.is_empty() {
            lines.push(format!("TZNAME:{}", raw_value(self.abbr)));
        }
        if let Some(r) = self.rrule {
            lines.push(format!("RRULE:{r}"));
        }
        lines.push(format!("END:{kind}"));
    }
}

/// A VTIMEZONE for `tz` built from the transitions of `year`: with exactly two (a DST zone),
/// STANDARD and DAYLIGHT observances with yearly RRULEs starting in 1970; otherwise the offset
/// at the start of the year from 1970 plus each transition of that year as a dated observance.
fn vtimezone_lines(tz: Tz, year: i32) -> Vec<String> {
    let mut lines = vec!["BEGIN:VTIMEZONE".to_owned(), format!("TZID:{}", tz.name())];
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let trans = transitions(tz, year);
    // (local time before the switch, from, to, dst after, abbreviation after)
    let switches: Vec<(NaiveDateTime, i32, i32, bool, String)> = trans
        .iter()
        .filter_map(|&t| {
            let (from, _, _) = offset_at(tz, t - 1)?;
            let (to, dst, abbr) = offset_at(tz, t)?;
            let local = DateTime::from_timestamp(t + i64::from(from), 0)?.naive_utc();
            Some((local, from, to, dst, abbr))
        })
        .collect();
    let regular = switches.len() == 2;
    if !regular {
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp());
        if let Some((off, dst, abbr)) = jan1.and_then(|t| offset_at(tz, t)) {
            Observance {
                dst,
                start: epoch,
                from: off,
                to: off,
                abbr: &abbr,
                rrule: None,
            }
            .push(&mut lines);
        }
    }
    for (local, from, to, dst, abbr) in &switches {
        let d = local.date();
        let rule_start = if regular {
            let dim = days_in_month(d.year(), d.month());
            let n = if d.day() + 7 > dim {
                -1
            } else {
                i32::try_from((d.day() - 1) / 7 + 1).unwrap_or(1)
            };
            let rrule = format!(
                "FREQ=YEARLY;BYMONTH={};BYDAY={n}{}",
                d.month(),
                weekday_code(d.weekday())
            );
            nth_weekday(1970, d.month(), d.weekday(), n)
                .map(|d0| (d0.and_time(local.time()), rrule))
        } else {
            None
        };
        let (start, rrule) = match rule_start {
            Some((start, rrule)) => (start, Some(rrule)),
            None => (*local, None),
        };
        Observance {
            dst: *dst,
            start,
            from: *from,
            to: *to,
            abbr,
            rrule,
        }
        .push(&mut lines);
    }
    lines.push("END:VTIMEZONE".to_owned());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `\n` -> `\r\n`.
    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn utc(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S")
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    fn at(unix: i64, tz: Option<&str>) -> When {
        When::Instant {
            unix,
            tzid: tz.map(str::to_owned),
        }
    }

    fn tzid_of(w: &Option<When>) -> Option<String> {
        match w {
            Some(When::Instant { tzid, .. }) => tzid.clone(),
            _ => None,
        }
    }

    fn emails(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Physical lines (without their line ends).
    fn physical(b: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = b;
        while let Some(p) = find_eol(rest) {
            out.push(&rest[..p]);
            let n = if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            rest = &rest[p + n..];
        }
        if !rest.is_empty() {
            out.push(rest);
        }
        out
    }

    const VTZ_PARIS: &str = "BEGIN:VTIMEZONE
TZID:Europe/Paris
BEGIN:DAYLIGHT
DTSTART:19700329T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
DTSTART:19701025T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
";

    const MASTER_HEAD: &str = r"BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//EN
X-WR-CALNAME:Work
";

    const MASTER_EVENT: &str = r#"BEGIN:VEVENT
UID:abc@example.com
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Paris:20260310T100000
DTEND;TZID=Europe/Paris:20260310T110000
RRULE:FREQ=WEEKLY;COUNT=10
SUMMARY:Weekly sync
DESCRIPTION:Line one\nLine two\, with a comma and a text long enough to be
  folded over two lines
ORGANIZER;CN=Boss:mailto:Boss@Example.com
ATTENDEE;CN="Ann, A.";PARTSTAT=ACCEPTED:mailto:ann@example.com
ATTENDEE;CN=Bob;PARTSTAT=TENTATIVE;RSVP=TRUE;X-SOMETHING-VERY-LONG=aaaaaaaaaaa
 aaaa:MAILTO:Bob@Example.com
ATTENDEE;CUTYPE=ROOM:urn:uuid:room-1
X-MEETSYNC-MEETING-ID:12345
X-CUSTOM;X-PARAM=1:keep me
EXDATE;TZID=Europe/Paris:20260317T100000,20260324T100000
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:Reminder
ATTENDEE:mailto:alarm@example.com
TRIGGER:-PT15M
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:abc@example.com
RECURRENCE-ID;TZID=Europe/Paris:20260331T100000
DTSTART;TZID=Europe/Paris:20260331T120000
DTEND;TZID=Europe/Paris:20260331T130000
SUMMARY:Moved instance
ATTENDEE:mailto:ann@example.com
END:VEVENT
END:VCALENDAR
"#;

    fn fixture() -> Vec<u8> {
        crlf(&format!("{MASTER_HEAD}{VTZ_PARIS}{MASTER_EVENT}"))
    }

    /// A file with one VEVENT made of `props` (lines joined with `\n`), CRLF.
    fn event(props: &str) -> Vec<u8> {
        crlf(&format!(
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//T//EN\nBEGIN:VEVENT\nUID:u1\n{props}\nEND:VEVENT\nEND:VCALENDAR\n"
        ))
    }

    #[test]
    fn reads_the_fixture() {
        let info = read_event(&fixture()).unwrap();
        assert_eq!(info.uid, "abc@example.com");
        let f = &info.fields;
        assert_eq!(f.summary, "Weekly sync");
        assert_eq!(
            f.description,
            "Line one\nLine two, with a comma and a text long enough to be folded over two lines"
        );
        assert_eq!(f.start, Some(at(utc("20260310T090000"), None)));
        assert_eq!(tzid_of(&f.start).as_deref(), Some("Europe/Paris"));
        assert_eq!(f.end, Some(at(utc("20260310T100000"), None)));
        assert_eq!(f.rrule.as_deref(), Some("FREQ=WEEKLY;COUNT=10"));
        assert_eq!(f.attendees, emails(&["ann@example.com", "bob@example.com"]));
        assert_eq!(info.overrides, 1);
        assert_eq!(info.exdates, 2);
        assert_eq!(info.rdates, 0);
        assert_eq!(info.organizer.as_deref(), Some("boss@example.com"));
        assert_eq!(
            info.x_props,
            vec![
                ("X-MEETSYNC-MEETING-ID".to_owned(), "12345".to_owned()),
                ("X-CUSTOM".to_owned(), "keep me".to_owned()),
            ]
        );
        assert_eq!(info.x_prop("x-meetsync-meeting-id"), Some("12345"));
        assert!(!info.status_cancelled);
    }

    #[test]
    fn reads_lf_only_and_cr_only_files() {
        let lf = String::from_utf8(fixture()).unwrap().replace("\r\n", "\n");
        let want = read_event(&fixture()).unwrap();
        assert_eq!(read_event(lf.as_bytes()).unwrap(), want);
        let cr = lf.replace('\n', "\r");
        assert_eq!(read_event(cr.as_bytes()).unwrap(), want);
        // And editing keeps the style: no CR sneaks into an LF file.
        let mut f = want.fields.clone();
        f.summary = "New".into();
        f.attendees.insert("new@example.com".into());
        let out = apply_fields(lf.as_bytes(), &f).unwrap();
        assert!(!out.contains(&b'\r'));
        assert_eq!(read_event(&out).unwrap().fields, f);
    }

    #[test]
    fn reads_status_rdate_bom_and_master_less_files() {
        let mut b = BOM.to_vec();
        b.extend(event(
            "STATUS:cancelled\nRDATE:20260101T100000Z,20260102T100000Z\nRDATE:20260105T100000Z",
        ));
        let info = read_event(&b).unwrap();
        assert!(info.status_cancelled);
        assert_eq!(info.rdates, 3);
        assert_eq!(info.fields, Fields::default());

        // Only an override: its fields are read.
        let only = event("RECURRENCE-ID:20260101T100000Z\nSUMMARY:Only");
        let info = read_event(&only).unwrap();
        assert_eq!(info.overrides, 1);
        assert_eq!(info.fields.summary, "Only");
    }

    #[test]
    fn errors() {
        assert_eq!(
            read_event(&crlf("BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n")),
            Err(PropsError::NoEvent)
        );
        assert!(matches!(
            read_event(&crlf("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VEVENT\n")),
            Err(PropsError::Malformed(_))
        ));
        assert!(matches!(
            read_event(b"<html>"),
            Err(PropsError::Malformed(_))
        ));
        assert!(matches!(
            read_event(&crlf(
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VTODO\nEND:VCALENDAR\n"
            )),
            Err(PropsError::Malformed(_))
        ));
        let mut bad = event("SUMMARY:x");
        let at = bad.windows(9).position(|w| w == b"SUMMARY:x").unwrap() + 8;
        bad[at] = 0xff;
        assert_eq!(read_event(&bad), Err(PropsError::NotUtf8));
        assert_eq!(
            apply_fields(&bad, &Fields::default()),
            Err(PropsError::NotUtf8)
        );
        assert!(matches!(
            read_event(&event("SUMMARY:no uid").replace_uid()),
            Err(PropsError::Malformed(_))
        ));
        let two = crlf(
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:a\nEND:VEVENT\nBEGIN:VEVENT\nUID:b\nRECURRENCE-ID:20260101T000000Z\nEND:VEVENT\nEND:VCALENDAR\n",
        );
        assert!(matches!(read_event(&two), Err(PropsError::Malformed(_))));
        // A fold inside a UTF-8 sequence is fine.
        let split = crlf("SUMMARY:caf\u{e9}");
        let (head, tail) = split.split_at(split.len() - 1);
        let mut folded = head.to_vec();
        folded.extend_from_slice(b"\r\n ");
        folded.extend_from_slice(tail);
        let props = String::from_utf8_lossy(&folded).into_owned();
        assert!(
            props.contains('\u{fffd}'),
            "the fold must split the sequence"
        );
        let mut file = crlf("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u\n");
        file.extend(folded);
        file.extend(crlf("\nEND:VEVENT\nEND:VCALENDAR\n"));
        assert_eq!(read_event(&file).unwrap().fields.summary, "caf\u{e9}");
    }

    trait ReplaceUid {
        fn replace_uid(self) -> Vec<u8>;
    }
    impl ReplaceUid for Vec<u8> {
        /// Drops the `UID:u1` line.
        fn replace_uid(self) -> Vec<u8> {
            String::from_utf8(self)
                .unwrap()
                .replace("UID:u1\r\n", "")
                .into_bytes()
        }
    }

    #[test]
    fn transplant_moves_exactly_the_named_properties() {
        let local = fixture();
        // The remote uses LF, folds differently, has no RRULE and other attendees.
        let remote = format!(
            "{MASTER_HEAD}{VTZ_PARIS}BEGIN:VEVENT
UID:abc@example.com
SUMMARY:Weekly sync (remote
  edit)
ATTENDEE;CN=Carol:mailto:carol@example.com
X-REMOTE:not copied
DTSTART:20260310T080000Z
ATTENDEE:mailto:ann@example.com
BEGIN:VALARM
ACTION:DISPLAY
SUMMARY:not this one
TRIGGER:-PT5M
END:VALARM
END:VEVENT
END:VCALENDAR
"
        );
        let out = transplant(
            &local,
            remote.as_bytes(),
            &[
                Field::Summary,
                Field::Attendees,
                Field::Rrule,
                Field::Summary,
            ],
        )
        .unwrap();
        let want = crlf(&format!(
            r#"{MASTER_HEAD}{VTZ_PARIS}BEGIN:VEVENT
UID:abc@example.com
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Paris:20260310T100000
DTEND;TZID=Europe/Paris:20260310T110000
SUMMARY:Weekly sync (remote
  edit)
DESCRIPTION:Line one\nLine two\, with a comma and a text long enough to be
  folded over two lines
ORGANIZER;CN=Boss:mailto:Boss@Example.com
ATTENDEE;CN="Ann, A.";PARTSTAT=ACCEPTED:mailto:ann@example.com
ATTENDEE;CUTYPE=ROOM:urn:uuid:room-1
ATTENDEE;CN=Carol:mailto:carol@example.com
X-MEETSYNC-MEETING-ID:12345
X-CUSTOM;X-PARAM=1:keep me
EXDATE;TZID=Europe/Paris:20260317T100000,20260324T100000
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:Reminder
ATTENDEE:mailto:alarm@example.com
TRIGGER:-PT15M
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:abc@example.com
RECURRENCE-ID;TZID=Europe/Paris:20260331T100000
DTSTART;TZID=Europe/Paris:20260331T120000
DTEND;TZID=Europe/Paris:20260331T130000
SUMMARY:Moved instance
ATTENDEE:mailto:ann@example.com
END:VEVENT
END:VCALENDAR
"#
        ));
        assert_eq!(s(&out), s(&want));
        let info = read_event(&out).unwrap();
        assert_eq!(info.fields.summary, "Weekly sync (remote edit)");
        assert_eq!(info.fields.rrule, None);
        assert_eq!(
            info.fields.attendees,
            emails(&["ann@example.com", "carol@example.com"])
        );

        // No fields: byte-identical. All fields from itself: byte-identical.
        assert_eq!(transplant(&local, remote.as_bytes(), &[]).unwrap(), local);
        assert_eq!(transplant(&local, &local, &Field::ALL).unwrap(), local);
    }

    #[test]
    fn update_from_platform_keeps_what_the_user_added() {
        // the platform's file as first written, then the user's additions
        let synced = crlf(&format!(
            "{MASTER_HEAD}{VTZ_PARIS}BEGIN:VEVENT
UID:abc@example.com
DTSTAMP:20260101T000000Z
SEQUENCE:1
DTSTART;TZID=Europe/Paris:20260310T100000
DTEND;TZID=Europe/Paris:20260310T110000
RRULE:FREQ=WEEKLY;COUNT=10
SUMMARY:Weekly sync
URL:https://meet.example/j/1
ATTENDEE;CN=ann@example.com;PARTSTAT=NEEDS-ACTION:mailto:ann@example.com
ATTENDEE;CN=bob@example.com;PARTSTAT=NEEDS-ACTION:mailto:bob@example.com
CATEGORIES:Work
X-MY-NOTE:bring the slides
COLOR:red
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:Reminder
TRIGGER:-PT15M
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:abc@example.com
RECURRENCE-ID;TZID=Europe/Paris:20260317T100000
DTSTART;TZID=Europe/Paris:20260317T120000
DTEND;TZID=Europe/Paris:20260317T130000
SUMMARY:Moved
BEGIN:VALARM
ACTION:DISPLAY
TRIGGER:-PT5M
END:VALARM
END:VEVENT
END:VCALENDAR
"
        ));
        let synced = String::from_utf8(synced)
            .unwrap()
            .replace(
                "ATTENDEE;CN=ann@example.com;PARTSTAT=NEEDS-ACTION",
                "ATTENDEE;CN=\"Ann A.\";PARTSTAT=ACCEPTED",
            )
            .into_bytes();
        // the platform moved and renamed the meeting, dropped Bob, added Carol and a New York
        // override, removed the old override, renders LF, and has a DESCRIPTION now
        let remote = "BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Platform//EN
BEGIN:VTIMEZONE
TZID:America/New_York
BEGIN:STANDARD
DTSTART:19701101T020000
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:platform-uid
DTSTAMP:20260102T000000Z
SEQUENCE:2
DTSTART:20260311T090000Z
DTEND:20260311T100000Z
RRULE:FREQ=WEEKLY;COUNT=10
SUMMARY:Weekly sync (moved)
DESCRIPTION:Agenda
URL:https://meet.example/j/1
ATTENDEE;CN=ann@example.com;PARTSTAT=NEEDS-ACTION:mailto:ann@example.com
ATTENDEE;CN=carol@example.com;PARTSTAT=NEEDS-ACTION:mailto:carol@example.com
END:VEVENT
BEGIN:VEVENT
UID:platform-uid
RECURRENCE-ID:20260325T090000Z
DTSTART;TZID=America/New_York:20260325T060000
DTEND;TZID=America/New_York:20260325T070000
SUMMARY:Special
END:VEVENT
END:VCALENDAR
"
        .to_string();
        let out = update_from_platform(&synced, remote.as_bytes(), &["SEQUENCE"], &[]).unwrap();
        let text = s(&out).to_string();
        let info = read_event(&out).unwrap();
        // the platform's fields follow the platform
        assert_eq!(info.uid, "abc@example.com", "the local UID stays");
        assert_eq!(info.fields.summary, "Weekly sync (moved)");
        assert_eq!(info.fields.description, "Agenda");
        assert_eq!(
            info.fields.start.as_ref().unwrap().unix(),
            utc("20260311T090000")
        );
        assert_eq!(
            info.fields.attendees,
            emails(&["ann@example.com", "carol@example.com"])
        );
        assert!(text.contains("SEQUENCE:2\r\n") && !text.contains("SEQUENCE:1"));
        assert_eq!(info.overrides, 1);
        assert!(text.contains("SUMMARY:Special") && !text.contains("SUMMARY:Moved"));
        assert!(text.contains("TZID:America/New_York"), "VTIMEZONE carried");
        // what the user added stays, byte-exact
        for kept in [
            "ATTENDEE;CN=\"Ann A.\";PARTSTAT=ACCEPTED:mailto:ann@example.com\r\n",
            "CATEGORIES:Work\r\n",
            "X-MY-NOTE:bring the slides\r\n",
            "COLOR:red\r\n",
            "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n",
            "X-WR-CALNAME:Work\r\n",
        ] {
            assert!(text.contains(kept), "{kept:?} lost:\n{text}");
        }
        assert!(!text.contains("bob@example.com"));
        // the platform's new lines sit before the VALARM, the file has one line-end style
        let desc = text.find("DESCRIPTION:Agenda").unwrap();
        assert!(desc < text.find("BEGIN:VALARM").unwrap());
        assert_eq!(
            out.windows(2).filter(|w| w == b"\r\n").count(),
            physical(&out).len()
        );
        assert!(text.contains("UID:abc@example.com\r\nRECURRENCE-ID:20260325T090000Z"));
        assert!(!text.contains("platform-uid"));
        // the same platform version again: nothing changes
        assert_eq!(
            update_from_platform(&out, remote.as_bytes(), &["SEQUENCE"], &[]).unwrap(),
            out
        );
        // a file with nothing of the user's takes the platform's file as it is (here: LF)
        let old_version = crlf(
            &remote
                .replace("SUMMARY:Weekly sync (moved)", "SUMMARY:Weekly sync")
                .replace("UID:platform-uid", "UID:abc@example.com"),
        );
        let got = update_from_platform(&old_version, remote.as_bytes(), &[], &[]).unwrap();
        assert_eq!(
            s(&got),
            remote.replace("UID:platform-uid", "UID:abc@example.com")
        );
        // a field the user changed and that still has to be pushed stays local
        let kept =
            update_from_platform(&synced, remote.as_bytes(), &[], &[Field::Summary]).unwrap();
        let info = read_event(&kept).unwrap();
        assert_eq!(info.fields.summary, "Weekly sync");
        assert_eq!(info.fields.description, "Agenda");
    }

    #[test]
    fn transplant_places_new_lines_before_end_and_carries_vtimezones() {
        let local = event("SUMMARY:Local\nDTSTART:20260310T090000Z");
        let vtz_ny = "BEGIN:VTIMEZONE\nTZID:America/New_York\nBEGIN:STANDARD\nDTSTART:19701101T020000\nTZOFFSETFROM:-0400\nTZOFFSETTO:-0500\nEND:STANDARD\nEND:VTIMEZONE\n";
        let remote = format!(
            "BEGIN:VCALENDAR\n{VTZ_PARIS}{vtz_ny}BEGIN:VEVENT\nUID:u1\nDTSTART;TZID=Europe/Paris:20260310T110000\nDTEND;TZID=America/New_York:20260310T060000\nRRULE:FREQ=DAILY;COUNT=2\nEND:VEVENT\nEND:VCALENDAR\n"
        );
        let out = transplant(
            &local,
            remote.as_bytes(),
            &[Field::Start, Field::End, Field::Rrule],
        )
        .unwrap();
        let want = crlf(&format!(
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//T//EN\n{VTZ_PARIS}{vtz_ny}BEGIN:VEVENT\nUID:u1\nSUMMARY:Local\nDTSTART;TZID=Europe/Paris:20260310T110000\nDTEND;TZID=America/New_York:20260310T060000\nRRULE:FREQ=DAILY;COUNT=2\nEND:VEVENT\nEND:VCALENDAR\n"
        ));
        assert_eq!(s(&out), s(&want));
        let f = read_event(&out).unwrap().fields;
        assert_eq!(f.start, Some(at(utc("20260310T100000"), None)));
        assert_eq!(f.end, Some(at(utc("20260310T100000"), None)));

        // Already there: not copied twice. A TZID the remote has no VTIMEZONE for: nothing.
        let again = transplant(&out, remote.as_bytes(), &[Field::Start]).unwrap();
        assert_eq!(again, out);
        let remote2 = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:u1\nDTSTART;TZID=Asia/Tokyo:20260310T110000\nEND:VEVENT\nEND:VCALENDAR\n";
        let out2 = transplant(&local, remote2.as_bytes(), &[Field::Start]).unwrap();
        assert!(!s(&out2).contains("BEGIN:VTIMEZONE"));
        assert!(s(&out2).contains("\r\nDTSTART;TZID=Asia/Tokyo:20260310T110000\r\n"));
        assert_eq!(
            transplant(
                &local,
                b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                &[Field::Start]
            ),
            Err(PropsError::NoEvent)
        );
    }

    #[test]
    fn unchanged_fields_give_identical_bytes() {
        let lf = String::from_utf8(fixture()).unwrap().replace("\r\n", "\n");
        let files = [
            fixture(),
            lf.into_bytes(),
            event("DTSTART;VALUE=DATE:20260101\nDURATION:P2D\nSUMMARY:a\\,b"),
            event(
                "DTSTART;TZID=/mozilla.org/20050126_1/Europe/Berlin:20260101T100000\nDURATION:PT1H",
            ),
            event("DTSTART:20260101T100000\nSUMMARY;LANGUAGE=de:Stra\u{df}e\\x"),
            event(""),
        ];
        for b in files {
            let f = read_event(&b).unwrap().fields;
            assert_eq!(s(&apply_fields(&b, &f).unwrap()), s(&b));
        }
    }

    #[test]
    fn changing_only_the_summary_changes_only_that_line() {
        let b = fixture();
        let mut f = read_event(&b).unwrap().fields;
        f.summary = "Renamed; now, with \\ specials".into();
        let out = apply_fields(&b, &f).unwrap();
        let want = s(&b).replace(
            "SUMMARY:Weekly sync\r\n",
            "SUMMARY:Renamed\\; now\\, with \\\\ specials\r\n",
        );
        assert_eq!(s(&out), want);
        assert_eq!(read_event(&out).unwrap().fields, f);
        // Removing it drops the line; adding it back puts it before END:VEVENT.
        f.summary.clear();
        let out = apply_fields(&b, &f).unwrap();
        assert_eq!(s(&out), s(&b).replace("SUMMARY:Weekly sync\r\n", ""));
        f.summary = "Back".into();
        let back = apply_fields(&out, &f).unwrap();
        assert!(s(&back).contains("END:VALARM\r\nSUMMARY:Back\r\nEND:VEVENT\r\n"));
    }

    #[test]
    fn non_ascii_summary_is_folded_at_75_octets() {
        let b = event("SUMMARY:x");
        // Shifted by 0..4 ASCII bytes so the fold points land on every byte of the
        // multibyte characters.
        for shift in 0..4 {
            let summary = format!(
                "{}{}",
                "a".repeat(shift),
                "Réunion d’équipe — 東京オフィスとの定例会議 🎉🎉🎉 ".repeat(6)
            );
            let f = Fields {
                summary: summary.clone(),
                ..Fields::default()
            };
            let out = apply_fields(&b, &f).unwrap();
            let lines = physical(&out);
            let folded: Vec<&[u8]> = lines
                .iter()
                .copied()
                .skip_while(|l| !l.starts_with(b"SUMMARY:"))
                .take_while(|l| l.starts_with(b"SUMMARY:") || l.starts_with(b" "))
                .collect();
            assert!(folded.len() >= 6, "summary should take several lines");
            for l in &folded {
                assert!(
                    l.len() <= 75,
                    "{} octets: {:?}",
                    l.len(),
                    String::from_utf8_lossy(l)
                );
                // Full lines: at most one character (≤ 4 octets) short of the limit.
                assert!(l.len() > 71 || std::ptr::eq(*l, *folded.last().unwrap()));
                std::str::from_utf8(l).expect("a fold split a UTF-8 sequence");
            }
            assert_eq!(read_event(&out).unwrap().fields.summary, summary);
        }
        // ASCII: exactly 75 octets per physical line.
        let f = Fields {
            summary: "x".repeat(300),
            ..Fields::default()
        };
        let out = apply_fields(&b, &f).unwrap();
        let lens: Vec<usize> = physical(&out)
            .iter()
            .filter(|l| l.starts_with(b"SUMMARY:") || l.starts_with(b" "))
            .map(|l| l.len())
            .collect();
        assert_eq!(lens, vec![75, 75, 75, 75, 12]);
        assert_eq!(read_event(&out).unwrap().fields, f);
    }

    #[test]
    fn description_with_specials_round_trips() {
        let b = event("SUMMARY:x");
        let d = "a\nb; c, d\\e\n\nf,;\\n g";
        let f = Fields {
            summary: "x".into(),
            description: d.into(),
            ..Fields::default()
        };
        let out = apply_fields(&b, &f).unwrap();
        assert!(s(&out).contains("DESCRIPTION:a\\nb\\; c\\, d\\\\e\\n\\nf\\,\\;\\\\n g\r\n"));
        assert_eq!(read_event(&out).unwrap().fields.description, d);
        assert_eq!(unescape_text("a\\Nb\\:c\\"), "a\nb\\:c\\");
        assert_eq!(escape_text("a\r\nb\rc"), "a\\nb\\nc");
    }

    #[test]
    fn paris_dst_edges() {
        // 2026-03-29 02:30 does not exist in Paris (moves forward to 03:30 CEST = 01:30Z);
        // 2026-10-25 02:30 happens twice (00:30Z and 01:30Z; the earlier is taken).
        let b = event(
            "DTSTART;TZID=Europe/Paris:20260329T023000\nDTEND;TZID=Europe/Paris:20261025T023000",
        );
        let f = read_event(&b).unwrap().fields;
        assert_eq!(f.start, Some(at(utc("20260329T013000"), None)));
        assert_eq!(f.end, Some(at(utc("20261025T003000"), None)));
        assert_eq!(tzid_of(&f.end).as_deref(), Some("Europe/Paris"));
        // Unchanged: the non-existent wall-clock stays as written.
        let mut g = f.clone();
        g.summary = "x".into();
        let out = apply_fields(&b, &g).unwrap();
        assert!(s(&out).contains("DTSTART;TZID=Europe/Paris:20260329T023000\r\n"));
        assert!(s(&out).contains("DTEND;TZID=Europe/Paris:20261025T023000\r\n"));

        // Written anew: the same wall-clock for the ambiguous one, the real one for the gap.
        let b2 = event("SUMMARY:y");
        let out = apply_fields(&b2, &f).unwrap();
        assert!(s(&out).contains("DTSTART;TZID=Europe/Paris:20260329T033000\r\n"));
        assert!(s(&out).contains("DTEND;TZID=Europe/Paris:20261025T023000\r\n"));
        assert_eq!(read_event(&out).unwrap().fields, f);
        assert_eq!(s(&out).matches("BEGIN:VTIMEZONE").count(), 1);
        assert!(s(&out).contains("TZID:Europe/Paris\r\n"));
        // The second 02:30 cannot be written with the TZID: UTC instead.
        let later = Fields {
            start: Some(at(utc("20261025T013000"), Some("Europe/Paris"))),
            ..Fields::default()
        };
        let out = apply_fields(&b2, &later).unwrap();
        assert!(s(&out).contains("DTSTART:20261025T013000Z\r\n"));
        assert!(!s(&out).contains("VTIMEZONE"));
        assert_eq!(read_event(&out).unwrap().fields.start, later.start);
    }

    #[test]
    fn mozilla_tzid_is_resolved_and_reused() {
        let b = crlf(&format!(
            "BEGIN:VCALENDAR\n{}BEGIN:VEVENT\nUID:u\nDTSTART;TZID=/mozilla.org/20050126_1/Europe/Paris:20260601T100000\nEND:VEVENT\nEND:VCALENDAR\n",
            VTZ_PARIS.replace("TZID:Europe/Paris", "TZID:/mozilla.org/20050126_1/Europe/Paris")
        ));
        let f = read_event(&b).unwrap().fields;
        assert_eq!(f.start, Some(at(utc("20260601T080000"), None)));
        assert_eq!(tzid_of(&f.start).as_deref(), Some("Europe/Paris"));
        let g = Fields {
            start: Some(at(utc("20260601T090000"), Some("Europe/Paris"))),
            ..f
        };
        let out = apply_fields(&b, &g).unwrap();
        assert!(s(&out)
            .contains("DTSTART;TZID=/mozilla.org/20050126_1/Europe/Paris:20260601T110000\r\n"));
        assert_eq!(s(&out).matches("BEGIN:VTIMEZONE").count(), 1);
    }

    #[test]
    fn outlook_windows_tzids_are_resolved_and_reused() {
        for (tzid, param) in [
            ("Romance Standard Time", "Romance Standard Time".to_string()),
            (
                "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris",
                "\"(UTC+01:00) Brussels, Copenhagen, Madrid, Paris\"".to_string(),
            ),
        ] {
            let b = crlf(&format!(
                "BEGIN:VCALENDAR\n{}BEGIN:VEVENT\nUID:u\nDTSTART;TZID={param}:20260601T100000\nDTEND;TZID={param}:20260601T110000\nEND:VEVENT\nEND:VCALENDAR\n",
                VTZ_PARIS.replace("TZID:Europe/Paris", &format!("TZID:{tzid}"))
            ));
            let f = read_event(&b).unwrap().fields;
            assert_eq!(f.start, Some(at(utc("20260601T080000"), None)), "{tzid}");
            assert_eq!(tzid_of(&f.start).as_deref(), Some("Europe/Paris"), "{tzid}");
            let g = Fields {
                start: Some(at(utc("20260601T090000"), Some("Europe/Paris"))),
                ..f
            };
            let out = apply_fields(&b, &g).unwrap();
            assert!(
                s(&out)
                    .replace("\r\n ", "")
                    .contains(&format!("DTSTART;TZID={param}:20260601T110000\r\n")),
                "{}",
                s(&out)
            );
            assert_eq!(s(&out).matches("BEGIN:VTIMEZONE").count(), 1);
            assert_eq!(read_event(&out).unwrap().fields.start, g.start);
        }
    }

    #[test]
    fn all_day_events() {
        let b = event("DTSTART;VALUE=DATE:20260101\nDTEND:20260103");
        let f = read_event(&b).unwrap().fields;
        let d = |y, m, d| When::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert_eq!(f.start, Some(d(2026, 1, 1)));
        assert_eq!(f.end, Some(d(2026, 1, 3)));
        let g = Fields {
            start: Some(d(2026, 2, 1)),
            end: Some(d(2026, 2, 2)),
            ..f.clone()
        };
        let out = apply_fields(&b, &g).unwrap();
        assert_eq!(
            s(&out),
            s(&event(
                "DTSTART;VALUE=DATE:20260201\nDTEND;VALUE=DATE:20260202"
            ))
        );
        // Date <-> instant is a change.
        let h = Fields {
            start: Some(at(d(2026, 1, 1).unix(), None)),
            ..f
        };
        let out = apply_fields(&b, &h).unwrap();
        assert!(s(&out).contains("DTSTART:20260101T000000Z\r\n"));
        assert_eq!(read_event(&out).unwrap().fields, h);
    }

    #[test]
    fn duration_becomes_dtend_when_the_end_changes() {
        let b = event("DTSTART:20260101T100000Z\nDURATION:PT1H\nSUMMARY:s");
        let f = read_event(&b).unwrap().fields;
        assert_eq!(f.end, Some(at(utc("20260101T110000"), None)));

        // Start moves with the same duration: DURATION stays.
        let moved = Fields {
            start: Some(at(utc("20260101T120000"), None)),
            end: Some(at(utc("20260101T130000"), None)),
            ..f.clone()
        };
        let out = apply_fields(&b, &moved).unwrap();
        assert_eq!(
            s(&out),
            s(&event("DTSTART:20260101T120000Z\nDURATION:PT1H\nSUMMARY:s"))
        );
        // Start moves, end stays: DTEND replaces DURATION in place.
        let stretched = Fields {
            start: Some(at(utc("20260101T090000"), None)),
            ..f.clone()
        };
        let out = apply_fields(&b, &stretched).unwrap();
        assert_eq!(
            s(&out),
            s(&event(
                "DTSTART:20260101T090000Z\nDTEND:20260101T110000Z\nSUMMARY:s"
            ))
        );
        assert_eq!(read_event(&out).unwrap().fields, stretched);
        // Only the end changes.
        let longer = Fields {
            end: Some(at(utc("20260101T113000"), None)),
            ..f.clone()
        };
        let out = apply_fields(&b, &longer).unwrap();
        assert_eq!(
            s(&out),
            s(&event(
                "DTSTART:20260101T100000Z\nDTEND:20260101T113000Z\nSUMMARY:s"
            ))
        );
        // No end.
        let open = Fields { end: None, ..f };
        let out = apply_fields(&b, &open).unwrap();
        assert_eq!(s(&out), s(&event("DTSTART:20260101T100000Z\nSUMMARY:s")));

        // All-day with whole days: a date.
        let b = event("DTSTART;VALUE=DATE:20260101\nDURATION:P1W");
        assert_eq!(
            read_event(&b).unwrap().fields.end,
            Some(When::Date(NaiveDate::from_ymd_opt(2026, 1, 8).unwrap()))
        );
    }

    #[test]
    fn attendee_changes_keep_untouched_lines() {
        let b = fixture();
        let mut f = read_event(&b).unwrap().fields;
        f.attendees.remove("ann@example.com");
        f.attendees.insert("dave@example.com".into());
        f.attendees
            .insert("a-very-long-address.for-folding@subdomain.example-company.com".into());
        let out = apply_fields(&b, &f).unwrap();
        let want = s(&b).replace(
            "ATTENDEE;CN=\"Ann, A.\";PARTSTAT=ACCEPTED:mailto:ann@example.com\r\n",
            "",
        );
        let want = want.replace(
            "ATTENDEE;CUTYPE=ROOM:urn:uuid:room-1\r\n",
            "ATTENDEE;CUTYPE=ROOM:urn:uuid:room-1\r\n\
             ATTENDEE;CN=a-very-long-address.for-folding@subdomain.example-company.com;R\r\n \
             OLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:a-very-long-add\r\n \
             ress.for-folding@subdomain.example-company.com\r\n\
             ATTENDEE;CN=dave@example.com;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSV\r\n \
             P=TRUE:mailto:dave@example.com\r\n",
        );
        assert_eq!(s(&out), want);
        assert_eq!(read_event(&out).unwrap().fields, f);
        // The override's and the alarm's ATTENDEE lines are untouched.
        assert!(s(&out).contains("ATTENDEE:mailto:alarm@example.com\r\n"));
        assert!(s(&out).contains("SUMMARY:Moved instance\r\nATTENDEE:mailto:ann@example.com\r\n"));

        // All gone: only the non-mailto one stays.
        f.attendees.clear();
        let out = apply_fields(&b, &f).unwrap();
        assert_eq!(s(&out).matches("\r\nATTENDEE").count(), 3);
        assert_eq!(read_event(&out).unwrap().fields, f);
    }

    #[test]
    fn with_uid_changes_master_and_overrides() {
        let b = fixture();
        let out = with_uid(&b, "abc@example.com-conflict-1").unwrap();
        assert_eq!(
            s(&out),
            s(&b).replace(
                "UID:abc@example.com\r\n",
                "UID:abc@example.com-conflict-1\r\n"
            )
        );
        assert_eq!(s(&out).matches("UID:abc@example.com-conflict-1").count(), 2);
        let info = read_event(&out).unwrap();
        assert_eq!(info.uid, "abc@example.com-conflict-1");
        assert_eq!(info.overrides, 1);
        assert_eq!(with_uid(&b, "abc@example.com").unwrap(), b);
        let none = event("SUMMARY:x").replace_uid();
        let out = with_uid(&none, "fresh").unwrap();
        assert_eq!(
            s(&out),
            s(&event("SUMMARY:x").replace_uid())
                .replace("BEGIN:VEVENT\r\n", "BEGIN:VEVENT\r\nUID:fresh\r\n")
        );
        assert!(matches!(
            with_uid(&b, "a\nb"),
            Err(PropsError::InvalidValue(_))
        ));
    }

    #[test]
    fn set_property_adds_then_replaces() {
        let b = event("SUMMARY:x");
        let added = set_property(&b, "x-meetsync-meeting-id", "m-1").unwrap();
        assert_eq!(s(&added), s(&event("SUMMARY:x\nX-MEETSYNC-MEETING-ID:m-1")));
        assert_eq!(
            read_event(&added).unwrap().x_prop("X-MEETSYNC-MEETING-ID"),
            Some("m-1")
        );
        let replaced = set_property(&added, "X-MEETSYNC-MEETING-ID", "m-2").unwrap();
        assert_eq!(
            s(&replaced),
            s(&event("SUMMARY:x\nX-MEETSYNC-MEETING-ID:m-2"))
        );
        assert_eq!(
            set_property(&replaced, "X-MEETSYNC-MEETING-ID", "m-2").unwrap(),
            replaced
        );
        // On the master only, with duplicates collapsed.
        let b = fixture();
        let out = set_property(&b, "SUMMARY", "Only master").unwrap();
        assert_eq!(
            s(&out),
            s(&b).replace("SUMMARY:Weekly sync\r\n", "SUMMARY:Only master\r\n")
        );
        let dup = event("X-A:1\nSUMMARY:x\nX-A:2");
        assert_eq!(
            s(&set_property(&dup, "X-A", "3").unwrap()),
            s(&event("X-A:3\nSUMMARY:x"))
        );
        assert!(matches!(
            set_property(&dup, "END", "VEVENT"),
            Err(PropsError::InvalidName(_))
        ));
        assert!(matches!(
            set_property(&dup, "X A", "1"),
            Err(PropsError::InvalidName(_))
        ));
        assert!(matches!(
            set_property(&dup, "X-A", "1\r\n"),
            Err(PropsError::InvalidValue(_))
        ));
    }

    #[test]
    fn new_event_reads_back() {
        let f = Fields {
            summary: "Kick-off, part 1".into(),
            description: "Agenda:\n1. intro".into(),
            start: Some(at(utc("20260601T080000"), Some("America/New_York"))),
            end: Some(at(utc("20260601T090000"), None)),
            rrule: Some("FREQ=WEEKLY;BYDAY=MO".into()),
            attendees: emails(&["a@example.com", "b@example.com"]),
        };
        let extra = vec!["X-MEETSYNC-MEETING-ID:42".to_owned()];
        let b = new_event("uid-1", &f, utc("20260101T000000"), &extra);
        let text = s(&b);
        assert!(text.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//meetsync//EN\r\nBEGIN:VTIMEZONE\r\nTZID:America/New_York\r\n"));
        assert!(text.contains("\r\nDTSTAMP:20260101T000000Z\r\n"));
        assert!(text.contains("\r\nDTSTART;TZID=America/New_York:20260601T040000\r\n"));
        assert!(text.contains("\r\nDTEND:20260601T090000Z\r\n"));
        assert!(text.contains("\r\nX-MEETSYNC-MEETING-ID:42\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"));
        let info = read_event(&b).unwrap();
        assert_eq!(info.uid, "uid-1");
        assert_eq!(info.fields, f);
        assert_eq!(
            tzid_of(&info.fields.start).as_deref(),
            Some("America/New_York")
        );
        assert_eq!(info.x_prop("X-MEETSYNC-MEETING-ID"), Some("42"));
        assert_eq!(apply_fields(&b, &f).unwrap(), b);
        assert_eq!(crate::ics::uid_of_ics(&b).as_deref(), Some("uid-1"));
    }

    #[test]
    fn generated_vtimezones() {
        let paris = vtimezone_lines(Tz::Europe__Paris, 2026).join("\n");
        assert_eq!(
            paris,
            "BEGIN:VTIMEZONE\nTZID:Europe/Paris\nBEGIN:DAYLIGHT\nDTSTART:19700329T020000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nTZNAME:CEST\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\nEND:DAYLIGHT\nBEGIN:STANDARD\nDTSTART:19701025T030000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nTZNAME:CET\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\nEND:STANDARD\nEND:VTIMEZONE"
        );
        let ny = vtimezone_lines(Tz::America__New_York, 2026).join("\n");
        assert!(ny.contains("DTSTART:19700308T020000\nTZOFFSETFROM:-0500\nTZOFFSETTO:-0400\nTZNAME:EDT\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU"));
        assert!(ny.contains("DTSTART:19701101T020000\nTZOFFSETFROM:-0400\nTZOFFSETTO:-0500\nTZNAME:EST\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU"));
        let kolkata = vtimezone_lines(Tz::Asia__Kolkata, 2026).join("\n");
        assert_eq!(
            kolkata,
            "BEGIN:VTIMEZONE\nTZID:Asia/Kolkata\nBEGIN:STANDARD\nDTSTART:19700101T000000\nTZOFFSETFROM:+0530\nTZOFFSETTO:+0530\nTZNAME:IST\nEND:STANDARD\nEND:VTIMEZONE"
        );
        let howe = vtimezone_lines(Tz::Australia__Lord_Howe, 2026).join("\n");
        assert!(howe.contains("TZOFFSETFROM:+1030\nTZOFFSETTO:+1100"));
        assert!(howe.contains("BYMONTH=10;BYDAY=1SU"));
        assert_eq!(fmt_offset(-(3600 * 9 + 30 * 60 + 5)), "-093005");
    }

    // ---------------------------------------------------------------------------------------
    // Property tests.

    const ZONES: [Option<&str>; 7] = [
        None,
        Some("Europe/Paris"),
        Some("America/New_York"),
        Some("Asia/Kolkata"),
        Some("Australia/Lord_Howe"),
        Some("Pacific/Chatham"),
        Some("UTC"),
    ];

    fn text_strategy() -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            4 => any::<char>().prop_filter("no control chars", |c| !c.is_control()),
            1 => prop::sample::select(vec!['\n', ',', ';', '\\', ' ', ':', '"', 'n']),
        ];
        prop::collection::vec(ch, 0..120).prop_map(|v| v.into_iter().collect())
    }

    fn when_strategy() -> impl Strategy<Value = Option<When>> {
        let instant = (
            631_152_000i64..4_102_444_800,
            prop::sample::select(ZONES.to_vec()),
        )
            .prop_map(|(u, z)| Some(at(u, z)));
        let date = (0i64..40_000).prop_map(|d| {
            Some(When::Date(
                NaiveDate::from_ymd_opt(1990, 1, 1).unwrap() + chrono::Days::new(d as u64),
            ))
        });
        prop_oneof![1 => Just(None), 4 => instant, 1 => date]
    }

    fn fields_strategy() -> impl Strategy<Value = Fields> {
        (
            text_strategy(),
            text_strategy(),
            when_strategy(),
            when_strategy(),
            prop::option::of(prop::sample::select(vec![
                "FREQ=DAILY;COUNT=5".to_owned(),
                "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20301231T235959Z".to_owned(),
                format!("FREQ=MONTHLY;BYMONTHDAY={}", "1,".repeat(40) + "2"),
            ])),
            prop::collection::btree_set("[a-z]{1,12}@(example\\.com|x\\.org)", 0..5),
        )
            .prop_map(
                |(summary, description, start, end, rrule, attendees)| Fields {
                    summary,
                    description,
                    start,
                    end,
                    rrule,
                    attendees,
                },
            )
    }

    /// Folds `line` at random widths (anywhere, even inside UTF-8 sequences) with `eol`.
    fn fold_randomly(line: &str, widths: &[usize], eol: &str) -> Vec<u8> {
        let b = line.as_bytes();
        let mut out = Vec::new();
        let mut pos = 0;
        for &w in widths {
            if pos + w >= b.len() {
                break;
            }
            out.extend_from_slice(&b[pos..pos + w]);
            out.extend_from_slice(eol.as_bytes());
            out.push(if w % 2 == 0 { b' ' } else { b'\t' });
            pos += w;
        }
        out.extend_from_slice(&b[pos..]);
        out.extend_from_slice(eol.as_bytes());
        out
    }

    /// Event files written the way other clients might: any property order, DURATION or DTEND,
    /// TZIDs with prefixes, floating times, random folding, LF or CRLF, alarms and overrides.
    fn file_strategy() -> impl Strategy<Value = Vec<u8>> {
        let tzid = prop::sample::select(vec![
            "",
            "Europe/Paris",
            "/mozilla.org/20050126_1/America/New_York",
            "Asia/Kolkata",
            "Unknown/Zone",
        ]);
        let dt = (
            1990i32..2100,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            any::<bool>(),
        );
        let line = prop_oneof![
            text_strategy().prop_map(|t| format!("SUMMARY:{}", escape_text(&t))),
            text_strategy().prop_map(|t| format!("DESCRIPTION;LANGUAGE=en:{}", escape_text(&t))),
            (tzid.clone(), dt.clone()).prop_map(|(z, (y, mo, d, h, mi, utc))| {
                let v = format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}00");
                if utc {
                    format!("DTSTART:{v}Z")
                } else if z.is_empty() {
                    format!("DTSTART:{v}")
                } else {
                    format!("DTSTART;TZID={z}:{v}")
                }
            }),
            (tzid, dt).prop_map(|(z, (y, mo, d, h, mi, _))| format!(
                "DTEND;TZID={z}:{y:04}{mo:02}{d:02}T{h:02}{mi:02}00"
            )),
            (1u32..100).prop_map(|h| format!("DURATION:PT{h}H30M")),
            (1990i32..2100).prop_map(|y| format!("DTSTART;VALUE=DATE:{y}0704")),
            Just("RRULE:FREQ=DAILY;COUNT=3".to_owned()),
            "[a-zA-Z]{1,8}".prop_map(|n| format!(
                "ATTENDEE;CN=\"{n}, X\";PARTSTAT=ACCEPTED:MailTo:{n}@Example.com"
            )),
            Just("ATTENDEE:urn:uuid:1234".to_owned()),
            Just("X-MEETSYNC-MEETING-ID:987".to_owned()),
            Just("X-ALT-DESC;FMTTYPE=text/html:<p>hi</p>".to_owned()),
            Just(
                "BEGIN:VALARM\nACTION:DISPLAY\nSUMMARY:alarm\nTRIGGER:-PT5M\nEND:VALARM".to_owned()
            ),
        ];
        (
            prop::collection::vec((line, prop::collection::vec(1usize..90, 0..4)), 0..14),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(lines, lf, with_override)| {
                let eol = if lf { "\n" } else { "\r\n" };
                let mut out = Vec::new();
                let head = format!("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//gen//EN\n{VTZ_PARIS}BEGIN:VEVENT\nUID:gen-1\n");
                for l in head.lines() {
                    out.extend(fold_randomly(l, &[], eol));
                }
                for (l, widths) in lines {
                    for (k, part) in l.lines().enumerate() {
                        out.extend(fold_randomly(part, if k == 0 { &widths } else { &[] }, eol));
                    }
                }
                let mut tail = "END:VEVENT\n".to_owned();
                if with_override {
                    tail.push_str("BEGIN:VEVENT\nUID:gen-1\nRECURRENCE-ID:20300101T000000Z\nSUMMARY:o\nEND:VEVENT\n");
                }
                tail.push_str("X-CAL-LEVEL:after\nEND:VCALENDAR\n");
                for l in tail.lines() {
                    out.extend(fold_randomly(l, &[], eol));
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn apply_read_is_identity(file in file_strategy()) {
            let f = read_event(&file).unwrap().fields;
            let out = apply_fields(&file, &f).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&file));
        }

        #[test]
        fn written_fields_read_back(file in file_strategy(), f in fields_strategy()) {
            let before = read_event(&file).unwrap();
            let out = apply_fields(&file, &f).unwrap();
            let after = read_event(&out).unwrap();
            prop_assert_eq!(&after.fields, &f);
            // The rest of the event is as it was.
            prop_assert_eq!(&after.uid, &before.uid);
            prop_assert_eq!(&after.x_props, &before.x_props);
            prop_assert_eq!(after.overrides, before.overrides);
            // Zones survive unless the wall-clock time is the later of an ambiguous pair.
            for (w, r) in [(&f.start, &after.fields.start), (&f.end, &after.fields.end)] {
                if let Some(When::Instant { unix, tzid: Some(z) }) = w {
                    let tz: Tz = z.parse().unwrap();
                    let local = DateTime::from_timestamp(*unix, 0).unwrap().with_timezone(&tz).naive_local();
                    let earliest = tz.from_local_datetime(&local).earliest().unwrap().timestamp();
                    let want = (!is_utc(tz) && earliest == *unix).then(|| z.clone());
                    prop_assert_eq!(tzid_of(r), want);
                }
            }
            // Stable: writing again changes nothing; line ends are not mixed.
            prop_assert_eq!(apply_fields(&out, &f).unwrap(), out.clone());
            let lf = !file.contains(&b'\r');
            prop_assert_eq!(!out.contains(&b'\r'), lf);
            // Untouched lines are still there.
            prop_assert!(String::from_utf8_lossy(&out).contains("X-CAL-LEVEL:after"));
            // Generated lines respect the fold limit.
            let orig: BTreeSet<&[u8]> = physical(&file).into_iter().collect();
            for l in physical(&out) {
                prop_assert!(orig.contains(l) || l.len() <= 75, "{:?}", String::from_utf8_lossy(l));
            }
        }

        #[test]
        fn new_event_round_trips(f in fields_strategy()) {
            let b = new_event("p-1", &f, 0, &[]);
            prop_assert_eq!(&read_event(&b).unwrap().fields, &f);
            prop_assert_eq!(apply_fields(&b, &f).unwrap(), b);
        }
    }
}
