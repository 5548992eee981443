//! JSON shapes of the API (seed 003): request bodies in, `data` objects out.
//! Lenient on input (numbers or numeric strings, missing optional fields),
//! faithful on output (`duration`/`icalSequence` as strings, stale `endsOn`).

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use super::world::{Account, ApiError};
use super::{
    DurationRule, Freq, Meeting, MeetingSpec, Participant, ParticipantShape, Recurrence,
    SequenceMode, SimOptions, UserInfo,
};

/// What the platform assumes when a meeting is created without `timezone`
/// (the seed's organizer is in Europe/Paris, the meeting came back Zurich).
pub(crate) const DEFAULT_MEETING_TIMEZONE: &str = "Europe/Zurich";

/// `2020-04-07T09:00:00.000Z`.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A meeting as a create/update body describes it (or as a [`MeetingSpec`] does).
#[derive(Clone, Debug)]
pub(crate) struct MeetingInput {
    pub topic: String,
    pub agenda: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration: i64,
    pub timezone: String,
    pub invited: Vec<Participant>,
    pub meeting_type: String,
    pub is_recurring: bool,
    pub recurring: Value,
    pub recurrence: Option<Recurrence>,
    pub is_recorded: bool,
    pub is_dialin: bool,
    pub meeting_permission_id: Value,
    pub extra_ics: Vec<String>,
}

impl MeetingInput {
    pub fn from_spec(spec: MeetingSpec, stale_ends_on: DateTime<Utc>) -> MeetingInput {
        let recurring = match &spec.recurrence {
            Some(r) => recurring_from_rule(r, stale_ends_on),
            None => default_recurring(stale_ends_on),
        };
        MeetingInput {
            duration: (spec.end - spec.start).num_minutes(),
            topic: spec.topic,
            agenda: spec.agenda,
            start: spec.start,
            end: spec.end,
            timezone: spec.timezone,
            invited: spec.invited.iter().map(|s| Participant::parse(s)).collect(),
            meeting_type: "standard".into(),
            is_recurring: spec.recurrence.is_some(),
            recurring,
            recurrence: spec.recurrence,
            is_recorded: false,
            is_dialin: false,
            meeting_permission_id: Value::Null,
            extra_ics: spec.extra_ics,
        }
    }
}

/// What the server fills in when `"recurring": {}` is sent: note `endsOn`,
/// a moment before the meeting was created (the server's start time).
pub(crate) fn default_recurring(stale_ends_on: DateTime<Utc>) -> Value {
    json!({
        "frequencyType": "",
        "frequency": null,
        "monthlyPattern": "",
        "endsType": "",
        "endsOn": timestamp(stale_ends_on),
        "endsAfter": 0,
    })
}

fn recurring_from_rule(r: &Recurrence, stale_ends_on: DateTime<Utc>) -> Value {
    let (ends_type, ends_on, ends_after) = match (r.count, r.until) {
        (Some(n), _) => ("after", stale_ends_on, n),
        (None, Some(u)) => ("on", u, 0),
        (None, None) => ("never", stale_ends_on, 0),
    };
    json!({
        "frequencyType": freq_name(r.freq),
        "frequency": r.interval,
        "monthlyPattern": if r.freq == Freq::Monthly { "dayOfMonth" } else { "" },
        "endsType": ends_type,
        "endsOn": timestamp(ends_on),
        "endsAfter": ends_after,
    })
}

fn freq_name(f: Freq) -> &'static str {
    match f {
        Freq::Daily => "daily",
        Freq::Weekly => "weekly",
        Freq::Monthly => "monthly",
    }
}

/// A number or a numeric string.
fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn time_field(body: &Map<String, Value>, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => super::serde_dt::parse(s)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{key} is not a valid date"))),
        Some(_) => Err(ApiError::invalid(format!("{key} is not a valid date"))),
    }
}

fn string_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{key} must be a string"))),
    }
}

fn bool_field(body: &Map<String, Value>, key: &str) -> bool {
    matches!(body.get(key), Some(Value::Bool(true)))
}

