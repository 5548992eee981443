//! The organizer's ICS feed (`GET /api/v6/meeting/calender/user/{icsToken}`):
//! one `VCALENDAR` rendered from the stored meetings per the switches. Output
//! is a pure function of the input (stable order by creation, `DTSTAMP` =
//! `LAST-MODIFIED`), so the ETag only changes when content does.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use super::recur::occurrences;
use super::tz::vtimezone;
use super::{
    DeletedStyle, JoinLinkStyle, LineEndings, Meeting, Recurrence, RecurrenceStyle, SequenceMode,
    SimOptions, TzStyle, UidStyle, UserInfo,
};

const PRODID: &str = "PRODID:-//Web Meeting//Web Meeting API v6//EN";
/// Expanded styles stop unbounded rules this long after the series starts.
const EXPANSION_HORIZON_DAYS: i64 = 400;
const EXPANSION_CAP: usize = 1000;

pub(crate) struct FeedInput<'a> {
    pub opts: &'a SimOptions,
    pub organizer: &'a UserInfo,
    pub meetings: &'a [Arc<Meeting>],
    pub now: DateTime<Utc>,
    /// Latest change of the organizer's meetings: `Last-Modified`.
    pub last_change: DateTime<Utc>,
}

/// A rendered feed and its validators.
pub(crate) struct RenderedFeed {
    pub body: Bytes,
    /// Hex SHA-256 prefix of the body: the ETag's opaque part.
    pub hash: String,
    pub last_modified: DateTime<Utc>,
    /// When the feed window drops the next meeting (the cache is stale then).
    pub valid_until: Option<DateTime<Utc>>,
}

impl RenderedFeed {
    pub fn new(
        body: String,
        last_modified: DateTime<Utc>,
        valid_until: Option<DateTime<Utc>>,
    ) -> Self {
        let hash = hex::encode(&Sha256::digest(body.as_bytes())[..16]);
        RenderedFeed {
            body: Bytes::from(body),
            hash,
            last_modified,
            valid_until,
        }
    }

    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.valid_until.is_none_or(|v| now < v)
    }
}

/// Writes content lines, folded at 75 octets without splitting a UTF-8
/// sequence, with the chosen line ending.
pub(crate) struct Ics {
    out: String,
    eol: &'static str,
    line: String,
}

impl Ics {
    pub fn new(endings: LineEndings, capacity: usize) -> Ics {
        Ics {
            out: String::with_capacity(capacity),
            eol: match endings {
                LineEndings::Crlf => "\r\n",
                LineEndings::Lf => "\n",
            },
            line: String::with_capacity(256),
        }
    }

    pub fn raw(&mut self, line: &str) {
        fold_into(&mut self.out, line, self.eol);
    }

    /// `NAME:escaped text`.
    fn text(&mut self, name: &str, value: &str) {
        self.line.clear();
        self.line.push_str(name);
        self.line.push(':');
        escape_text_into(&mut self.line, value);
        self.flush();
    }

    /// Starts a line in the scratch buffer; finish with [`Ics::flush`].
    fn start(&mut self) -> &mut String {
        self.line.clear();
        &mut self.line
    }

    fn flush(&mut self) {
        fold_into(&mut self.out, &self.line, self.eol);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Appends `line` folded (RFC 5545 §3.1): at most 75 octets per physical
/// line, continuation lines start with one space.
pub(crate) fn fold_into(out: &mut String, line: &str, eol: &str) {
    let mut rest = line;
    let mut limit = 75;
    while rest.len() > limit {
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str(eol);
        out.push(' ');
        rest = &rest[cut..];
        limit = 74;
    }
    out.push_str(rest);
    out.push_str(eol);
}

/// TEXT escaping: `\` `;` `,` and newlines; other control characters dropped.
pub(crate) fn escape_text_into(out: &mut String, s: &str) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("\\n");
                }
            }
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
}

