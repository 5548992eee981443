//! Date/time values, durations and simple recurrence bounds, for [`super::Span`].
//!
//! Only what the sync window needs: a conservative first start and last end. Local times are
//! interpreted with chrono-tz when the TZID is an IANA name (prefixes such as
//! `/mozilla.org/20050126_1/` are tolerated), otherwise as UTC.

use std::collections::HashMap;

use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

use super::lines::{param, trim, unquote_first};

pub(crate) const DAY: i64 = 86_400;

/// How local (non-UTC) wall-clock times are turned into instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Zone {
    Utc,
    Tz(Tz),
}

/// A parsed DATE or DATE-TIME value with the zone it is to be read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub local: NaiveDateTime,
    pub zone: Zone,
    pub all_day: bool,
}

impl Stamp {
    pub fn unix(&self) -> i64 {
        local_to_unix(self.local, self.zone)
    }
}

/// Unix seconds of a wall-clock time in `zone`. Ambiguous times take the earlier instant;
/// times in a DST gap are moved forward by an hour (as most clients do).
pub(crate) fn local_to_unix(local: NaiveDateTime, zone: Zone) -> i64 {
    match zone {
        Zone::Utc => local.and_utc().timestamp(),
        Zone::Tz(tz) => {
            if let Some(t) = tz.from_local_datetime(&local).earliest() {
                return t.timestamp();
            }
            local
                .checked_add_signed(chrono::TimeDelta::hours(1))
                .and_then(|l| tz.from_local_datetime(&l).earliest())
                .map(|t| t.timestamp())
                .unwrap_or_else(|| local.and_utc().timestamp())
        }
    }
}

/// Resolves TZID strings to IANA zones, caching the answers.
#[derive(Default)]
pub(crate) struct TzCache {
    map: HashMap<Box<str>, Option<Tz>>,
}

impl TzCache {
    pub fn resolve(&mut self, tzid: &[u8]) -> Option<Tz> {
        let tzid = std::str::from_utf8(tzid).ok()?.trim();
        if let Some(&tz) = self.map.get(tzid) {
            return tz;
        }
        let tz = resolve_tz(tzid);
        // Bound the cache: a hostile feed may carry any number of distinct TZIDs.
        if self.map.len() < 4096 {
            self.map.insert(tzid.into(), tz);
        }
        tz
    }
}

/// An IANA zone for a TZID: IANA names, Windows zone names (Outlook),
/// prefixed IANA names.
pub(crate) fn resolve_tz(tzid: &str) -> Option<Tz> {
    let tzid = tzid.trim().trim_matches('"').trim();
    if let Ok(tz) = tzid.parse::<Tz>() {
        return Some(tz);
    }
    if let Some(iana) = super::windows_zones::iana_for_windows(tzid) {
        return iana.parse::<Tz>().ok();
    }
    // "/mozilla.org/20050126_1/America/New_York", "/Europe/Berlin", "(GMT+1) Europe/Berlin"...
    let segs: Vec<&str> = tzid.split(['/', ' ']).filter(|s| !s.is_empty()).collect();
    for k in (1..=segs.len().min(3)).rev() {
        if let Ok(tz) = segs[segs.len() - k..].join("/").parse::<Tz>() {
            return Some(tz);
        }
    }
    None
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// Parses `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ`.
/// Returns (wall-clock time, is a DATE, is UTC).
pub(crate) fn parse_date_time(v: &[u8]) -> Option<(NaiveDateTime, bool, bool)> {
    let v = trim(v);
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(v.get(0..4)?)?).ok()?,
        digits(v.get(4..6)?)?,
        digits(v.get(6..8)?)?,
    )?;
    if v.len() == 8 {
        return Some((date.and_time(NaiveTime::MIN), true, false));
    }
    if !matches!(v.get(8), Some(b'T' | b't')) {
        return None;
    }
    let utc = match v.len() {
        15 => false,
        16 if matches!(v[15], b'Z' | b'z') => true,
        _ => return None,
    };
    let sec = digits(&v[13..15])?.min(59); // leap second 60 -> 59
    let time = NaiveTime::from_hms_opt(digits(&v[9..11])?, digits(&v[11..13])?, sec)?;
    Some((date.and_time(time), false, utc))
}