fn parse_participant(v: &Value) -> Result<Participant, ApiError> {
    let p = match v {
        Value::String(s) => Participant::parse(s),
        Value::Object(o) => {
            let email = o.get("email").and_then(Value::as_str).unwrap_or_default();
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    let first = o.get("firstName").and_then(Value::as_str).unwrap_or("");
                    let last = o.get("lastName").and_then(Value::as_str).unwrap_or("");
                    let full = format!("{first} {last}").trim().to_string();
                    (!full.is_empty()).then_some(full)
                })
                .filter(|n| !n.trim().is_empty());
            Participant {
                email: email.trim().to_string(),
                name,
            }
        }
        _ => return Err(ApiError::invalid("invitedParticipants: unexpected element")),
    };
    if !p.email.contains('@') {
        return Err(ApiError::invalid(format!(
            "invitedParticipants: {:?} is not a valid email address",
            p.email
        )));
    }
    Ok(p)
}

/// The rule the feed can render from a `recurring` object, if understood.
/// Enum values are undocumented: `daily`/`weekly`/`monthly` and
/// `after`/`on`/`never` (any case) are understood, anything else is kept and
/// echoed but not rendered.
fn rule_from_recurring(rec: &Map<String, Value>) -> Option<Recurrence> {
    let freq = match rec
        .get("frequencyType")?
        .as_str()?
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "daily" | "day" => Freq::Daily,
        "weekly" | "week" => Freq::Weekly,
        "monthly" | "month" => Freq::Monthly,
        _ => return None,
    };
    let interval = rec
        .get("frequency")
        .and_then(lenient_i64)
        .filter(|n| *n >= 1)
        .unwrap_or(1) as u32;
    let ends_type = rec
        .get("endsType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (count, until) = match ends_type.as_str() {
        "after" => (
            rec.get("endsAfter")
                .and_then(lenient_i64)
                .filter(|n| *n >= 1)
                .map(|n| n as u32),
            None,
        ),
        "on" | "date" => (
            None,
            rec.get("endsOn")
                .and_then(Value::as_str)
                .and_then(super::serde_dt::parse),
        ),
        _ => (None, None),
    };
    Some(Recurrence {
        freq,
        interval,
        count,
        until,
        exdates: Vec::new(),
        overrides: Vec::new(),
    })
}

/// Parses a create (or update) body. Returns the input and the body's `id`.
pub(crate) fn parse_meeting_body(
    bytes: &[u8],
    opts: &SimOptions,
    stale_ends_on: DateTime<Utc>,
) -> Result<(MeetingInput, Option<String>), ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("Request body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid("Request body must be a JSON object"));
    };
    let topic = string_field(&body, "topic")?.unwrap_or_default();
    if topic.trim().is_empty() {
        return Err(ApiError::invalid("topic is required"));
    }
    let start = time_field(&body, "startTime")?
        .ok_or_else(|| ApiError::invalid("startTime is required"))?;
    let end_time = time_field(&body, "endTime")?;
    let duration = match body.get("duration") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(lenient_i64(v).ok_or_else(|| ApiError::invalid("duration is not a number"))?)
        }
    };
    let end = match (end_time, duration) {
        (None, None) => return Err(ApiError::invalid("endTime or duration is required")),
        (Some(e), None) => e,
        (None, Some(d)) => start + Duration::minutes(d),
        (Some(e), Some(d)) => match opts.duration_rule {
            DurationRule::EndTimeWins => e,
            DurationRule::DurationWins => start + Duration::minutes(d),
            DurationRule::Reject => {
                if (e - start).num_seconds() != d * 60 {
                    return Err(ApiError::invalid(
                        "duration does not match startTime and endTime",
                    ));
                }
                e
            }
        },
    };
    if end <= start {
        return Err(ApiError::invalid("endTime must be after startTime"));
    }
    let timezone = string_field(&body, "timezone")?
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MEETING_TIMEZONE.to_string());
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::invalid(format!("Unknown timezone {timezone:?}")));
    }
    let invited = match body.get("invitedParticipants") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(parse_participant).collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("invitedParticipants must be an array")),
    };
    let is_recurring = bool_field(&body, "isRecurring");
    let mut recurring = default_recurring(stale_ends_on);
    let mut recurrence = None;
    match body.get("recurring") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            if let Value::Object(r) = &mut recurring {
                for (k, v) in given {
                    r.insert(k.clone(), v.clone());
                }
            }
            if is_recurring {
                recurrence = rule_from_recurring(given);
            }
        }
        Some(_) => return Err(ApiError::invalid("recurring must be an object")),
    }
    let input = MeetingInput {
        duration: (end - start).num_minutes(),
        topic,
        agenda: string_field(&body, "agenda")?.unwrap_or_default(),
        start,
        end,
        timezone,
        invited,
        meeting_type: string_field(&body, "type")?.unwrap_or_else(|| "standard".into()),
        is_recurring,
        recurring,
        recurrence,
        is_recorded: bool_field(&body, "isRecorded"),
        is_dialin: bool_field(&body, "isDialin"),
        meeting_permission_id: body
            .get("meetingPermissionId")
            .cloned()
            .unwrap_or(Value::Null),
        extra_ics: Vec::new(),
    };
    let id = match body.get("id") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok((input, id))
}