/// A parameter value, always quoted (DQUOTE and controls cannot appear inside).
fn quoted_param(s: &str) -> String {
    let inner: String = s.chars().filter(|c| *c != '"' && !c.is_control()).collect();
    format!("\"{inner}\"")
}

fn utc_into(s: &mut String, t: DateTime<Utc>) {
    let _ = write!(
        s,
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

/// A DATE-TIME value, UTC (`Z`) or local in `zone` (the `TZID` goes in the parameters).
fn time_into(s: &mut String, t: DateTime<Utc>, zone: Option<Tz>) {
    match zone {
        None => utc_into(s, t),
        Some(z) => {
            let l = t.with_timezone(&z);
            let _ = write!(
                s,
                "{:04}{:02}{:02}T{:02}{:02}{:02}",
                l.year(),
                l.month(),
                l.day(),
                l.hour(),
                l.minute(),
                l.second()
            );
        }
    }
}

fn time_prop(w: &mut Ics, name: &str, t: DateTime<Utc>, zone: Option<Tz>) {
    let s = w.start();
    s.push_str(name);
    if let Some(z) = zone {
        s.push_str(";TZID=");
        s.push_str(z.name());
    }
    s.push(':');
    time_into(s, t, zone);
    w.flush();
}

fn utc_prop(w: &mut Ics, name: &str, t: DateTime<Utc>) {
    let s = w.start();
    s.push_str(name);
    s.push(':');
    utc_into(s, t);
    w.flush();
}

pub(crate) fn uid_of(m: &Meeting, opts: &SimOptions) -> String {
    match opts.uid_style {
        UidStyle::Id => m.id.clone(),
        UidStyle::IdAtDomain => format!("{}@{}", m.id, opts.domain),
        UidStyle::MeetingNumber => m.meeting_id.clone(),
        UidStyle::Random => m.random_uid.clone(),
    }
}

/// `https://{domain}/j/{meeting number without dashes}`.
pub(crate) fn join_link(m: &Meeting, opts: &SimOptions) -> String {
    format!(
        "https://{}/j/{}",
        opts.domain,
        m.meeting_id.replace('-', "")
    )
}

/// One VEVENT's varying part: a whole meeting, its master, or one occurrence.
struct Instance<'a> {
    uid: &'a str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    recurrence_id: Option<DateTime<Utc>>,
    topic: &'a str,
    rule: Option<&'a Recurrence>,
}

struct EventContext<'a> {
    opts: &'a SimOptions,
    zone: Option<Tz>,
    cancelled: bool,
    link: String,
    description: String,
}

fn write_event(w: &mut Ics, m: &Meeting, cx: &EventContext<'_>, inst: &Instance<'_>) {
    let opts = cx.opts;
    w.raw("BEGIN:VEVENT");
    w.text("UID", inst.uid);
    utc_prop(w, "DTSTAMP", m.last_modified);
    utc_prop(w, "CREATED", m.created);
    utc_prop(w, "LAST-MODIFIED", m.last_modified);
    let sequence = match opts.sequence {
        SequenceMode::Increments => m.ical_sequence,
        SequenceMode::ConstantZero => 0,
    };
    let _ = write!(w.start(), "SEQUENCE:{sequence}");
    w.flush();
    if let Some(rid) = inst.recurrence_id {
        time_prop(w, "RECURRENCE-ID", rid, cx.zone);
    }
    time_prop(w, "DTSTART", inst.start, cx.zone);
    time_prop(w, "DTEND", inst.end, cx.zone);
    if let Some(rule) = inst.rule {
        let freq = match rule.freq {
            super::Freq::Daily => "DAILY",
            super::Freq::Weekly => "WEEKLY",
            super::Freq::Monthly => "MONTHLY",
        };
        let s = w.start();
        let _ = write!(s, "RRULE:FREQ={freq};INTERVAL={}", rule.interval.max(1));
        if let Some(count) = rule.count {
            let _ = write!(s, ";COUNT={count}");
        } else if let Some(until) = rule.until {
            s.push_str(";UNTIL=");
            utc_into(s, until);
        }
        w.flush();
        if !rule.exdates.is_empty() {
            let s = w.start();
            s.push_str("EXDATE");
            if let Some(z) = cx.zone {
                s.push_str(";TZID=");
                s.push_str(z.name());
            }
            s.push(':');
            for (i, t) in rule.exdates.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                time_into(s, *t, cx.zone);
            }
            w.flush();
        }
    }
    w.text("SUMMARY", inst.topic);
    w.text("DESCRIPTION", &cx.description);
    match opts.join_link {
        JoinLinkStyle::Url => {
            let _ = write!(w.start(), "URL:{}", cx.link);
            w.flush();
        }
        JoinLinkStyle::Location => w.text("LOCATION", &cx.link),
        JoinLinkStyle::DescriptionOnly => {}
    }
    if opts.emit_attendees {
        let _ = write!(
            w.start(),
            "ORGANIZER;CN={}:mailto:{}",
            quoted_param(&m.added_by_name),
            m.added_by_email
        );
        w.flush();
        for p in &m.invited {
            let cn = p.name.as_deref().unwrap_or(&p.email);
            let _ = write!(
                w.start(),
                "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{}",
                quoted_param(cn),
                p.email
            );
            w.flush();
        }
    }
    if cx.cancelled {
        w.raw("STATUS:CANCELLED");
    }
    for line in &m.extra_ics {
        w.raw(line);
    }
    w.raw("END:VEVENT");
}

