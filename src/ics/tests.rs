//! Tests for feed splitting. Fixtures are written with `\n` and converted with [`crlf`].

use super::*;
use proptest::prelude::*;

/// `\n` -> `\r\n`.
fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn utc(s: &str) -> i64 {
    time::parse_date_time(s.as_bytes())
        .unwrap()
        .0
        .and_utc()
        .timestamp()
}

const PROLOG: &str = "VERSION:2.0
PRODID:-//Example Corp//Meet 6.0//EN
X-WR-CALNAME:Team
 meetings
";

const VTZ_BERLIN: &str = "BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:STANDARD
DTSTART:19701025T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
END:VTIMEZONE
";

const VTZ_NY: &str = "BEGIN:VTIMEZONE
TZID:America/New_York
BEGIN:STANDARD
DTSTART:19701101T020000
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
END:STANDARD
END:VTIMEZONE
";

const VTZ_UNUSED: &str = "BEGIN:VTIMEZONE
TZID:Asia/Tokyo
BEGIN:STANDARD
DTSTART:19700101T000000
TZOFFSETFROM:+0900
TZOFFSETTO:+0900
END:STANDARD
END:VTIMEZONE
";

const EV_WEEKLY: &str = "BEGIN:VEVENT
UID:weekly-1@example.com
DTSTAMP:20240101T000000Z
DTSTART;TZID=Europe/Berlin:20240105T100000
DTEND;TZID=Europe/Berlin:20240105T110000
RRULE:FREQ=WEEKLY;UNTIL=20240301T090000Z
SUMMARY:Weekly sync
X-MEET-ID;X-PARAM=\"a:b\":123456
DESCRIPTION:A long description that is folded over more than one line so th
 at unfolding matters\\, and commas are escaped.
BEGIN:VALARM
UID:alarm-uid-must-not-count
ACTION:DISPLAY
TRIGGER:-PT10M
X-ALARM-THING:kept
END:VALARM
END:VEVENT
";

const EV_OVERRIDE: &str = "BEGIN:VEVENT
UID:weekly-1@example.com
RECURRENCE-ID;TZID=Europe/Berlin:20240112T100000
DTSTART;TZID=Europe/Berlin:20240112T120000
DTEND;TZID=Europe/Berlin:20240112T130000
SUMMARY:Weekly sync (moved)
END:VEVENT
";

const EV_SINGLE: &str = "BEGIN:VEVENT
UID:single@example.com
DTSTART;TZID=\"America/New_York\":20240110T150000
DTEND;TZID=\"America/New_York\":20240110T160000
STATUS:CANCELLED
SUMMARY:One-off
END:VEVENT
";

const EV_TODO: &str = "BEGIN:VTODO
UID:todo-1
SUMMARY:not ours
END:VTODO
";

fn fixture_str() -> String {
    format!(
        "BEGIN:VCALENDAR\n{PROLOG}METHOD:PUBLISH\n{VTZ_BERLIN}{VTZ_NY}{VTZ_UNUSED}{EV_WEEKLY}{EV_TODO}{EV_SINGLE}{EV_OVERRIDE}X-LATE-PROP:after components\nEND:VCALENDAR\n"
    )
}

fn fixture() -> Vec<u8> {
    crlf(&fixture_str())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn item<'a>(f: &'a SplitFeed, uid: &str) -> &'a FeedItem {
    f.items()
        .iter()
        .find(|i| i.uid == uid)
        .unwrap_or_else(|| panic!("no item {uid}: {f:?}"))
}

fn calendar(events: &[String]) -> Vec<u8> {
    let mut s = format!("BEGIN:VCALENDAR\n{PROLOG}");
    for e in events {
        s.push_str(e);
    }
    s.push_str("END:VCALENDAR\n");
    crlf(&s)
}

fn event(uid: &str, extra: &str) -> String {
    format!("BEGIN:VEVENT\nUID:{uid}\nDTSTART:20240301T100000Z\nDTEND:20240301T110000Z\n{extra}END:VEVENT\n")
}

#[test]
fn round_trip_is_byte_exact() {
    let body = fixture();
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items().len(), 2, "{f:?}");
    assert!(f.skipped().is_empty(), "{f:?}");
    assert_eq!(f.ignored_components(), 1);
    let weekly = item(&f, "weekly-1@example.com");
    let got = f.render(weekly);
    let want = [
        "BEGIN:VCALENDAR\n",
        PROLOG,
        "X-LATE-PROP:after components\n",
        VTZ_BERLIN,
        EV_WEEKLY,
        EV_OVERRIDE,
        "END:VCALENDAR\n",
    ]
    .concat();
    assert_eq!(
        String::from_utf8(got.clone()).unwrap(),
        String::from_utf8(crlf(&want)).unwrap()
    );
    // X- properties, parameters with quotes, folding and VALARM survive.
    for piece in [
        "X-MEET-ID;X-PARAM=\"a:b\":123456",
        "so th\r\n at unfolding",
        "X-ALARM-THING:kept",
    ] {
        assert!(contains(&got, piece.as_bytes()), "{piece}");
    }
    assert!(!contains(&got, b"METHOD"));
    // Every component of the feed appears verbatim in its item's file.
    let single = f.render(item(&f, "single@example.com"));
    for (component, file) in [(EV_WEEKLY, &got), (EV_OVERRIDE, &got), (EV_SINGLE, &single)] {
        assert!(contains(file, &crlf(component)));
    }
    // Deterministic.
    assert_eq!(split_feed(&body).unwrap().render(weekly), got);
    assert_eq!(uid_of_ics(&got).as_deref(), Some("weekly-1@example.com"));
    assert_eq!(uid_of_ics(&single).as_deref(), Some("single@example.com"));
}

