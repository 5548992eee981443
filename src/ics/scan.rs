//! One pass over the feed body: calendars, their prolog lines, and the top-level components,
//! with the few properties we need remembered as line positions (nothing is unfolded or
//! copied unless it is needed).

use std::collections::HashMap;

use super::lines::{is_valid_name, param, parse_content, trim, Line, LineKind, Lines};
use super::{FeedError, SkippedItem};

/// Deepest component nesting accepted, counting VCALENDAR as level 1
/// (VCALENDAR > VEVENT > VALARM is 3). A component nesting deeper is skipped.
pub const MAX_DEPTH: usize = 8;

/// At most this many warnings are kept (the rest are only counted).
const MAX_WARNINGS: usize = 100;

/// The prolog and the VTIMEZONEs are copied into every rendered file, so their size is capped
/// (a hostile feed must not turn N bytes into N × items bytes): calendar-level lines longer
/// than this are dropped (with a warning)...
pub const MAX_PROLOG_LINE: usize = 16 * 1024;
/// ... as are the lines past this total per calendar...
pub const MAX_PROLOG: usize = 64 * 1024;
/// ... and a larger VTIMEZONE is skipped (events then render without it).
pub const MAX_VTIMEZONE: usize = 256 * 1024;

/// `start..end` in the feed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub(crate) struct ByteRange {
    pub start: usize,
    pub end: usize,
}

impl ByteRange {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
}

/// One `BEGIN:VCALENDAR`..`END:VCALENDAR`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Calendar {
    /// Calendar-level property lines except METHOD (adjacent lines merged).
    pub prolog: Vec<ByteRange>,
    /// Total length of `prolog`.
    pub prolog_len: usize,
    /// `METHOD:CANCEL`.
    pub cancel: bool,
    /// `X-WR-TIMEZONE`, used for floating times.
    pub float_tz: Option<Line>,
}

/// Properties of a VEVENT (its own level only, never from a nested VALARM).
#[derive(Debug, Default)]
pub(crate) struct EventProps {
    pub uid: Option<Line>,
    pub more_uids: Vec<Line>,
    pub rid: Option<Line>,
    pub dtstart: Option<Line>,
    pub dtend: Option<Line>,
    pub duration: Option<Line>,
    pub status: Option<Line>,
    pub rrules: Vec<Line>,
    pub rdates: Vec<Line>,
}

/// A VEVENT as found in the feed.
#[derive(Debug)]
pub(crate) struct EventRec {
    pub range: ByteRange,
    pub index: usize,
    pub cal: usize,
    /// Why the component cannot be used (structure, encoding).
    pub bad: Option<String>,
    pub props: EventProps,
    /// Indices into [`Scan::tz_refs`]: the TZID parameters used anywhere in the component.
    pub tz_refs: ByteRange,
}

/// A usable VTIMEZONE.
#[derive(Debug)]
pub(crate) struct VtzRec {
    pub tzid: String,
    pub range: ByteRange,
}

/// Warnings about things dropped outside components.
#[derive(Clone, Debug, Default)]
pub(crate) struct Warnings {
    pub list: Vec<String>,
    pub more: usize,
}

impl Warnings {
    fn push(&mut self, f: impl FnOnce() -> String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(f());
        } else {
            self.more += 1;
        }
    }
}

/// What the pass found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub calendars: Vec<Calendar>,
    pub events: Vec<EventRec>,
    pub vtimezones: Vec<VtzRec>,
    /// Interned TZID parameter values, by id.
    pub tzid_names: Vec<Box<str>>,
    /// TZID ids referenced by events (see [`EventRec::tz_refs`]).
    pub tz_refs: Vec<u32>,
    /// Broken VTIMEZONEs.
    pub skipped: Vec<SkippedItem>,
    pub warnings: Warnings,
    /// Well-formed or not, top-level components that are neither VEVENT nor VTIMEZONE.
    pub ignored: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Event,
    Timezone,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prop {
    Begin,
    End,
    Uid,
    RecurrenceId,
    DtStart,
    DtEnd,
    Duration,
    Status,
    RRule,
    RDate,
    Tzid,
    Method,
    XWrTimezone,
    Other,
}

