//! Web Meeting API v6 client: organizer discovery through the account admin
//! lookup, each organizer's ICS feed at its `icsPath` (conditional GET), and
//! the write path (create, update, delete, and the optional get/list).
//!
//! Wire types (`RawUser`, the envelope) are converted here into our model;
//! meeting bodies are built and read by [`super::meeting_body`].
//! The ICS token in `icsPath` is a credential: it is kept as a secret and the
//! path is shown redacted everywhere. The API key travels only in the
//! `X-API-KEY` header, marked sensitive; errors name the request by method
//! and path (meeting ids are not secrets), never the key.
//!
//! # Write path: documented and assumed (docs `web-meeting-v6.md` §1, §3)
//! * `POST /api/v6/meeting` and `PUT /api/v6/meeting/{id}/false` with
//!   `X-API-KEY` + `X-USER-ID` and the `{"responseCode":0,"data":…}` envelope
//!   are documented. A create is **never retried** (the HTTP layer only
//!   retries idempotent methods): after an error for which
//!   [`ProviderError::outcome_unknown`] is true the meeting may exist, and the
//!   caller must look for it (feed) before posting again.
//! * \[A\] The trailing `/false` vs `/true` of the PUT path is assumed to mean
//!   "notify participants" (the alternatives, "whole series" or "draft", are
//!   not excluded); `update_meeting(…, notify)` sends it as given.
//! * \[A\] The PUT answer is the envelope with the updated meeting, or
//!   `data: null` (or an empty body): both are accepted.
//! * \[A\] Delete is undocumented: `DELETE /api/v6/meeting/{id}` first, and on
//!   404/405 `DELETE /api/v6/meeting/{id}/false`; the path that worked is
//!   tried first from then on. An unknown id (a negative `responseCode` other
//!   than the key/permission codes −1/−2/−3, or a platform 404 on both paths)
//!   is [`ProviderError::NotFound`], which the caller may take as "already
//!   gone". A 404/405 that only says the *path* does not exist (no JSON
//!   envelope, an HTML page, or the framework's `Cannot DELETE …`) on both
//!   paths stays an error, so a wrong `base_url` never looks like success.
//! * \[A\] `GET /api/v6/meeting/{id}` and `GET /api/v6/meeting` (the meetings
//!   of `X-USER-ID`) may not exist: a path-level 404/405 gives `Ok(None)`;
//!   an unknown meeting gives [`ProviderError::NotFound`].
//! * \[A\] An unknown id on PUT (a platform 404) is [`ProviderError::NotFound`] too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, IF_MODIFIED_SINCE, IF_NONE_MATCH,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{Http, HttpError, RetryPolicy};
use crate::state::FeedState;

/// What a feed item always carries besides the synced fields: the revision of the platform's
/// version. With the property names an item's rendering has, this is what the platform holds
/// in an event (`ics::update_from_platform`); everything else in a local event is the user's.
pub const FEED_PROPERTIES: &[&str] = &["DTSTAMP", "LAST-MODIFIED", "SEQUENCE"];

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{target}: the platform refused the request (responseCode {code}{message})")]
    Envelope {
        target: String,
        code: i64,
        message: String,
    },
    #[error("{target}: the answer is not the expected JSON ({cause})")]
    Json { target: String, cause: String },
    #[error("{target}: expected a calendar but got {what}; check the feed path and the platform's status")]
    NotCalendar { target: String, what: String },
    #[error("API key header cannot be built: it contains characters not allowed in HTTP headers")]
    BadKey,
    #[error("user id {0:?} cannot be sent: it contains characters not allowed in HTTP headers")]
    BadUserId(String),
    /// The platform does not know the meeting (unknown or already deleted id).
    #[error("{target}: the platform does not know this meeting (already deleted?)")]
    NotFound { target: String },
}

impl ProviderError {
    /// True when the request may have been carried out although it failed:
    /// the connection broke or timed out, the server failed (5xx), or the
    /// answer could not be read. False when the platform clearly refused it
    /// (4xx, a negative `responseCode`, unknown meeting) or it was never sent.
    /// After a failed create, true means "look for the meeting before posting
    /// again".
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ProviderError::Http(HttpError::Network { .. } | HttpError::TooLarge { .. }) => true,
            ProviderError::Http(HttpError::Status { status, .. }) => status.is_server_error(),
            ProviderError::Json { .. } | ProviderError::NotCalendar { .. } => true,
            ProviderError::Envelope { .. }
            | ProviderError::BadKey
            | ProviderError::BadUserId(_)
            | ProviderError::NotFound { .. } => false,
        }
    }
}

/// A meeting created by [`Client::create_meeting`].
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The 24-hex internal id (for PUT/DELETE paths).
    pub id: String,
    /// The human meeting number (`9974-7653-8886-0485`), when sent.
    pub meeting_id: Option<String>,
    /// The whole `data` object: the server copy for later PUTs.
    pub server: serde_json::Value,
}

/// One organizer whose feed is pulled.
#[derive(Clone)]
pub struct Organizer {
    /// Stable key in the sync state: the user id, or the configured feed name.
    pub key: String,
    /// For people: the email, or the feed name.
    pub label: String,
    pub display_name: String,
    ics_path: SecretString,
}

impl std::fmt::Debug for Organizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Organizer")
            .field("key", &self.key)
            .field("label", &self.label)
            .field("ics_path", &"<redacted>")
            .finish()
    }
}