#[test]
fn overrides_group_with_master_in_feed_order() {
    let f = split_feed(&fixture()).unwrap();
    let uids: Vec<&str> = f.items().iter().map(|i| i.uid.as_str()).collect();
    assert_eq!(uids, ["weekly-1@example.com", "single@example.com"]);
    let weekly = item(&f, "weekly-1@example.com");
    assert_eq!(weekly.components, 2);
    assert!(weekly.has_master());
    assert!(!weekly.cancelled);
    let single = item(&f, "single@example.com");
    assert_eq!(single.components, 1);
    assert!(single.cancelled);
}

#[test]
fn only_needed_vtimezones_are_carried() {
    let f = split_feed(&fixture()).unwrap();
    let weekly = f.render(item(&f, "weekly-1@example.com"));
    let single = f.render(item(&f, "single@example.com"));
    assert!(contains(&weekly, &crlf(VTZ_BERLIN)));
    assert!(!contains(&weekly, b"America/New_York"));
    assert!(contains(&single, &crlf(VTZ_NY)), "quoted TZID parameter");
    assert!(!contains(&single, b"TZID:Europe/Berlin"));
    for file in [&weekly, &single] {
        assert!(!contains(file, b"Asia/Tokyo"));
    }
}

#[test]
fn html_is_not_icalendar() {
    let html = b"\xEF\xBB\xBF\r\n\r\n<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n";
    match split_feed(html) {
        Err(FeedError::NotICalendar { found }) => {
            assert!(found.starts_with("<!DOCTYPE html> <html><head>"), "{found}");
            assert!(found.chars().count() <= 60);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(split_feed(b""), Err(FeedError::Empty)));
    assert!(matches!(split_feed(b" \r\n\t\n"), Err(FeedError::Empty)));
    assert!(matches!(
        split_feed(b"{\"error\":1}"),
        Err(FeedError::NotICalendar { .. })
    ));
    assert!(matches!(
        split_feed(b"VERSION:2.0\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"),
        Err(FeedError::NotICalendar { .. })
    ));
    let f = split_feed(b"\xEF\xBB\xBF\n\nbegin:vcalendar\nversion:2.0\nend:vcalendar").unwrap();
    assert!(f.is_empty());
}

#[test]
fn every_cut_is_an_error() {
    for eol in ["\r\n", "\n", "\r"] {
        let body = fixture_str().replace('\n', eol).into_bytes();
        let end = b"END:VCALENDAR";
        let last = body.windows(end.len()).rposition(|w| w == end).unwrap();
        for cut in 0..last + end.len() - 1 {
            let r = split_feed(&body[..cut]);
            assert!(r.is_err(), "cut at {cut} accepted ({eol:?})");
            if cut >= b"BEGIN:VCALENDAR".len() {
                assert_eq!(
                    r.unwrap_err(),
                    FeedError::Truncated,
                    "cut at {cut} ({eol:?})"
                );
            }
        }
        assert!(split_feed(&body[..last + end.len()]).is_ok());
        // A calendar cut off (at a line end), then a complete one: still truncated.
        let half = body.len() / 2;
        let cut = half
            + body[half..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .unwrap();
        let cut = cut + eol.len();
        let mut two = body[..cut].to_vec();
        two.extend_from_slice(&body);
        assert_eq!(split_feed(&two).unwrap_err(), FeedError::Truncated);
    }
}

#[test]
fn text_after_end_ignored_and_multiple_calendars_merged() {
    let mut body = fixture();
    body.extend_from_slice(b"\r\n<!-- served by cache -->\r\ngarbage: yes\r\n");
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items().len(), 2);

    let mut two = fixture();
    two.extend_from_slice(&crlf(&format!(
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:second\nMETHOD:CANCEL\n{}END:VCALENDAR\n",
        event("second-cal", "")
    )));
    let f = split_feed(&two).unwrap();
    assert_eq!(f.items().len(), 3);
    let second = item(&f, "second-cal");
    assert!(second.cancelled, "METHOD:CANCEL of its own calendar");
    assert!(!item(&f, "weekly-1@example.com").cancelled);
    let out = f.render(second);
    assert!(contains(&out, b"PRODID:second"));
    assert!(!contains(&out, b"Example Corp"));
}

#[test]
fn duplicate_uid_with_different_content_skips_both() {
    let a = event("dup", "SUMMARY:one\n");
    let b = event("dup", "SUMMARY:two\n");
    let ovr = event("dup", "RECURRENCE-ID:20240308T100000Z\n");
    let body = calendar(&[a.clone(), event("ok", ""), b, ovr]);
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items().len(), 1);
    assert_eq!(f.items()[0].uid, "ok");
    let dups: Vec<&SkippedItem> = f
        .skipped()
        .iter()
        .filter(|s| s.uid.as_deref() == Some("dup"))
        .collect();
    assert_eq!(dups.len(), 3, "{f:?}");
    assert_eq!(
        dups.iter().map(|s| s.index).collect::<Vec<_>>(),
        [0, 2, 3],
        "component indices"
    );
    for s in &dups[..2] {
        assert!(
            s.reason.contains("duplicate UID with different content"),
            "{}",
            s.reason
        );
    }

    // Identical duplicates: one is kept, nothing reported.
    let f = split_feed(&calendar(&[a.clone(), event("ok", ""), a.clone()])).unwrap();
    assert_eq!(f.items().len(), 2);
    assert!(f.skipped().is_empty());
    assert_eq!(item(&f, "dup").components, 1);
    assert_eq!(
        f.render(item(&f, "dup"))
            .windows(12)
            .filter(|w| w == b"BEGIN:VEVENT")
            .count(),
        1
    );
}

