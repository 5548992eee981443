//! The platform's state and every change to it. No I/O, no HTTP types: the
//! handlers in `http` and the `Sim` handle both go through these methods.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::feed::{FeedInput, RenderedFeed};
use super::wire::MeetingInput;
use super::{
    AccountInfo, Counters, Fault, Meeting, Route, SequenceMode, SimOptions, UserInfo, WriteRecord,
    WRITE_LOG_LEN,
};

/// An error the API reports as an envelope `{"responseCode": code, …}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: i64,
    /// Status under [`super::ErrorStatus::Status4xx`].
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn unauthorized() -> ApiError {
        ApiError {
            code: -1,
            status: 401,
            message: "API key not valid".into(),
        }
    }
    pub fn not_allowed(msg: impl Into<String>) -> ApiError {
        ApiError {
            code: -3,
            status: 403,
            message: msg.into(),
        }
    }
    pub fn invalid(msg: impl Into<String>) -> ApiError {
        ApiError {
            code: -4,
            status: 400,
            message: msg.into(),
        }
    }
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError {
            code: -4,
            status: 404,
            message: msg.into(),
        }
    }
    pub fn exists(msg: impl Into<String>) -> ApiError {
        ApiError {
            code: -10,
            status: 400,
            message: msg.into(),
        }
    }
}

pub(crate) struct Account {
    pub id: String,
    /// The admin's email, as the seed shows it.
    pub name: String,
    pub account_type: String,
    pub room_id: String,
    pub paid_until: DateTime<Utc>,
    /// Organizers, admin first.
    pub users: Vec<String>,
}

pub(crate) struct User {
    pub info: UserInfo,
    pub account_id: String,
    pub preferred_language: String,
    /// Meeting ids in creation order (deleted ones included).
    pub meetings: Vec<String>,
    /// Bumped on every change of this organizer's meetings.
    pub generation: u64,
    /// Time of the latest change of this organizer's meetings (`Last-Modified`).
    pub last_change: DateTime<Utc>,
    pub feed_cache: Option<Arc<RenderedFeed>>,
}

/// What the gate in front of every API request decided.
pub(crate) struct Admission {
    /// Refused by the rate limit; `Some(seconds)` for `Retry-After`.
    pub rate_limited: Option<Option<u64>>,
    pub fault: Option<Fault>,
}

/// Everything the feed renderer needs, copied out of the lock.
pub(crate) struct FeedSnapshot {
    pub opts: SimOptions,
    pub organizer: UserInfo,
    pub meetings: Vec<Arc<Meeting>>,
    pub now: DateTime<Utc>,
    pub last_change: DateTime<Utc>,
    generation: u64,
    opts_generation: u64,
}

impl FeedSnapshot {
    pub fn input(&self) -> FeedInput<'_> {
        FeedInput {
            opts: &self.opts,
            organizer: &self.organizer,
            meetings: &self.meetings,
            now: self.now,
            last_change: self.last_change,
        }
    }
}

pub(crate) struct World {
    pub opts: SimOptions,
    opts_generation: u64,
    /// "Process start": the stale default of `recurring.endsOn`.
    pub started: DateTime<Utc>,
    pub clock_offset: chrono::Duration,
    rng: StdRng,
    machine: String,
    oid_counter: u32,
    pub whitelabel_id: String,
    pub accounts: HashMap<String, Account>,
    account_order: Vec<String>,
    pub users: HashMap<String, User>,
    /// icsToken → user id.
    pub tokens: HashMap<String, String>,
    emails: HashSet<String>,
    pub meetings: HashMap<String, Arc<Meeting>>,
    meeting_numbers: HashSet<String>,
    pub faults: HashMap<Route, VecDeque<(Fault, u32)>>,
    pub counters: Counters,
    /// The last meeting writes received over HTTP.
    pub writes: VecDeque<WriteRecord>,
    /// Source of never-seen ETags for [`Fault::EtagChurn`].
    pub churn: u64,
    rate_window: Option<(Instant, u32)>,
}

impl World {
    pub fn new(opts: SimOptions) -> World {
        let mut rng = StdRng::from_os_rng();
        let machine = hex::encode(rng.random::<[u8; 5]>());
        let mut w = World {
            opts,
            opts_generation: 0,
            started: Utc::now(),
            clock_offset: chrono::Duration::zero(),
            rng,
            machine,
            oid_counter: 0,
            whitelabel_id: String::new(),
            accounts: HashMap::new(),
            account_order: Vec::new(),
            users: HashMap::new(),
            tokens: HashMap::new(),
            emails: HashSet::new(),
            meetings: HashMap::new(),
            meeting_numbers: HashSet::new(),
            faults: HashMap::new(),
            counters: Counters::default(),
            writes: VecDeque::new(),
            churn: 0,
            rate_window: None,
        };
        w.started = w.now();
        w.whitelabel_id = w.object_id(w.started);
        w
    }

