//! The one HTTP layer every platform client uses: timeouts, a streamed body
//! cap, retries with backoff for idempotent requests (honouring
//! `Retry-After`), and errors that name the request without its secrets.
//!
//! A request is described to humans by a `Target`: method plus a URL whose
//! secret parts (ICS tokens in paths) are already replaced. The real URL never
//! reaches an error message: reqwest errors are stripped of it.
//!
//! Every attempt (retries included) first takes a token from the `governor`
//! limiter of its host (`scheme://host:port`), shared by all clients of the
//! process with the same limit: at most `max_requests_per_second` on average,
//! in bursts of at most one second's worth (see
//! [`DEFAULT_MAX_REQUESTS_PER_SECOND`]). The first attempt of a conditional
//! GET (a feed revalidation) takes no token.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use governor::clock::Clock as _;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{target}: {cause}")]
    Network { target: String, cause: String },
    #[error("{target}: the server answered {status}{detail}")]
    Status {
        target: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{target}: the response is larger than the limit of {limit} bytes (raise max_feed_mib if this is expected)")]
    TooLarge { target: String, limit: u64 },
}

impl HttpError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A response whose body has been read in full (within the cap).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// Requests per second to one host when the config does not say.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 20.0;

type Limiter = governor::DefaultDirectRateLimiter;
/// Keyed by host and the rate's bits.
type Limiters = Mutex<HashMap<(String, u64), Arc<Limiter>>>;

/// One limiter per host and rate: clients with the same limit share it (a
/// new rate after a config reload starts its own).
fn limiters() -> &'static Limiters {
    static LIMITERS: OnceLock<Limiters> = OnceLock::new();
    LIMITERS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `scheme://host:port` of a URL: the unit of the rate limit.
fn host_key(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => String::new(),
    }
}

/// The quota for `rate` requests per second: one request every `1/rate` s
/// after a burst of `max(floor(rate), 1)`.
fn quota(rate: f64) -> Option<governor::Quota> {
    let burst = NonZeroU32::new(rate.floor().clamp(1.0, u32::MAX as f64) as u32)?;
    governor::Quota::with_period(Duration::from_secs_f64(1.0 / rate)).map(|q| q.allow_burst(burst))
}

/// Wait until a request to `host` may go out at `rate` requests per second
/// (a burst of up to `max(floor(rate), 1)` requests, then one every `1/rate` s).
/// `rate <= 0` means no limit. Returns how long it waited.
pub async fn wait_for_slot(host: &str, rate: f64) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return Duration::ZERO;
    }
    let Some(quota) = quota(rate) else {
        return Duration::ZERO;
    };
    let limiter = {
        let mut map = limiters().lock().unwrap_or_else(|p| p.into_inner());
        map.entry((host.to_string(), rate.to_bits()))
            .or_insert_with(|| Arc::new(Limiter::direct(quota)))
            .clone()
    };
    if limiter.check().is_ok() {
        return Duration::ZERO;
    }
    let started = Instant::now();
    // waiters re-check after sleeping (tokio's timer, not governor's thread):
    // no order among them, but none gets past the rate
    loop {
        match limiter.check() {
            Ok(()) => return started.elapsed(),
            Err(not_until) => {
                tokio::time::sleep(not_until.wait_time_from(limiter.clock().now())).await
            }
        }
    }
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
    /// Pair name for the request metrics.
    label: String,
    /// Requests per second per host; 0 = no limit.
    rate: f64,
}

impl Http {
    pub fn new(timeout: Duration, retry: RetryPolicy) -> Result<Http, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("meetsync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .timeout(timeout)
            .build()
            .map_err(|e| HttpError::Network {
                target: "HTTP client".into(),
                cause: e.without_url().to_string(),
            })?;
        Ok(Http {
            client,
            retry,
            label: String::new(),
            rate: DEFAULT_MAX_REQUESTS_PER_SECOND,
        })
    }

    /// At most `per_second` requests per second to any one host (0 = no limit).
    pub fn with_rate_limit(mut self, per_second: f64) -> Http {
        self.rate = per_second;
        self
    }

    pub fn rate_limit(&self) -> f64 {
        self.rate
    }

    /// Name the pair in the request metrics.
    pub fn with_label(mut self, pair: &str) -> Http {
        self.label = pair.to_string();
        self
    }

    fn count(&self, status: &str) {
        crate::metrics::global()
            .http_requests
            .get_or_create(&crate::metrics::status(&self.label, status))
            .inc();
    }