#[test]
fn revisions_of_one_uid_give_the_newest() {
    let rev = |extra: &str| event("rev", extra);
    let one = rev("SEQUENCE:1\nSUMMARY:old\nDTSTAMP:20240301T000000Z\n");
    let two = rev("SEQUENCE:2\nSUMMARY:new\nDTSTAMP:20240201T000000Z\n");
    // whatever the feed order, SEQUENCE decides first
    for body in [
        calendar(&[one.clone(), event("ok", ""), two.clone()]),
        calendar(&[two.clone(), event("ok", ""), one.clone()]),
    ] {
        let f = split_feed(&body).unwrap();
        assert!(f.skipped().is_empty(), "{f:?}");
        let out = f.render(item(&f, "rev"));
        assert!(
            contains(&out, b"SUMMARY:new"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(!contains(&out, b"SUMMARY:old"));
        assert!(
            f.warnings().iter().any(|w| w.contains("SEQUENCE 2")),
            "{:?}",
            f.warnings()
        );
    }
    // same SEQUENCE: LAST-MODIFIED, then DTSTAMP; a VALARM's lines do not count
    let a =
        rev("SEQUENCE:3\nSUMMARY:a\nLAST-MODIFIED:20240105T000000Z\nDTSTAMP:20240101T000000Z\n");
    let b =
        rev("SEQUENCE:3\nSUMMARY:b\nLAST-MODIFIED:20240104T000000Z\nDTSTAMP:20240109T000000Z\n");
    let f = split_feed(&calendar(&[a.clone(), b.clone()])).unwrap();
    assert!(contains(&f.render(item(&f, "rev")), b"SUMMARY:a"));
    let c = rev("SUMMARY:c\nDTSTAMP:20240102T000000Z\n");
    let d = rev("SUMMARY:d\nDTSTAMP:20240101T000000Z\nBEGIN:VALARM\nACTION:DISPLAY\nTRIGGER:-PT5M\nSEQUENCE:9\nDTSTAMP:20300101T000000Z\nEND:VALARM\n");
    let f = split_feed(&calendar(&[d.clone(), c.clone()])).unwrap();
    assert!(contains(&f.render(item(&f, "rev")), b"SUMMARY:c"));
    // a true tie of different contents is skipped and reported
    let e = rev("SEQUENCE:1\nSUMMARY:e\nDTSTAMP:20240101T000000Z\n");
    let g = rev("SEQUENCE:1\nSUMMARY:g\nDTSTAMP:20240101T000000Z\n");
    let f = split_feed(&calendar(&[e, g, event("ok", "")])).unwrap();
    assert_eq!(f.items().len(), 1);
    assert!(f
        .skipped()
        .iter()
        .any(|s| s.uid.as_deref() == Some("rev") && s.reason.contains("duplicate UID")));
    // overrides of one RECURRENCE-ID: the newer revision, even when it comes first
    let master = event("r", "RRULE:FREQ=DAILY;COUNT=10\n");
    let newer = event(
        "r",
        "RECURRENCE-ID:20240302T100000Z\nSEQUENCE:4\nSUMMARY:newer\n",
    );
    let older = event(
        "r",
        "RECURRENCE-ID:20240302T100000Z\nSEQUENCE:3\nSUMMARY:older\n",
    );
    let f = split_feed(&calendar(&[master, newer, older])).unwrap();
    let out = f.render(item(&f, "r"));
    assert!(contains(&out, b"SUMMARY:newer"));
    assert!(!contains(&out, b"SUMMARY:older"));
    assert!(
        f.skipped().is_empty(),
        "an older revision is no problem: {f:?}"
    );
}

#[test]
fn duplicate_override_keeps_the_last() {
    let master = event("r", "RRULE:FREQ=DAILY;COUNT=10\n");
    let o1 = event("r", "RECURRENCE-ID:20240302T100000Z\nSUMMARY:first\n");
    let o2 = event(
        "r",
        "RECURRENCE-ID;TZID=Europe/Berlin:20240302T110000\nSUMMARY:second\n",
    );
    let o3 = event("r", "RECURRENCE-ID:20240303T100000Z\n");
    let f = split_feed(&calendar(&[
        o1.clone(),
        master.clone(),
        o3.clone(),
        o2.clone(),
        o2.clone(),
    ]))
    .unwrap();
    let it = item(&f, "r");
    assert_eq!(it.components, 3);
    let out = f.render(it);
    assert!(!contains(&out, b"SUMMARY:first"));
    let want = crlf(&format!("{master}{o3}{o2}"));
    assert!(
        contains(&out, &want),
        "master, then overrides in feed order"
    );
    assert_eq!(f.skipped().len(), 1, "{f:?}");
    assert_eq!(f.skipped()[0].index, 0);
    assert_eq!(f.skipped()[0].uid.as_deref(), Some("r"));
}

#[test]
fn overrides_without_master_form_an_item() {
    let o1 = event("orphan", "RECURRENCE-ID:20240302T100000Z\n");
    let o2 = "BEGIN:VEVENT\nUID:orphan\nRECURRENCE-ID:20240309T100000Z\nDTSTART:20240309T120000Z\nDURATION:PT2H\nEND:VEVENT\n".to_owned();
    let f = split_feed(&calendar(&[o1, o2])).unwrap();
    let it = item(&f, "orphan");
    assert!(!it.has_master());
    assert_eq!(it.components, 2);
    assert_eq!(it.span.first_start, Some(utc("20240301T100000")));
    assert_eq!(it.span.last_end, Some(utc("20240309T140000")));
    assert_eq!(uid_of_ics(&f.render(it)).as_deref(), Some("orphan"));
}

#[test]
fn lf_only_and_cr_only_feeds() {
    let crlf_feed = split_feed(&fixture()).unwrap();
    for eol in ["\n", "\r"] {
        let s = fixture_str().replace('\n', eol);
        let f = split_feed(s.as_bytes()).unwrap();
        assert_eq!(f.items().len(), 2, "{eol:?}");
        assert!(f.skipped().is_empty());
        for (a, b) in f.items().iter().zip(crlf_feed.items()) {
            assert_eq!(
                (&a.uid, a.span, a.cancelled, a.components),
                (&b.uid, b.span, b.cancelled, b.components)
            );
        }
        let out = f.render(item(&f, "weekly-1@example.com"));
        // the lines a file adds take the feed's line end: one style per file
        assert!(out.starts_with(format!("BEGIN:VCALENDAR{eol}").as_bytes()));
        assert!(out.ends_with(format!("END:VEVENT{eol}END:VCALENDAR{eol}").as_bytes()));
        let other = if eol == "\n" { b'\r' } else { b'\n' };
        assert!(!out.contains(&other), "{eol:?}: mixed line ends");
        assert!(contains(&out, EV_WEEKLY.replace('\n', eol).as_bytes()));
        // The rendered file splits again into the same item.
        let again = split_feed(&out).unwrap();
        assert_eq!(again.items().len(), 1);
        assert_eq!(again.render(&again.items()[0]), out);
    }
}

#[test]
fn bad_folding() {
    // Inside a component: a continuation line after a blank line has nothing to continue.
    let broken =
        "BEGIN:VEVENT\nUID:broken\nDTSTART:20240301T100000Z\n\n continuation\nEND:VEVENT\n"
            .to_owned();
    let body = calendar(&[broken, event("fine", "")]);
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items().len(), 1);
    assert_eq!(f.items()[0].uid, "fine");
    assert_eq!(f.skipped().len(), 1);
    assert_eq!(f.skipped()[0].uid.as_deref(), Some("broken"));
    assert!(
        f.skipped()[0].reason.contains("bad folding"),
        "{:?}",
        f.skipped()
    );

    // At calendar level: dropped with a warning, never copied into the files.
    let body = crlf(&format!(
        "BEGIN:VCALENDAR\n\n orphan-continuation\nVERSION:2.0\n{}END:VCALENDAR\n",
        event("fine", "")
    ));
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items().len(), 1);
    assert!(!contains(&f.render(&f.items()[0]), b"orphan"));
    assert_eq!(f.warnings().len(), 1, "{:?}", f.warnings());

    // A continuation before anything at all: not a calendar.
    assert!(matches!(
        split_feed(b" BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"),
        Err(FeedError::NotICalendar { .. })
    ));
    // A folded UID unfolds.
    let f = split_feed(&calendar(&[
        "BEGIN:VEVENT\nUID:fol\n ded\nEND:VEVENT\n".to_owned()
    ]))
    .unwrap();
    assert_eq!(f.items()[0].uid, "folded");
}