impl Organizer {
    pub fn from_feed(name: &str, ics_path: SecretString) -> Organizer {
        Organizer {
            key: format!("feed:{name}"),
            label: name.to_string(),
            display_name: name.to_string(),
            ics_path,
        }
    }
}

/// The result of a feed fetch.
#[derive(Debug)]
pub enum FeedFetch {
    NotModified,
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUser {
    id: String,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    ics_token: Option<String>,
    ics_path: Option<String>,
}

pub struct Client {
    http: Http,
    pair: String,
    base: String,
    api_key: SecretString,
    max_body: u64,
    /// `DELETE …/{id}/false` worked where `DELETE …/{id}` did not: try it first.
    delete_suffix_first: AtomicBool,
}

impl Client {
    pub fn new(
        pair: &str,
        base_url: &str,
        api_key: SecretString,
        timeout: Duration,
        max_body: u64,
    ) -> Result<Client, ProviderError> {
        Ok(Client {
            http: Http::new(timeout, RetryPolicy::default())?.with_label(pair),
            pair: pair.to_string(),
            base: base_url.trim_end_matches('/').to_string(),
            api_key,
            max_body,
            delete_suffix_first: AtomicBool::new(false),
        })
    }

    /// Shorter retries for tests and the demo.
    pub fn with_retry(
        mut self,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Result<Client, ProviderError> {
        let rate = self.http.rate_limit();
        self.http = Http::new(timeout, retry)?
            .with_label(&self.pair)
            .with_rate_limit(rate);
        Ok(self)
    }

    /// At most `per_second` requests per second to one host (0 = no limit);
    /// the default is [`crate::http::DEFAULT_MAX_REQUESTS_PER_SECOND`].
    pub fn with_rate_limit(mut self, per_second: f64) -> Client {
        self.http = self.http.with_rate_limit(per_second);
        self
    }

    fn api_headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut h = HeaderMap::new();
        let mut key = HeaderValue::from_str(self.api_key.expose_secret())
            .map_err(|_| ProviderError::BadKey)?;
        key.set_sensitive(true);
        h.insert(HeaderName::from_static("x-api-key"), key);
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("application/json"),
        );
        Ok(h)
    }

    fn meeting_headers(&self, user_id: &str) -> Result<HeaderMap, ProviderError> {
        let mut h = self.api_headers()?;
        let user = HeaderValue::from_str(user_id.trim())
            .map_err(|_| ProviderError::BadUserId(user_id.to_string()))?;
        h.insert(HeaderName::from_static("x-user-id"), user);
        Ok(h)
    }

