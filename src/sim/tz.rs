//! `VTIMEZONE` components derived from the IANA data in chrono-tz: the
//! transitions of a reference year become yearly rules (`BYMONTH`/`BYDAY`,
//! starting 1970, as Outlook and Thunderbird write them). Works for any zone,
//! cached per (zone, year).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc, Weekday,
};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

#[derive(Clone, Debug, PartialEq)]
struct Observed {
    total: i32,
    dst: bool,
    name: Option<String>,
}

fn observe(zone: Tz, t: DateTime<Utc>) -> Observed {
    let o = zone.offset_from_utc_datetime(&t.naive_utc());
    Observed {
        total: o.fix().local_minus_utc(),
        dst: !o.dst_offset().is_zero(),
        name: o.abbreviation().map(str::to_string),
    }
}

struct Transition {
    at: DateTime<Utc>,
    from: Observed,
    to: Observed,
}

fn transitions(zone: Tz, year: i32) -> Vec<Transition> {
    let Some(first) = NaiveDate::from_ymd_opt(year, 1, 1) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut t = first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let mut before = observe(zone, t);
    while t.year() == year {
        let next = t + Duration::days(1);
        let after = observe(zone, next);
        if after.total != before.total || after.dst != before.dst {
            // Binary search for the first second with the new offset.
            let (mut lo, mut hi) = (t, next);
            while (hi - lo).num_seconds() > 1 {
                let mid = lo + (hi - lo) / 2;
                let o = observe(zone, mid);
                if o.total == before.total && o.dst == before.dst {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(Transition {
                at: hi,
                from: before,
                to: observe(zone, hi),
            });
        }
        before = after;
        t = next;
    }
    out
}

fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, (a / 60) % 60, a % 60);
    if s == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{s:02}")
    }
}

