//! Expansion of a [`Recurrence`] into occurrence starts, the way a feed
//! consumer expands `RRULE` (RFC 5545): in the local time of `DTSTART`'s zone,
//! so a weekly 09:00 Zurich meeting stays at 09:00 across DST changes.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::{Freq, Recurrence};

/// Local wall time → instant. Ambiguous times take the earlier instant; times
/// in a gap move forward by an hour (RFC 5545 §3.3.5).
pub(crate) fn resolve_local(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    if let Some(t) = zone.from_local_datetime(&local).earliest() {
        return t.with_timezone(&Utc);
    }
    zone.from_local_datetime(&(local + Duration::hours(1)))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| local.and_utc())
}

fn add_months(date: NaiveDate, months: i64) -> Option<NaiveDate> {
    let index = i64::from(date.year()) * 12 + i64::from(date.month0()) + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
    NaiveDate::from_ymd_opt(year, month, date.day())
}

/// Occurrence starts (EXDATEs not removed), at most `cap`, none after `horizon`.
pub(crate) fn occurrences(
    start: DateTime<Utc>,
    rule: &Recurrence,
    zone: Tz,
    horizon: DateTime<Utc>,
    cap: usize,
) -> Vec<DateTime<Utc>> {
    let local = start.with_timezone(&zone).naive_local();
    let interval = i64::from(rule.interval.max(1));
    let limit = rule.count.map(|c| (c as usize).min(cap)).unwrap_or(cap);
    let mut out = Vec::new();
    // Monthly rules skip months without the day; bound the attempts anyway.
    let max_steps = limit.saturating_mul(12).saturating_add(48);
    for k in 0..max_steps as i64 {
        if out.len() >= limit {
            break;
        }
        let candidate = match rule.freq {
            Freq::Daily => Some(local + Duration::days(k * interval)),
            Freq::Weekly => Some(local + Duration::days(7 * k * interval)),
            Freq::Monthly => {
                add_months(local.date(), k * interval).map(|d| d.and_time(local.time()))
            }
        };
        let Some(candidate) = candidate else {
            continue;
        };
        let at = if k == 0 {
            start
        } else {
            resolve_local(zone, candidate)
        };
        // COUNT and UNTIL must not both be set (RFC 5545); COUNT wins, as in the RRULE written.
        if at > horizon || (rule.count.is_none() && rule.until.is_some_and(|u| at > u)) {
            break;
        }
        out.push(at);
    }
    out
}