    /// One meeting API call; returns the body of a 2xx answer. `path` starts
    /// with `/api/v6/`; the error target is `METHOD {base}{path}`.
    async fn meeting_call(
        &self,
        method: Method,
        user_id: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        max_body: u64,
    ) -> Result<(String, Vec<u8>), ProviderError> {
        let target = format!("{method} {}{path}", self.base);
        let url = format!("{}{path}", self.base);
        let headers = self.meeting_headers(user_id)?;
        let bytes = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ProviderError::Json {
                target: target.clone(),
                cause: e.to_string(),
            })?),
            None => None,
        };
        let resp = self
            .http
            .send(method, &url, headers, bytes, max_body, &target)
            .await?;
        Ok((target, resp.body))
    }

    /// `POST /api/v6/meeting` for organizer `user_id` with a body from
    /// [`super::meeting_body::meeting_body`]. Never retried: see
    /// [`ProviderError::outcome_unknown`].
    pub async fn create_meeting(
        &self,
        user_id: &str,
        body: &serde_json::Value,
    ) -> Result<Created, ProviderError> {
        let (target, bytes) = self
            .meeting_call(
                Method::POST,
                user_id,
                "/api/v6/meeting",
                Some(body),
                16 << 20,
            )
            .await?;
        let data: serde_json::Value = parse_envelope(&bytes, &target)?;
        let id = match data.get("id") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(ProviderError::Json {
                    target,
                    cause: "the answer holds no meeting id".into(),
                })
            }
        };
        let meeting_id = data
            .get("meetingId")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .filter(|m| !m.is_empty());
        Ok(Created {
            id,
            meeting_id,
            server: data,
        })
    }

    /// `PUT /api/v6/meeting/{id}/{notify}`: full replacement (the body must
    /// hold every field, see [`super::meeting_body::meeting_body`]; `"id"` is
    /// added when missing). `notify` is the trailing flag, assumed to mean
    /// "notify participants". Returns the updated meeting, or None when the
    /// platform answers `data: null` or nothing.
    pub async fn update_meeting(
        &self,
        user_id: &str,
        id: &str,
        body: &serde_json::Value,
        notify: bool,
    ) -> Result<Option<serde_json::Value>, ProviderError> {
        let path = format!("/api/v6/meeting/{}/{notify}", urlencode_segment(id));
        let mut body = body.clone();
        if let serde_json::Value::Object(m) = &mut body {
            m.entry("id")
                .or_insert_with(|| serde_json::Value::String(id.to_string()));
        }
        let result = self
            .meeting_call(Method::PUT, user_id, &path, Some(&body), 16 << 20)
            .await
            .and_then(|(target, bytes)| parse_optional_envelope(&bytes, &target));
        match result {
            Ok(data) => Ok(data),
            Err(e @ ProviderError::Http(_)) if missing(&e) == Some(Missing::Meeting) => {
                Err(not_found(&e, Method::PUT, &self.base, &path))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a meeting: `DELETE /api/v6/meeting/{id}`, and on 404/405
    /// `DELETE /api/v6/meeting/{id}/false` (the path that worked is tried
    /// first next time). [`ProviderError::NotFound`] when the platform does
    /// not know the id (the caller may treat that as "already gone").
    pub async fn delete_meeting(&self, user_id: &str, id: &str) -> Result<(), ProviderError> {
        let plain = format!("/api/v6/meeting/{}", urlencode_segment(id));
        let suffixed = format!("{plain}/false");
        let suffix_first = self.delete_suffix_first.load(Ordering::Relaxed);
        let order = if suffix_first {
            [&suffixed, &plain]
        } else {
            [&plain, &suffixed]
        };
        let mut path_missing: Option<ProviderError> = None;
        let mut unknown: Option<ProviderError> = None;
        for path in order {
            let result = self
                .meeting_call(Method::DELETE, user_id, path, None, 16 << 20)
                .await
                .and_then(|(target, bytes)| parse_optional_envelope(&bytes, &target));
            match result {
                Ok(_) => {
                    self.delete_suffix_first
                        .store(*path == suffixed, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => match missing(&e) {
                    Some(Missing::Path) => {
                        path_missing.get_or_insert(e);
                    }
                    Some(Missing::Meeting) => {
                        if unknown.is_none() {
                            unknown = Some(not_found(&e, Method::DELETE, &self.base, path));
                        }
                    }
                    None => return Err(e),
                },
            }
        }
        match (unknown, path_missing) {
            (Some(e), _) | (None, Some(e)) => Err(e),
            (None, None) => Err(ProviderError::Json {
                target: format!("DELETE {}{plain}", self.base),
                cause: "no delete request was made".into(),
            }),
        }
    }

    /// `GET /api/v6/meeting/{id}`: the server copy of a meeting. None when the
    /// platform has no such endpoint; [`ProviderError::NotFound`] when it does
    /// not know the meeting.
    pub async fn get_meeting(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, ProviderError> {
        let path = format!("/api/v6/meeting/{}", urlencode_segment(id));
        let result = self
            .meeting_call(Method::GET, user_id, &path, None, 16 << 20)
            .await
            .and_then(|(target, bytes)| {
                parse_envelope::<serde_json::Value>(&bytes, &target).map(|d| (target, d))
            });
        match result {
            Ok((_, data @ serde_json::Value::Object(_))) => Ok(Some(data)),
            Ok((target, _)) => Err(ProviderError::NotFound { target }),
            Err(e) => match missing(&e) {
                Some(Missing::Path) => Ok(None),
                Some(Missing::Meeting) => Err(not_found(&e, Method::GET, &self.base, &path)),
                None => Err(e),
            },
        }
    }

    /// `GET /api/v6/meeting`: the meetings of `user_id`, each in the shape of
    /// a create answer. None when the platform has no such endpoint.
    pub async fn list_meetings(
        &self,
        user_id: &str,
    ) -> Result<Option<Vec<serde_json::Value>>, ProviderError> {
        let path = "/api/v6/meeting";
        let result = self
            .meeting_call(Method::GET, user_id, path, None, 64 << 20)
            .await
            .and_then(|(target, bytes)| {
                parse_envelope::<serde_json::Value>(&bytes, &target).map(|d| (target, d))
            });
        let (target, data) = match result {
            Ok(x) => x,
            Err(e) if missing(&e) == Some(Missing::Path) => return Ok(None),
            Err(e) => return Err(e),
        };
        match data {
            serde_json::Value::Array(list) => Ok(Some(list)),
            serde_json::Value::Null => Ok(Some(Vec::new())),
            // A paginated shape: the one array inside.
            serde_json::Value::Object(m) => {
                let mut arrays = m.into_iter().filter_map(|(_, v)| match v {
                    serde_json::Value::Array(a) => Some(a),
                    _ => None,
                });
                match (arrays.next(), arrays.next()) {
                    (Some(a), None) => Ok(Some(a)),
                    _ => Err(ProviderError::Json {
                        target,
                        cause: "data is not a list of meetings".into(),
                    }),
                }
            }
            _ => Err(ProviderError::Json {
                target,
                cause: "data is not a list of meetings".into(),
            }),
        }
    }

    /// Organizers of an account via `GET /api/v6/account/admin/{accountId}`,
    /// optionally restricted to `only` (emails or user ids).
    pub async fn organizers(
        &self,
        account_id: &str,
        only: &[String],
    ) -> Result<Vec<Organizer>, ProviderError> {
        let target = format!("GET {}/api/v6/account/admin/{account_id}", self.base);
        let url = format!(
            "{}/api/v6/account/admin/{}",
            self.base,
            urlencode_segment(account_id)
        );
        let resp = self
            .http
            .send(
                Method::GET,
                &url,
                self.api_headers()?,
                None,
                64 << 20,
                &target,
            )
            .await?;
        let users: Vec<RawUser> = parse_envelope(&resp.body, &target)?;
        let mut out = Vec::new();
        for u in users {
            let wanted = only.is_empty()
                || only.iter().any(|o| {
                    o == &u.id
                        || u.email
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case(o))
                });
            if !wanted {
                continue;
            }
            let path = match (u.ics_path, u.ics_token) {
                (Some(p), _) if !p.is_empty() => p,
                // icsPath is documented; rebuild only when a deployment omits it
                (_, Some(t)) if !t.is_empty() => format!("/api/v6/meeting/calender/user/{t}"),
                _ => {
                    tracing::warn!(user = %u.id, "organizer has no icsPath; skipped");
                    continue;
                }
            };
            let label = u.email.clone().unwrap_or_else(|| u.id.clone());
            let display = match (u.first_name, u.last_name) {
                (Some(f), Some(l)) => format!("{f} {l}").trim().to_string(),
                (Some(f), None) => f,
                _ => label.clone(),
            };
            out.push(Organizer {
                key: u.id,
                label,
                display_name: display,
                ics_path: SecretString::from(path),
            });
        }
        Ok(out)
    }

    /// The redacted description of an organizer's feed request.
    pub fn feed_target(&self, org: &Organizer) -> String {
        format!(
            "GET {}{}",
            self.base,
            redact_path(org.ics_path.expose_secret())
        )
    }

    /// Conditional GET of an organizer's ICS feed.
    pub async fn fetch_feed(
        &self,
        org: &Organizer,
        known: &FeedState,
    ) -> Result<FeedFetch, ProviderError> {
        let target = format!("feed of {} ({})", org.label, self.feed_target(org));
        let path = org.ics_path.expose_secret();
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            HeaderValue::from_static("text/calendar, text/plain;q=0.5, */*;q=0.1"),
        );
        // Some deployments want the key on the feed too; it is sent as a
        // sensitive header either way.
        if let Ok(mut key) = HeaderValue::from_str(self.api_key.expose_secret()) {
            key.set_sensitive(true);
            h.insert(HeaderName::from_static("x-api-key"), key);
        }
        if known.body_hash.is_some() {
            if let Some(e) = known
                .etag
                .as_deref()
                .and_then(|e| HeaderValue::from_str(e).ok())
            {
                h.insert(IF_NONE_MATCH, e);
            }
            if let Some(lm) = known
                .last_modified
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                h.insert(IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = self
            .http
            .send(Method::GET, &url, h, None, self.max_body, &target)
            .await?;
        if resp.status == StatusCode::NOT_MODIFIED {
            return Ok(FeedFetch::NotModified);
        }
        let ct = resp.content_type();
        let looks_html = ct.contains("html") || {
            let head = String::from_utf8_lossy(&resp.body[..resp.body.len().min(512)])
                .to_ascii_lowercase();
            let t = head.trim_start_matches('\u{feff}').trim_start();
            t.starts_with("<!doctype") || t.starts_with("<html")
        };
        if looks_html {
            return Err(ProviderError::NotCalendar {
                target,
                what: "an HTML page".into(),
            });
        }
        if ct.contains("json") {
            let msg = serde_json::from_slice::<serde_json::Value>(&resp.body)
                .ok()
                .and_then(|v| {
                    v.get("responseMessage")
                        .and_then(|m| m.as_str().map(str::to_string))
                })
                .unwrap_or_default();
            return Err(ProviderError::NotCalendar {
                target,
                what: format!("JSON {msg}").trim().to_string(),
            });
        }
        Ok(FeedFetch::Body {
            etag: resp.header("etag"),
            last_modified: resp.header("last-modified"),
            body: resp.body,
        })
    }
}

/// `{"responseCode":0,"data":…}`; `responseCode` may be a number or a numeric string.
fn parse_envelope<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    target: &str,
) -> Result<T, ProviderError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ProviderError::Json {
        target: target.to_string(),
        cause: e.to_string(),
    })?;
    let code = match v.get("responseCode") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let code = code.ok_or_else(|| ProviderError::Json {
        target: target.to_string(),
        cause: "no responseCode".into(),
    })?;
    if code != 0 {
        let message = v
            .get("responseMessage")
            .and_then(|m| m.as_str())
            .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        return Err(ProviderError::Envelope {
            target: target.to_string(),
            code,
            message,
        });
    }
    let data = v.get("data").cloned().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(data).map_err(|e| ProviderError::Json {
        target: target.to_string(),
        cause: e.to_string(),
    })
}

/// Like [`parse_envelope`], but an empty body or `data: null` is `None`.
fn parse_optional_envelope(
    body: &[u8],
    target: &str,
) -> Result<Option<serde_json::Value>, ProviderError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let data: serde_json::Value = parse_envelope(body, target)?;
    Ok((!data.is_null()).then_some(data))
}

/// What a failed meeting request says is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// The endpoint itself: 405/501, or a 404 that is not the platform's own
    /// answer (no JSON envelope, an HTML page, the web framework's
    /// `Cannot GET /…`).
    Path,
    /// The meeting: a 404/410 with the platform's envelope, or a negative
    /// `responseCode` other than the key/permission codes.
    Meeting,
}

