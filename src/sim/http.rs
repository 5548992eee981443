//! The HTTP surface: one axum fallback handler that routes by hand, so that
//! every request goes through the same gate (route counters, rate limit,
//! injected faults, API key) before its handler, and unknown paths get the
//! platform's 404 rather than axum's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde_json::Value;

use super::control;
use super::feed::{empty_calendar, RenderedFeed};
use super::wire::{
    account_json, error_envelope, meeting_json, parse_meeting_body, success, user_json,
};
use super::world::ApiError;
use super::{
    ApiAuth, BadToken, DeletePaths, ErrorStatus, Fault, FeedAuth, PutResponse, Route, RunningSim,
    Sim, SimOptions, Validators, WriteRecord,
};

const MAX_BODY: usize = 4 << 20;

pub(crate) async fn serve(sim: Sim, addr: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(dispatch).with_state(sim);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "simulator server stopped with an error");
        }
    });
    Ok(RunningSim {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// A request the API knows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    AccountCreate,
    AdminLookup(String),
    MeetingCreate,
    MeetingList,
    MeetingGet(String),
    MeetingUpdate { id: String, notify: bool },
    MeetingDelete(String),
    Feed(String),
}

impl Target {
    fn parse(method: &Method, path: &str, opts: &SimOptions) -> Option<Target> {
        let rest = path.strip_prefix("/api/v6/")?;
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let put = method == Method::PUT;
        let delete = method == Method::DELETE;
        let target = match segs.as_slice() {
            ["account"] if post => Target::AccountCreate,
            ["account", "admin", id] if get => Target::AdminLookup(id.to_string()),
            ["meeting"] if post => Target::MeetingCreate,
            ["meeting"] if get && opts.get_endpoints => Target::MeetingList,
            ["meeting", "calender", "user", token] if get => Target::Feed(token.to_string()),
            ["meeting", id] if get && opts.get_endpoints => Target::MeetingGet(id.to_string()),
            ["meeting", id] if delete && opts.delete_paths != DeletePaths::FalseSuffixOnly => {
                Target::MeetingDelete(id.to_string())
            }
            ["meeting", id, flag] if put && (*flag == "true" || *flag == "false") => {
                Target::MeetingUpdate {
                    id: id.to_string(),
                    notify: *flag == "true",
                }
            }
            ["meeting", id, "false"] if delete && opts.delete_paths != DeletePaths::PlainOnly => {
                Target::MeetingDelete(id.to_string())
            }
            _ => return None,
        };
        Some(target)
    }

    fn route(&self) -> Route {
        match self {
            Target::AccountCreate => Route::AccountCreate,
            Target::AdminLookup(_) => Route::AdminLookup,
            Target::MeetingCreate => Route::MeetingCreate,
            Target::MeetingList | Target::MeetingGet(_) => Route::MeetingGet,
            Target::MeetingUpdate { .. } => Route::MeetingUpdate,
            Target::MeetingDelete(_) => Route::MeetingDelete,
            Target::Feed(_) => Route::Feed,
        }
    }
}

pub(crate) fn json_response(status: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    response(status, "application/json; charset=utf-8", Bytes::from(body))
}

fn response(status: u16, content_type: &'static str, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error_response(opts: &SimOptions, e: &ApiError) -> Response {
    let status = match opts.error_status {
        ErrorStatus::Ok200 => 200,
        ErrorStatus::Status4xx => e.status,
        ErrorStatus::Status500 => 500,
    };
    json_response(status, &error_envelope(e.code, &e.message))
}

fn html_page(status: u16) -> Response {
    let page = if status == 200 {
        "<!DOCTYPE html>\n<html><head><title>Web Meeting - Sign in</title></head>\
         <body><h1>Sign in</h1><form method=\"post\" action=\"/login\">\
         <input name=\"email\"><input name=\"password\" type=\"password\"></form></body></html>\n"
    } else {
        "<!DOCTYPE html>\n<html><head><title>Error</title></head>\
         <body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>\n"
    };
    response(
        status,
        "text/html; charset=utf-8",
        Bytes::from_static(page.as_bytes()),
    )
}

fn too_many_requests(retry_after: Option<String>) -> Response {
    let mut r = json_response(429, &error_envelope(-99, "Too many requests"));
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn authorized(opts: &SimOptions, headers: &HeaderMap) -> bool {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let key_ok = key == Some(opts.api_key.as_str());
    let bearer_ok = bearer.map(str::trim) == Some(opts.api_key.as_str());
    match opts.auth {
        ApiAuth::ApiKey => key_ok,
        ApiAuth::Bearer => bearer_ok,
        ApiAuth::Either => key_ok || bearer_ok,
    }
}

async fn dispatch(State(sim): State<Sim>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return control::handle(&sim, &parts.method, &path, body).await;
    }
    let opts = sim.options();
    let Some(target) = Target::parse(&parts.method, &path, &opts) else {
        sim.lock().counters.not_found += 1;
        let msg = format!("Cannot {} {path}", parts.method);
        return json_response(404, &error_envelope(-99, &msg));
    };
    let admission = sim.lock().admit(target.route());
    if let Some(retry) = admission.rate_limited {
        return too_many_requests(retry.map(|s| s.to_string()));
    }
    let fault = admission.fault;
    let is_feed = matches!(target, Target::Feed(_));
    match &fault {
        Some(Fault::Status(code)) => {
            return json_response(
                *code,
                &error_envelope(-99, "Internal error, please try again"),
            )
        }
        Some(Fault::Html200) => return html_page(200),
        Some(Fault::Html500) => return html_page(500),
        Some(Fault::RateLimited { retry_after }) => return too_many_requests(retry_after.clone()),
        Some(Fault::ErrorEnvelope(code)) => {
            return json_response(200, &error_envelope(*code, "Request failed"))
        }
        Some(Fault::EmptyCalendar) if !is_feed => return json_response(200, &success(Value::Null)),
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let needs_key = !is_feed || opts.feed_auth == FeedAuth::RequireApiKey;
    if needs_key && !authorized(&opts, &parts.headers) {
        sim.lock().counters.unauthorized += 1;
        return error_response(&opts, &ApiError::unauthorized());
    }
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return error_response(&opts, &ApiError::invalid("Request body too large")),
    };
    let answer = match &target {
        Target::Feed(token) => feed(&sim, &opts, token, &parts.headers, fault.as_ref()),
        _ => match api(&sim, &opts, &target, &parts.headers, &body) {
            Ok(r) => r,
            Err(e) => error_response(&opts, &e),
        },
    };
    if matches!(
        target,
        Target::MeetingCreate | Target::MeetingUpdate { .. } | Target::MeetingDelete(_)
    ) {
        sim.lock().log_write(WriteRecord {
            method: parts.method.to_string(),
            path: path.clone(),
            user_id: user_header(&parts.headers).ok(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            status: answer.status().as_u16(),
        });
    }
    match fault {
        Some(Fault::DelayAfter(d)) => {
            tokio::time::sleep(d).await;
            answer
        }
        Some(Fault::Truncated) => truncate(answer).await,
        Some(Fault::InvalidJson) if !is_feed => response(
            200,
            "application/json; charset=utf-8",
            Bytes::from_static(b"{\"responseCode\":0,\"data\":{\"id\":\"5e9"),
        ),
        _ => answer,
    }
}

/// Announces the full length, sends half, then fails the body so the
/// connection is closed mid-response.
async fn truncate(answer: Response) -> Response {
    let (mut parts, body) = answer.into_parts();
    let full = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let announced = full.len().max(64);
    let half = full.slice(..full.len() / 2);
    // The pause lets hyper flush the head and the first half before the
    // failure aborts the connection, so the client sees a short body.
    let failure = async {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated truncated response",
        ))
    };
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(half)])
        .chain(futures_util::stream::once(failure));
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(announced));
    if parts.status == StatusCode::NOT_MODIFIED {
        parts.status = StatusCode::OK;
    }
    Response::from_parts(parts, Body::from_stream(chunks))
}