/// A DATE / DATE-TIME property value read with its parameters: `TZID` picks the zone,
/// `VALUE=DATE` or an 8-digit value makes it all-day (midnight UTC); floating times use `float`.
pub(crate) fn stamp(params: &[u8], value: &[u8], float: Zone, tzs: &mut TzCache) -> Option<Stamp> {
    // A list is not allowed in DTSTART/DTEND; take the first element anyway.
    let first = value.split(|&b| b == b',').next().unwrap_or(value);
    let (local, is_date, utc) = parse_date_time(first)?;
    let all_day =
        is_date || param(params, "VALUE").is_some_and(|v| trim(v).eq_ignore_ascii_case(b"DATE"));
    let zone = if all_day || utc {
        Zone::Utc
    } else if let Some(tzid) = param(params, "TZID") {
        tzs.resolve(tzid).map_or(Zone::Utc, Zone::Tz)
    } else {
        float
    };
    Some(Stamp {
        local,
        zone,
        all_day,
    })
}

/// Parses an RFC 5545 DURATION (`[+-]P[nW][nD][T[nH][nM][nS]]`) into seconds.
pub(crate) fn parse_duration(v: &[u8]) -> Option<i64> {
    let v = trim(v);
    let (neg, rest) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let rest = rest
        .strip_prefix(b"P")
        .or_else(|| rest.strip_prefix(b"p"))?;
    let mut total: i64 = 0;
    let mut in_time = false;
    let mut num: Option<i64> = None;
    let mut any = false;
    for &b in rest {
        match b {
            b'0'..=b'9' => {
                let n = num.unwrap_or(0);
                num = Some(n.checked_mul(10)?.checked_add(i64::from(b - b'0'))?);
            }
            b'T' | b't' if num.is_none() && !in_time => in_time = true,
            _ => {
                let unit = match (b.to_ascii_uppercase(), in_time) {
                    (b'W', false) => 7 * DAY,
                    (b'D', false) => DAY,
                    (b'H', true) => 3600,
                    (b'M', true) => 60,
                    (b'S', true) => 1,
                    _ => return None,
                };
                total = total.checked_add(num.take()?.checked_mul(unit)?)?;
                any = true;
            }
        }
    }
    if num.is_some() || !any {
        return None;
    }
    Some(if neg { -total } else { total })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freq {
    Secondly,
    Minutely,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// The start of the last occurrence an RRULE can produce, or `None` when it is unbounded or
/// not computed (COUNT with BY* parts, unknown FREQ, unparseable parts).
pub(crate) fn rrule_last_start(rule: &[u8], start: &Stamp) -> Option<i64> {
    let mut freq = None;
    let mut interval: u64 = 1;
    let mut count: Option<u64> = None;
    let mut until: Option<&[u8]> = None;
    let mut has_by = false;
    for part in trim(rule).split(|&b| b == b';') {
        let mut kv = part.splitn(2, |&b| b == b'=');
        let key = trim(kv.next().unwrap_or_default());
        let val = trim(kv.next().unwrap_or_default());
        if key.eq_ignore_ascii_case(b"FREQ") {
            freq = Some(match val.to_ascii_uppercase().as_slice() {
                b"SECONDLY" => Freq::Secondly,
                b"MINUTELY" => Freq::Minutely,
                b"HOURLY" => Freq::Hourly,
                b"DAILY" => Freq::Daily,
                b"WEEKLY" => Freq::Weekly,
                b"MONTHLY" => Freq::Monthly,
                b"YEARLY" => Freq::Yearly,
                _ => return None,
            });
        } else if key.eq_ignore_ascii_case(b"INTERVAL") {
            interval = u64::from(digits(val)?).max(1);
        } else if key.eq_ignore_ascii_case(b"COUNT") {
            count = Some(u64::from(digits(val)?));
        } else if key.eq_ignore_ascii_case(b"UNTIL") {
            until = Some(val);
        } else if key.len() > 2 && key[..2].eq_ignore_ascii_case(b"BY") {
            has_by = true;
        }
    }
    let freq = freq?;
    let first = start.unix();
    if let Some(until) = until {
        // UNTIL bounds every occurrence start, whatever the BY* parts say.
        let (local, is_date, utc) = parse_date_time(until)?;
        let bound = if utc {
            local.and_utc().timestamp()
        } else if is_date && !start.all_day {
            // A DATE UNTIL with a timed DTSTART: anything on that day (in the event's zone).
            local_to_unix(local, start.zone).checked_add(DAY - 1)?
        } else {
            local_to_unix(local, start.zone)
        };
        return Some(bound.max(first));
    }
    let count = count?;
    if count <= 1 {
        return Some(first);
    }
    if has_by {
        return None;
    }
    let steps = (count - 1).checked_mul(interval)?;
    let local = start.local;
    let last_local = match freq {
        Freq::Secondly | Freq::Minutely | Freq::Hourly => {
            let unit: i64 = match freq {
                Freq::Secondly => 1,
                Freq::Minutely => 60,
                _ => 3600,
            };
            return first.checked_add(i64::try_from(steps).ok()?.checked_mul(unit)?);
        }
        Freq::Daily => local.checked_add_days(Days::new(steps))?,
        Freq::Weekly => local.checked_add_days(Days::new(steps.checked_mul(7)?))?,
        Freq::Monthly if local.day() <= 28 => {
            local.checked_add_months(Months::new(u32::try_from(steps).ok()?))?
        }
        Freq::Yearly if !(local.month() == 2 && local.day() == 29) => {
            local.checked_add_months(Months::new(u32::try_from(steps.checked_mul(12)?).ok()?))?
        }
        // Day 29..31 monthly, or Feb 29 yearly: months/years without that day are skipped
        // (RFC 5545 §3.3.10), so walk them, within a small budget.
        Freq::Monthly | Freq::Yearly => {
            let step_months = if freq == Freq::Monthly {
                interval
            } else {
                interval.checked_mul(12)?
            };
            walk_skipping(local, step_months, count - 1)?
        }
    };
    Some(local_to_unix(last_local, start.zone))
}

/// Steps `n` valid occurrences of `start`'s day-of-month, `step_months` apart.
fn walk_skipping(start: NaiveDateTime, step_months: u64, mut n: u64) -> Option<NaiveDateTime> {
    const BUDGET: u64 = 2000;
    let base = i64::from(start.year()) * 12 + i64::from(start.month0());
    let mut k: u64 = 0;
    for _ in 0..BUDGET {
        k += step_months;
        let m = base.checked_add(i64::try_from(k).ok()?)?;
        let year = i32::try_from(m.div_euclid(12)).ok()?;
        let month = u32::try_from(m.rem_euclid(12)).ok()? + 1;
        if let Some(d) = NaiveDate::from_ymd_opt(year, month, start.day()) {
            n -= 1;
            if n == 0 {
                return Some(d.and_time(start.time()));
            }
        }
    }
    None
}

/// The latest end produced by one RDATE property (`None` if a value does not parse).
pub(crate) fn rdate_last_end(
    params: &[u8],
    value: &[u8],
    duration: i64,
    float: Zone,
    tzs: &mut TzCache,
) -> Option<i64> {
    let mut last: Option<i64> = None;
    for item in value.split(|&b| b == b',') {
        let mut parts = item.splitn(2, |&b| b == b'/');
        let start_v = parts.next().unwrap_or_default();
        let s = stamp(params, start_v, float, tzs)?;
        let start = s.unix();
        let end = match parts.next() {
            None => start.checked_add(duration)?,
            Some(p) => match parse_duration(p) {
                Some(d) => start.checked_add(d)?,
                None => stamp(params, p, float, tzs)?.unix(),
            },
        };
        last = Some(last.map_or(end, |l| l.max(end)).max(start));
    }
    last
}

/// Whether a RECURRENCE-ID's parameters say `RANGE=THISANDFUTURE`.
pub(crate) fn is_this_and_future(params: &[u8]) -> bool {
    param(params, "RANGE")
        .is_some_and(|v| trim(unquote_first(v)).eq_ignore_ascii_case(b"THISANDFUTURE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        parse_date_time(s.as_bytes())
            .unwrap()
            .0
            .and_utc()
            .timestamp()
    }

    fn st(v: &str) -> Stamp {
        stamp(b"", v.as_bytes(), Zone::Utc, &mut TzCache::default()).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration(b"PT1H30M"), Some(5400));
        assert_eq!(parse_duration(b"P1DT2H"), Some(DAY + 7200));
        assert_eq!(parse_duration(b"P2W"), Some(14 * DAY));
        assert_eq!(parse_duration(b"-PT15M"), Some(-900));
        assert_eq!(parse_duration(b"P"), None);
        assert_eq!(parse_duration(b"PT1H5"), None);
        assert_eq!(parse_duration(b"P1M"), None);
        assert_eq!(parse_duration(b"P99999999999999999999D"), None);
    }

    #[test]
    fn tz_resolution() {
        let mut c = TzCache::default();
        assert_eq!(c.resolve(b"Europe/Berlin"), Some(Tz::Europe__Berlin));
        assert_eq!(
            c.resolve(b"/mozilla.org/20050126_1/America/New_York"),
            Some(Tz::America__New_York)
        );
        // Outlook's Windows zone names
        assert_eq!(
            c.resolve(b"W. Europe Standard Time"),
            Some(Tz::Europe__Berlin)
        );
        assert_eq!(
            c.resolve(b"\"(UTC-08:00) Pacific Time (US & Canada)\""),
            Some(Tz::America__Los_Angeles)
        );
        assert_eq!(c.resolve(b"Mars Standard Time"), None);
    }

    #[test]
    fn stamps() {
        let mut c = TzCache::default();
        let s = stamp(b"TZID=Europe/Berlin", b"20240105T100000", Zone::Utc, &mut c).unwrap();
        assert_eq!(s.unix(), utc("20240105T090000"));
        let s = stamp(b"VALUE=DATE", b"20240105", Zone::Utc, &mut c).unwrap();
        assert!(s.all_day);
        assert_eq!(s.unix(), utc("20240105T000000"));
        // DST gap in Berlin: 02:30 does not exist on 2024-03-31.
        let s = stamp(b"TZID=Europe/Berlin", b"20240331T023000", Zone::Utc, &mut c).unwrap();
        assert_eq!(s.unix(), utc("20240331T013000"));
        assert!(stamp(b"", b"2024013", Zone::Utc, &mut c).is_none());
        assert!(stamp(b"", b"20241301", Zone::Utc, &mut c).is_none());
    }

    #[test]
    fn rrule_bounds() {
        let s = st("20240131T100000Z");
        assert_eq!(
            rrule_last_start(b"FREQ=DAILY;COUNT=3", &s),
            Some(utc("20240202T100000"))
        );
        assert_eq!(
            rrule_last_start(b"FREQ=WEEKLY;INTERVAL=2;COUNT=3", &s),
            Some(utc("20240228T100000"))
        );
        // Jan 31, then months with a 31st: Mar, May.
        assert_eq!(
            rrule_last_start(b"FREQ=MONTHLY;COUNT=3", &s),
            Some(utc("20240531T100000"))
        );
        assert_eq!(rrule_last_start(b"FREQ=DAILY", &s), None);
        assert_eq!(rrule_last_start(b"FREQ=DAILY;COUNT=5;BYDAY=MO", &s), None);
        assert_eq!(
            rrule_last_start(b"FREQ=DAILY;UNTIL=20240301T000000Z;BYDAY=MO", &s),
            Some(utc("20240301T000000"))
        );
        assert_eq!(
            rrule_last_start(b"FREQ=DAILY;COUNT=4294967295;INTERVAL=4294967295", &s),
            None
        );
        let leap = st("20240229T100000Z");
        assert_eq!(
            rrule_last_start(b"FREQ=YEARLY;COUNT=2", &leap),
            Some(utc("20280229T100000"))
        );
        assert_eq!(
            rrule_last_start(b"FREQ=MONTHLY;INTERVAL=12;COUNT=3", &leap),
            Some(utc("20320229T100000"))
        );
        let feb30 = st("20240131T100000Z");
        // Every 12 months from Jan 31 is always valid; from a day that never exists: budget.
        assert_eq!(
            rrule_last_start(b"FREQ=YEARLY;COUNT=3", &feb30),
            Some(utc("20260131T100000"))
        );
    }
}