fn missing(e: &ProviderError) -> Option<Missing> {
    match e {
        ProviderError::Http(HttpError::Status { status, detail, .. }) => match status.as_u16() {
            405 | 501 => Some(Missing::Path),
            410 => Some(Missing::Meeting),
            404 => match envelope_message(detail) {
                Some(m) if !m.trim_start().starts_with("Cannot ") => Some(Missing::Meeting),
                _ => Some(Missing::Path),
            },
            _ => None,
        },
        ProviderError::Envelope { code, .. } if !matches!(code, -3..=-1) => Some(Missing::Meeting),
        _ => None,
    }
}

/// The `responseMessage` that `HttpError::Status` quotes in its detail
/// (` (message)` followed by nothing or by a `; hint`), if any.
fn envelope_message(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix(" (")?;
    let end = rest.rmatch_indices(')').map(|(i, _)| i).find(|&i| {
        let after = &rest[i + 1..];
        after.is_empty() || after.starts_with("; ")
    })?;
    let message = &rest[..end];
    (message != "an HTML page").then_some(message)
}

/// A `NotFound` naming the request; keeps the platform's words.
fn not_found(e: &ProviderError, method: Method, base: &str, path: &str) -> ProviderError {
    let said = match e {
        ProviderError::Http(HttpError::Status { status, detail, .. }) => {
            let m = envelope_message(detail)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!(" ({status}{m})")
        }
        ProviderError::Envelope { code, message, .. } => format!(" (responseCode {code}{message})"),
        _ => String::new(),
    };
    ProviderError::NotFound {
        target: format!("{method} {base}{path}{said}"),
    }
}

