//! Mapping between our [`Fields`] and the JSON meetings of the Web Meeting
//! API v6 (seed 003, `docs/apis/web-meeting-v6.md`). Pure: no I/O.
//!
//! * [`meeting_body`] builds the body of `POST /api/v6/meeting` and of
//!   `PUT /api/v6/meeting/{id}/false`: the last known server copy (PUT is a
//!   full replacement, so every field the server sent is sent back) or the
//!   seed's minimal body, with the synced fields set on top.
//! * [`fields_from_meeting`] reads a create / PUT / GET answer back.
//! * [`recurring_from_rrule`] / [`rrule_from_recurring`] translate between an
//!   `RRULE` value and the platform's `recurring` object.
//! * [`normalize`] makes local and remote fields comparable (join link,
//!   trailing blank lines, `RRULE` spelling).
//! * [`meeting_id_from_uid`] finds the meeting `id` inside a feed UID.
//!
//! # Assumptions (docs §3, marked \[A\] there)
//! * Times are sent as UTC `YYYY-MM-DDTHH:MM:SS.000Z`; `duration` is the whole
//!   number of minutes between start and end, sent as a JSON number (answers
//!   carry it as a string: both are read).
//! * `invitedParticipants` are sent as plain email strings; answers may hold
//!   strings or `{email, name}` objects.
//! * The `recurring` enums are undocumented. Guessed: `frequencyType`
//!   `"daily"`/`"weekly"`/`"monthly"`; `frequency` = the `INTERVAL`;
//!   `monthlyPattern` `"dayOfMonth"` for monthly rules (the day of the start),
//!   else `""`; `endsType` `"never"`/`"on"`/`"after"`; `endsOn` the `UNTIL`
//!   instant as ISO UTC (null unless `endsType` is `"on"`); `endsAfter` the
//!   `COUNT` (0 unless `"after"`). Reading back, `"date"` is taken for `"on"`
//!   and `"count"` for `"after"`, any case.
//! * The platform can only repeat a meeting every N days, weeks (on the start's
//!   weekday) or months (on the start's day of month). Any other rule part is
//!   refused by name ([`MappingError::Unsupported`]); so is a series with
//!   `EXDATE`s (the API has no field for them). `RDATE` is not part of the
//!   `RRULE` value: the caller must refuse it before calling. A monthly rule
//!   on day 29–31 is accepted; whether the platform skips short months (as
//!   RFC 5545 does) or moves to the last day is unknown.
//! * A `BYDAY`/`UNTIL` is read in the zone of the start (its `TZID`, UTC when
//!   none or unknown), as RFC 5545 expands rules. A date-only `UNTIL` means
//!   "until the end of that day" in that zone.
//! * `timezone` in the body is honoured by the platform (it is returned, and
//!   decides in which zone a series repeats): it is set to the start's `TZID`
//!   when that is an IANA name; a series whose start has no zone is sent with
//!   `"UTC"`. Otherwise the server's value (or the platform default) stays.
//! * The platform writes the feed's `DESCRIPTION` as `agenda` followed by a
//!   paragraph `Join the meeting: https://…`: [`normalize`] removes it, and
//!   [`meeting_body`] never sends it back as agenda.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};

use crate::model::{Fields, When};

/// Why local fields cannot become a platform meeting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("all-day events cannot be pushed: the platform has no all-day meetings")]
    AllDay,
    #[error("the event has no start")]
    NoStart,
    #[error("the event has no end")]
    NoEnd,
    #[error("the event does not end after it starts")]
    EndBeforeStart,
    #[error("the event has no summary; the platform requires a topic")]
    NoTopic,
    #[error("a time of the event is outside the range the platform can hold")]
    OutOfRange,
    /// Names the rule part, e.g. `BYSETPOS`, `EXDATE on a series`, `FREQ=YEARLY`.
    #[error("the platform cannot repeat a meeting this way: {0} is not supported")]
    Unsupported(String),
    #[error("the recurrence rule cannot be read: {0}")]
    BadRule(String),
}

/// The JSON body of `POST /api/v6/meeting` (and, with `id`, of
/// `PUT /api/v6/meeting/{id}/false`).
///
/// Starts from `server` (the last known server copy of the meeting, if any:
/// PUT is a full replacement, so every field the server sent is sent back) or
/// the seed's minimal body defaults (type "standard", isRecurring false,
/// isRecorded false, isDialin false, invitedParticipants [], recurring {},
/// meetingPermissionId null), then sets topic, agenda, startTime/endTime as
/// UTC `YYYY-MM-DDTHH:MM:SS.000Z`, duration = whole minutes (a NUMBER),
/// invitedParticipants (emails as strings), isRecurring + recurring from the
/// RRULE, timezone (see the module doc) and "id".
///
/// `exdates` is the number of `EXDATE` values of the local event: the
/// platform has no field for them, so a series with any is refused.
pub fn meeting_body(
    fields: &Fields,
    exdates: usize,
    server: Option<&Value>,
    id: Option<&str>,
) -> Result<Value, MappingError> {
    let (start, start_zone) = instant(fields.start.as_ref(), MappingError::NoStart)?;
    let (end, _) = instant(fields.end.as_ref(), MappingError::NoEnd)?;
    if end <= start {
        return Err(MappingError::EndBeforeStart);
    }
    let topic = fields.summary.as_str();
    if topic.trim().is_empty() {
        return Err(MappingError::NoTopic);
    }
    let recurring = match &fields.rrule {
        Some(rule) => {
            if exdates > 0 {
                return Err(MappingError::Unsupported("EXDATE on a series".into()));
            }
            Some(recurring_from_rrule(
                rule,
                fields.start.as_ref().ok_or(MappingError::NoStart)?,
            )?)
        }
        None => None,
    };

    let mut body = match server {
        Some(Value::Object(m)) => m.clone(),
        _ => minimal_defaults(),
    };
    body.insert("topic".into(), json!(topic));
    body.insert("agenda".into(), json!(strip_join_link(&fields.description)));
    body.insert("startTime".into(), json!(iso_utc(start)));
    body.insert("endTime".into(), json!(iso_utc(end)));
    body.insert("duration".into(), json!((end - start).num_minutes()));
    let invited: Vec<Value> = fields
        .attendees
        .iter()
        .filter_map(|a| clean_email(a))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(Value::String)
        .collect();
    body.insert("invitedParticipants".into(), Value::Array(invited));
    match recurring {
        Some(rec) => {
            // Keep keys of the server's object that we do not know about.
            let mut merged = match body.get("recurring") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            if let Value::Object(ours) = rec {
                merged.extend(ours);
            }
            body.insert("isRecurring".into(), json!(true));
            body.insert("recurring".into(), Value::Object(merged));
        }
        None => {
            body.insert("isRecurring".into(), json!(false));
            body.insert("recurring".into(), json!({}));
        }
    }
    match start_zone {
        Some(z) => {
            body.insert("timezone".into(), json!(z.name()));
        }
        None if fields.rrule.is_some() => {
            body.insert("timezone".into(), json!("UTC"));
        }
        None => {}
    }
    if let Some(id) = id {
        body.insert("id".into(), json!(id));
    }
    Ok(Value::Object(body))
}