fn user_header(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get("x-user-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::not_allowed("X-USER-ID header is required"))
}

fn api(
    sim: &Sim,
    opts: &SimOptions,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let data = match target {
        Target::AccountCreate => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("Request body is not valid JSON: {e}")))?;
            let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let email = field("adminEmail");
            if email.is_empty() {
                return Err(ApiError::invalid("adminEmail is required"));
            }
            let language = Some(field("adminPreferredLanguage"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "en".into());
            let account_type = Some(field("accountType"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "trial".into());
            let mut w = sim.lock();
            let (id, _) = w.create_account(
                &email,
                &field("adminFirstname"),
                &field("adminLastname"),
                &language,
                &account_type,
            )?;
            w.accounts.get(&id).map(account_json).unwrap_or(Value::Null)
        }
        Target::AdminLookup(account_id) => {
            let w = sim.lock();
            let users = w
                .account_users(account_id)
                .ok_or_else(|| ApiError::not_found("Account not found"))?;
            let list = users
                .iter()
                .map(|u| {
                    let lang = w
                        .users
                        .get(&u.id)
                        .map(|x| x.preferred_language.as_str())
                        .unwrap_or("en");
                    user_json(u, lang)
                })
                .collect();
            Value::Array(list)
        }
        Target::MeetingCreate => {
            let user_id = user_header(headers)?;
            let mut w = sim.lock();
            let (input, _) = parse_meeting_body(body, opts, w.started)?;
            let m = w.create_meeting(&user_id, input)?;
            w.count_create(&user_id);
            meeting_json(&m, opts, &w.whitelabel_id, w.now())
        }
        Target::MeetingUpdate { id, notify } => {
            let user_id = user_header(headers)?;
            let mut w = sim.lock();
            let (input, body_id) = parse_meeting_body(body, opts, w.started)?;
            if body_id.as_deref().is_some_and(|b| b != id) {
                return Err(ApiError::invalid("id in the body does not match the path"));
            }
            let m = w.replace_meeting(id, &user_id, input)?;
            if *notify {
                w.counters.mails_sent += 1;
            }
            match opts.put_response {
                PutResponse::FullData => meeting_json(&m, opts, &w.whitelabel_id, w.now()),
                PutResponse::NullData => Value::Null,
            }
        }
        Target::MeetingDelete(id) => {
            let user_id = user_header(headers)?;
            sim.lock().delete_meeting(id, Some(&user_id))?;
            Value::Null
        }
        Target::MeetingGet(id) => {
            let user_id = user_header(headers)?;
            let w = sim.lock();
            let m = w.get_meeting(id, &user_id)?;
            meeting_json(&m, opts, &w.whitelabel_id, w.now())
        }
        Target::MeetingList => {
            let user_id = user_header(headers)?;
            let (meetings, whitelabel, now) = {
                let w = sim.lock();
                if !w.users.contains_key(&user_id) {
                    return Err(ApiError::not_allowed("Unknown X-USER-ID"));
                }
                (w.user_meetings(&user_id), w.whitelabel_id.clone(), w.now())
            };
            let list = meetings
                .iter()
                .filter(|m| !m.deleted)
                .map(|m| meeting_json(m, opts, &whitelabel, now))
                .collect();
            Value::Array(list)
        }
        Target::Feed(_) => Value::Null,
    };
    Ok(json_response(200, &success(data)))
}