fn local_text(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S").to_string()
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

fn days_in_month(year: i32, month: u32) -> u32 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.and_then(|n| n.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

/// The `nth` (1-based, or -1 = last) `weekday` of a month.
fn nth_weekday(year: i32, month: u32, weekday: Weekday, nth: i32) -> Option<NaiveDate> {
    if nth < 0 {
        let mut d = NaiveDate::from_ymd_opt(year, month, days_in_month(year, month))?;
        while d.weekday() != weekday {
            d = d.pred_opt()?;
        }
        Some(d)
    } else {
        let mut d = NaiveDate::from_ymd_opt(year, month, 1)?;
        while d.weekday() != weekday {
            d = d.succ_opt()?;
        }
        d.checked_add_days(chrono::Days::new(7 * (nth as u64 - 1)))
    }
}

/// Month, weekday and week of the month (1-based, -1 = last) of a local date.
fn yearly_rule(local: NaiveDateTime) -> (u32, Weekday, i32) {
    let day = local.day();
    let nth = if day + 7 > days_in_month(local.year(), local.month()) {
        -1
    } else {
        ((day - 1) / 7 + 1) as i32
    };
    (local.month(), local.weekday(), nth)
}

fn observance(out: &mut Vec<String>, t: &Transition, yearly: bool) {
    let kind = if t.to.dst { "DAYLIGHT" } else { "STANDARD" };
    // DTSTART of an observance is local time in the offset before the change.
    let local = (t.at + Duration::seconds(i64::from(t.from.total))).naive_utc();
    out.push(format!("BEGIN:{kind}"));
    out.push(format!("TZOFFSETFROM:{}", offset_text(t.from.total)));
    out.push(format!("TZOFFSETTO:{}", offset_text(t.to.total)));
    if let Some(name) = &t.to.name {
        out.push(format!("TZNAME:{name}"));
    }
    let (month, weekday, nth) = yearly_rule(local);
    match nth_weekday(1970, month, weekday, nth) {
        Some(d) if yearly => {
            out.push(format!("DTSTART:{}", local_text(d.and_time(local.time()))));
            let mut rule = format!("RRULE:FREQ=YEARLY;BYMONTH={month};BYDAY=");
            let _ = write!(rule, "{nth}{}", weekday_code(weekday));
            out.push(rule);
        }
        _ => out.push(format!("DTSTART:{}", local_text(local))),
    }
    out.push(format!("END:{kind}"));
}

fn build(zone: Tz, year: i32) -> Vec<String> {
    let mut out = vec![
        "BEGIN:VTIMEZONE".to_string(),
        format!("TZID:{}", zone.name()),
    ];
    let found = transitions(zone, year);
    if found.is_empty() {
        let mid = NaiveDate::from_ymd_opt(year, 7, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
            .unwrap_or_default();
        let o = observe(zone, mid);
        out.push("BEGIN:STANDARD".into());
        out.push(format!("TZOFFSETFROM:{}", offset_text(o.total)));
        out.push(format!("TZOFFSETTO:{}", offset_text(o.total)));
        if let Some(name) = &o.name {
            out.push(format!("TZNAME:{name}"));
        }
        out.push("DTSTART:19700101T000000".into());
        out.push("END:STANDARD".into());
    } else {
        // The usual two changes a year become yearly rules; anything else is
        // written as one-off observances of that year.
        let yearly = found.len() == 2 && found[0].to.dst != found[1].to.dst;
        for t in &found {
            observance(&mut out, t, yearly);
        }
    }
    out.push("END:VTIMEZONE".into());
    out
}

/// Unfolded content lines of the `VTIMEZONE` for `zone`, with rules taken from `year`.
pub(crate) fn vtimezone(zone: Tz, year: i32) -> Arc<Vec<String>> {
    type Cache = Mutex<HashMap<(&'static str, i32), Arc<Vec<String>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (zone.name(), year);
    if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let built = Arc::new(build(zone, year));
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, built.clone());
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(zone: Tz) -> String {
        vtimezone(zone, 2025).join("\n")
    }

    #[test]
    fn european_rules() {
        let z = text(chrono_tz::Europe::Zurich);
        assert!(z.contains("TZID:Europe/Zurich"));
        assert!(z.contains(
            "BEGIN:DAYLIGHT\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nTZNAME:CEST\nDTSTART:19700329T020000\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\nEND:DAYLIGHT"
        ), "{z}");
        assert!(z.contains(
            "BEGIN:STANDARD\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nTZNAME:CET\nDTSTART:19701025T030000\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\nEND:STANDARD"
        ), "{z}");
        let l = text(chrono_tz::Europe::London);
        assert!(
            l.contains("TZOFFSETFROM:+0000\nTZOFFSETTO:+0100\nTZNAME:BST\nDTSTART:19700329T010000"),
            "{l}"
        );
        assert!(
            l.contains("TZOFFSETFROM:+0100\nTZOFFSETTO:+0000\nTZNAME:GMT\nDTSTART:19701025T020000"),
            "{l}"
        );
    }

    #[test]
    fn american_and_southern_rules() {
        let ny = text(chrono_tz::America::New_York);
        assert!(ny.contains("TZOFFSETFROM:-0500\nTZOFFSETTO:-0400\nTZNAME:EDT\nDTSTART:19700308T020000\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU"), "{ny}");
        assert!(ny.contains("TZOFFSETFROM:-0400\nTZOFFSETTO:-0500\nTZNAME:EST\nDTSTART:19701101T020000\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU"), "{ny}");
        let la = text(chrono_tz::America::Los_Angeles);
        assert!(la.contains("TZOFFSETFROM:-0800\nTZOFFSETTO:-0700"), "{la}");
        let syd = text(chrono_tz::Australia::Sydney);
        assert!(syd.contains("BEGIN:STANDARD\nTZOFFSETFROM:+1100\nTZOFFSETTO:+1000\nTZNAME:AEST\nDTSTART:19700405T030000\nRRULE:FREQ=YEARLY;BYMONTH=4;BYDAY=1SU"), "{syd}");
        assert!(syd.contains("BEGIN:DAYLIGHT\nTZOFFSETFROM:+1000\nTZOFFSETTO:+1100\nTZNAME:AEDT\nDTSTART:19701004T020000\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=1SU"), "{syd}");
    }

    #[test]
    fn zones_without_dst() {
        for (zone, offset, name) in [
            (chrono_tz::Asia::Tokyo, "+0900", "JST"),
            (chrono_tz::Asia::Kolkata, "+0530", "IST"),
            (chrono_tz::UTC, "+0000", "UTC"),
        ] {
            let t = text(zone);
            assert!(
                t.contains(&format!("BEGIN:STANDARD\nTZOFFSETFROM:{offset}\nTZOFFSETTO:{offset}\nTZNAME:{name}\nDTSTART:19700101T000000\nEND:STANDARD")),
                "{t}"
            );
            assert!(!t.contains("DAYLIGHT"));
        }
    }

    /// The written rules reproduce chrono-tz's offsets around each change in
    /// other years too.
    #[test]
    fn rules_hold_in_other_years() {
        for zone in [
            chrono_tz::Europe::Paris,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Sydney,
        ] {
            for year in [2024, 2026, 2030] {
                let found = transitions(zone, year);
                assert_eq!(found.len(), 2, "{zone} {year}");
                let local = |t: &Transition| {
                    (t.at + Duration::seconds(i64::from(t.from.total))).naive_utc()
                };
                let base = transitions(zone, 2025);
                for t in &found {
                    let same = base.iter().find(|b| b.to.dst == t.to.dst).unwrap();
                    assert_eq!(
                        yearly_rule(local(t)),
                        yearly_rule(local(same)),
                        "{zone} {year}"
                    );
                    assert_eq!(local(t).time(), local(same).time());
                }
            }
        }
    }
}