impl Prop {
    fn of(name: &[u8]) -> Prop {
        const NAMES: [(&[u8], Prop); 13] = [
            (b"BEGIN", Prop::Begin),
            (b"END", Prop::End),
            (b"UID", Prop::Uid),
            (b"RECURRENCE-ID", Prop::RecurrenceId),
            (b"DTSTART", Prop::DtStart),
            (b"DTEND", Prop::DtEnd),
            (b"DURATION", Prop::Duration),
            (b"STATUS", Prop::Status),
            (b"RRULE", Prop::RRule),
            (b"RDATE", Prop::RDate),
            (b"TZID", Prop::Tzid),
            (b"METHOD", Prop::Method),
            (b"X-WR-TIMEZONE", Prop::XWrTimezone),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Prop::Other, |&(_, p)| p)
    }
}

/// Components that only exist at the top level of a VCALENDAR: a BEGIN of one of these inside
/// another component means that component lacks its END.
fn is_top_level_only(name: &[u8]) -> bool {
    [
        &b"VEVENT"[..],
        b"VTODO",
        b"VJOURNAL",
        b"VFREEBUSY",
        b"VTIMEZONE",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// Component names a feed may contain (RFC 5545, 7953, 9073), for recovering from bad folding.
fn is_known_component(name: &[u8]) -> bool {
    [
        &b"VCALENDAR"[..],
        b"VEVENT",
        b"VTODO",
        b"VJOURNAL",
        b"VFREEBUSY",
        b"VTIMEZONE",
        b"STANDARD",
        b"DAYLIGHT",
        b"VALARM",
        b"VAVAILABILITY",
        b"AVAILABLE",
        b"VLOCATION",
        b"VRESOURCE",
        b"PARTICIPANT",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// The component name of a BEGIN/END line, and whether it comes from a suspicious fold.
///
/// `BEGIN:VEVENT` followed by a continuation line is bad folding (a property line that lost
/// its name, usually): the name is taken from the first physical line and the component is
/// skipped, rather than becoming an unknown component `VEVENTX` that would vanish silently.
fn component_name<'a>(line: &Line, body: &'a [u8], scratch: &'a mut Vec<u8>) -> (&'a [u8], bool) {
    if line.is_folded() {
        let first = trim(parse_content(&body[line.start..line.first_end]).value);
        if is_known_component(first) {
            return (first, true);
        }
    }
    (trim(parse_content(line.text(body, scratch)).value), false)
}

/// A short, printable rendering of feed bytes for messages.
pub(crate) fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if bytes.len() > 40 {
        out.push('…');
    }
    out
}

/// The first ≤ 60 printable characters at `bytes` (whitespace runs collapsed).
pub(crate) fn printable_prefix(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(480)]);
    let mut out = String::new();
    let mut n = 0;
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            space = true;
            continue;
        }
        if n == 60 {
            break;
        }
        if space && !out.is_empty() {
            if n == 59 {
                break;
            }
            out.push(' ');
            n += 1;
        }
        space = false;
        out.push(c);
        n += 1;
    }
    out
}

struct Open {
    kind: Kind,
    begin: usize,
    index: usize,
    bad: Option<String>,
    props: EventProps,
    vtz_tzid: Option<Line>,
    tz_ref_start: usize,
}

impl Open {
    fn set_bad(&mut self, f: impl FnOnce() -> String) {
        if self.bad.is_none() {
            self.bad = Some(f());
        }
    }
}

fn top_name(stack: &[(usize, usize)], names: &[u8]) -> String {
    match stack.last() {
        Some(&(s, l)) => show(&names[s..s + l]),
        None => String::new(),
    }
}

struct Scanner<'a> {
    body: &'a [u8],
    out: Scan,
    open: Option<Open>,
    /// Names of the open components (ranges into `names`), the top-level one first.
    stack: Vec<(usize, usize)>,
    names: Vec<u8>,
    /// Open components beyond [`MAX_DEPTH`] (not named, just counted).
    overflow: usize,
    components: usize,
    interner: HashMap<Box<str>, u32>,
}