/// `data` of `POST /api/v6/account`.
pub(crate) fn account_json(a: &Account) -> Value {
    json!({
        "name": a.name,
        "accountType": a.account_type,
        "numberOfMeetings": 0,
        // The seed says 0 although the admin organizer exists.
        "numberOfMeetingOrganizers": 0,
        "numberOfMeetingRooms": 1,
        "paidUntil": timestamp(a.paid_until),
        "iceCandidatesToFilter": [],
        "customDialInNumbers": [],
        "displayStandardDialInNumbersInInvite": true,
        "defaultMeetingPermissions": null,
        "defaultMeetingType": "standard",
        "defaultMeetingHasDialin": false,
        "defaultMeetingHasRecording": false,
        "autoExtendMeetings": false,
        "autoDeleteMeetingsAfterXDays": 360,
        "id": a.id,
        "canAddMeetingOrganizer": true,
        "accountRooms": [],
    })
}

/// One element of `GET /api/v6/account/admin/{accountId}`.
pub(crate) fn user_json(u: &UserInfo, language: &str) -> Value {
    json!({
        "email": u.email,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "externalUserId": null,
        "preferredLanguage": language,
        "timezone": u.timezone,
        "additionalTimezones": [],
        "id": u.id,
        "icsToken": u.ics_token,
        "icsPath": u.ics_path,
    })
}

/// `data` of create / update / get.
pub(crate) fn meeting_json(
    m: &Meeting,
    opts: &SimOptions,
    whitelabel_id: &str,
    now: DateTime<Utc>,
) -> Value {
    let invited: Vec<Value> = m
        .invited
        .iter()
        .map(|p| match opts.participants {
            ParticipantShape::Strings => Value::String(p.email.clone()),
            ParticipantShape::Objects => json!({"email": p.email, "name": p.name}),
        })
        .collect();
    let sequence = match opts.sequence {
        SequenceMode::Increments => m.ical_sequence,
        SequenceMode::ConstantZero => 0,
    };
    let active = m.start <= now && now < m.end;
    let closed = m.end <= now;
    json!({
        "invitedParticipants": invited,
        "meetingId": m.meeting_id,
        "id": m.id,
        "topic": m.topic,
        "startTime": timestamp(m.start),
        "endTime": timestamp(m.end),
        "duration": m.duration.to_string(),
        "type": m.meeting_type,
        "roomId": m.room_id,
        "isRecurring": m.is_recurring,
        "isDialin": m.is_dialin,
        "recurring": m.recurring,
        "isRecorded": m.is_recorded,
        "agenda": m.agenda,
        "documents": [],
        "meetingPermissionId": m.meeting_permission_id,
        "videoResolution": "standard",
        "dtClosedAt": null,
        "whitelabelId": whitelabel_id,
        "addedByUserId": m.user_id,
        "addedByUserEmail": m.added_by_email,
        "accountId": m.account_id,
        "addedByUserName": m.added_by_name,
        "timezone": m.timezone,
        "privateDataVisible": true,
        "icalSequence": sequence.to_string(),
        "icsToken": m.ics_token,
        "isActive": active,
        "isClosed": closed,
        "isOpen": active,
        "dialInConferenceRoom": null,
        "dialInNumbers": [],
        "dialInPin": null,
        "sipProxy": null,
        "sipDomain": null,
        "isDemo": false,
        "isPromo": false,
    })
}

pub(crate) fn success(data: Value) -> Value {
    json!({"responseCode": 0, "data": data})
}

pub(crate) fn error_envelope(code: i64, message: &str) -> Value {
    json!({"responseCode": code, "responseMessage": message, "data": null})
}