/// The seed's minimal create body, without the synced fields.
fn minimal_defaults() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!("standard"));
    m.insert("isRecurring".into(), json!(false));
    m.insert("isRecorded".into(), json!(false));
    m.insert("isDialin".into(), json!(false));
    m.insert("invitedParticipants".into(), json!([]));
    m.insert("recurring".into(), json!({}));
    m.insert("meetingPermissionId".into(), Value::Null);
    m
}

/// An instant start or end, with its IANA zone when it has one.
fn instant(
    w: Option<&When>,
    missing: MappingError,
) -> Result<(DateTime<Utc>, Option<Tz>), MappingError> {
    match w {
        None => Err(missing),
        Some(When::Date(_)) => Err(MappingError::AllDay),
        Some(When::Instant { unix, tzid }) => {
            let t = DateTime::from_timestamp(*unix, 0).ok_or(MappingError::OutOfRange)?;
            Ok((t, tzid.as_deref().and_then(iana_zone)))
        }
    }
}

/// An IANA zone name (UTC aliases give None: the instant is written with `Z`).
fn iana_zone(name: &str) -> Option<Tz> {
    let tz: Tz = name.trim().parse().ok()?;
    (!matches!(
        tz.name(),
        "UTC" | "Etc/UTC" | "Etc/UCT" | "UCT" | "Etc/Universal" | "Universal" | "Zulu" | "Etc/Zulu"
    ))
    .then_some(tz)
}

/// `2020-04-07T09:00:00.000Z`.
fn iso_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
}

/// A lowercase email without `mailto:`; None when empty.
fn clean_email(s: &str) -> Option<String> {
    let s = s.trim();
    let s = match s.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("mailto:") => &s[7..],
        _ => s,
    };
    let s = s.trim().to_lowercase();
    (!s.is_empty()).then_some(s)
}

/// A rule split into upper-case names and values, in order.
fn rule_parts(rrule: &str) -> Result<Vec<(String, String)>, MappingError> {
    let mut v = rrule.trim();
    if v.len() >= 6 && v[..6].eq_ignore_ascii_case("RRULE:") {
        v = v[6..].trim();
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(MappingError::BadRule(format!("{part:?} is not NAME=VALUE")));
        };
        let name = name.trim().to_ascii_uppercase();
        if out.iter().any(|(n, _)| *n == name) {
            return Err(MappingError::BadRule(format!("{name} appears twice")));
        }
        out.push((name, value.trim().to_string()));
    }
    Ok(out)
}

fn positive(name: &str, value: &str) -> Result<u32, MappingError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| MappingError::BadRule(format!("{name}={value} is not a positive number")))
}