/// Replace the token of a feed path (`…/calender/user/{token}`) or of any
/// path's last segment with `<redacted>`.
pub fn redact_path(path: &str) -> String {
    let no_query = path.split('?').next().unwrap_or(path);
    let (head, _) = no_query.rsplit_once('/').unwrap_or(("", no_query));
    let head = if let Some(rest) = head
        .strip_prefix("http://")
        .or_else(|| head.strip_prefix("https://"))
    {
        // a full URL: keep scheme and host
        let scheme = if head.starts_with("https") {
            "https://"
        } else {
            "http://"
        };
        format!("{scheme}{rest}")
    } else {
        head.to_string()
    };
    format!("{head}/<redacted>")
}

fn urlencode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens() {
        assert_eq!(
            redact_path("/api/v6/meeting/calender/user/ce5494bc-d691-4caf"),
            "/api/v6/meeting/calender/user/<redacted>"
        );
        assert_eq!(redact_path("https://h/x/tok?a=b"), "https://h/x/<redacted>");
    }

    #[test]
    fn envelope_accepts_string_codes_and_reports_errors() {
        let ok: Vec<u32> = parse_envelope(br#"{"responseCode":"0","data":[1,2]}"#, "t").unwrap();
        assert_eq!(ok, vec![1, 2]);
        let e = parse_envelope::<Vec<u32>>(
            br#"{"responseCode":-4,"responseMessage":"data not valid","data":null}"#,
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("responseCode -4: data not valid"), "{e}");
        assert!(parse_envelope::<Vec<u32>>(b"<html>", "t").is_err());
    }

    #[test]
    fn missing_path_and_missing_meeting_are_told_apart() {
        let status = |code: u16, detail: &str| {
            ProviderError::Http(HttpError::Status {
                target: "t".into(),
                status: StatusCode::from_u16(code).unwrap(),
                detail: detail.into(),
            })
        };
        let hint = "; check base_url, and that the account, organizer or feed still exists";
        assert_eq!(
            missing(&status(404, &format!(" (Meeting not found){hint}"))),
            Some(Missing::Meeting)
        );
        assert_eq!(
            missing(&status(
                404,
                &format!(" (Cannot DELETE /api/v6/meeting/x){hint}")
            )),
            Some(Missing::Path)
        );
        assert_eq!(missing(&status(404, hint)), Some(Missing::Path));
        assert_eq!(
            missing(&status(404, &format!(" (an HTML page){hint}"))),
            Some(Missing::Path)
        );
        assert_eq!(missing(&status(405, "")), Some(Missing::Path));
        assert_eq!(
            missing(&status(404, &format!(" (id (x) unknown){hint}"))),
            Some(Missing::Meeting)
        );
        assert_eq!(missing(&status(400, " (Meeting not found)")), None);
        assert_eq!(missing(&status(500, "")), None);
        let env = |code| ProviderError::Envelope {
            target: "t".into(),
            code,
            message: String::new(),
        };
        assert_eq!(missing(&env(-4)), Some(Missing::Meeting));
        assert_eq!(missing(&env(-99)), Some(Missing::Meeting));
        assert_eq!(missing(&env(-1)), None, "a bad key is not 'already gone'");
        assert_eq!(missing(&env(-3)), None);
        assert_eq!(envelope_message(" (a (b) c); hint"), Some("a (b) c"));
        assert_eq!(envelope_message(" (m)"), Some("m"));
        assert_eq!(envelope_message("; hint"), None);
    }

    #[test]
    fn outcome_unknown_only_when_the_request_may_have_run() {
        let status = |code: u16| {
            ProviderError::Http(HttpError::Status {
                target: "t".into(),
                status: StatusCode::from_u16(code).unwrap(),
                detail: String::new(),
            })
        };
        assert!(status(503).outcome_unknown());
        assert!(!status(400).outcome_unknown());
        assert!(!status(429).outcome_unknown());
        assert!(ProviderError::Http(HttpError::Network {
            target: "t".into(),
            cause: "timed out".into()
        })
        .outcome_unknown());
        assert!(ProviderError::Json {
            target: "t".into(),
            cause: "eof".into()
        }
        .outcome_unknown());
        assert!(!ProviderError::Envelope {
            target: "t".into(),
            code: -4,
            message: String::new()
        }
        .outcome_unknown());
    }
}

/// The write path against the simulator on 127.0.0.1:0.
#[cfg(test)]
mod sim_tests {
    use super::*;
    use crate::model::{Fields, When};
    use crate::provider::meeting_body::{self, fields_from_meeting, meeting_body};
    use crate::sim::{
        DeletePaths, ErrorStatus, Fault, MeetingSpec, ParticipantShape, PutResponse, Route,
        RunningSim, Sim, SimOptions,
    };
    use serde_json::json;

    const KEY: &str = "sim-api-key";

    struct Env {
        sim: Sim,
        server: RunningSim,
        client: Client,
        user: String,
        account: String,
    }