#[test]
fn nesting_bomb_skips_only_that_component() {
    let mut bomb = String::from("BEGIN:VEVENT\nUID:bomb\n");
    for _ in 0..50 {
        bomb.push_str("BEGIN:X-NEST\n");
    }
    for _ in 0..50 {
        bomb.push_str("END:X-NEST\n");
    }
    bomb.push_str("END:VEVENT\n");
    // Exactly at the limit is fine: VCALENDAR > VEVENT > 6 more levels = 8.
    let mut deep_ok = String::from("BEGIN:VEVENT\nUID:deep-ok\n");
    deep_ok.push_str(&"BEGIN:X-NEST\n".repeat(MAX_DEPTH - 2));
    deep_ok.push_str(&"END:X-NEST\n".repeat(MAX_DEPTH - 2));
    deep_ok.push_str("END:VEVENT\n");
    let f = split_feed(&calendar(&[bomb, event("after", ""), deep_ok])).unwrap();
    let uids: Vec<&str> = f.items().iter().map(|i| i.uid.as_str()).collect();
    assert_eq!(uids, ["after", "deep-ok"]);
    assert_eq!(f.skipped().len(), 1);
    assert!(
        f.skipped()[0].reason.contains("nested deeper"),
        "{:?}",
        f.skipped()
    );

    // A huge bomb that never closes: linear, and the calendar end still counts.
    let mut s = String::from("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:huge\n");
    s.push_str(&"BEGIN:A\n".repeat(200_000));
    s.push_str("END:VCALENDAR\n");
    let f = split_feed(s.as_bytes()).unwrap();
    assert!(f.items().is_empty());
    assert_eq!(f.skipped().len(), 1);

    // Many unterminated VEVENTs in a row.
    let mut s = String::from("BEGIN:VCALENDAR\n");
    s.push_str(&"BEGIN:VEVENT\nUID:u\n".repeat(50_000));
    s.push_str("END:VEVENT\nEND:VCALENDAR\n");
    let f = split_feed(s.as_bytes()).unwrap();
    assert!(f.items().is_empty(), "the UID has broken components");
    assert_eq!(f.skipped().len(), 50_000);
}

#[test]
fn mismatched_and_unterminated_components() {
    let unterminated = "BEGIN:VEVENT\nUID:cut\nDTSTART:20240301T100000Z\n".to_owned();
    let wrong_end = "BEGIN:VEVENT\nUID:wrong\nBEGIN:VALARM\nEND:VEVENT\n".to_owned();
    let stray = "BEGIN:VEVENT\nUID:stray\nEND:VALARM\nEND:VEVENT\n".to_owned();
    let body = crlf(&format!(
        "BEGIN:VCALENDAR\nEND:VEVENT\n{unterminated}{}{wrong_end}{stray}{}END:VCALENDAR\n",
        event("ok1", ""),
        event("ok2", "")
    ));
    let f = split_feed(&body).unwrap();
    let uids: Vec<&str> = f.items().iter().map(|i| i.uid.as_str()).collect();
    assert_eq!(uids, ["ok1", "ok2"]);
    let skipped: Vec<(Option<&str>, usize)> = f
        .skipped()
        .iter()
        .map(|s| (s.uid.as_deref(), s.index))
        .collect();
    assert_eq!(
        skipped,
        [(Some("cut"), 0), (Some("wrong"), 2), (Some("stray"), 3)]
    );
    assert!(
        f.skipped()[0].reason.contains("missing END:VEVENT"),
        "{:?}",
        f.skipped()
    );
    assert_eq!(
        f.warnings().len(),
        1,
        "stray END at calendar level: {:?}",
        f.warnings()
    );

    // END:VCALENDAR inside an open VEVENT: that VEVENT is skipped, the feed is complete.
    let body = crlf(&format!(
        "BEGIN:VCALENDAR\n{}{unterminated}END:VCALENDAR\n",
        event("ok", "")
    ));
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items().len(), 1);
    assert_eq!(f.skipped().len(), 1);
}

