//! In-process simulator of the Web Meeting API v6 (the white-label platform of
//! seed 003, documented in `docs/apis/web-meeting-v6.md`).
//!
//! Owns the platform's state (accounts, organizers, meetings), its HTTP surface
//! (paths, headers, envelopes and quirks of the seed, every switch of docs §3),
//! the per-organizer ICS feed, fault injection, rate limiting and request
//! counters, plus a small JSON control surface under `/_sim/`.
//!
//! It is the remote side for tests, benchmarks, `meetsync demo` and
//! `meetsync sim`; the sync code must never depend on it. All state sits behind
//! one `std::sync::Mutex`, never held across an `.await`; feeds are rendered
//! outside the lock and cached per organizer until one of its meetings changes.

mod control;
mod demo;
mod feed;
mod http;
mod recur;
mod serde_dt;
mod tz;
mod wire;
mod world;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use world::World;

/// Shape of the `UID` of feed events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UidStyle {
    /// `{id}`: the 24-hex meeting id.
    #[default]
    Id,
    /// `{id}@{domain}`.
    IdAtDomain,
    /// `{meetingId}`, e.g. `9974-7653-8886-0485`.
    MeetingNumber,
    /// A random UUID chosen at creation, stable for the meeting's life.
    Random,
}

/// How a deleted meeting shows in the feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletedStyle {
    /// It disappears.
    #[default]
    Vanish,
    /// It stays, with `STATUS:CANCELLED` and a bumped `SEQUENCE`.
    Cancelled,
    /// The feed carries a second `VCALENDAR` object with `METHOD:CANCEL` that
    /// holds the deleted meetings (`STATUS:CANCELLED`); live meetings stay in
    /// the first object (`METHOD:PUBLISH`).
    MethodCancel,
}

/// How `DTSTART`/`DTEND` (and `EXDATE`, `RECURRENCE-ID`) are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TzStyle {
    /// UTC times with `Z`.
    Utc,
    /// `TZID=<meeting timezone>` local times, one `VTIMEZONE` per zone used.
    #[default]
    TzidWithVtimezone,
    /// `TZID=` local times without any `VTIMEZONE`.
    TzidOnly,
}

/// How recurring meetings are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurrenceStyle {
    /// Master `VEVENT` with `RRULE` + `EXDATE`; overrides are extra `VEVENT`s
    /// with the same UID and a `RECURRENCE-ID`.
    #[default]
    Rrule,
    /// One `VEVENT` per occurrence, each with its own UID `{uid}-{original start UTC}`.
    ExpandedOwnUid,
    /// One `VEVENT` per occurrence, all with the meeting's UID and a `RECURRENCE-ID`.
    ExpandedRecurrenceId,
}

/// Cache validators on the feed (with 304 on a matching conditional GET).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validators {
    None,
    StrongEtag,
    WeakEtag,
    LastModified,
    /// Strong `ETag` and `Last-Modified`.
    #[default]
    Both,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineEndings {
    #[default]
    Crlf,
    Lf,
}

/// Credential of the feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedAuth {
    /// The token in the path is the credential.
    #[default]
    None,
    /// The API key (per [`ApiAuth`]) is required as well.
    RequireApiKey,
}

/// Answer to a feed request with an unknown token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadToken {
    #[default]
    NotFound404,
    EmptyCalendar200,
    Html200,
}

/// HTTP status sent with error envelopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStatus {
    /// Always 200; only `responseCode` tells.
    Ok200,
    /// 400 invalid data, 401 bad key, 403 not allowed, 404 unknown id.
    #[default]
    Status4xx,
    /// Always 500.
    Status500,
}

/// Shape of `invitedParticipants` elements in responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantShape {
    /// Plain email strings.
    #[default]
    Strings,
    /// `{"email": …, "name": …}` objects.
    Objects,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceMode {
    /// `icalSequence`/`SEQUENCE` grows on each update (and on deletion).
    #[default]
    Increments,
    /// Always 0.
    ConstantZero,
}

/// `data` of a successful PUT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutResponse {
    #[default]
    FullData,
    NullData,
}

/// What the server does when `duration` ≠ `endTime − startTime`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationRule {
    /// `endTime` is kept, `duration` recomputed (whole minutes, rounded down).
    #[default]
    EndTimeWins,
    /// `endTime` = `startTime` + `duration`.
    DurationWins,
    /// Error envelope `-4`.
    Reject,
}