    fn client_for(base: &str, key: &str, timeout: Duration) -> Client {
        Client::new(
            "test",
            base,
            SecretString::from(key.to_string()),
            timeout,
            1 << 20,
        )
        .unwrap()
        .with_retry(
            RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            timeout,
        )
        .unwrap()
    }

    async fn env(opts: SimOptions) -> Env {
        let sim = Sim::new(opts);
        let server = sim.serve(([127, 0, 0, 1], 0).into()).await.unwrap();
        let acc = sim.create_account("test-user@example.com", "Test", "User");
        let client = client_for(&server.base_url(), KEY, Duration::from_secs(5));
        Env {
            sim,
            client,
            user: acc.admin.id.clone(),
            account: acc.account_id,
            server,
        }
    }

    fn utc(s: &str) -> When {
        When::Instant {
            unix: chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp(),
            tzid: None,
        }
    }

    fn fields(topic: &str) -> Fields {
        Fields {
            summary: topic.into(),
            description: "Agenda: Zoë, 李雷".into(),
            start: Some(utc("2030-04-07T09:00:00Z")),
            end: Some(utc("2030-04-07T10:00:00Z")),
            rrule: None,
            attendees: ["a@example.test".to_string()].into_iter().collect(),
        }
    }

    fn spec(topic: &str) -> MeetingSpec {
        let start = chrono::DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
            .unwrap()
            .to_utc();
        MeetingSpec {
            topic: topic.into(),
            agenda: String::new(),
            start,
            end: start + chrono::Duration::minutes(30),
            timezone: "Europe/Zurich".into(),
            invited: vec![],
            recurrence: None,
            extra_ics: vec![],
        }
    }

    fn unfold(s: &str) -> String {
        s.replace("\r\n ", "").replace("\r\n", "\n")
    }

