//! Web Meeting API v6 client: organizer discovery through the account admin
//! lookup, and each organizer's ICS feed at its `icsPath` (conditional GET).
//!
//! Wire types (`RawUser`, the envelope) are converted here into our model.
//! The ICS token in `icsPath` is a credential: it is kept as a secret and the
//! path is shown redacted everywhere.

use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, IF_MODIFIED_SINCE, IF_NONE_MATCH,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{Http, HttpError, RetryPolicy};
use crate::state::FeedState;

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
        })
    }

    /// Shorter retries for tests and the demo.
    pub fn with_retry(
        mut self,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Result<Client, ProviderError> {
        self.http = Http::new(timeout, retry)?.with_label(&self.pair);
        Ok(self)
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
}