/// Scans `body` (a whole feed). Errors only for a body that is not a complete calendar.
pub(crate) fn scan(body: &[u8]) -> Result<Scan, FeedError> {
    let start = if body.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut sc = Scanner {
        body,
        out: Scan::default(),
        open: None,
        stack: Vec::new(),
        names: Vec::new(),
        overflow: 0,
        components: 0,
        interner: HashMap::new(),
    };
    let mut scratch = Vec::new();
    let mut in_cal = false;
    for line in Lines::new(body, start) {
        if in_cal {
            in_cal = sc.line(line, &mut scratch)?;
            continue;
        }
        // Outside a calendar: before the first one (must be BEGIN:VCALENDAR after blank
        // lines) or after one (ignored unless another calendar starts).
        let raw = &body[line.start..line.content_end];
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.kind == LineKind::Content {
            let c = parse_content(line.text(body, &mut scratch));
            if c.name.eq_ignore_ascii_case(b"BEGIN")
                && component_name(&line, body, &mut scratch)
                    .0
                    .eq_ignore_ascii_case(b"VCALENDAR")
            {
                in_cal = true;
                sc.out.calendars.push(Calendar::default());
                continue;
            }
        }
        if sc.out.calendars.is_empty() {
            return Err(FeedError::NotICalendar {
                found: printable_prefix(&body[line.start..]),
            });
        }
    }
    if in_cal {
        return Err(FeedError::Truncated);
    }
    if sc.out.calendars.is_empty() {
        return Err(FeedError::Empty);
    }
    Ok(sc.out)
}