    async fn feed_text(e: &Env) -> String {
        let orgs = e.client.organizers(&e.account, &[]).await.unwrap();
        match e.client.fetch_feed(&orgs[0], &FeedState::default()).await {
            Ok(FeedFetch::Body { body, .. }) => unfold(&String::from_utf8(body).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn create_reads_the_string_duration_answer() {
        let e = env(SimOptions::default()).await;
        let f = fields("Planning ☕ Zoë");
        let body = meeting_body(&f, 0, None, None).unwrap();
        let created = e.client.create_meeting(&e.user, &body).await.unwrap();
        assert_eq!(created.id.len(), 24);
        let number = created.meeting_id.as_deref().unwrap();
        assert_eq!(number.len(), 19, "{number}");
        assert_eq!(
            created.server["duration"],
            json!("60"),
            "sent 60, got \"60\""
        );
        assert_eq!(created.server["id"], json!(created.id));
        let mut back = fields_from_meeting(&created.server);
        let mut want = f.clone();
        meeting_body::normalize(&mut back);
        meeting_body::normalize(&mut want);
        assert_eq!(back, want);
        let stored = e.sim.meeting(&created.id).unwrap();
        assert_eq!(stored.topic, "Planning ☕ Zoë");
        assert_eq!(stored.duration, 60);
        assert_eq!(e.sim.counters().creates_per_user[&e.user], 1);
        // The feed shows it under its id; the description is agenda + join link.
        let feed = feed_text(&e).await;
        assert!(feed.contains(&format!("UID:{}\n", created.id)), "{feed}");
        assert!(feed.contains("SUMMARY:Planning ☕ Zoë\n"));
        assert!(feed.contains("DESCRIPTION:Agenda: Zoë\\, 李雷\\n\\nJoin the meeting: https://"));
        // Participants as objects are read too.
        e.sim
            .set_options(|o| o.participants = ParticipantShape::Objects);
        let again = e.client.create_meeting(&e.user, &body).await.unwrap();
        assert_eq!(
            again.server["invitedParticipants"][0]["email"],
            json!("a@example.test")
        );
        assert_eq!(fields_from_meeting(&again.server).attendees, f.attendees);
    }

    #[tokio::test]
    async fn put_false_updates_the_feed_and_true_sends_a_mail() {
        let e = env(SimOptions::default()).await;
        let body = meeting_body(&fields("Before"), 0, None, None).unwrap();
        let created = e.client.create_meeting(&e.user, &body).await.unwrap();
        assert!(feed_text(&e).await.contains("SEQUENCE:0\n"));
        let mut f = fields("After");
        f.start = Some(utc("2030-04-07T09:30:00Z"));
        f.end = Some(utc("2030-04-07T10:30:00Z"));
        let put = meeting_body(&f, 0, Some(&created.server), Some(&created.id)).unwrap();
        let updated = e
            .client
            .update_meeting(&e.user, &created.id, &put, false)
            .await
            .unwrap()
            .expect("full data by default");
        assert_eq!(updated["topic"], json!("After"));
        assert_eq!(meeting_body::ical_sequence(&updated), Some(1));
        let feed = feed_text(&e).await;
        assert!(feed.contains("SUMMARY:After\n"), "{feed}");
        assert!(feed.contains("SEQUENCE:1\n"), "{feed}");
        assert!(!feed.contains("SUMMARY:Before"));
        assert_eq!(e.sim.counters().mails_sent, 0);
        assert_eq!(
            e.sim.meeting(&created.id).unwrap().start.to_rfc3339(),
            "2030-04-07T09:30:00+00:00"
        );

        let again =
            meeting_body(&fields("Notified"), 0, Some(&updated), Some(&created.id)).unwrap();
        e.client
            .update_meeting(&e.user, &created.id, &again, true)
            .await
            .unwrap();
        assert_eq!(e.sim.counters().mails_sent, 1);
        assert!(feed_text(&e).await.contains("SEQUENCE:2\n"));

        // `data: null` answers are fine; a body without "id" gets it.
        e.sim
            .set_options(|o| o.put_response = PutResponse::NullData);
        let mut no_id = meeting_body(&fields("Null"), 0, None, None).unwrap();
        assert!(no_id.get("id").is_none());
        let r = e
            .client
            .update_meeting(&e.user, &created.id, &no_id, false)
            .await
            .unwrap();
        assert_eq!(r, None);
        assert_eq!(e.sim.meeting(&created.id).unwrap().topic, "Null");
        // An unknown id.
        no_id["id"] = json!("5e945c36b863b82cefdddf54");
        let err = e
            .client
            .update_meeting(&e.user, "5e945c36b863b82cefdddf54", &no_id, false)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("PUT "), "{err}");
        assert!(
            err.to_string()
                .contains("/api/v6/meeting/5e945c36b863b82cefdddf54/false"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn delete_follows_both_path_styles() {
        let e = env(SimOptions::default()).await;
        // (switch, requests to a path that does not exist: first delete, later ones)
        for (paths, first_misses, later_misses) in [
            (DeletePaths::Both, 0, 0),
            (DeletePaths::PlainOnly, 0, 0),
            // The plain path is tried once, then the suffixed one is used first.
            (DeletePaths::FalseSuffixOnly, 1, 0),
        ] {
            let client = client_for(&e.server.base_url(), KEY, Duration::from_secs(5));
            e.sim.set_options(|o| o.delete_paths = paths);
            for misses in [first_misses, later_misses] {
                let id = e.sim.create_meeting(&e.user, spec("Doomed"));
                e.sim.reset_counters();
                client.delete_meeting(&e.user, &id).await.unwrap();
                assert!(e.sim.meeting(&id).unwrap().deleted, "{paths:?}");
                let c = e.sim.counters();
                assert_eq!(c.requests_to(Route::MeetingDelete), 1, "{paths:?}");
                assert_eq!(c.not_found, misses, "{paths:?}");
                // Deleting again: the platform does not know it any more.
                let err = client.delete_meeting(&e.user, &id).await.unwrap_err();
                assert!(
                    matches!(err, ProviderError::NotFound { .. }),
                    "{paths:?}: {err}"
                );
                assert!(err.to_string().contains("DELETE "), "{err}");
                assert!(err.to_string().contains(&id), "{err}");
            }
        }
        // Error envelopes with HTTP 200: a negative code is "not found"...
        e.sim.set_options(|o| {
            o.delete_paths = DeletePaths::Both;
            o.error_status = ErrorStatus::Ok200;
        });
        let err = e
            .client
            .delete_meeting(&e.user, "5e945c36b863b82cefdddf54")
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
        // ...but someone else's meeting (-3) is not.
        let bob = e
            .sim
            .add_organizer(&e.account, "bob@example.test", "Bob", "B", "UTC");
        let theirs = e.sim.create_meeting(&bob.id, spec("Bob's"));
        let err = e.client.delete_meeting(&e.user, &theirs).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Envelope { code: -3, .. }),
            "{err}"
        );
        assert!(!e.sim.meeting(&theirs).unwrap().deleted);
    }

    #[tokio::test]
    async fn delete_on_a_platform_without_the_path_is_an_error_not_gone() {
        let e = env(SimOptions::default()).await;
        let id = e.sim.create_meeting(&e.user, spec("Stays"));
        // A wrong base_url: every path is unknown to the server.
        let wrong = client_for(
            &format!("{}/wrong-prefix", e.server.base_url()),
            KEY,
            Duration::from_secs(5),
        );
        let err = wrong.delete_meeting(&e.user, &id).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Http(h) if h.status() == Some(StatusCode::NOT_FOUND)),
            "{err}"
        );
        assert_eq!(e.sim.counters().not_found, 2, "both paths were tried");
        assert!(!e.sim.meeting(&id).unwrap().deleted);
        assert_eq!(wrong.get_meeting(&e.user, &id).await.unwrap(), None);
        assert_eq!(wrong.list_meetings(&e.user).await.unwrap(), None);
    }

    #[tokio::test]
    async fn get_and_list_on_and_off() {
        let e = env(SimOptions::default()).await;
        let body = meeting_body(&fields("Listed"), 0, None, None).unwrap();
        let created = e.client.create_meeting(&e.user, &body).await.unwrap();
        let gone = e.sim.create_meeting(&e.user, spec("Gone"));
        e.sim.delete_meeting(&gone);

        let got = e
            .client
            .get_meeting(&e.user, &created.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, created.server, "GET has the create answer's shape");
        let list = e.client.list_meetings(&e.user).await.unwrap().unwrap();
        assert_eq!(list, vec![created.server.clone()]);
        let err = e.client.get_meeting(&e.user, &gone).await.unwrap_err();
        assert!(matches!(err, ProviderError::NotFound { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!(
                "GET {}/api/v6/meeting/{gone}",
                e.server.base_url()
            )),
            "{err}"
        );

        e.sim.set_options(|o| o.get_endpoints = false);
        assert_eq!(
            e.client.get_meeting(&e.user, &created.id).await.unwrap(),
            None
        );
        assert_eq!(e.client.list_meetings(&e.user).await.unwrap(), None);
        assert_eq!(e.sim.counters().not_found, 2);
    }

    #[tokio::test]
    async fn unauthorized_names_the_request_but_not_the_key() {
        let e = env(SimOptions::default()).await;
        let secret = "wrong-secret-key-4711";
        let bad = client_for(&e.server.base_url(), secret, Duration::from_secs(5));
        let id = e.sim.create_meeting(&e.user, spec("x"));
        let body = meeting_body(&fields("x"), 0, None, None).unwrap();
        let base = e.server.base_url();
        let errors = [
            (
                bad.create_meeting(&e.user, &body).await.unwrap_err(),
                format!("POST {base}/api/v6/meeting:"),
            ),
            (
                bad.update_meeting(&e.user, &id, &body, false)
                    .await
                    .unwrap_err(),
                format!("PUT {base}/api/v6/meeting/{id}/false:"),
            ),
            (
                bad.delete_meeting(&e.user, &id).await.unwrap_err(),
                format!("DELETE {base}/api/v6/meeting/{id}:"),
            ),
            (
                bad.get_meeting(&e.user, &id).await.unwrap_err(),
                format!("GET {base}/api/v6/meeting/{id}:"),
            ),
            (
                bad.list_meetings(&e.user).await.unwrap_err(),
                format!("GET {base}/api/v6/meeting:"),
            ),
        ];
        for (err, names) in errors {
            let text = err.to_string();
            let debug = format!("{err:?}");
            assert!(text.starts_with(&names), "{text}");
            assert!(text.contains("401"), "{text}");
            assert!(!text.contains(secret) && !debug.contains(secret), "{debug}");
            assert!(!err.outcome_unknown());
        }
        assert_eq!(
            e.sim.counters().unauthorized,
            5,
            "a 401 on DELETE is not retried on the other path"
        );
        assert!(!e.sim.meeting(&id).unwrap().deleted);
    }

    #[tokio::test]
    async fn post_is_never_retried_but_put_is() {
        let e = env(SimOptions::default()).await;
        e.sim
            .inject_fault(Route::MeetingCreate, Fault::Status(503), 3);
        let body = meeting_body(&fields("Once"), 0, None, None).unwrap();
        let err = e.client.create_meeting(&e.user, &body).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Http(h) if h.status() == Some(StatusCode::SERVICE_UNAVAILABLE)),
            "{err}"
        );
        assert!(err.outcome_unknown(), "a 5xx create may have happened");
        let c = e.sim.counters();
        assert_eq!(c.requests_to(Route::MeetingCreate), 1);
        assert_eq!(c.creates_total(), 0);
        e.sim.clear_faults();

        let created = e.client.create_meeting(&e.user, &body).await.unwrap();
        e.sim
            .inject_fault(Route::MeetingUpdate, Fault::Status(503), 1);
        e.sim.reset_counters();
        let put = meeting_body(
            &fields("Twice"),
            0,
            Some(&created.server),
            Some(&created.id),
        )
        .unwrap();
        e.client
            .update_meeting(&e.user, &created.id, &put, false)
            .await
            .unwrap();
        assert_eq!(e.sim.counters().requests_to(Route::MeetingUpdate), 2);
        assert_eq!(e.sim.meeting(&created.id).unwrap().topic, "Twice");

        // A refused create (negative code with HTTP 200) is definite.
        e.sim
            .inject_fault(Route::MeetingCreate, Fault::ErrorEnvelope(-4), 1);
        let refused = e.client.create_meeting(&e.user, &body).await.unwrap_err();
        assert!(
            matches!(refused, ProviderError::Envelope { code: -4, .. }),
            "{refused}"
        );
        assert!(!refused.outcome_unknown());
        // A garbled answer after the create: the meeting exists, the outcome is unknown.
        e.sim
            .inject_fault(Route::MeetingCreate, Fault::InvalidJson, 1);
        let before = e.sim.meetings_of(&e.user).len();
        let garbled = e.client.create_meeting(&e.user, &body).await.unwrap_err();
        assert!(garbled.outcome_unknown(), "{garbled}");
        assert_eq!(e.sim.meetings_of(&e.user).len(), before + 1);
    }