/// Which DELETE paths exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePaths {
    /// `DELETE /api/v6/meeting/{id}` and `DELETE /api/v6/meeting/{id}/false`.
    #[default]
    Both,
    PlainOnly,
    FalseSuffixOnly,
}

/// Where the join link `https://{domain}/j/{meeting number}` appears (it is
/// always in `DESCRIPTION` too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinLinkStyle {
    #[default]
    Url,
    Location,
    DescriptionOnly,
}

/// How the API key is presented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiAuth {
    /// `X-API-KEY: <key>`.
    #[default]
    ApiKey,
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// Either of the two.
    Either,
}

/// `per_second` requests in each one-second window (all API routes and the
/// feed together), then 429 until the window ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: u32,
    /// Send `Retry-After: <seconds until the window ends>` with the 429.
    pub retry_after: bool,
}

/// Every switch of docs §3. `Default` is the documented or most common behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimOptions {
    pub api_key: String,
    /// Host of join links and of `{id}@{domain}` UIDs.
    pub domain: String,
    pub auth: ApiAuth,
    pub uid_style: UidStyle,
    pub deleted: DeletedStyle,
    pub tz: TzStyle,
    pub recurrence: RecurrenceStyle,
    pub validators: Validators,
    pub line_endings: LineEndings,
    pub feed_auth: FeedAuth,
    pub bad_token: BadToken,
    /// Drop non-recurring meetings that ended more than N days ago from the feed.
    pub feed_drop_ended_days: Option<u32>,
    pub error_status: ErrorStatus,
    pub participants: ParticipantShape,
    pub sequence: SequenceMode,
    pub put_response: PutResponse,
    pub duration_rule: DurationRule,
    pub delete_paths: DeletePaths,
    /// `GET /api/v6/meeting` (list of the `X-USER-ID`'s meetings) and
    /// `GET /api/v6/meeting/{id}`; 404 when off.
    pub get_endpoints: bool,
    pub join_link: JoinLinkStyle,
    /// `ORGANIZER`/`ATTENDEE` lines.
    pub emit_attendees: bool,
    pub rate_limit: Option<RateLimit>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            api_key: "sim-api-key".into(),
            domain: "meeting.example.test".into(),
            auth: ApiAuth::default(),
            uid_style: UidStyle::default(),
            deleted: DeletedStyle::default(),
            tz: TzStyle::default(),
            recurrence: RecurrenceStyle::default(),
            validators: Validators::default(),
            line_endings: LineEndings::default(),
            feed_auth: FeedAuth::default(),
            bad_token: BadToken::default(),
            feed_drop_ended_days: None,
            error_status: ErrorStatus::default(),
            participants: ParticipantShape::default(),
            sequence: SequenceMode::default(),
            put_response: PutResponse::default(),
            duration_rule: DurationRule::default(),
            delete_paths: DeletePaths::default(),
            get_endpoints: true,
            join_link: JoinLinkStyle::default(),
            emit_attendees: true,
            rate_limit: None,
        }
    }
}

/// An account as created, with its admin (the first organizer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    pub account_id: String,
    pub admin: UserInfo,
}

/// An organizer as `GET /api/v6/account/admin/{accountId}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub timezone: String,
    pub ics_token: String,
    /// `/api/v6/meeting/calender/user/{ics_token}` (sic).
    pub ics_path: String,
}

impl UserInfo {
    /// "First Last".
    pub fn display_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
            .trim()
            .to_string()
    }
}

/// A meeting to create through the Rust handle.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct MeetingSpec {
    pub topic: String,
    #[serde(default)]
    pub agenda: String,
    #[serde(with = "serde_dt::required")]
    pub start: DateTime<Utc>,
    #[serde(with = "serde_dt::required")]
    pub end: DateTime<Utc>,
    /// IANA name; an unknown zone is rendered in UTC.
    #[serde(default = "default_meeting_timezone")]
    pub timezone: String,
    /// Emails, or `Name <email>` to give the invitee a display name.
    #[serde(default)]
    pub invited: Vec<String>,
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// Raw content lines (`X-FOO:bar`), emitted verbatim (folded) in the VEVENT.
    #[serde(default)]
    pub extra_ics: Vec<String>,
}