#[test]
fn missing_uid_is_skipped_and_the_rest_survives() {
    let no_uid =
        "BEGIN:VEVENT\nDTSTART:20240301T100000Z\nBEGIN:VALARM\nUID:alarm\nEND:VALARM\nEND:VEVENT\n"
            .to_owned();
    let empty_uid = "BEGIN:VEVENT\nUID:\nEND:VEVENT\n".to_owned();
    let f = split_feed(&calendar(&[
        event("a", ""),
        no_uid,
        empty_uid,
        event("b", ""),
    ]))
    .unwrap();
    let uids: Vec<&str> = f.items().iter().map(|i| i.uid.as_str()).collect();
    assert_eq!(uids, ["a", "b"]);
    assert_eq!(f.skipped().len(), 2);
    assert!(f.skipped().iter().all(|s| s.uid.is_none()));
    assert_eq!(f.skipped()[0].index, 1);
}

#[test]
fn invalid_utf8_skips_the_uid_only() {
    let mut body = calendar(&[
        event("latin1", "SUMMARY:R\u{1}union\n"),
        event("latin1", "RECURRENCE-ID:20240308T100000Z\n"),
        event("fine", ""),
    ]);
    let p = body.iter().position(|&c| c == 1).unwrap();
    body[p] = 0xE9; // 'é' in Latin-1
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items().len(), 1, "the override alone must not be synced");
    assert_eq!(f.items()[0].uid, "fine");
    assert_eq!(f.skipped().len(), 2);
    assert!(f.skipped()[0].reason.contains("UTF-8"), "{:?}", f.skipped());

    // A non-UTF-8 calendar-level property is dropped with a warning.
    let mut body = crlf(&format!(
        "BEGIN:VCALENDAR\nX-WR-CALNAME:R\u{1}union\nVERSION:2.0\n{}END:VCALENDAR\n",
        event("x", "")
    ));
    let p = body.iter().position(|&c| c == 1).unwrap();
    body[p] = 0xE9;
    let f = split_feed(&body).unwrap();
    let out = f.render(&f.items()[0]);
    assert!(std::str::from_utf8(&out).is_ok());
    assert!(contains(&out, b"VERSION:2.0"));
    assert_eq!(f.warnings().len(), 1);
}

#[test]
fn hostile_uids_are_kept_verbatim_and_named_safely() {
    let long = "x".repeat(1000);
    let uids = [
        "../../etc/passwd",
        "a/b",
        "..",
        "nul\0byte",
        long.as_str(),
        "ABC",
        "abc",
        "Ünïcødé",
    ];
    let events: Vec<String> = uids.iter().map(|u| event(u, "")).collect();
    let f = split_feed(&calendar(&events)).unwrap();
    let got: Vec<&str> = f.items().iter().map(|i| i.uid.as_str()).collect();
    assert_eq!(got, uids);
    let mut stems = std::collections::HashSet::new();
    for it in f.items() {
        let stem = file_stem_for_uid(&it.uid);
        assert_safe_stem(&stem);
        assert!(
            stems.insert(stem.to_lowercase()),
            "case-insensitive collision for {:?}",
            it.uid
        );
        assert_eq!(uid_of_ics(&f.render(it)).as_deref(), Some(it.uid.as_str()));
    }
}

#[test]
fn cancellation() {
    let body = crlf(&format!(
        "BEGIN:VCALENDAR\nMETHOD:CANCEL\n{}END:VCALENDAR\n",
        event("c", "")
    ));
    let f = split_feed(&body).unwrap();
    assert!(f.items()[0].cancelled);
    let f = split_feed(&calendar(&[
        event("m", "STATUS:cancelled \n"),
        event("o", "STATUS:CONFIRMED\n"),
        event("o", "RECURRENCE-ID:20240302T100000Z\nSTATUS:CANCELLED\n"),
    ]))
    .unwrap();
    assert!(item(&f, "m").cancelled);
    assert!(
        !item(&f, "o").cancelled,
        "a cancelled instance does not cancel the series"
    );
}

fn span_of(extra_lines: &str) -> Span {
    let ev = format!("BEGIN:VEVENT\nUID:s\n{extra_lines}END:VEVENT\n");
    let f = split_feed(&calendar(&[ev])).unwrap();
    assert_eq!(f.items().len(), 1, "{f:?}");
    f.items()[0].span
}