    /// Remembers a meeting write (the oldest goes beyond [`WRITE_LOG_LEN`]).
    pub fn log_write(&mut self, record: WriteRecord) {
        if self.writes.len() >= WRITE_LOG_LEN {
            self.writes.pop_front();
        }
        self.writes.push_back(record);
    }

    /// Wall clock plus offset, at millisecond precision (what the API shows).
    pub fn now(&self) -> DateTime<Utc> {
        let t = Utc::now() + self.clock_offset;
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }

    /// A MongoDB-shaped id: creation epoch seconds, machine bytes, counter.
    fn object_id(&mut self, at: DateTime<Utc>) -> String {
        self.oid_counter = (self.oid_counter + 1) & 0x00ff_ffff;
        format!(
            "{:08x}{}{:06x}",
            at.timestamp() as u32,
            self.machine,
            self.oid_counter
        )
    }

    fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Two UUIDs joined by `-` (73 characters), as in the seed.
    fn ics_token(&mut self) -> String {
        format!("{}-{}", self.uuid(), self.uuid())
    }

    fn meeting_number(&mut self) -> String {
        loop {
            let n: u64 = self
                .rng
                .random_range(1_000_000_000_000_000..10_000_000_000_000_000);
            let s = n.to_string();
            let s = format!("{}-{}-{}-{}", &s[0..4], &s[4..8], &s[8..12], &s[12..16]);
            if self.meeting_numbers.insert(s.clone()) {
                return s;
            }
        }
    }

    pub fn create_account(
        &mut self,
        admin_email: &str,
        first: &str,
        last: &str,
        language: &str,
        account_type: &str,
    ) -> Result<(String, UserInfo), ApiError> {
        let email = admin_email.trim();
        if !email.contains('@') {
            return Err(ApiError::invalid("adminEmail is not a valid email address"));
        }
        if self.emails.contains(&email.to_lowercase()) {
            return Err(ApiError::exists(
                "An account with this email already exists",
            ));
        }
        let now = self.now();
        // Same order as the seed: user …4e, account …4f, room …50.
        let user_id = self.object_id(now);
        let account_id = self.object_id(now);
        let room_id = self.object_id(now);
        self.accounts.insert(
            account_id.clone(),
            Account {
                id: account_id.clone(),
                name: email.to_string(),
                account_type: account_type.to_string(),
                room_id,
                paid_until: now + chrono::Duration::days(14),
                users: Vec::new(),
            },
        );
        self.account_order.push(account_id.clone());
        let admin = self.insert_user(
            user_id,
            &account_id,
            email,
            first,
            last,
            "Europe/Paris",
            language,
        );
        Ok((account_id, admin))
    }