fn description(m: &Meeting, link: &str) -> String {
    if m.agenda.trim().is_empty() {
        format!("Join the meeting: {link}")
    } else {
        format!("{}\n\nJoin the meeting: {link}", m.agenda)
    }
}

/// The zone `DTSTART` is written in: None = UTC with `Z`.
fn zone_of(m: &Meeting, opts: &SimOptions) -> Option<Tz> {
    match opts.tz {
        TzStyle::Utc => None,
        TzStyle::TzidWithVtimezone | TzStyle::TzidOnly => m.timezone.parse::<Tz>().ok(),
    }
}

fn write_meeting(w: &mut Ics, m: &Meeting, zone: Option<Tz>, opts: &SimOptions) {
    let link = join_link(m, opts);
    let cx = EventContext {
        opts,
        zone,
        cancelled: m.deleted,
        description: description(m, &link),
        link,
    };
    let uid = uid_of(m, opts);
    let Some(rule) = &m.recurrence else {
        let inst = Instance {
            uid: &uid,
            start: m.start,
            end: m.end,
            recurrence_id: None,
            topic: &m.topic,
            rule: None,
        };
        write_event(w, m, &cx, &inst);
        return;
    };
    let live_overrides = rule
        .overrides
        .iter()
        .filter(|o| !rule.exdates.contains(&o.original_start));
    match opts.recurrence {
        RecurrenceStyle::Rrule => {
            let master = Instance {
                uid: &uid,
                start: m.start,
                end: m.end,
                recurrence_id: None,
                topic: &m.topic,
                rule: Some(rule),
            };
            write_event(w, m, &cx, &master);
            for o in live_overrides {
                let inst = Instance {
                    uid: &uid,
                    start: o.start,
                    end: o.end,
                    recurrence_id: Some(o.original_start),
                    topic: o.topic.as_deref().unwrap_or(&m.topic),
                    rule: None,
                };
                write_event(w, m, &cx, &inst);
            }
        }
        RecurrenceStyle::ExpandedOwnUid | RecurrenceStyle::ExpandedRecurrenceId => {
            let horizon = m.created.max(m.start) + Duration::days(EXPANSION_HORIZON_DAYS);
            let length = m.end - m.start;
            let starts = occurrences(
                m.start,
                rule,
                zone.unwrap_or(Tz::UTC),
                horizon,
                EXPANSION_CAP,
            );
            let own_uid = opts.recurrence == RecurrenceStyle::ExpandedOwnUid;
            let mut instance_uid = String::new();
            for original in starts {
                if rule.exdates.contains(&original) {
                    continue;
                }
                let moved = rule.overrides.iter().find(|o| o.original_start == original);
                if own_uid {
                    instance_uid.clear();
                    instance_uid.push_str(&uid);
                    instance_uid.push('-');
                    utc_into(&mut instance_uid, original);
                }
                let inst = Instance {
                    uid: if own_uid { &instance_uid } else { &uid },
                    start: moved.map_or(original, |o| o.start),
                    end: moved.map_or(original + length, |o| o.end),
                    recurrence_id: (!own_uid).then_some(original),
                    topic: moved.and_then(|o| o.topic.as_deref()).unwrap_or(&m.topic),
                    rule: None,
                };
                write_event(w, m, &cx, &inst);
            }
        }
    }
}