fn bad_token(sim: &Sim, opts: &SimOptions) -> Response {
    match opts.bad_token {
        BadToken::NotFound404 => json_response(404, &error_envelope(-4, "Calendar not found")),
        BadToken::EmptyCalendar200 => {
            sim.lock().counters.feed_200 += 1;
            response(
                200,
                "text/calendar; charset=utf-8",
                Bytes::from(empty_calendar(opts.line_endings, None)),
            )
        }
        BadToken::Html200 => html_page(200),
    }
}

fn feed(
    sim: &Sim,
    opts: &SimOptions,
    token: &str,
    headers: &HeaderMap,
    fault: Option<&Fault>,
) -> Response {
    let user = {
        let w = sim.lock();
        w.tokens
            .get(token)
            .and_then(|id| w.users.get(id))
            .map(|u| (u.info.id.clone(), u.info.display_name(), w.now()))
    };
    let Some((user_id, calname, now)) = user else {
        return bad_token(sim, opts);
    };
    let rendered = match fault {
        Some(Fault::InvalidJson) => {
            let broken = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:5e945c36b863b82cefdd\r\nDTSTART:2020040";
            return response(
                200,
                "text/calendar; charset=utf-8",
                Bytes::from_static(broken.as_bytes()),
            );
        }
        Some(Fault::EmptyCalendar) => Arc::new(RenderedFeed::new(
            empty_calendar(opts.line_endings, Some(&calname)),
            now,
            None,
        )),
        _ => match sim.feed(&user_id) {
            Some(f) => f,
            None => return bad_token(sim, opts),
        },
    };
    let tag = match fault {
        Some(Fault::EtagChurn) => format!("{}-{}", rendered.hash, sim.lock().next_churn()),
        _ => rendered.hash.clone(),
    };
    // Faults that change the answer must be seen even by a client that has a copy.
    let conditional = !matches!(
        fault,
        Some(Fault::EtagChurn | Fault::EmptyCalendar | Fault::Truncated)
    );
    calendar(sim, opts, headers, &rendered, &tag, conditional)
}