    pub fn add_user(
        &mut self,
        account_id: &str,
        email: &str,
        first: &str,
        last: &str,
        timezone: &str,
        language: &str,
    ) -> Result<UserInfo, ApiError> {
        let email = email.trim();
        if !self.accounts.contains_key(account_id) {
            return Err(ApiError::not_found("Account not found"));
        }
        if !email.contains('@') {
            return Err(ApiError::invalid("email is not a valid email address"));
        }
        if self.emails.contains(&email.to_lowercase()) {
            return Err(ApiError::exists("A user with this email already exists"));
        }
        let now = self.now();
        let id = self.object_id(now);
        Ok(self.insert_user(id, account_id, email, first, last, timezone, language))
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_user(
        &mut self,
        id: String,
        account_id: &str,
        email: &str,
        first: &str,
        last: &str,
        timezone: &str,
        language: &str,
    ) -> UserInfo {
        let ics_token = self.ics_token();
        let info = UserInfo {
            id: id.clone(),
            email: email.to_string(),
            first_name: first.to_string(),
            last_name: last.to_string(),
            timezone: timezone.to_string(),
            ics_path: format!("/api/v6/meeting/calender/user/{ics_token}"),
            ics_token: ics_token.clone(),
        };
        self.emails.insert(email.to_lowercase());
        self.tokens.insert(ics_token, id.clone());
        let now = self.now();
        self.users.insert(
            id.clone(),
            User {
                info: info.clone(),
                account_id: account_id.to_string(),
                preferred_language: language.to_string(),
                meetings: Vec::new(),
                generation: 0,
                last_change: now,
                feed_cache: None,
            },
        );
        if let Some(a) = self.accounts.get_mut(account_id) {
            a.users.push(id);
        }
        info
    }

    pub fn account_users(&self, account_id: &str) -> Option<Vec<UserInfo>> {
        let a = self.accounts.get(account_id)?;
        Some(
            a.users
                .iter()
                .filter_map(|id| self.users.get(id).map(|u| u.info.clone()))
                .collect(),
        )
    }

    pub fn accounts(&self) -> Vec<AccountInfo> {
        self.account_order
            .iter()
            .filter_map(|id| {
                let a = self.accounts.get(id)?;
                let admin = self.users.get(a.users.first()?)?.info.clone();
                Some(AccountInfo {
                    account_id: id.clone(),
                    admin,
                })
            })
            .collect()
    }

    pub fn user_meetings(&self, user_id: &str) -> Vec<Arc<Meeting>> {
        self.users
            .get(user_id)
            .map(|u| {
                u.meetings
                    .iter()
                    .filter_map(|id| self.meetings.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn create_meeting(
        &mut self,
        user_id: &str,
        input: MeetingInput,
    ) -> Result<Arc<Meeting>, ApiError> {
        let Some(user) = self.users.get(user_id) else {
            return Err(ApiError::not_allowed("Unknown X-USER-ID"));
        };
        if input.end <= input.start {
            return Err(ApiError::invalid("endTime must be after startTime"));
        }
        let account_id = user.account_id.clone();
        let added_by_email = user.info.email.clone();
        let added_by_name = user.info.display_name();
        let room_id = self
            .accounts
            .get(&account_id)
            .map(|a| a.room_id.clone())
            .unwrap_or_default();
        let now = self.now();
        let id = self.object_id(now);
        let meeting = Arc::new(Meeting {
            meeting_id: self.meeting_number(),
            ics_token: self.ics_token(),
            random_uid: self.uuid(),
            id: id.clone(),
            user_id: user_id.to_string(),
            account_id,
            room_id,
            added_by_email,
            added_by_name,
            topic: input.topic,
            agenda: input.agenda,
            start: input.start,
            end: input.end,
            duration: input.duration,
            timezone: input.timezone,
            invited: input.invited,
            meeting_type: input.meeting_type,
            is_recurring: input.is_recurring,
            recurring: input.recurring,
            recurrence: input.recurrence,
            is_recorded: input.is_recorded,
            is_dialin: input.is_dialin,
            meeting_permission_id: input.meeting_permission_id,
            ical_sequence: 0,
            created: now,
            last_modified: now,
            deleted: false,
            extra_ics: input.extra_ics,
        });
        self.meetings.insert(id.clone(), meeting.clone());
        if let Some(u) = self.users.get_mut(user_id) {
            u.meetings.push(id);
        }
        self.touch_user(user_id, now);
        Ok(meeting)
    }

    /// A live meeting that `user_id` (when given) may act on.
    fn live_meeting(&self, id: &str, user_id: Option<&str>) -> Result<&Arc<Meeting>, ApiError> {
        let m = self
            .meetings
            .get(id)
            .filter(|m| !m.deleted)
            .ok_or_else(|| ApiError::not_found("Meeting not found"))?;
        match user_id {
            Some(u) if u != m.user_id => Err(ApiError::not_allowed(
                "The meeting does not belong to this user",
            )),
            _ => Ok(m),
        }
    }

    pub fn get_meeting(&self, id: &str, user_id: &str) -> Result<Arc<Meeting>, ApiError> {
        self.live_meeting(id, Some(user_id)).cloned()
    }

    /// PUT: full replacement of the API fields. `extra_ics` (not an API field)
    /// is kept; EXDATEs and overrides are kept while the meeting stays recurring.
    pub fn replace_meeting(
        &mut self,
        id: &str,
        user_id: &str,
        input: MeetingInput,
    ) -> Result<Arc<Meeting>, ApiError> {
        self.live_meeting(id, Some(user_id))?;
        if input.end <= input.start {
            return Err(ApiError::invalid("endTime must be after startTime"));
        }
        self.modify_meeting(id, |m| {
            let mut recurrence = input.recurrence;
            if let (Some(new), Some(old)) = (recurrence.as_mut(), m.recurrence.as_ref()) {
                new.exdates = old.exdates.clone();
                new.overrides = old.overrides.clone();
            }
            m.topic = input.topic;
            m.agenda = input.agenda;
            m.start = input.start;
            m.end = input.end;
            m.timezone = input.timezone;
            m.invited = input.invited;
            m.meeting_type = input.meeting_type;
            m.is_recurring = input.is_recurring;
            m.recurring = input.recurring;
            m.recurrence = recurrence;
            m.is_recorded = input.is_recorded;
            m.is_dialin = input.is_dialin;
            m.meeting_permission_id = input.meeting_permission_id;
        })
        .ok_or_else(|| ApiError::not_found("Meeting not found"))
    }

    /// Applies `f`, then does what any change does: duration, sequence,
    /// timestamps, feed invalidation.
    pub fn modify_meeting(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut Meeting),
    ) -> Option<Arc<Meeting>> {
        let now = self.now();
        let increments = self.opts.sequence == SequenceMode::Increments;
        let entry = self.meetings.get_mut(id)?;
        let m = Arc::make_mut(entry);
        f(m);
        m.duration = (m.end - m.start).num_minutes();
        if increments {
            m.ical_sequence += 1;
        }
        m.last_modified = now;
        let (user_id, out) = (m.user_id.clone(), entry.clone());
        self.touch_user(&user_id, now);
        Some(out)
    }

    pub fn delete_meeting(&mut self, id: &str, user_id: Option<&str>) -> Result<(), ApiError> {
        self.live_meeting(id, user_id)?;
        self.modify_meeting(id, |m| m.deleted = true);
        Ok(())
    }

    fn touch_user(&mut self, user_id: &str, now: DateTime<Utc>) {
        if let Some(u) = self.users.get_mut(user_id) {
            u.generation += 1;
            u.feed_cache = None;
            u.last_change = now;
        }
    }

    pub fn invalidate_all_feeds(&mut self) {
        self.opts_generation += 1;
        for u in self.users.values_mut() {
            u.feed_cache = None;
        }
    }

    pub fn feed_snapshot(&self, user_id: &str, now: DateTime<Utc>) -> Option<FeedSnapshot> {
        let user = self.users.get(user_id)?;
        Some(FeedSnapshot {
            opts: self.opts.clone(),
            organizer: user.info.clone(),
            meetings: self.user_meetings(user_id),
            now,
            last_change: user.last_change,
            generation: user.generation,
            opts_generation: self.opts_generation,
        })
    }

    /// Caches a feed rendered from `snapshot` unless something changed meanwhile.
    pub fn store_feed(&mut self, user_id: &str, snapshot: &FeedSnapshot, feed: Arc<RenderedFeed>) {
        if snapshot.opts_generation != self.opts_generation {
            return;
        }
        if let Some(u) = self.users.get_mut(user_id) {
            if u.generation == snapshot.generation {
                u.feed_cache = Some(feed);
            }
        }
    }

    /// Counts the request, applies the rate limit, pops an injected fault.
    pub fn admit(&mut self, route: Route) -> Admission {
        *self.counters.requests.entry(route).or_insert(0) += 1;
        if let Some(limit) = self.opts.rate_limit {
            let now = Instant::now();
            let (start, count) = match self.rate_window {
                Some((start, n)) if now.duration_since(start).as_secs_f64() < 1.0 => (start, n),
                _ => (now, 0),
            };
            let count = count.saturating_add(1);
            self.rate_window = Some((start, count));
            if count > limit.per_second {
                self.counters.rate_limited += 1;
                let left = 1.0 - now.duration_since(start).as_secs_f64();
                let secs = left.ceil().max(1.0) as u64;
                return Admission {
                    rate_limited: Some(limit.retry_after.then_some(secs)),
                    fault: None,
                };
            }
        }
        let mut fault = None;
        if let Some(queue) = self.faults.get_mut(&route) {
            if let Some((f, times)) = queue.front_mut() {
                fault = Some(f.clone());
                *times -= 1;
                if *times == 0 {
                    queue.pop_front();
                }
            }
        }
        if fault.is_some() {
            self.counters.faults_served += 1;
        }
        Admission {
            rate_limited: None,
            fault,
        }
    }

    pub fn count_create(&mut self, user_id: &str) {
        *self
            .counters
            .creates_per_user
            .entry(user_id.to_string())
            .or_insert(0) += 1;
    }

    /// A fresh suffix for [`Fault::EtagChurn`].
    pub fn next_churn(&mut self) -> u64 {
        self.churn += 1;
        self.churn
    }
}