fn default_meeting_timezone() -> String {
    wire::DEFAULT_MEETING_TIMEZONE.to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freq {
    Daily,
    Weekly,
    Monthly,
}

/// A recurrence rule. Occurrences are expanded in the zone `DTSTART` is
/// written in (the meeting's zone, or UTC under [`TzStyle::Utc`]), as a
/// consumer of the feed would expand the `RRULE`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Recurrence {
    pub freq: Freq,
    #[serde(default = "one")]
    pub interval: u32,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default, with = "serde_dt::optional")]
    pub until: Option<DateTime<Utc>>,
    /// Original starts of removed occurrences.
    #[serde(default, with = "serde_dt::list")]
    pub exdates: Vec<DateTime<Utc>>,
    #[serde(default)]
    pub overrides: Vec<OverrideSpec>,
}

fn one() -> u32 {
    1
}

/// One moved (or renamed) occurrence.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OverrideSpec {
    #[serde(with = "serde_dt::required")]
    pub original_start: DateTime<Utc>,
    #[serde(with = "serde_dt::required")]
    pub start: DateTime<Utc>,
    #[serde(with = "serde_dt::required")]
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub topic: Option<String>,
}

/// An invitee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub email: String,
    pub name: Option<String>,
}

impl Participant {
    /// `"Zoë Müller <zoe@example.test>"` or `"zoe@example.test"`.
    pub fn parse(s: &str) -> Participant {
        let s = s.trim();
        if let (Some(open), true) = (s.rfind('<'), s.ends_with('>')) {
            let name = s[..open].trim().trim_matches('"').trim();
            let email = s[open + 1..s.len() - 1].trim();
            return Participant {
                email: email.to_string(),
                name: (!name.is_empty()).then(|| name.to_string()),
            };
        }
        Participant {
            email: s.to_string(),
            name: None,
        }
    }
}

/// A stored meeting, with every field the seed's create response shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Meeting {
    /// 24-hex internal id; the first 8 hex are the creation time (epoch seconds).
    pub id: String,
    /// Human meeting number `dddd-dddd-dddd-dddd`.
    pub meeting_id: String,
    /// The organizer (`addedByUserId`).
    pub user_id: String,
    pub account_id: String,
    pub room_id: String,
    pub added_by_email: String,
    pub added_by_name: String,
    pub topic: String,
    pub agenda: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Minutes; recomputed from `end - start` after [`Sim::update_meeting`].
    pub duration: i64,
    pub timezone: String,
    pub invited: Vec<Participant>,
    pub meeting_type: String,
    pub is_recurring: bool,
    /// The `recurring` object as the API echoes it.
    pub recurring: serde_json::Value,
    /// The rule the feed renders (None when not recurring or not understood).
    pub recurrence: Option<Recurrence>,
    pub is_recorded: bool,
    pub is_dialin: bool,
    pub meeting_permission_id: serde_json::Value,
    pub ical_sequence: u32,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    /// Deleted meetings stay stored; the feed shows them per [`DeletedStyle`].
    pub deleted: bool,
    /// Per-meeting token (differs from the organizer's).
    pub ics_token: String,
    /// UID under [`UidStyle::Random`].
    pub random_uid: String,
    pub extra_ics: Vec<String>,
}

/// Routes of the API, for counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    AccountCreate,
    AdminLookup,
    MeetingCreate,
    MeetingUpdate,
    MeetingDelete,
    /// `GET /api/v6/meeting/{id}` and the list `GET /api/v6/meeting`.
    MeetingGet,
    Feed,
}

/// A fault served instead of (or on top of) the normal answer.
///
/// `Status`, `Html200`, `Html500`, `RateLimited`, `ErrorEnvelope` and
/// `EmptyCalendar` answer without doing anything. `Truncated` and
/// `InvalidJson` do the work, then mangle the answer (so a create really
/// happened although the client saw an error). `Delay` waits, then answers
/// normally; `DelayAfter` answers normally but only after waiting, once the
/// route's action is done (a create exists before its id reaches the client,
/// so a client killed meanwhile never learns it). `EtagChurn` only affects
/// the feed. On the feed, `Truncated`,
/// `EmptyCalendar`, `EtagChurn` and `InvalidJson` (a malformed calendar)
/// ignore conditional headers so that they are always observable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// That HTTP status with a small JSON error envelope.
    Status(u16),
    Html200,
    Html500,
    RateLimited {
        retry_after: Option<String>,
    },
    /// `Content-Length` of the full body, half of it sent, connection closed.
    Truncated,
    Delay(Duration),
    /// The route does its work (e.g. the meeting is created), then waits this
    /// long before the answer is sent.
    DelayAfter(Duration),
    InvalidJson,
    /// HTTP 200 with `responseCode` = the given (negative) code.
    ErrorEnvelope(i64),
    /// A valid `VCALENDAR` with no events (feed); `data: null` elsewhere.
    EmptyCalendar,
    /// Same content, a never-seen ETag.
    EtagChurn,
}