fn write_calendar(
    w: &mut Ics,
    input: &FeedInput<'_>,
    method: &str,
    meetings: &[(&Meeting, Option<Tz>)],
) {
    let opts = input.opts;
    w.raw("BEGIN:VCALENDAR");
    w.raw("VERSION:2.0");
    w.raw(PRODID);
    w.raw("CALSCALE:GREGORIAN");
    let _ = write!(w.start(), "METHOD:{method}");
    w.flush();
    w.text("X-WR-CALNAME", &input.organizer.display_name());
    if opts.tz == TzStyle::TzidWithVtimezone {
        // Zone name → the earliest year it is used in (the year its rules are taken from).
        let mut zones: std::collections::BTreeMap<&'static str, (Tz, i32)> = Default::default();
        for (m, zone) in meetings {
            if let Some(z) = zone {
                let year = m.start.with_timezone(z).year();
                let e = zones.entry(z.name()).or_insert((*z, year));
                e.1 = e.1.min(year);
            }
        }
        for (zone, year) in zones.values() {
            for line in vtimezone(*zone, *year).iter() {
                w.raw(line);
            }
        }
    }
    for (m, zone) in meetings {
        write_meeting(w, m, *zone, opts);
    }
    w.raw("END:VCALENDAR");
}

/// Renders the organizer's feed.
pub(crate) fn render(input: &FeedInput<'_>) -> RenderedFeed {
    let opts = input.opts;
    let mut valid_until: Option<DateTime<Utc>> = None;
    let mut live = Vec::with_capacity(input.meetings.len());
    let mut cancelled = Vec::new();
    for m in input.meetings {
        if m.deleted && opts.deleted == DeletedStyle::Vanish {
            continue;
        }
        if let (Some(days), None) = (opts.feed_drop_ended_days, &m.recurrence) {
            let drop_at = m.end + Duration::days(i64::from(days));
            if drop_at <= input.now {
                continue;
            }
            valid_until = Some(valid_until.map_or(drop_at, |v| v.min(drop_at)));
        }
        let entry = (&**m, zone_of(m, opts));
        if m.deleted && opts.deleted == DeletedStyle::MethodCancel {
            cancelled.push(entry);
        } else {
            live.push(entry);
        }
    }
    let mut w = Ics::new(opts.line_endings, 1024 + live.len() * 1024);
    write_calendar(&mut w, input, "PUBLISH", &live);
    if !cancelled.is_empty() {
        write_calendar(&mut w, input, "CANCEL", &cancelled);
    }
    RenderedFeed::new(w.finish(), input.last_change, valid_until)
}

/// A valid calendar without events (`calname` for `X-WR-CALNAME` when known).
pub(crate) fn empty_calendar(endings: LineEndings, calname: Option<&str>) -> String {
    let mut w = Ics::new(endings, 256);
    w.raw("BEGIN:VCALENDAR");
    w.raw("VERSION:2.0");
    w.raw(PRODID);
    w.raw("CALSCALE:GREGORIAN");
    w.raw("METHOD:PUBLISH");
    if let Some(name) = calname {
        w.text("X-WR-CALNAME", name);
    }
    w.raw("END:VCALENDAR");
    w.finish()
}
