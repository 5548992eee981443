//! The simulator's own control surface under `/_sim/` (plain JSON, no API
//! key; the server only listens on loopback). For driving a standalone
//! `meetsync sim` from scripts:
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /_sim/counters` | | [`Counters`](super::Counters) |
//! | `POST /_sim/counters/reset` | | `{}` (also clears the write log) |
//! | `GET /_sim/writes` | | the meeting writes the API handled, oldest first: [`WriteRecord`](super::WriteRecord)s (`method`, `path`, `user_id`, JSON `body`, `status`) |
//! | `GET /_sim/options` | | all switches |
//! | `POST /_sim/options` | some switches by name, e.g. `{"uid_style":"id_at_domain","rate_limit":{"per_second":5,"retry_after":true}}` | all switches |
//! | `GET /_sim/accounts` | | accounts with their organizers |
//! | `POST /_sim/organizers` | `{"account_id","email","first_name","last_name","timezone"}` | the organizer |
//! | `POST /_sim/meetings` | `{"user_id": …, "spec": {"topic","start","end",…}}` | `{"id": …}` |
//! | `PATCH /_sim/meetings/{id}` | `{"topic"?, "agenda"?, "start"?, "end"?}` | the meeting (API shape) |
//! | `DELETE /_sim/meetings/{id}` | | `{}` |
//! | `POST /_sim/faults` | `{"route":"feed","kind":"status","status":503,"times":2}` (kinds: status, html200, html500, rate_limited (+retry_after), truncated, delay (+delay_ms), delay_after (+delay_ms: answer after the work is done), invalid_json, error_envelope (+code), empty_calendar, etag_churn) | `{}` |
//! | `DELETE /_sim/faults` | | `{}` |

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::json_response;
use super::wire::{meeting_json, MeetingInput};
use super::{Fault, MeetingSpec, Route, Sim, SimOptions};

fn fail(status: u16, msg: impl std::fmt::Display) -> Response {
    json_response(status, &json!({"error": msg.to_string()}))
}

fn ok() -> Response {
    json_response(200, &json!({}))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

#[derive(Deserialize)]
struct NewMeeting {
    user_id: String,
    spec: MeetingSpec,
}

#[derive(Deserialize)]
struct NewOrganizer {
    account_id: String,
    email: String,
    first_name: String,
    last_name: String,
    #[serde(default = "default_user_timezone")]
    timezone: String,
}

fn default_user_timezone() -> String {
    "Europe/Paris".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeetingPatch {
    topic: Option<String>,
    agenda: Option<String>,
    #[serde(default, with = "super::serde_dt::optional")]
    start: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, with = "super::serde_dt::optional")]
    end: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    route: Route,
    kind: String,
    #[serde(default = "one")]
    times: u32,
    status: Option<u16>,
    retry_after: Option<String>,
    delay_ms: Option<u64>,
    code: Option<i64>,
}

fn one() -> u32 {
    1
}

impl FaultRequest {
    fn fault(&self) -> Result<Fault, String> {
        Ok(match self.kind.as_str() {
            "status" => Fault::Status(self.status.ok_or("kind status needs \"status\"")?),
            "html200" => Fault::Html200,
            "html500" => Fault::Html500,
            "rate_limited" => Fault::RateLimited {
                retry_after: self.retry_after.clone(),
            },
            "truncated" => Fault::Truncated,
            "delay" => Fault::Delay(Duration::from_millis(
                self.delay_ms.ok_or("kind delay needs \"delay_ms\"")?,
            )),
            "delay_after" => Fault::DelayAfter(Duration::from_millis(
                self.delay_ms.ok_or("kind delay_after needs \"delay_ms\"")?,
            )),
            "invalid_json" => Fault::InvalidJson,
            "error_envelope" => Fault::ErrorEnvelope(self.code.unwrap_or(-99)),
            "empty_calendar" => Fault::EmptyCalendar,
            "etag_churn" => Fault::EtagChurn,
            other => return Err(format!("unknown fault kind {other:?}")),
        })
    }
}

/// Applies the switches named in `patch` over `current`.
fn patched_options(current: &SimOptions, patch: Value) -> Result<SimOptions, String> {
    let Value::Object(patch) = patch else {
        return Err("expected a JSON object of switches".into());
    };
    let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
    if let Value::Object(m) = &mut merged {
        for (k, v) in patch {
            if !m.contains_key(&k) {
                return Err(format!("unknown switch {k:?}"));
            }
            m.insert(k, v);
        }
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

pub(crate) async fn handle(sim: &Sim, method: &Method, path: &str, body: Body) -> Response {
    let body = match to_bytes(body, 4 << 20).await {
        Ok(b) => b,
        Err(e) => return fail(400, e),
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["_sim", "counters"]) => json_response(
            200,
            &serde_json::to_value(sim.counters()).unwrap_or_default(),
        ),
        (Method::POST, ["_sim", "counters", "reset"]) => {
            sim.reset_counters();
            ok()
        }
        (Method::GET, ["_sim", "writes"]) => {
            json_response(200, &serde_json::to_value(sim.writes()).unwrap_or_default())
        }
        (Method::GET, ["_sim", "options"]) => json_response(
            200,
            &serde_json::to_value(sim.options()).unwrap_or_default(),
        ),
        (Method::POST, ["_sim", "options"]) => {
            let patch: Value = match parse(&body) {
                Ok(v) => v,
                Err(e) => return fail(400, e),
            };
            match patched_options(&sim.options(), patch) {
                Ok(new) => {
                    sim.set_options(|o| *o = new.clone());
                    json_response(200, &serde_json::to_value(new).unwrap_or_default())
                }
                Err(e) => fail(400, e),
            }
        }
        (Method::GET, ["_sim", "accounts"]) => {
            let list: Vec<Value> = sim
                .accounts()
                .into_iter()
                .map(|a| json!({"account_id": a.account_id, "users": sim.users(&a.account_id)}))
                .collect();
            json_response(200, &Value::Array(list))
        }
        (Method::POST, ["_sim", "organizers"]) => {
            let req: NewOrganizer = match parse(&body) {
                Ok(v) => v,
                Err(e) => return fail(400, e),
            };
            let added = sim.lock().add_user(
                &req.account_id,
                &req.email,
                &req.first_name,
                &req.last_name,
                &req.timezone,
                "en",
            );
            match added {
                Ok(u) => json_response(200, &serde_json::to_value(u).unwrap_or_default()),
                Err(e) => fail(400, e.message),
            }
        }
        (Method::POST, ["_sim", "meetings"]) => {
            let req: NewMeeting = match parse(&body) {
                Ok(v) => v,
                Err(e) => return fail(400, e),
            };
            let mut w = sim.lock();
            let input = MeetingInput::from_spec(req.spec, w.started);
            match w.create_meeting(&req.user_id, input) {
                Ok(m) => json_response(200, &json!({"id": m.id})),
                Err(e) => fail(400, e.message),
            }
        }
        (Method::PATCH, ["_sim", "meetings", id]) => {
            let patch: MeetingPatch = match parse(&body) {
                Ok(v) => v,
                Err(e) => return fail(400, e),
            };
            let mut w = sim.lock();
            let Some(current) = w.meetings.get(*id).filter(|m| !m.deleted) else {
                return fail(404, "no such meeting");
            };
            let start = patch.start.unwrap_or(current.start);
            let end = patch.end.unwrap_or(current.end);
            if end <= start {
                return fail(400, "end must be after start");
            }
            let changed = w.modify_meeting(id, |m| {
                if let Some(t) = patch.topic {
                    m.topic = t;
                }
                if let Some(a) = patch.agenda {
                    m.agenda = a;
                }
                m.start = start;
                m.end = end;
            });
            match changed {
                Some(m) => {
                    let opts = w.opts.clone();
                    json_response(200, &meeting_json(&m, &opts, &w.whitelabel_id, w.now()))
                }
                None => fail(404, "no such meeting"),
            }
        }
        (Method::DELETE, ["_sim", "meetings", id]) => match sim.lock().delete_meeting(id, None) {
            Ok(()) => ok(),
            Err(e) => fail(404, e.message),
        },
        (Method::POST, ["_sim", "faults"]) => {
            let req: FaultRequest = match parse(&body) {
                Ok(v) => v,
                Err(e) => return fail(400, e),
            };
            match req.fault() {
                Ok(f) => {
                    sim.inject_fault(req.route, f, req.times);
                    ok()
                }
                Err(e) => fail(400, e),
            }
        }
        (Method::DELETE, ["_sim", "faults"]) => {
            sim.clear_faults();
            ok()
        }
        _ => fail(404, format!("unknown control request {method} {path}")),
    }
}