/// Request counters since the last [`Sim::reset_counters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Requests per route (every request that matched the route, whatever the answer).
    pub requests: BTreeMap<Route, u64>,
    /// Feed answers 200 with a calendar.
    pub feed_200: u64,
    /// Feed answers 304.
    pub feed_304: u64,
    /// Requests refused for a missing or wrong API key.
    pub unauthorized: u64,
    /// Successful `PUT …/true`.
    pub mails_sent: u64,
    /// Successful `POST /api/v6/meeting` per `X-USER-ID` (creates through the
    /// Rust handle are not counted).
    pub creates_per_user: BTreeMap<String, u64>,
    /// Requests answered 429 by the rate limit (not by an injected fault).
    pub rate_limited: u64,
    /// Injected faults served.
    pub faults_served: u64,
    /// Requests to unknown (or switched-off) paths.
    pub not_found: u64,
}

/// A meeting write the API received (`POST`, `PUT` or `DELETE` of a meeting),
/// as the client sent it, with the status it got. The simulator keeps the
/// last [`WRITE_LOG_LEN`] until [`Sim::reset_counters`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WriteRecord {
    pub method: String,
    /// The path (a meeting id at most; no secrets).
    pub path: String,
    /// `X-USER-ID`, when sent.
    pub user_id: Option<String>,
    /// The JSON body (`null` when there was none or it was not JSON).
    pub body: serde_json::Value,
    pub status: u16,
}

/// How many meeting writes the simulator remembers.
pub const WRITE_LOG_LEN: usize = 1000;

impl Counters {
    /// Requests seen on `route`.
    pub fn requests_to(&self, route: Route) -> u64 {
        self.requests.get(&route).copied().unwrap_or(0)
    }

    /// Creates over HTTP, all organizers together.
    pub fn creates_total(&self) -> u64 {
        self.creates_per_user.values().sum()
    }
}

/// Handle on the simulated platform. Cheap to clone; all clones share the state.
#[derive(Clone)]
pub struct Sim {
    world: Arc<Mutex<World>>,
}

impl Sim {
    pub fn new(opts: SimOptions) -> Sim {
        Sim {
            world: Arc::new(Mutex::new(World::new(opts))),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        // A panic elsewhere (a failing test) must not make every later call panic.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `addr` (pass a loopback address) and serves the API on the current
    /// tokio runtime; returns as soon as the socket is bound.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<RunningSim> {
        http::serve(self.clone(), addr).await
    }

    pub fn options(&self) -> SimOptions {
        self.lock().opts.clone()
    }

    /// Changes switches; cached feeds are re-rendered on the next request.
    pub fn set_options(&self, f: impl FnOnce(&mut SimOptions)) {
        let mut w = self.lock();
        f(&mut w.opts);
        w.invalidate_all_feeds();
    }

    /// The simulator's clock (wall clock plus [`Sim::set_clock_offset`]).
    pub fn now(&self) -> DateTime<Utc> {
        self.lock().now()
    }

    /// Moves the simulator's clock (feed window, `isClosed`/`isActive`,
    /// timestamps of later changes) without touching the wall clock.
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        let mut w = self.lock();
        w.clock_offset = offset;
        w.invalidate_all_feeds();
    }

    /// Creates an account and its admin organizer (timezone `Europe/Paris`, as in the seed).
    ///
    /// # Panics
    /// When the email already exists on the platform.
    pub fn create_account(&self, admin_email: &str, first: &str, last: &str) -> AccountInfo {
        let mut w = self.lock();
        match w.create_account(admin_email, first, last, "en", "trial") {
            Ok((account_id, admin)) => AccountInfo { account_id, admin },
            Err(e) => panic!("create_account({admin_email}): {}", e.message),
        }
    }

    /// Adds an organizer to an account.
    ///
    /// # Panics
    /// When the account is unknown or the email already exists.
    pub fn add_organizer(
        &self,
        account_id: &str,
        email: &str,
        first: &str,
        last: &str,
        timezone: &str,
    ) -> UserInfo {
        let mut w = self.lock();
        match w.add_user(account_id, email, first, last, timezone, "en") {
            Ok(u) => u,
            Err(e) => panic!("add_organizer({email}): {}", e.message),
        }
    }