#[test]
fn spans() {
    let sp = |a: &str, b: Option<&str>| Span {
        first_start: Some(utc(a)),
        last_end: b.map(utc),
    };
    // UTC with DTEND / DURATION / neither.
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\nDTEND:20240301T113000Z\n"),
        sp("20240301T100000", Some("20240301T113000"))
    );
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\nDURATION:PT45M\n"),
        sp("20240301T100000", Some("20240301T104500"))
    );
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\n"),
        sp("20240301T100000", Some("20240301T100000"))
    );
    // TZID (IANA), summer and winter; unknown TZID = UTC.
    assert_eq!(
        span_of("DTSTART;TZID=Europe/Berlin:20240701T100000\nDTEND;TZID=Europe/Berlin:20240701T110000\n"),
        sp("20240701T080000", Some("20240701T090000"))
    );
    assert_eq!(
        span_of("DTSTART;TZID=America/New_York:20240110T150000\nDURATION:PT1H\n"),
        sp("20240110T200000", Some("20240110T210000"))
    );
    assert_eq!(
        span_of("DTSTART;TZID=Custom Zone:20240110T150000\n"),
        sp("20240110T150000", Some("20240110T150000"))
    );
    // All-day: midnight UTC, +1 day without DTEND.
    assert_eq!(
        span_of("DTSTART;VALUE=DATE:20240301\n"),
        sp("20240301T000000", Some("20240302T000000"))
    );
    assert_eq!(
        span_of("DTSTART;VALUE=DATE:20240301\nDTEND;VALUE=DATE:20240304\n"),
        sp("20240301T000000", Some("20240304T000000"))
    );
    // RRULE with UNTIL / COUNT / neither.
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\nDTEND:20240301T110000Z\nRRULE:FREQ=WEEKLY;UNTIL=20240329T100000Z\n"),
        sp("20240301T100000", Some("20240329T110000"))
    );
    assert_eq!(
        span_of("DTSTART;TZID=Europe/Berlin:20240301T100000\nDURATION:PT1H\nRRULE:FREQ=DAILY;COUNT=31\n"),
        // 30 days later, across the DST change: 10:00 local is 08:00 UTC.
        sp("20240301T090000", Some("20240331T090000"))
    );
    assert_eq!(
        span_of("DTSTART;VALUE=DATE:20240105\nRRULE:FREQ=MONTHLY;INTERVAL=2;COUNT=3\n"),
        sp("20240105T000000", Some("20240506T000000"))
    );
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\nRRULE:FREQ=WEEKLY\n"),
        sp("20240301T100000", None)
    );
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10\n"),
        sp("20240301T100000", None)
    );
    // RDATE beyond the rule.
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\nDURATION:PT1H\nRRULE:FREQ=DAILY;COUNT=2\nRDATE:20240310T100000Z,20240305T100000Z\n"),
        sp("20240301T100000", Some("20240310T110000"))
    );
    // No DTSTART: unknown.
    assert_eq!(span_of("SUMMARY:x\n"), Span::default());
    // Unparseable DTEND: the end is unknown, not guessed.
    assert_eq!(
        span_of("DTSTART:20240301T100000Z\nDTEND:tomorrow\n"),
        sp("20240301T100000", None)
    );
}

#[test]
fn span_covers_overrides() {
    let f = split_feed(&fixture()).unwrap();
    let weekly = item(&f, "weekly-1@example.com");
    // Master: Fridays 10:00 Berlin (09:00 UTC) until 2024-03-01 09:00 UTC, one hour each.
    assert_eq!(weekly.span.first_start, Some(utc("20240105T090000")));
    assert_eq!(weekly.span.last_end, Some(utc("20240301T100000")));

    let f = split_feed(&calendar(&[
        event("m", "RRULE:FREQ=DAILY;COUNT=3\n"),
        "BEGIN:VEVENT\nUID:m\nRECURRENCE-ID:20240303T100000Z\nDTSTART:20240420T100000Z\nEND:VEVENT\n".to_owned(),
    ]))
    .unwrap();
    // The override inherits the master's one-hour duration.
    assert_eq!(
        item(&f, "m").span,
        Span {
            first_start: Some(utc("20240301T100000")),
            last_end: Some(utc("20240420T110000"))
        }
    );
    let f = split_feed(&calendar(&[
        event("m", "RRULE:FREQ=DAILY;COUNT=3\n"),
        event("m", "RECURRENCE-ID;RANGE=THISANDFUTURE:20240302T100000Z\n"),
    ]))
    .unwrap();
    assert_eq!(item(&f, "m").span.last_end, None);
}

#[test]
fn floating_times_use_x_wr_timezone() {
    let body = crlf(&format!(
        "BEGIN:VCALENDAR\nX-WR-TIMEZONE:Europe/Berlin\n{}END:VCALENDAR\n",
        "BEGIN:VEVENT\nUID:f\nDTSTART:20240701T100000\nEND:VEVENT\n"
    ));
    let f = split_feed(&body).unwrap();
    assert_eq!(f.items()[0].span.first_start, Some(utc("20240701T080000")));
    let f = split_feed(&calendar(&[
        "BEGIN:VEVENT\nUID:f\nDTSTART:20240701T100000\nEND:VEVENT\n".to_owned(),
    ]))
    .unwrap();
    assert_eq!(f.items()[0].span.first_start, Some(utc("20240701T100000")));
}

#[test]
fn uid_of_ics_reads_the_first_vevent() {
    assert_eq!(uid_of_ics(b"BEGIN:VCALENDAR\nBEGIN:VEVENT\nBEGIN:VALARM\nUID:alarm\nEND:VALARM\nUID:ev\nEND:VEVENT\nEND:VCALENDAR\n").as_deref(), Some("ev"));
    assert_eq!(
        uid_of_ics(b"BEGIN:VCALENDAR\rBEGIN:VEVENT\rUID:a\r b\rEND:VEVENT\r").as_deref(),
        Some("ab")
    );
    assert_eq!(
        uid_of_ics(b"BEGIN:VCALENDAR\nBEGIN:VTODO\nUID:t\nEND:VTODO\nEND:VCALENDAR\n"),
        None
    );
    assert_eq!(
        uid_of_ics(b"BEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nBEGIN:VEVENT\nUID:late\nEND:VEVENT\n"),
        None
    );
    assert_eq!(uid_of_ics(b""), None);
}

#[test]
fn content_hash_is_sha256() {
    assert_eq!(
        content_hash_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(content_hash(b"abc")[0], 0xba);
}

#[test]
fn file_stems() {
    for uid in [
        "../x", "/", "\0", "a\0b", "", ".", "..", "...", ".x", "x..y", "a b", "A",
    ] {
        let stem = file_stem_for_uid(uid);
        assert_safe_stem(&stem);
        assert!(stem.contains('~'), "{uid:?} must be hashed: {stem}");
    }
    let long = "y".repeat(500);
    assert_safe_stem(&file_stem_for_uid(&long));
    assert_ne!(file_stem_for_uid("ABC"), file_stem_for_uid("abc"));
    assert_eq!(file_stem_for_uid("abc"), "abc");
    assert_ne!(file_stem_for_uid("ABC").to_lowercase(), "abc");
    assert_eq!(
        file_stem_for_uid("040000008200e00074c5b7101a82e008@x.com"),
        "040000008200e00074c5b7101a82e008@x.com"
    );
}

fn assert_safe_stem(stem: &str) {
    assert!(!stem.is_empty());
    assert!(stem != "." && stem != "..");
    assert!(!stem.starts_with('.'));
    assert!(!stem.contains('/') && !stem.contains('\0') && !stem.contains('\\'));
    assert!(stem.len() <= 100, "{stem}");
    assert!(
        stem.bytes().all(
            |c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'@' | b'+' | b'-' | b'~')
        ),
        "{stem:?}"
    );
}