    #[tokio::test]
    async fn a_client_that_gives_up_before_the_answer_leaves_the_meeting_behind() {
        let e = env(SimOptions::default()).await;
        let impatient = client_for(&e.server.base_url(), KEY, Duration::from_millis(300));
        e.sim.inject_fault(
            Route::MeetingCreate,
            Fault::DelayAfter(Duration::from_secs(2)),
            1,
        );
        let body = meeting_body(&fields("Orphan"), 0, None, None).unwrap();
        let err = impatient.create_meeting(&e.user, &body).await.unwrap_err();
        assert!(err.outcome_unknown(), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
        let c = e.sim.counters();
        assert_eq!(c.requests_to(Route::MeetingCreate), 1, "not retried");
        assert_eq!(c.creates_per_user[&e.user], 1);
        let mine = e.sim.meetings_of(&e.user);
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].topic, "Orphan");
        // It can be found again through the list.
        let listed = e.client.list_meetings(&e.user).await.unwrap().unwrap();
        assert_eq!(listed[0]["topic"], json!("Orphan"));
    }

    #[tokio::test]
    async fn user_ids_that_cannot_be_headers_are_refused_before_sending() {
        let e = env(SimOptions::default()).await;
        let err = e
            .client
            .get_meeting("bad\nid", "5e945c36b863b82cefdddf54")
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::BadUserId(_)), "{err}");
        assert_eq!(e.sim.counters().requests_to(Route::MeetingGet), 0);
    }
}