    /// Send a request; idempotent ones (GET/PUT/DELETE) are retried on
    /// network errors, 429, 423, 500, 502, 503 and 504. `target` names the
    /// request in errors and must not hold secrets. Statuses other than
    /// 2xx/304 come back as `HttpError::Status`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        max_body: u64,
        target: &str,
    ) -> Result<Response, HttpError> {
        let idempotent = method != Method::POST && method != Method::PATCH;
        let attempts = if idempotent {
            self.retry.attempts.max(1)
        } else {
            1
        };
        let mut last_err = None;
        let host = host_key(url);
        // A revalidation (conditional GET) costs the platform next to nothing
        // and mostly ends in 304: it does not take a token, so a round over
        // many unchanged feeds is not slowed down. Retries of it do.
        let conditional = method == Method::GET
            && (headers.contains_key(reqwest::header::IF_NONE_MATCH)
                || headers.contains_key(reqwest::header::IF_MODIFIED_SINCE));
        for attempt in 0..attempts {
            let rate = if conditional && attempt == 0 {
                0.0
            } else {
                self.rate
            };
            let waited = wait_for_slot(&host, rate).await;
            if !waited.is_zero() {
                tracing::debug!(target: "meetsync::http", request = target, ?waited, "rate limit");
            }
            let mut req = self
                .client
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let wait = match req.send().await {
                Err(e) => {
                    self.count("error");
                    let err = HttpError::Network {
                        target: target.to_string(),
                        cause: describe_reqwest(&e),
                    };
                    last_err = Some(err);
                    None
                }
                Ok(resp) => {
                    let status = resp.status();
                    self.count(status.as_str());
                    let retry_after = resp.headers().get(RETRY_AFTER).and_then(parse_retry_after);
                    let headers = resp.headers().clone();
                    let body = match read_capped(resp, max_body, target).await {
                        Ok(b) => b,
                        Err(e @ HttpError::TooLarge { .. }) => return Err(e),
                        Err(e) => {
                            last_err = Some(e);
                            if attempt + 1 < attempts {
                                tokio::time::sleep(self.backoff(attempt)).await;
                            }
                            continue;
                        }
                    };
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        return Ok(Response {
                            status,
                            headers,
                            body,
                        });
                    }
                    let err = HttpError::Status {
                        target: target.to_string(),
                        status,
                        detail: status_detail(status, &headers, &body),
                    };
                    let retryable = matches!(status.as_u16(), 423 | 429 | 500 | 502 | 503 | 504);
                    if !retryable {
                        return Err(err);
                    }
                    last_err = Some(err);
                    retry_after
                }
            };
            if attempt + 1 < attempts {
                let delay = match wait {
                    Some(d) => d.min(self.retry.max_delay),
                    None => self.backoff(attempt),
                };
                tracing::debug!(target: "meetsync::http", request = target, ?delay, attempt, "retrying");
                tokio::time::sleep(delay).await;
            }
        }
        Err(last_err.unwrap_or_else(|| HttpError::Network {
            target: target.to_string(),
            cause: "no attempt was made".into(),
        }))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .base_delay
            .saturating_mul(1u32 << attempt.min(16));
        let capped = exp.min(self.retry.max_delay);
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        capped.mul_f64(jitter)
    }
}

async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
    target: &str,
) -> Result<Vec<u8>, HttpError> {
    if let Some(len) = resp.content_length() {
        if len > max {
            return Err(HttpError::TooLarge {
                target: target.to_string(),
                limit: max,
            });
        }
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(max) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() as u64 + c.len() as u64 > max {
                    return Err(HttpError::TooLarge {
                        target: target.to_string(),
                        limit: max,
                    });
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(HttpError::Network {
                    target: target.to_string(),
                    cause: format!("the body was cut off: {}", describe_reqwest(&e)),
                })
            }
        }
    }
}

/// A reqwest error as text, without the URL (it may hold a token).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !causes.contains(&t) {
            causes.push(t);
        }
        src = s.source();
    }
    let joined = causes.join(": ");
    let kind = if joined.contains("closed before message completed")
        || joined.contains("IncompleteMessage")
        || joined.contains("unexpected EOF")
    {
        "the response was cut off"
    } else {
        kind
    };
    if causes.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({})", causes.join(": "))
    }
}

fn status_detail(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> String {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut detail = String::new();
    if ct.contains("json") {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(m) = v.get("responseMessage").and_then(|m| m.as_str()) {
                detail = format!(" ({})", m.chars().take(200).collect::<String>());
            }
        }
    } else if ct.contains("html") {
        detail = " (an HTML page)".into();
    }
    let hint = match status.as_u16() {
        401 | 403 => "; check the API key and its permissions",
        404 => "; check base_url, and that the account, organizer or feed still exists",
        429 => "; the platform is rate-limiting, try again later",
        500..=599 => "; the platform has a problem, try again later",
        _ => "",
    };
    format!("{detail}{hint}")
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(s).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        let future = std::time::SystemTime::now() + Duration::from_secs(120);
        let v = HeaderValue::from_str(&httpdate::fmt_http_date(future)).unwrap();
        let d = parse_retry_after(&v).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[tokio::test]
    async fn rate_limit_spaces_requests_per_host() {
        assert_eq!(
            host_key("http://127.0.0.1:8080/api/v6/x?y"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            host_key("https://meeting.example.com/a"),
            "https://meeting.example.com:443"
        );
        let host = "http://rate-limit-test.invalid:1";
        let t = Instant::now();
        for _ in 0..8 {
            wait_for_slot(host, 5.0).await;
        }
        // a burst of 5, then 3 more 200 ms apart
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // another host has its own bucket; 0 means no limit
        let t = Instant::now();
        wait_for_slot("http://other-host.invalid:1", 5.0).await;
        for _ in 0..100 {
            wait_for_slot(host, 0.0).await;
        }
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_holds_for_concurrent_callers_and_fractional_rates() {
        // 10 callers at once at 5/s: a burst of 5, then one every 200 ms;
        // waiters re-check the limiter, so none gets ahead of the rate
        let host = "http://rate-limit-concurrent.invalid:1";
        let t = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| tokio::spawn(wait_for_slot(host, 5.0)))
            .collect();
        let mut waits = Vec::new();
        for task in tasks {
            waits.push(task.await.unwrap());
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(waits.iter().filter(|w| w.is_zero()).count(), 5, "{waits:?}");
        // 2.5/s: a burst of 2 (whole requests only), then one every 400 ms
        let host = "http://rate-limit-fraction.invalid:1";
        let t = Instant::now();
        for _ in 0..4 {
            wait_for_slot(host, 2.5).await;
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(750) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