/// A feed of `n` events of about 1.5 KB each, like a large organizer's feed.
fn big_feed(n: usize) -> Vec<u8> {
    let mut s = format!("BEGIN:VCALENDAR\n{PROLOG}METHOD:PUBLISH\n{VTZ_BERLIN}{VTZ_NY}");
    for i in 0..n {
        let day = 1 + i % 28;
        s.push_str(&format!(
            "BEGIN:VEVENT\nUID:{i:08x}-meeting@meet.example.com\nDTSTAMP:20240101T000000Z\n\
DTSTART;TZID=Europe/Berlin:202403{day:02}T100000\nDTEND;TZID=Europe/Berlin:202403{day:02}T110000\n\
RRULE:FREQ=WEEKLY;COUNT=10\nSUMMARY:Project meeting number {i}\nLOCATION:https://meet.example.com/j/{i}\n\
ORGANIZER;CN=\"Organizer, The\":mailto:organizer@example.com\n\
ATTENDEE;CN=Alice;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED:mailto:alice@example.com\n\
ATTENDEE;CN=Bob;ROLE=OPT-PARTICIPANT;PARTSTAT=NEEDS-ACTION:mailto:bob@example.com\n\
X-MEET-ID:{i}\n"
        ));
        s.push_str("DESCRIPTION:");
        for k in 0..14 {
            s.push_str(&format!(
                "Line {k} of the agenda with some words to make it long enough. "
            ));
            s.push_str("\n ");
        }
        s.push_str("end\nBEGIN:VALARM\nACTION:DISPLAY\nTRIGGER:-PT10M\nEND:VALARM\nEND:VEVENT\n");
    }
    s.push_str("END:VCALENDAR\n");
    crlf(&s)
}

#[test]
fn split_speed() {
    // Release: `cargo test --release --lib ics::tests::split_speed -- --nocapture`.
    let n = if cfg!(debug_assertions) {
        1_000
    } else {
        10_000
    };
    let body = big_feed(n);
    let t = std::time::Instant::now();
    let f = split_feed(&body).unwrap();
    let took = t.elapsed();
    assert_eq!(f.items().len(), n);
    assert!(f.skipped().is_empty());
    let t2 = std::time::Instant::now();
    let rendered: usize = f.items().iter().map(|i| f.render(i).len()).sum();
    let took_render = t2.elapsed();
    let mb = body.len() as f64 / 1e6;
    println!(
        "split_feed: {n} events, {mb:.1} MB in {:.1} ms = {:.0} MB/s ({}); render all: {:.1} ms ({:.1} MB)",
        took.as_secs_f64() * 1e3,
        mb / took.as_secs_f64(),
        if cfg!(debug_assertions) { "debug build" } else { "release build" },
        took_render.as_secs_f64() * 1e3,
        rendered as f64 / 1e6,
    );
}

#[test]
fn hundred_thousand_components() {
    let mut s = String::from("BEGIN:VCALENDAR\nVERSION:2.0\n");
    for i in 0..100_000 {
        s.push_str(&format!(
            "BEGIN:VEVENT\nUID:{}\nRECURRENCE-ID:2024{:04}T000000Z\nEND:VEVENT\n",
            i % 7,
            101 + i % 1000
        ));
    }
    s.push_str("END:VCALENDAR\n");
    let f = split_feed(s.as_bytes()).unwrap();
    assert_eq!(f.items().len(), 7);
    // Distinct (UID, RECURRENCE-ID) pairs: lcm(7, 1000) = 7000, the rest are identical copies.
    assert_eq!(f.items().iter().map(|i| i.components).sum::<usize>(), 7000);
}

#[test]
fn megabyte_lines() {
    let big = "x".repeat(3_000_000);
    let f = split_feed(&calendar(&[
        event("big", &format!("X-BIG:{big}\n")),
        event("small", ""),
    ]))
    .unwrap();
    assert_eq!(f.items().len(), 2);
    assert!(f.render(item(&f, "big")).len() > 3_000_000);
}

// ---- property tests ----

/// Checks that must hold for any feed that splits.
fn check_split(body: &[u8]) {
    let Ok(f) = split_feed(body) else {
        return;
    };
    for it in f.items() {
        assert!(it.components >= 1);
        let out = f.render(it);
        // wrapped in BEGIN/END:VCALENDAR lines with the feed's line end
        assert!(out.starts_with(b"BEGIN:VCALENDAR"));
        let eol: &[u8] = match out.get(15..17) {
            Some(b"\r\n") => b"\r\n",
            Some([b'\n', _]) => b"\n",
            _ => b"\r",
        };
        assert!(out.ends_with(&[&b"END:VCALENDAR"[..], eol].concat()));
        assert_eq!(
            uid_of_ics(&out).as_deref(),
            Some(it.uid.as_str()),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert_safe_stem(&file_stem_for_uid(&it.uid));
        // The rendered file is a feed of exactly this item, and rendering is a fixpoint.
        let again = split_feed(&out).unwrap();
        assert_eq!(
            again.items().len(),
            1,
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(again.skipped().is_empty(), "{again:?}");
        let a = &again.items()[0];
        assert_eq!(
            (&a.uid, a.components, a.span),
            (&it.uid, it.components, it.span)
        );
        assert_eq!(again.render(a), out);
    }
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b" ".to_vec()),
        Just(b":".to_vec()),
        Just(b";".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"BEGIN:VEVENT\r\n".to_vec()),
        Just(b"END:VEVENT\r\n".to_vec()),
        Just(b"BEGIN:VALARM\r\n".to_vec()),
        Just(b"END:VCALENDAR\r\n".to_vec()),
        Just(b"BEGIN:VCALENDAR\r\n".to_vec()),
        Just(b"UID:weekly-1@example.com\r\n".to_vec()),
        Just(b"RECURRENCE-ID:20240112T090000Z\r\n".to_vec()),
        Just(b"RRULE:FREQ=MONTHLY;COUNT=99999\r\n".to_vec()),
        Just(b"DTSTART;TZID=Europe/Berlin:20240331T023000\r\n".to_vec()),
        Just(vec![0xff]),
        Just(vec![0]),
        proptest::collection::vec(any::<u8>(), 1..8),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), fragment()).prop_map(|(p, f)| Mutation::Insert(p, f)),
        (any::<usize>(), 1usize..200).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Replace(p, b)),
        (any::<usize>(), 1usize..400).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
    ]
}