fn calendar(
    sim: &Sim,
    opts: &SimOptions,
    headers: &HeaderMap,
    feed: &RenderedFeed,
    tag: &str,
    conditional: bool,
) -> Response {
    let etag = match opts.validators {
        Validators::StrongEtag | Validators::Both => Some(format!("\"{tag}\"")),
        Validators::WeakEtag => Some(format!("W/\"{tag}\"")),
        Validators::None | Validators::LastModified => None,
    };
    let last_modified = matches!(opts.validators, Validators::LastModified | Validators::Both)
        .then_some(feed.last_modified);
    let fresh = conditional && not_modified(headers, etag.as_deref(), last_modified);
    let mut r = if fresh {
        sim.lock().counters.feed_304 += 1;
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        sim.lock().counters.feed_200 += 1;
        response(200, "text/calendar; charset=utf-8", feed.body.clone())
    };
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if let Some(t) = last_modified {
        let text = httpdate::fmt_http_date(SystemTime::from(t));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().insert(header::LAST_MODIFIED, v);
        }
    }
    r
}

/// RFC 9110 §13.2.2: `If-None-Match` (exact comparison of each listed tag)
/// decides when present; otherwise `If-Modified-Since` at one-second resolution.
fn not_modified(
    headers: &HeaderMap,
    etag: Option<&str>,
    last_modified: Option<DateTime<Utc>>,
) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
        let (Some(etag), Ok(list)) = (etag, inm.to_str()) else {
            return false;
        };
        return list
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag);
    }
    let (Some(ims), Some(lm)) = (headers.get(header::IF_MODIFIED_SINCE), last_modified) else {
        return false;
    };
    let Some(since) = ims
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
    else {
        return false;
    };
    DateTime::<Utc>::from(since).timestamp() >= lm.timestamp()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn routing_follows_switches() {
        let mut o = SimOptions::default();
        let del = Method::DELETE;
        assert_eq!(
            Target::parse(&del, "/api/v6/meeting/abc/false", &o),
            Some(Target::MeetingDelete("abc".into()))
        );
        assert_eq!(Target::parse(&del, "/api/v6/meeting/abc/true", &o), None);
        o.delete_paths = DeletePaths::PlainOnly;
        assert_eq!(Target::parse(&del, "/api/v6/meeting/abc/false", &o), None);
        assert!(Target::parse(&del, "/api/v6/meeting/abc", &o).is_some());
        o.delete_paths = DeletePaths::FalseSuffixOnly;
        assert_eq!(Target::parse(&del, "/api/v6/meeting/abc", &o), None);
        assert_eq!(
            Target::parse(&Method::PUT, "/api/v6/meeting/abc/maybe", &o),
            None
        );
        assert_eq!(
            Target::parse(&Method::GET, "/api/v6/meeting/calender/user/t-1", &o),
            Some(Target::Feed("t-1".into()))
        );
        assert_eq!(
            Target::parse(&Method::GET, "/api/v6/meeting/calendar/user/t-1", &o),
            None
        );
        o.get_endpoints = false;
        assert_eq!(Target::parse(&Method::GET, "/api/v6/meeting/abc", &o), None);
        assert_eq!(Target::parse(&Method::GET, "/api/v6/meeting", &o), None);
        assert_eq!(Target::parse(&Method::GET, "/api/v6/meeting//x", &o), None);
    }

    #[test]
    fn conditional_rules() {
        let lm = DateTime::parse_from_rfc3339("2025-01-01T10:00:00.500Z")
            .unwrap()
            .to_utc();
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", \"b\""),
        );
        assert!(not_modified(&h, Some("\"b\""), None));
        assert!(!not_modified(&h, Some("W/\"b\""), None));
        assert!(!not_modified(&h, None, Some(lm)));
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Wed, 01 Jan 2025 10:00:00 GMT"),
        );
        assert!(not_modified(&h, None, Some(lm)));
        assert!(!not_modified(
            &h,
            None,
            Some(lm + chrono::Duration::seconds(1))
        ));
    }
}