fn weekday_code(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

/// `UNTIL` as an instant: UTC with `Z`, local in `zone` without, a date =
/// the end of that day in `zone`.
fn parse_until(value: &str, zone: Tz) -> Result<DateTime<Utc>, MappingError> {
    let bad = || MappingError::BadRule(format!("UNTIL={value} is not a date or date-time"));
    let local = |naive: NaiveDateTime| -> Result<DateTime<Utc>, MappingError> {
        zone.from_local_datetime(&naive)
            .latest()
            .or_else(|| {
                zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(bad)
    };
    if let Some(utc) = value.strip_suffix(['Z', 'z']) {
        let naive = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
        return Ok(naive.and_utc());
    }
    if value.len() == 8 {
        let d = NaiveDate::parse_from_str(value, "%Y%m%d").map_err(|_| bad())?;
        return local(d.and_hms_opt(23, 59, 59).ok_or_else(bad)?);
    }
    local(NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").map_err(|_| bad())?)
}

/// RRULE value ↔ `recurring` object. FREQ DAILY/WEEKLY/MONTHLY, INTERVAL,
/// UNTIL, COUNT; a BYDAY equal to the start's weekday (weekly) or BYMONTHDAY
/// equal to the start's day (monthly) is implied and accepted (`WKST` has no
/// effect then and is ignored); anything else (BYSETPOS, several BYDAY,
/// BYHOUR, YEARLY, …) → [`MappingError::Unsupported`] naming the part. The
/// weekday and day are those of the start in its own zone. See the module
/// doc for the guessed enum values.
pub fn recurring_from_rrule(rrule: &str, start: &When) -> Result<Value, MappingError> {
    let (start_utc, zone) = match start {
        When::Date(_) => return Err(MappingError::AllDay),
        When::Instant { unix, tzid } => (
            DateTime::from_timestamp(*unix, 0).ok_or(MappingError::OutOfRange)?,
            tzid.as_deref()
                .and_then(|z| z.trim().parse::<Tz>().ok())
                .unwrap_or(Tz::UTC),
        ),
    };
    let local = start_utc.with_timezone(&zone);
    let parts = rule_parts(rrule)?;
    let get = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let freq = get("FREQ").ok_or_else(|| MappingError::BadRule("FREQ is missing".into()))?;
    let freq_up = freq.to_ascii_uppercase();
    let frequency_type = match freq_up.as_str() {
        "DAILY" => "daily",
        "WEEKLY" => "weekly",
        "MONTHLY" => "monthly",
        "YEARLY" | "HOURLY" | "MINUTELY" | "SECONDLY" => {
            return Err(MappingError::Unsupported(format!("FREQ={freq_up}")))
        }
        _ => {
            return Err(MappingError::BadRule(format!(
                "FREQ={freq} is not a frequency"
            )))
        }
    };
    let mut interval = 1;
    let mut count = None;
    let mut until = None;
    for (name, value) in &parts {
        match name.as_str() {
            "FREQ" => {}
            "INTERVAL" => interval = positive(name, value)?,
            "COUNT" => count = Some(positive(name, value)?),
            "UNTIL" => until = Some(parse_until(value, zone)?),
            "WKST" => {}
            "BYDAY" => {
                if freq_up != "WEEKLY" {
                    return Err(MappingError::Unsupported(format!(
                        "BYDAY on a {freq_up} rule"
                    )));
                }
                let days: Vec<String> = value
                    .split(',')
                    .map(|d| d.trim().to_ascii_uppercase())
                    .filter(|d| !d.is_empty())
                    .collect();
                if days.len() != 1 {
                    return Err(MappingError::Unsupported(format!(
                        "BYDAY with several days ({value})"
                    )));
                }
                if days[0] != weekday_code(local.weekday()) {
                    return Err(MappingError::Unsupported(format!(
                        "BYDAY={} (not the weekday the meeting starts on)",
                        days[0]
                    )));
                }
            }
            "BYMONTHDAY" => {
                if freq_up != "MONTHLY" {
                    return Err(MappingError::Unsupported(format!(
                        "BYMONTHDAY on a {freq_up} rule"
                    )));
                }
                if value.trim().parse::<u32>().ok() != Some(local.day()) {
                    return Err(MappingError::Unsupported(format!(
                        "BYMONTHDAY={value} (not the day the meeting starts on)"
                    )));
                }
            }
            other => return Err(MappingError::Unsupported(other.to_string())),
        }
    }
    if count.is_some() && until.is_some() {
        return Err(MappingError::BadRule(
            "COUNT and UNTIL must not both be set".into(),
        ));
    }
    let (ends_type, ends_on, ends_after) = match (count, until) {
        (Some(n), _) => ("after", Value::Null, n),
        (None, Some(u)) => ("on", json!(iso_utc(u)), 0),
        (None, None) => ("never", Value::Null, 0),
    };
    Ok(json!({
        "frequencyType": frequency_type,
        "frequency": interval,
        "monthlyPattern": if frequency_type == "monthly" { "dayOfMonth" } else { "" },
        "endsType": ends_type,
        "endsOn": ends_on,
        "endsAfter": ends_after,
    }))
}

/// A number or a numeric string.
fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `true` or `"true"`.
fn lenient_bool(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?.trim();
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The `RRULE` value of a `recurring` object (or of a whole meeting, whose
/// `isRecurring` must then be true): `FREQ=…;INTERVAL=n[;COUNT=n|;UNTIL=…Z]`.
/// None when not recurring or not understood (unknown `frequencyType` or
/// `monthlyPattern`).
pub fn rrule_from_recurring(v: &Value) -> Option<String> {
    let rec = match v.get("recurring") {
        Some(r @ Value::Object(_)) => {
            if !lenient_bool(v.get("isRecurring")) {
                return None;
            }
            r
        }
        _ => v,
    };
    let text = |k: &str| {
        rec.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let freq = match text("frequencyType").as_str() {
        "daily" | "day" => "DAILY",
        "weekly" | "week" => "WEEKLY",
        "monthly" | "month" => "MONTHLY",
        _ => return None,
    };
    if freq == "MONTHLY" && !matches!(text("monthlyPattern").as_str(), "" | "dayofmonth") {
        return None;
    }
    let interval = rec
        .get("frequency")
        .and_then(lenient_i64)
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let mut out = format!("FREQ={freq};INTERVAL={interval}");
    match text("endsType").as_str() {
        "after" | "count" => {
            if let Some(n) = rec
                .get("endsAfter")
                .and_then(lenient_i64)
                .filter(|n| *n >= 1)
            {
                out.push_str(&format!(";COUNT={n}"));
            }
        }
        "on" | "date" => {
            if let Some(t) = parse_time(rec.get("endsOn")) {
                out.push_str(&format!(";UNTIL={}", t.format("%Y%m%dT%H%M%SZ")));
            }
        }
        _ => {}
    }
    Some(out)
}

/// The meeting object inside an envelope, or the value itself.
fn meeting_data(v: &Value) -> &Value {
    match (v.get("responseCode"), v.get("data")) {
        (Some(_), Some(d @ Value::Object(_))) => d,
        _ => v,
    }
}

/// `icalSequence` of a meeting (number or numeric string).
pub fn ical_sequence(v: &Value) -> Option<i64> {
    meeting_data(v).get("icalSequence").and_then(lenient_i64)
}

/// Fields from a meeting JSON (create/PUT/GET response, bare or in its
/// envelope); lenient: duration / icalSequence may be numbers or numeric
/// strings; invitedParticipants strings or {email,name} objects. A missing
/// `endTime` is `startTime` + `duration`. The start/end carry the meeting's
/// `timezone` as TZID when it is an IANA name. The agenda is taken as is
/// (call [`normalize`] before comparing).
pub fn fields_from_meeting(v: &Value) -> Fields {
    let v = meeting_data(v);
    let zone = v
        .get("timezone")
        .and_then(Value::as_str)
        .and_then(iana_zone)
        .map(|z| z.name().to_string());
    let when = |t: DateTime<Utc>| When::Instant {
        unix: t.timestamp(),
        tzid: zone.clone(),
    };
    let start = parse_time(v.get("startTime"));
    let end = parse_time(v.get("endTime")).or_else(|| {
        let minutes = v.get("duration").and_then(lenient_i64)?;
        Some(start? + chrono::Duration::minutes(minutes))
    });
    let attendees = match v.get("invitedParticipants") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => clean_email(s),
                Value::Object(o) => o.get("email").and_then(Value::as_str).and_then(clean_email),
                _ => None,
            })
            .collect(),
        _ => BTreeSet::new(),
    };
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Fields {
        summary: text("topic"),
        description: text("agenda"),
        start: start.map(when),
        end: end.map(when),
        rrule: if lenient_bool(v.get("isRecurring")) {
            v.get("recurring").and_then(rrule_from_recurring)
        } else {
            None
        },
        attendees,
    }
}

/// The description without a trailing "Join the meeting: https://…"
/// paragraph and without trailing blank lines; CRLF becomes LF.
fn strip_join_link(description: &str) -> String {
    let text = description.replace("\r\n", "\n");
    let trimmed = text.trim_end();
    let (head, last) = match trimmed.rsplit_once('\n') {
        Some((h, l)) => (h, l),
        None => ("", trimmed),
    };
    let is_link = {
        let l = last.trim();
        const PREFIX: &str = "join the meeting:";
        l.get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
            && {
                let url = l[PREFIX.len()..].trim();
                url.len() > "https://".len()
                    && url[..8].eq_ignore_ascii_case("https://")
                    && !url.chars().any(char::is_whitespace)
            }
    };
    if is_link {
        head.trim_end().to_string()
    } else {
        trimmed.to_string()
    }
}

/// Makes local and remote fields comparable; apply to both sides alike.
///
/// * The platform puts the join link into DESCRIPTION: a trailing paragraph
///   "Join the meeting: <https URL>" (and surrounding blank lines) is
///   removed, so that description ↔ agenda compare equal. Trailing
///   whitespace goes too, and CRLF becomes LF.
/// * Attendees become lowercase emails without `mailto:`.
/// * An RRULE the platform can hold is rewritten in the one spelling
///   [`rrule_from_recurring`] produces (`FREQ=WEEKLY;INTERVAL=1;UNTIL=…Z`,
///   implied `BYDAY`/`BYMONTHDAY`/`WKST` dropped): the same series then
///   compares equal whichever side wrote it. Other rules are left as written.
pub fn normalize(fields: &mut Fields) {
    fields.description = strip_join_link(&fields.description);
    fields.attendees = fields
        .attendees
        .iter()
        .filter_map(|a| clean_email(a))
        .collect();
    if let (Some(rule), Some(start)) = (&fields.rrule, &fields.start) {
        if let Some(canonical) = recurring_from_rrule(rule, start)
            .ok()
            .and_then(|rec| rrule_from_recurring(&rec))
        {
            fields.rrule = Some(canonical);
        }
    }
}

/// The meeting `id` hidden in a feed UID: a 24-hex string, alone or before
/// '@' (docs §3 UID styles), lowercased; else None.
pub fn meeting_id_from_uid(uid: &str) -> Option<String> {
    let uid = uid.trim();
    let local = match uid.split_once('@') {
        Some((l, domain)) if !domain.is_empty() => l,
        Some(_) => return None,
        None => uid,
    };
    (local.len() == 24 && local.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| local.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARIS: &str = "Europe/Paris";

    /// Unix seconds of a local wall time in `zone`.
    fn local(zone: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        let tz: Tz = zone.parse().unwrap();
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .timestamp()
    }

    fn at(zone: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> When {
        When::Instant {
            unix: local(zone, y, mo, d, h, mi),
            tzid: Some(zone.to_string()),
        }
    }

    fn utc(s: &str) -> When {
        When::Instant {
            unix: DateTime::parse_from_rfc3339(s).unwrap().timestamp(),
            tzid: None,
        }
    }

    fn meeting(summary: &str, start: When, minutes: i64) -> Fields {
        let end = When::Instant {
            unix: start.unix() + minutes * 60,
            tzid: match &start {
                When::Instant { tzid, .. } => tzid.clone(),
                When::Date(_) => None,
            },
        };
        Fields {
            summary: summary.into(),
            description: String::new(),
            start: Some(start),
            end: Some(end),
            rrule: None,
            attendees: BTreeSet::new(),
        }
    }

    /// The seed's sample create response `data`.
    fn seed_response() -> Value {
        json!({
            "invitedParticipants": [], "meetingId": "9974-7653-8886-0485",
            "id": "5e945c36b863b82cefdddf54", "topic": "My Meeting Topic",
            "startTime": "2020-04-07T09:00:00.000Z", "endTime": "2020-04-07T10:00:00.000Z",
            "duration": "60", "type": "standard", "roomId": "5e9459c5b863b82cefdddf50",
            "isRecurring": false, "isDialin": false,
            "recurring": {"frequencyType": "", "frequency": null, "monthlyPattern": "",
                "endsType": "", "endsOn": "2020-04-13T12:18:07.211Z", "endsAfter": 0},
            "isRecorded": false, "agenda": "", "documents": [], "meetingPermissionId": null,
            "videoResolution": "standard", "dtClosedAt": null,
            "whitelabelId": "5c737902b377b0f7fbf81fce", "addedByUserId": "5e9459c5b863b82cefdddf4e",
            "addedByUserEmail": "test-user@example.com", "accountId": "5e9459c5b863b82cefdddf4f",
            "addedByUserName": "Test User", "timezone": "Europe/Zurich", "privateDataVisible": true,
            "icalSequence": "0", "icsToken": "c89f842f-3295-4bf9-807d-a46841fbc2ec-25f722e4-70fc-4163-9cda-b4b7d8aec358",
            "isActive": false, "isClosed": true, "isOpen": false, "dialInConferenceRoom": null,
            "dialInNumbers": [], "dialInPin": null, "sipProxy": null, "sipDomain": null,
            "isDemo": false, "isPromo": false
        })
    }

    #[test]
    fn minimal_body_matches_the_seed() {
        let f = meeting("My Meeting Topic", utc("2020-04-07T09:00:00Z"), 60);
        let b = meeting_body(&f, 0, None, None).unwrap();
        assert_eq!(
            b,
            json!({"topic":"My Meeting Topic","startTime":"2020-04-07T09:00:00.000Z",
                "endTime":"2020-04-07T10:00:00.000Z","duration":60,"type":"standard",
                "isRecurring":false,"isRecorded":false,"isDialin":false,
                "invitedParticipants":[],"recurring":{},"meetingPermissionId":null,"agenda":""})
        );
        assert!(b["duration"].is_number());
        assert!(b.get("id").is_none() && b.get("timezone").is_none());
        let with_id = meeting_body(&f, 0, None, Some("5e945c36b863b82cefdddf54")).unwrap();
        assert_eq!(with_id["id"], json!("5e945c36b863b82cefdddf54"));
    }

    #[test]
    fn duration_is_whole_minutes_as_a_number() {
        let mut f = meeting("x", utc("2026-01-01T10:00:00Z"), 0);
        f.end = Some(utc("2026-01-01T11:30:59Z"));
        let b = meeting_body(&f, 0, None, None).unwrap();
        assert_eq!(b["duration"], json!(90));
        assert_eq!(b["endTime"], json!("2026-01-01T11:30:59.000Z"));
    }

    #[test]
    fn dst_edges_are_exact_instants() {
        let before = meeting("Weekly", at(PARIS, 2026, 3, 22, 9, 0), 60);
        let after = meeting("Weekly", at(PARIS, 2026, 4, 5, 9, 0), 60);
        let b = meeting_body(&before, 0, None, None).unwrap();
        let a = meeting_body(&after, 0, None, None).unwrap();
        assert_eq!(b["startTime"], json!("2026-03-22T08:00:00.000Z"));
        assert_eq!(b["endTime"], json!("2026-03-22T09:00:00.000Z"));
        assert_eq!(a["startTime"], json!("2026-04-05T07:00:00.000Z"));
        assert_eq!(a["endTime"], json!("2026-04-05T08:00:00.000Z"));
        assert_eq!(a["timezone"], json!(PARIS));
        // The night of the change itself: 01:30 → 03:30 local is one hour.
        let mut night = meeting("Night", at(PARIS, 2026, 3, 29, 1, 30), 0);
        night.end = Some(at(PARIS, 2026, 3, 29, 3, 30));
        let n = meeting_body(&night, 0, None, None).unwrap();
        assert_eq!(n["startTime"], json!("2026-03-29T00:30:00.000Z"));
        assert_eq!(n["duration"], json!(60));
    }

    #[test]
    fn start_and_end_errors() {
        let ok = meeting("x", utc("2026-01-01T10:00:00Z"), 30);
        let mut f = ok.clone();
        f.start = None;
        assert_eq!(meeting_body(&f, 0, None, None), Err(MappingError::NoStart));
        let mut f = ok.clone();
        f.end = None;
        assert_eq!(meeting_body(&f, 0, None, None), Err(MappingError::NoEnd));
        let mut f = ok.clone();
        f.end = f.start.clone();
        assert_eq!(
            meeting_body(&f, 0, None, None),
            Err(MappingError::EndBeforeStart)
        );
        let mut f = ok.clone();
        f.end = Some(utc("2026-01-01T09:00:00Z"));
        assert_eq!(
            meeting_body(&f, 0, None, None),
            Err(MappingError::EndBeforeStart)
        );
        let mut f = ok.clone();
        f.start = Some(When::Date(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()));
        f.end = Some(When::Date(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()));
        assert_eq!(meeting_body(&f, 0, None, None), Err(MappingError::AllDay));
        let mut f = ok.clone();
        f.summary = "  ".into();
        assert_eq!(meeting_body(&f, 0, None, None), Err(MappingError::NoTopic));
        let mut f = ok;
        f.start = Some(When::Instant {
            unix: i64::MAX,
            tzid: None,
        });
        assert_eq!(
            meeting_body(&f, 0, None, None),
            Err(MappingError::OutOfRange)
        );
    }

    #[test]
    fn non_ascii_topics_agenda_and_attendees() {
        let mut f = meeting(
            "Zoë's Besprechung — 李雷 ☕; a,b",
            utc("2026-06-01T10:00:00Z"),
            45,
        );
        f.description = "Ordre du jour : café\nÉtape 2".into();
        f.attendees = ["Zoe@Example.TEST", "mailto:li@example.test"]
            .into_iter()
            .map(String::from)
            .collect();
        let b = meeting_body(&f, 0, None, None).unwrap();
        assert_eq!(b["topic"], json!("Zoë's Besprechung — 李雷 ☕; a,b"));
        assert_eq!(b["agenda"], json!("Ordre du jour : café\nÉtape 2"));
        assert_eq!(
            b["invitedParticipants"],
            json!(["li@example.test", "zoe@example.test"])
        );
        let text = serde_json::to_string(&b).unwrap();
        assert!(text.contains("李雷"), "sent as UTF-8, not escaped: {text}");
        let back = fields_from_meeting(&b);
        assert_eq!(back.summary, f.summary);
        assert_eq!(back.attendees.len(), 2);
    }

    #[test]
    fn agenda_never_carries_the_join_link() {
        let mut f = meeting("x", utc("2026-06-01T10:00:00Z"), 45);
        f.description = "Agenda\n\nJoin the meeting: https://meeting.example.test/j/123\n".into();
        let b = meeting_body(&f, 0, None, None).unwrap();
        assert_eq!(b["agenda"], json!("Agenda"));
    }

    #[test]
    fn put_body_keeps_unknown_server_fields() {
        let mut server = seed_response();
        server["x-future-field"] = json!({"nested": [1, 2]});
        server["recurring"]["weekdays"] = json!(["mon"]);
        let mut f = meeting("My Updated Meeting Topic", utc("2020-04-07T09:30:00Z"), 60);
        f.attendees.insert("a@example.test".into());
        let b = meeting_body(&f, 0, Some(&server), Some("5e945c36b863b82cefdddf54")).unwrap();
        for key in server.as_object().unwrap().keys() {
            assert!(b.get(key).is_some(), "{key} was dropped");
        }
        assert_eq!(b["x-future-field"], json!({"nested": [1, 2]}));
        assert_eq!(b["roomId"], json!("5e9459c5b863b82cefdddf50"));
        assert_eq!(b["videoResolution"], json!("standard"));
        assert_eq!(b["meetingId"], json!("9974-7653-8886-0485"));
        assert_eq!(b["icalSequence"], json!("0"));
        assert_eq!(b["timezone"], json!("Europe/Zurich"), "UTC start: kept");
        assert_eq!(b["topic"], json!("My Updated Meeting Topic"));
        assert_eq!(b["startTime"], json!("2020-04-07T09:30:00.000Z"));
        assert_eq!(b["endTime"], json!("2020-04-07T10:30:00.000Z"));
        assert_eq!(
            b["duration"],
            json!(60),
            "a number, not the server's \"60\""
        );
        assert_eq!(b["invitedParticipants"], json!(["a@example.test"]));
        assert_eq!(b["recurring"], json!({}));
        assert_eq!(b["isRecurring"], json!(false));
        assert_eq!(b["id"], json!("5e945c36b863b82cefdddf54"));
        // Turning it into a series keeps the server's unknown `recurring` keys.
        f.rrule = Some("FREQ=WEEKLY;COUNT=3".into());
        let r = meeting_body(&f, 0, Some(&server), None).unwrap();
        assert_eq!(r["recurring"]["weekdays"], json!(["mon"]));
        assert_eq!(r["recurring"]["frequencyType"], json!("weekly"));
        assert_eq!(r["recurring"]["endsAfter"], json!(3));
        assert_eq!(r["isRecurring"], json!(true));
        assert_eq!(r["timezone"], json!("UTC"), "a UTC series repeats in UTC");
    }

    #[test]
    fn every_supported_recurring_shape() {
        let start = at(PARIS, 2026, 3, 23, 9, 0); // a Monday
        let cases = [
            (
                "FREQ=DAILY",
                json!({"frequencyType":"daily","frequency":1,"monthlyPattern":"","endsType":"never","endsOn":null,"endsAfter":0}),
            ),
            (
                "FREQ=DAILY;INTERVAL=3;COUNT=10",
                json!({"frequencyType":"daily","frequency":3,"monthlyPattern":"","endsType":"after","endsOn":null,"endsAfter":10}),
            ),
            (
                "RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260601T070000Z",
                json!({"frequencyType":"weekly","frequency":1,"monthlyPattern":"","endsType":"on","endsOn":"2026-06-01T07:00:00.000Z","endsAfter":0}),
            ),
            (
                "freq=weekly;interval=2;wkst=SU",
                json!({"frequencyType":"weekly","frequency":2,"monthlyPattern":"","endsType":"never","endsOn":null,"endsAfter":0}),
            ),
            (
                "FREQ=MONTHLY;BYMONTHDAY=23;COUNT=6",
                json!({"frequencyType":"monthly","frequency":1,"monthlyPattern":"dayOfMonth","endsType":"after","endsOn":null,"endsAfter":6}),
            ),
            (
                // Floating UNTIL: local time in the start's zone (CEST, UTC+2).
                "FREQ=MONTHLY;INTERVAL=2;UNTIL=20261231T090000",
                json!({"frequencyType":"monthly","frequency":2,"monthlyPattern":"dayOfMonth","endsType":"on","endsOn":"2026-12-31T08:00:00.000Z","endsAfter":0}),
            ),
            (
                // Date UNTIL: the end of that day in the start's zone.
                "FREQ=WEEKLY;UNTIL=20260701",
                json!({"frequencyType":"weekly","frequency":1,"monthlyPattern":"","endsType":"on","endsOn":"2026-07-01T21:59:59.000Z","endsAfter":0}),
            ),
        ];
        for (rule, want) in cases {
            assert_eq!(
                recurring_from_rrule(rule, &start).unwrap(),
                want,
                "rule {rule}"
            );
        }
    }

    #[test]
    fn every_unsupported_part_is_named() {
        let start = at(PARIS, 2026, 3, 23, 9, 0); // Monday the 23rd
        let cases = [
            ("FREQ=YEARLY", "FREQ=YEARLY"),
            ("FREQ=HOURLY", "FREQ=HOURLY"),
            (
                "FREQ=MONTHLY;BYDAY=-1FR;BYSETPOS=1",
                "BYDAY on a MONTHLY rule",
            ),
            ("FREQ=MONTHLY;BYSETPOS=-1", "BYSETPOS"),
            ("FREQ=WEEKLY;BYDAY=MO,WE", "BYDAY with several days"),
            ("FREQ=WEEKLY;BYDAY=TU", "BYDAY=TU"),
            ("FREQ=WEEKLY;BYDAY=1MO", "BYDAY=1MO"),
            ("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR", "BYDAY on a DAILY rule"),
            ("FREQ=DAILY;BYHOUR=9,15", "BYHOUR"),
            ("FREQ=DAILY;BYMINUTE=30", "BYMINUTE"),
            ("FREQ=MONTHLY;BYMONTHDAY=1", "BYMONTHDAY=1"),
            ("FREQ=MONTHLY;BYMONTHDAY=-1", "BYMONTHDAY=-1"),
            ("FREQ=WEEKLY;BYMONTHDAY=23", "BYMONTHDAY on a WEEKLY rule"),
            ("FREQ=WEEKLY;BYMONTH=3", "BYMONTH"),
            ("FREQ=WEEKLY;BYWEEKNO=12", "BYWEEKNO"),
            ("FREQ=DAILY;BYYEARDAY=1", "BYYEARDAY"),
            ("FREQ=DAILY;X-NAME=1", "X-NAME"),
        ];
        for (rule, part) in cases {
            match recurring_from_rrule(rule, &start) {
                Err(MappingError::Unsupported(p)) => {
                    assert!(p.contains(part), "rule {rule}: {p:?} does not name {part}")
                }
                other => panic!("rule {rule}: {other:?}"),
            }
        }
        let mut f = meeting("Series", start.clone(), 30);
        f.rrule = Some("FREQ=WEEKLY".into());
        assert_eq!(
            meeting_body(&f, 2, None, None),
            Err(MappingError::Unsupported("EXDATE on a series".into()))
        );
        assert!(meeting_body(&f, 0, None, None).is_ok());
        f.rrule = Some("FREQ=YEARLY".into());
        let e = meeting_body(&f, 0, None, None).unwrap_err().to_string();
        assert!(e.contains("FREQ=YEARLY is not supported"), "{e}");
        // Malformed rules are a different error.
        for bad in [
            "INTERVAL=2",
            "FREQ=WEEKLY;INTERVAL=0",
            "FREQ=WEEKLY;COUNT=x",
            "FREQ=WEEKLY;COUNT=2;UNTIL=20260601T000000Z",
            "FREQ=WEEKLY;UNTIL=tomorrow",
            "FREQ=FORTNIGHTLY",
            "FREQ=WEEKLY;FREQ=DAILY",
            "FREQ=WEEKLY;COUNT",
        ] {
            assert!(
                matches!(
                    recurring_from_rrule(bad, &start),
                    Err(MappingError::BadRule(_))
                ),
                "{bad}"
            );
        }
        let all_day = When::Date(NaiveDate::from_ymd_opt(2026, 3, 23).unwrap());
        assert_eq!(
            recurring_from_rrule("FREQ=DAILY", &all_day),
            Err(MappingError::AllDay)
        );
    }

    #[test]
    fn byday_is_the_weekday_in_the_start_zone() {
        // Monday 00:30 in Paris is Sunday 23:30 UTC.
        let start = at(PARIS, 2026, 1, 5, 0, 30);
        assert!(recurring_from_rrule("FREQ=WEEKLY;BYDAY=MO", &start).is_ok());
        assert!(matches!(
            recurring_from_rrule("FREQ=WEEKLY;BYDAY=SU", &start),
            Err(MappingError::Unsupported(_))
        ));
        let same_instant_utc = When::Instant {
            unix: start.unix(),
            tzid: None,
        };
        assert!(recurring_from_rrule("FREQ=WEEKLY;BYDAY=SU", &same_instant_utc).is_ok());
    }

    #[test]
    fn recurring_round_trips_to_rrule() {
        let start = at(PARIS, 2026, 3, 23, 9, 0);
        for (rule, back) in [
            ("FREQ=DAILY", "FREQ=DAILY;INTERVAL=1"),
            (
                "FREQ=DAILY;INTERVAL=2;COUNT=5",
                "FREQ=DAILY;INTERVAL=2;COUNT=5",
            ),
            (
                "FREQ=WEEKLY;BYDAY=MO;UNTIL=20260601T070000Z",
                "FREQ=WEEKLY;INTERVAL=1;UNTIL=20260601T070000Z",
            ),
            (
                "FREQ=MONTHLY;BYMONTHDAY=23;INTERVAL=3",
                "FREQ=MONTHLY;INTERVAL=3",
            ),
        ] {
            let rec = recurring_from_rrule(rule, &start).unwrap();
            assert_eq!(rrule_from_recurring(&rec).as_deref(), Some(back), "{rule}");
        }
        // The platform's defaults for a single meeting are not a rule.
        let seed = seed_response();
        assert_eq!(rrule_from_recurring(&seed["recurring"]), None);
        assert_eq!(rrule_from_recurring(&seed), None);
        // Lenient reading: numeric strings, other cases, whole meetings.
        let v = json!({"isRecurring": true, "recurring": {"frequencyType": "Weekly", "frequency": "2",
            "monthlyPattern": "", "endsType": "AFTER", "endsOn": "2020-04-13T12:18:07.211Z", "endsAfter": "4"}});
        assert_eq!(
            rrule_from_recurring(&v).as_deref(),
            Some("FREQ=WEEKLY;INTERVAL=2;COUNT=4")
        );
        let mut off = v.clone();
        off["isRecurring"] = json!(false);
        assert_eq!(rrule_from_recurring(&off), None);
        let odd =
            json!({"frequencyType": "monthly", "frequency": 1, "monthlyPattern": "dayOfWeek"});
        assert_eq!(rrule_from_recurring(&odd), None);
    }

    #[test]
    fn fields_from_the_seed_sample_response() {
        let f = fields_from_meeting(&seed_response());
        assert_eq!(f.summary, "My Meeting Topic");
        assert_eq!(f.description, "");
        assert_eq!(f.start, Some(utc("2020-04-07T09:00:00Z")));
        assert_eq!(f.end, Some(utc("2020-04-07T10:00:00Z")));
        assert!(
            matches!(&f.start, Some(When::Instant { tzid: Some(z), .. }) if z == "Europe/Zurich")
        );
        assert_eq!(f.rrule, None, "stale endsOn of a single meeting is ignored");
        assert!(f.attendees.is_empty());
        assert_eq!(ical_sequence(&seed_response()), Some(0));
        // In its envelope, without endTime (duration "60" as a string), with object invitees.
        let mut d = seed_response();
        d.as_object_mut().unwrap().remove("endTime");
        d["icalSequence"] = json!(3);
        d["invitedParticipants"] =
            json!([{"email": "Zoe@Example.test", "name": "Zoë"}, "li@example.test", 7]);
        d["isRecurring"] = json!(true);
        d["recurring"] = json!({"frequencyType": "daily", "frequency": null, "monthlyPattern": "",
            "endsType": "never", "endsOn": "2020-04-13T12:18:07.211Z", "endsAfter": 0});
        let env = json!({"responseCode": 0, "data": d});
        let g = fields_from_meeting(&env);
        assert_eq!(g.end, Some(utc("2020-04-07T10:00:00Z")));
        assert_eq!(
            g.attendees.into_iter().collect::<Vec<_>>(),
            vec![
                "li@example.test".to_string(),
                "zoe@example.test".to_string()
            ]
        );
        assert_eq!(g.rrule.as_deref(), Some("FREQ=DAILY;INTERVAL=1"));
        assert_eq!(ical_sequence(&env), Some(3));
        // Nothing usable: empty fields, no panic.
        assert_eq!(fields_from_meeting(&json!(null)), Fields::default());
    }

    #[test]
    fn body_and_fields_round_trip() {
        let mut f = meeting("Planning", at(PARIS, 2026, 4, 6, 14, 0), 50);
        f.description = "Line 1\nLine 2".into();
        f.rrule = Some("FREQ=WEEKLY;INTERVAL=2;COUNT=4".into());
        f.attendees.insert("a@example.test".into());
        let b = meeting_body(&f, 0, None, None).unwrap();
        let mut back = fields_from_meeting(&b);
        let mut want = f.clone();
        normalize(&mut back);
        normalize(&mut want);
        assert_eq!(back, want);
        assert!(back.diff(&want).is_empty());
    }

    #[test]
    fn normalize_strips_the_join_link_on_both_sides() {
        let cases = [
            (
                "Agenda\n\nJoin the meeting: https://meeting.example.test/j/9974765388860485",
                "Agenda",
            ),
            ("Join the meeting: https://meeting.example.test/j/1", ""),
            (
                "A\r\n\r\nB\r\n\r\n\r\nJoin the meeting: https://h/j/1\r\n\r\n",
                "A\n\nB",
            ),
            ("Agenda\n\n", "Agenda"),
            (
                "Agenda\n\nJoin the meeting: http://h/j/1",
                "Agenda\n\nJoin the meeting: http://h/j/1",
            ),
            (
                "Agenda\n\nJoin the meeting: https://h/j/1 now",
                "Agenda\n\nJoin the meeting: https://h/j/1 now",
            ),
            (
                "Join the meeting: https://h/j/1\n\nAgenda",
                "Join the meeting: https://h/j/1\n\nAgenda",
            ),
            ("", ""),
        ];
        for (input, want) in cases {
            let mut f = Fields {
                description: input.into(),
                ..Fields::default()
            };
            normalize(&mut f);
            assert_eq!(f.description, want, "{input:?}");
        }
        // Remote (feed) and local (agenda as written) compare equal after normalize.
        let mut remote = Fields {
            summary: "S".into(),
            description: "Agenda\n\nJoin the meeting: https://meeting.example.test/j/1".into(),
            start: Some(at(PARIS, 2026, 3, 23, 9, 0)),
            rrule: Some("FREQ=WEEKLY;INTERVAL=1;UNTIL=20260601T070000Z".into()),
            attendees: ["z@example.test".to_string()].into_iter().collect(),
            ..Fields::default()
        };
        let mut local = Fields {
            description: "Agenda\n".into(),
            start: Some(utc("2026-03-23T08:00:00Z")),
            rrule: Some("RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260601T070000Z".into()),
            attendees: ["mailto:Z@example.test".to_string()].into_iter().collect(),
            ..remote.clone()
        };
        normalize(&mut remote);
        normalize(&mut local);
        assert_eq!(remote, local);
        // A rule the platform cannot hold is left as written.
        let mut other = Fields {
            start: Some(at(PARIS, 2026, 3, 23, 9, 0)),
            rrule: Some("FREQ=WEEKLY;BYDAY=MO,WE".into()),
            ..Fields::default()
        };
        normalize(&mut other);
        assert_eq!(other.rrule.as_deref(), Some("FREQ=WEEKLY;BYDAY=MO,WE"));
    }

    #[test]
    fn meeting_ids_in_uids() {
        assert_eq!(
            meeting_id_from_uid("5e945c36b863b82cefdddf54").as_deref(),
            Some("5e945c36b863b82cefdddf54")
        );
        assert_eq!(
            meeting_id_from_uid(" 5E945C36B863B82CEFDDDF54@meeting.example.test ").as_deref(),
            Some("5e945c36b863b82cefdddf54")
        );
        for not_an_id in [
            "9974-7653-8886-0485",
            "5e945c36b863b82cefdddf5",
            "5e945c36b863b82cefdddf545",
            "5e945c36b863b82cefdddf5g",
            "5e945c36b863b82cefdddf54@",
            "5e945c36b863b82cefdddf54-20260101T090000Z",
            "ce5494bc-d691-4caf-906c-bfa6403fdc71",
            "x@5e945c36b863b82cefdddf54",
            "",
        ] {
            assert_eq!(meeting_id_from_uid(not_an_id), None, "{not_an_id}");
        }
    }
}