    /// Organizers of an account, admin first (empty for an unknown account).
    pub fn users(&self, account_id: &str) -> Vec<UserInfo> {
        self.lock().account_users(account_id).unwrap_or_default()
    }

    /// Ids and admins of all accounts, in creation order.
    pub fn accounts(&self) -> Vec<AccountInfo> {
        self.lock().accounts()
    }

    /// Creates a meeting for organizer `user_id`; returns its 24-hex id.
    ///
    /// # Panics
    /// When the organizer is unknown or `end` is not after `start`.
    pub fn create_meeting(&self, user_id: &str, spec: MeetingSpec) -> String {
        let mut w = self.lock();
        let input = wire::MeetingInput::from_spec(spec, w.started);
        match w.create_meeting(user_id, input) {
            Ok(m) => m.id.clone(),
            Err(e) => panic!("create_meeting for {user_id}: {}", e.message),
        }
    }

    /// Edits a stored meeting as the platform's UI would: afterwards `duration`
    /// follows `end - start`, `icalSequence` grows (per [`SequenceMode`]),
    /// `LAST-MODIFIED`/`DTSTAMP` move to now and the feed's ETag changes.
    /// Unknown ids are ignored.
    pub fn update_meeting(&self, id: &str, f: impl FnOnce(&mut Meeting)) {
        self.lock().modify_meeting(id, f);
    }

    /// Deletes a meeting (it stays stored with `deleted = true`; see
    /// [`DeletedStyle`]). Unknown or already deleted ids are ignored.
    pub fn delete_meeting(&self, id: &str) {
        let _ = self.lock().delete_meeting(id, None);
    }

    pub fn meeting(&self, id: &str) -> Option<Meeting> {
        self.lock().meetings.get(id).map(|m| (**m).clone())
    }

    /// The organizer's meetings in creation order, deleted ones included.
    pub fn meetings_of(&self, user_id: &str) -> Vec<Meeting> {
        let w = self.lock();
        w.user_meetings(user_id)
            .into_iter()
            .map(|m| (*m).clone())
            .collect()
    }

    /// Exactly the body the feed serves now for this organizer (empty for an
    /// unknown organizer).
    pub fn feed_bytes(&self, user_id: &str) -> Vec<u8> {
        self.feed(user_id)
            .map(|f| f.body.to_vec())
            .unwrap_or_default()
    }

    /// The rendered feed, from the cache when nothing changed.
    pub(crate) fn feed(&self, user_id: &str) -> Option<Arc<feed::RenderedFeed>> {
        let snapshot = {
            let w = self.lock();
            let now = w.now();
            let user = w.users.get(user_id)?;
            if let Some(cached) = &user.feed_cache {
                if cached.valid_at(now) {
                    return Some(cached.clone());
                }
            }
            w.feed_snapshot(user_id, now)?
        };
        let rendered = Arc::new(feed::render(&snapshot.input()));
        let mut w = self.lock();
        w.store_feed(user_id, &snapshot, rendered.clone());
        Some(rendered)
    }

    /// The next `times` requests on `route` get `fault` (queued after earlier injections).
    pub fn inject_fault(&self, route: Route, fault: Fault, times: u32) {
        if times > 0 {
            self.lock()
                .faults
                .entry(route)
                .or_default()
                .push_back((fault, times));
        }
    }

    /// Drops all pending faults.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Clears the counters and the write log.
    pub fn reset_counters(&self) {
        let mut w = self.lock();
        w.counters = Counters::default();
        w.writes.clear();
    }

    /// The meeting writes received over HTTP, oldest first.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.lock().writes.iter().cloned().collect()
    }

    /// Adds `organizers` organizers to the account, each with
    /// `meetings_per_organizer` realistic meetings; the same seed gives the
    /// same names, topics, times (relative to today, 00:00 UTC) and rules.
    pub fn populate_demo(
        &self,
        account_id: &str,
        organizers: usize,
        meetings_per_organizer: usize,
        seed: u64,
    ) -> Vec<UserInfo> {
        demo::populate(self, account_id, organizers, meetings_per_organizer, seed)
    }
}

/// A served simulator; stops when dropped or on [`RunningSim::stop`].
pub struct RunningSim {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish (at most 5 s), then returns.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