fn apply(body: &mut Vec<u8>, m: &Mutation) {
    let len = body.len();
    match m {
        Mutation::Insert(p, f) => {
            let p = p % (len + 1);
            body.splice(p..p, f.iter().copied());
        }
        Mutation::Delete(p, n) if len > 0 => {
            let p = p % len;
            body.drain(p..(p + n).min(len));
        }
        Mutation::Replace(p, b) if len > 0 => body[p % len] = *b,
        Mutation::Duplicate(p, n) if len > 0 => {
            let p = p % len;
            let piece = body[p..(p + n).min(len)].to_vec();
            body.splice(p..p, piece);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        check_split(&body);
        let _ = uid_of_ics(&body);
    }

    #[test]
    fn never_panics_on_fragment_soup(parts in proptest::collection::vec(fragment(), 0..80)) {
        let mut body = b"BEGIN:VCALENDAR\r\n".to_vec();
        for p in &parts {
            body.extend_from_slice(p);
        }
        check_split(&body);
        body.extend_from_slice(b"END:VCALENDAR\r\n");
        check_split(&body);
    }

    #[test]
    fn never_panics_on_mutated_feeds(
        muts in proptest::collection::vec(mutation(), 1..6),
        eol in prop_oneof![Just("\r\n"), Just("\n"), Just("\r")],
    ) {
        let mut body = fixture_str().replace('\n', eol).into_bytes();
        for m in &muts {
            apply(&mut body, m);
        }
        check_split(&body);
        let _ = uid_of_ics(&body);
    }

    #[test]
    fn stems_are_safe(uid in any::<String>()) {
        assert_safe_stem(&file_stem_for_uid(&uid));
    }

    #[test]
    fn stems_are_injective(
        uids in proptest::collection::hash_set(
            prop_oneof![
                any::<String>(),
                "[a-zA-Z0-9._@+~/-]{0,120}",
                "[a-z.]{0,4}",
            ],
            0..64,
        )
    ) {
        let mut seen: std::collections::HashMap<String, &String> = std::collections::HashMap::new();
        for uid in &uids {
            let stem = file_stem_for_uid(uid);
            assert_safe_stem(&stem);
            // Case-insensitive: the stems must not collide on case-folding file systems either.
            if let Some(other) = seen.insert(stem.to_lowercase(), uid) {
                prop_assert!(false, "{:?} and {:?} share stem {:?}", other, uid, stem);
            }
        }
    }
}

#[test]
fn folded_begin_line_is_bad_folding_not_a_vanishing_event() {
    let broken = "BEGIN:VEVENT\n X-LOST-NAME:text\nUID:folded-begin\nEND:VEVENT\n".to_owned();
    let f = split_feed(&calendar(&[broken, event("fine", "")])).unwrap();
    assert_eq!(f.items().len(), 1);
    assert_eq!(f.skipped().len(), 1, "{f:?}");
    assert_eq!(f.skipped()[0].uid.as_deref(), Some("folded-begin"));
    assert!(f.skipped()[0].reason.contains("bad folding"));
    // A fold inside the name itself is legal and harmless.
    let legal = "BEGIN:VEV\n ENT\nUID:legal\nEND:VEVENT\n".to_owned();
    let f = split_feed(&calendar(&[legal])).unwrap();
    assert_eq!(f.items().len(), 1, "{f:?}");
}

#[test]
fn prolog_and_vtimezone_sizes_are_capped() {
    let big = "z".repeat(MAX_PROLOG_LINE);
    let huge_tz = format!(
        "BEGIN:VTIMEZONE\nTZID:Europe/Berlin\nX-PAD:{}\nEND:VTIMEZONE\n",
        "p".repeat(MAX_VTIMEZONE)
    );
    let body = crlf(&format!(
        "BEGIN:VCALENDAR\nVERSION:2.0\nX-BIG:{big}\n{huge_tz}{}END:VCALENDAR\n",
        event("e", "DTSTART;TZID=Europe/Berlin:20240301T100000\n")
    ));
    let f = split_feed(&body).unwrap();
    let out = f.render(&f.items()[0]);
    assert!(out.len() < 1000, "{}", out.len());
    assert!(contains(&out, b"VERSION:2.0"));
    assert_eq!(f.warnings().len(), 1);
    assert_eq!(f.skipped().len(), 1);
    assert!(f.skipped()[0].uid.is_none());
    // Many moderate lines: the total is capped too.
    let mut s = String::from("BEGIN:VCALENDAR\n");
    for i in 0..200 {
        s.push_str(&format!("X-P{i}:{}\n", "q".repeat(1000)));
    }
    s.push_str(&event("e", ""));
    s.push_str("END:VCALENDAR\n");
    let f = split_feed(&crlf(&s)).unwrap();
    let out = f.render(&f.items()[0]);
    assert!(out.len() <= MAX_PROLOG + 1000, "{}", out.len());
}