impl Scanner<'_> {
    fn top_name(&self) -> String {
        top_name(&self.stack, &self.names)
    }

    fn push_name(&mut self, name: &[u8]) {
        self.stack.push((self.names.len(), name.len()));
        self.names.extend_from_slice(name);
    }

    /// Handles one line inside a calendar; returns whether the calendar is still open.
    fn line(&mut self, line: Line, scratch: &mut Vec<u8>) -> Result<bool, FeedError> {
        let body = self.body;
        match line.kind {
            LineKind::Blank => return Ok(true),
            LineKind::Orphan => {
                let at = line.start;
                match &mut self.open {
                    Some(open) => open.set_bad(|| {
                        format!("continuation line without a property at byte {at} (bad folding)")
                    }),
                    None => self.out.warnings.push(|| {
                        format!(
                            "dropped a calendar-level continuation line at byte {at} (bad folding)"
                        )
                    }),
                }
                return Ok(true);
            }
            LineKind::Content => {}
        }

        // The name, from the first physical line when it holds it (nearly always).
        let first = &body[line.start..line.first_end];
        let (prop, has_params) = match first.iter().position(|&b| b == b':' || b == b';') {
            Some(i) => (Prop::of(&first[..i]), first[i] == b';'),
            None if !line.is_folded() => (Prop::of(first), false),
            None => {
                let head = line.head(body, scratch);
                match head.iter().position(|&b| b == b';') {
                    Some(i) => (Prop::of(&head[..i]), true),
                    None => (Prop::of(head), false),
                }
            }
        };

        match prop {
            Prop::Begin => {
                let (value, bad_fold) = component_name(&line, body, scratch);
                if value.eq_ignore_ascii_case(b"VCALENDAR") {
                    // A calendar inside a calendar: the outer one was cut off.
                    return Err(FeedError::Truncated);
                }
                self.begin(line, value, bad_fold);
                return Ok(true);
            }
            Prop::End => {
                let (value, bad_fold) = component_name(&line, body, scratch);
                return Ok(self.end(line, value, bad_fold));
            }
            _ => {}
        }

        let Some(open) = &mut self.open else {
            self.calendar_property(line, prop, scratch);
            return Ok(true);
        };
        if self.stack.len() == 1 && self.overflow == 0 {
            let p = &mut open.props;
            match (open.kind, prop) {
                (Kind::Event, Prop::Uid) => {
                    if p.uid.is_none() {
                        p.uid = Some(line);
                    } else {
                        p.more_uids.push(line);
                    }
                }
                (Kind::Event, Prop::RecurrenceId) => {
                    p.rid.get_or_insert(line);
                }
                (Kind::Event, Prop::DtStart) => {
                    p.dtstart.get_or_insert(line);
                }
                (Kind::Event, Prop::DtEnd) => {
                    p.dtend.get_or_insert(line);
                }
                (Kind::Event, Prop::Duration) => {
                    p.duration.get_or_insert(line);
                }
                (Kind::Event, Prop::Status) => {
                    p.status.get_or_insert(line);
                }
                (Kind::Event, Prop::RRule) => p.rrules.push(line),
                (Kind::Event, Prop::RDate) => p.rdates.push(line),
                (Kind::Timezone, Prop::Tzid) => {
                    open.vtz_tzid.get_or_insert(line);
                }
                _ => {}
            }
        }
        if has_params && open.kind == Kind::Event {
            let c = parse_content(line.head(body, scratch));
            if let Some(tzid) = param(c.params, "TZID") {
                if let Ok(tzid) = std::str::from_utf8(tzid) {
                    let id = match self.interner.get(tzid) {
                        Some(&id) => id,
                        None => {
                            let id = u32::try_from(self.out.tzid_names.len()).unwrap_or(u32::MAX);
                            self.out.tzid_names.push(tzid.into());
                            self.interner.insert(tzid.into(), id);
                            id
                        }
                    };
                    // Cheap de-duplication (DTSTART and DTEND usually share a TZID); the
                    // item-level sort removes the rest.
                    let recent = &self.out.tz_refs[open.tz_ref_start..];
                    if !recent.iter().rev().take(4).any(|&r| r == id) {
                        self.out.tz_refs.push(id);
                    }
                }
            }
        }
        Ok(true)
    }

    /// A property line directly inside VCALENDAR.
    fn calendar_property(&mut self, line: Line, prop: Prop, scratch: &mut Vec<u8>) {
        let body = self.body;
        let at = line.start;
        let c = parse_content(line.text(body, scratch));
        if !c.has_value || !is_valid_name(c.name) {
            let shown = show(&body[line.start..line.content_end]);
            self.out
                .warnings
                .push(|| format!("dropped a malformed calendar-level line at byte {at}: {shown}"));
            return;
        }
        if std::str::from_utf8(&body[line.start..line.end]).is_err() {
            let shown = show(c.name);
            self.out.warnings.push(|| {
                format!("dropped calendar-level property {shown} at byte {at}: invalid UTF-8")
            });
            return;
        }
        let Some(cal) = self.out.calendars.last_mut() else {
            return;
        };
        let len = line.end - line.start;
        if prop != Prop::Method && (len > MAX_PROLOG_LINE || cal.prolog_len + len > MAX_PROLOG) {
            let shown = show(c.name);
            self.out.warnings.push(|| {
                format!("dropped calendar-level property {shown} at byte {at}: {len} bytes is too large")
            });
            return;
        }
        match prop {
            Prop::Method => {
                if trim(c.value).eq_ignore_ascii_case(b"CANCEL") {
                    cal.cancel = true;
                }
                return;
            }
            Prop::XWrTimezone => {
                cal.float_tz.get_or_insert(line);
            }
            _ => {}
        }
        cal.prolog_len += len;
        match cal.prolog.last_mut() {
            Some(last) if last.end == line.start => last.end = line.end,
            _ => cal.prolog.push(ByteRange {
                start: line.start,
                end: line.end,
            }),
        }
    }

    fn begin(&mut self, line: Line, name: &[u8], bad_fold: bool) {
        let at = line.start;
        let fold_problem = || {
            format!(
                "continuation line after BEGIN:{} at byte {at} (bad folding)",
                show(name)
            )
        };
        if let Some(open) = &mut self.open {
            if is_top_level_only(name) {
                let (top, new, at) = (self.top_name(), show(name), line.start);
                self.finish(
                    line.start,
                    Some(format!("missing END:{top} (BEGIN:{new} at byte {at})")),
                );
            } else if self.overflow > 0 || self.stack.len() + 1 >= MAX_DEPTH {
                self.overflow += 1;
                open.set_bad(|| format!("components nested deeper than {MAX_DEPTH} levels"));
                return;
            } else {
                if bad_fold {
                    open.set_bad(fold_problem);
                }
                self.push_name(name);
                return;
            }
        }
        let kind = if name.eq_ignore_ascii_case(b"VEVENT") {
            Kind::Event
        } else if name.eq_ignore_ascii_case(b"VTIMEZONE") {
            Kind::Timezone
        } else {
            Kind::Other
        };
        self.open = Some(Open {
            kind,
            begin: line.start,
            index: self.components,
            bad: bad_fold.then(fold_problem),
            props: EventProps::default(),
            vtz_tzid: None,
            tz_ref_start: self.out.tz_refs.len(),
        });
        self.components += 1;
        self.stack.clear();
        self.names.clear();
        self.overflow = 0;
        self.push_name(name);
    }

    /// Handles `END:name`; returns whether the calendar is still open.
    fn end(&mut self, line: Line, name: &[u8], bad_fold: bool) -> bool {
        let at = line.start;
        if name.eq_ignore_ascii_case(b"VCALENDAR") {
            if self.open.is_some() {
                let top = self.top_name();
                self.finish(
                    line.start,
                    Some(format!("missing END:{top} (END:VCALENDAR at byte {at})")),
                );
            }
            return false;
        }
        let Some(open) = &mut self.open else {
            let shown = show(name);
            self.out
                .warnings
                .push(|| format!("ignored END:{shown} without BEGIN at byte {at}"));
            return true;
        };
        if bad_fold {
            let shown = show(name);
            open.set_bad(|| {
                format!("continuation line after END:{shown} at byte {at} (bad folding)")
            });
        }
        if self.overflow > 0 {
            self.overflow -= 1;
            return true;
        }
        let names = &self.names;
        let pos = self
            .stack
            .iter()
            .rposition(|&(s, l)| names[s..s + l].eq_ignore_ascii_case(name));
        let depth = self.stack.len();
        match pos {
            Some(p) => {
                if p + 1 != depth {
                    let (shown, top) = (show(name), top_name(&self.stack, names));
                    open.set_bad(|| format!("END:{shown} at byte {at} while BEGIN:{top} is open"));
                }
                self.names.truncate(self.stack[p].0);
                self.stack.truncate(p);
            }
            None => {
                let (shown, top) = (show(name), top_name(&self.stack, names));
                open.set_bad(|| format!("END:{shown} at byte {at} does not match BEGIN:{top}"));
            }
        }
        if self.stack.is_empty() {
            self.finish(line.end, None);
        }
        true
    }

    /// Closes the open top-level component at `end`.
    fn finish(&mut self, end: usize, problem: Option<String>) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.stack.clear();
        self.names.clear();
        self.overflow = 0;
        let body = self.body;
        let range = ByteRange {
            start: open.begin,
            end,
        };
        let mut bad = open.bad.or(problem);
        if bad.is_none() {
            if let Err(e) = std::str::from_utf8(&body[range.start..range.end]) {
                bad = Some(format!(
                    "invalid UTF-8 at byte {}",
                    range.start + e.valid_up_to()
                ));
            }
        }
        match open.kind {
            Kind::Event => self.out.events.push(EventRec {
                range,
                index: open.index,
                cal: self.out.calendars.len().saturating_sub(1),
                bad,
                props: open.props,
                tz_refs: ByteRange {
                    start: open.tz_ref_start,
                    end: self.out.tz_refs.len(),
                },
            }),
            Kind::Timezone => {
                if bad.is_none() && range.len() > MAX_VTIMEZONE {
                    bad = Some(format!("{} bytes is too large", range.len()));
                }
                let mut scratch = Vec::new();
                let tzid = open.vtz_tzid.and_then(|l| {
                    let v = trim(parse_content(l.text(body, &mut scratch)).value);
                    std::str::from_utf8(v).ok().map(str::to_owned)
                });
                match (bad, tzid) {
                    (None, Some(tzid)) if !tzid.is_empty() => {
                        self.out.vtimezones.push(VtzRec { tzid, range });
                    }
                    (bad, tzid) => {
                        let reason = match (bad, tzid) {
                            (Some(b), Some(t)) => format!("VTIMEZONE {}: {b}", show(t.as_bytes())),
                            (Some(b), None) => format!("VTIMEZONE: {b}"),
                            (None, _) => "VTIMEZONE without TZID".to_owned(),
                        };
                        self.out.skipped.push(SkippedItem {
                            uid: None,
                            index: open.index,
                            reason,
                        });
                    }
                }
            }
            Kind::Other => self.out.ignored += 1,
        }
    }
}
