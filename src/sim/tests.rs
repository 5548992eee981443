//! Behaviour of the simulator through its HTTP surface (reqwest against a
//! server on 127.0.0.1:0) and its Rust handle.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use super::*;

struct Env {
    sim: Sim,
    server: RunningSim,
    http: reqwest::Client,
    account: AccountInfo,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

impl Env {
    async fn new(opts: SimOptions) -> Env {
        let sim = Sim::new(opts);
        let server = sim.serve(([127, 0, 0, 1], 0).into()).await.unwrap();
        let account = sim.create_account("test-user@example.com", "Test", "User");
        Env {
            sim,
            server,
            http: reqwest::Client::new(),
            account,
        }
    }

    fn admin(&self) -> &UserInfo {
        &self.account.admin
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url(), path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.expect("request sent");
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.expect("full body").to_vec(),
        }
    }

    /// An API call with the right key.
    async fn call(
        &self,
        method: Method,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("X-API-KEY", "sim-api-key")
            .header("content-type", "application/json");
        if let Some(u) = user {
            req = req.header("X-USER-ID", u);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        self.send(req).await
    }

    async fn feed(&self, user: &UserInfo, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.http.get(self.url(&user.ics_path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    async fn create(&self, body: Value) -> Answer {
        self.call(
            Method::POST,
            "/api/v6/meeting",
            Some(&self.admin().id),
            Some(body),
        )
        .await
    }
}

/// The seed's minimal create body.
fn seed_body(topic: &str) -> Value {
    json!({"topic": topic, "startTime": "2020-04-07T09:00:00.000Z", "endTime": "2020-04-07T10:00:00.000Z",
        "duration": 60, "type": "standard", "isRecurring": false, "isRecorded": false, "isDialin": false,
        "invitedParticipants": [], "recurring": {}, "meetingPermissionId": null})
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn spec(topic: &str, start: &str, minutes: i64) -> MeetingSpec {
    let start = at(start);
    MeetingSpec {
        topic: topic.into(),
        agenda: String::new(),
        start,
        end: start + chrono::Duration::minutes(minutes),
        timezone: "Europe/Zurich".into(),
        invited: vec![],
        recurrence: None,
        extra_ics: vec![],
    }
}

fn unfold(s: &str) -> String {
    s.replace("\r\n ", "")
        .replace("\n ", "")
        .replace("\r\n", "\n")
}

fn vevents(feed: &str) -> Vec<String> {
    unfold(feed)
        .split("BEGIN:VEVENT\n")
        .skip(1)
        .map(|e| e.split("END:VEVENT").next().unwrap().to_string())
        .collect()
}

fn feed_text(sim: &Sim, user: &UserInfo) -> String {
    String::from_utf8(sim.feed_bytes(&user.id)).unwrap()
}

const SEED_FIELDS: &[&str] = &[
    "invitedParticipants",
    "meetingId",
    "id",
    "topic",
    "startTime",
    "endTime",
    "duration",
    "type",
    "roomId",
    "isRecurring",
    "isDialin",
    "recurring",
    "isRecorded",
    "agenda",
    "documents",
    "meetingPermissionId",
    "videoResolution",
    "dtClosedAt",
    "whitelabelId",
    "addedByUserId",
    "addedByUserEmail",
    "accountId",
    "addedByUserName",
    "timezone",
    "privateDataVisible",
    "icalSequence",
    "icsToken",
    "isActive",
    "isClosed",
    "isOpen",
    "dialInConferenceRoom",
    "dialInNumbers",
    "dialInPin",
    "sipProxy",
    "sipDomain",
    "isDemo",
    "isPromo",
];

#[tokio::test]
async fn create_returns_the_seed_envelope_and_quirks() {
    let env = Env::new(SimOptions::default()).await;
    let before = Utc::now().timestamp();
    let a = env.create(seed_body("My Meeting Topic")).await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v["responseCode"], json!(0));
    let d = &v["data"];
    for f in SEED_FIELDS {
        assert!(d.get(*f).is_some(), "field {f} missing in {d}");
    }
    assert_eq!(d["duration"], json!("60"));
    assert_eq!(d["icalSequence"], json!("0"));
    assert_eq!(d["timezone"], json!("Europe/Zurich"));
    assert_eq!(d["agenda"], json!(""));
    assert_eq!(d["addedByUserName"], json!("Test User"));
    assert_eq!(d["addedByUserEmail"], json!("test-user@example.com"));
    assert_eq!(d["accountId"], json!(env.account.account_id));
    assert_eq!(
        (d["isClosed"].clone(), d["isActive"].clone()),
        (json!(true), json!(false))
    );
    let id = d["id"].as_str().unwrap();
    assert_eq!(id.len(), 24);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let created = i64::from_str_radix(&id[..8], 16).unwrap();
    assert!(
        (before - 1..=Utc::now().timestamp()).contains(&created),
        "{id}"
    );
    let number = d["meetingId"].as_str().unwrap();
    let groups: Vec<&str> = number.split('-').collect();
    assert_eq!(groups.len(), 4);
    assert!(groups
        .iter()
        .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_digit())));
    let token = d["icsToken"].as_str().unwrap();
    assert_eq!(token.len(), 73);
    assert_ne!(token, env.admin().ics_token);
    let ends_on = at(d["recurring"]["endsOn"].as_str().unwrap());
    assert!(ends_on <= at(d["startTime"].as_str().unwrap()).max(Utc::now()));
    assert_eq!(d["recurring"]["frequencyType"], json!(""));
    assert_eq!(d["recurring"]["endsAfter"], json!(0));
    assert_eq!(env.sim.counters().creates_per_user[&env.admin().id], 1);
}

#[tokio::test]
async fn account_create_trial_and_duplicates() {
    let env = Env::new(SimOptions::default()).await;
    let body = json!({"sendPassword": true, "accountType": "trial", "adminFirstname": "Ann",
        "adminLastname": "Lee", "adminEmail": "ann@example.com", "adminPreferredLanguage": "de",
        "paidUntil": "2020-04-19T19:03:41.203Z"});
    let a = env
        .call(Method::POST, "/api/v6/account", None, Some(body.clone()))
        .await;
    let d = a.json()["data"].clone();
    assert_eq!(d["name"], json!("ann@example.com"));
    assert_eq!(d["numberOfMeetingOrganizers"], json!(0));
    assert_eq!(d["autoDeleteMeetingsAfterXDays"], json!(360));
    let created = i64::from_str_radix(&d["id"].as_str().unwrap()[..8], 16).unwrap();
    let paid = at(d["paidUntil"].as_str().unwrap()).timestamp();
    assert!(
        (paid - created - 14 * 86400).abs() <= 1,
        "paidUntil must be creation + 14 d"
    );
    let dup = env
        .call(Method::POST, "/api/v6/account", None, Some(body))
        .await;
    assert_eq!(dup.status, 400);
    assert_eq!(dup.json()["responseCode"], json!(-10));
    assert_eq!(dup.json()["data"], Value::Null);
    // The new admin is discoverable and keeps its language.
    let users = env
        .call(
            Method::GET,
            &format!("/api/v6/account/admin/{}", d["id"].as_str().unwrap()),
            None,
            None,
        )
        .await
        .json();
    assert_eq!(users["data"][0]["preferredLanguage"], json!("de"));
}

#[tokio::test]
async fn api_key_is_required_on_every_api_route() {
    let env = Env::new(SimOptions::default()).await;
    let path = format!("/api/v6/account/admin/{}", env.account.account_id);
    let none = env.send(env.http.get(env.url(&path))).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.json(),
        json!({"responseCode": -1, "responseMessage": "API key not valid", "data": null})
    );
    let wrong = env
        .send(
            env.http
                .post(env.url("/api/v6/meeting"))
                .header("x-api-key", "nope")
                .body("{}"),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(env.sim.counters().unauthorized, 2);
    // The feed needs no key by default...
    assert_eq!(env.feed(env.admin(), &[]).await.status, 200);
    // ...unless switched on.
    env.sim
        .set_options(|o| o.feed_auth = FeedAuth::RequireApiKey);
    assert_eq!(env.feed(env.admin(), &[]).await.status, 401);
    assert_eq!(
        env.feed(env.admin(), &[("X-API-KEY", "sim-api-key")])
            .await
            .status,
        200
    );
    // Error status switch.
    env.sim.set_options(|o| o.error_status = ErrorStatus::Ok200);
    let ok200 = env.send(env.http.get(env.url(&path))).await;
    assert_eq!(
        (ok200.status, ok200.json()["responseCode"].clone()),
        (200, json!(-1))
    );
    env.sim
        .set_options(|o| o.error_status = ErrorStatus::Status500);
    assert_eq!(env.send(env.http.get(env.url(&path))).await.status, 500);
    // Bearer instead of X-API-KEY.
    env.sim.set_options(|o| {
        o.error_status = ErrorStatus::Status4xx;
        o.auth = ApiAuth::Bearer;
    });
    let with_key = env.call(Method::GET, &path, None, None).await;
    assert_eq!(with_key.status, 401);
    let bearer = env
        .send(
            env.http
                .get(env.url(&path))
                .header("Authorization", "Bearer sim-api-key"),
        )
        .await;
    assert_eq!(bearer.status, 200);
}

#[tokio::test]
async fn header_names_are_case_insensitive_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new(SimOptions::default()).await;
    let mut s = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    let req = format!(
        "GET /api/v6/account/admin/{} HTTP/1.1\r\nHost: x\r\nx-Api-KEY: sim-api-key\r\nConnection: close\r\n\r\n",
        env.account.account_id
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test]
async fn admin_lookup_lists_all_organizers_with_ics_paths() {
    let env = Env::new(SimOptions::default()).await;
    let org = env.sim.add_organizer(
        &env.account.account_id,
        "bob@example.com",
        "Bob",
        "Ross",
        "America/New_York",
    );
    let a = env
        .call(
            Method::GET,
            &format!("/api/v6/account/admin/{}", env.account.account_id),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    let data = a.json()["data"].clone();
    let list = data.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], json!(env.admin().id));
    assert_eq!(list[0]["timezone"], json!("Europe/Paris"));
    assert_eq!(list[1]["email"], json!("bob@example.com"));
    assert_eq!(list[1]["externalUserId"], Value::Null);
    for u in list {
        let token = u["icsToken"].as_str().unwrap();
        assert_eq!(token.len(), 73);
        assert_eq!(token.matches('-').count(), 9);
        assert_eq!(
            u["icsPath"],
            json!(format!("/api/v6/meeting/calender/user/{token}"))
        );
    }
    assert_eq!(list[1]["icsPath"], json!(org.ics_path));
    let unknown = env
        .call(
            Method::GET,
            "/api/v6/account/admin/000000000000000000000000",
            None,
            None,
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.json()["responseCode"].clone()),
        (404, json!(-4))
    );
}

#[tokio::test]
async fn put_false_updates_and_bumps_sequence_true_counts_a_mail() {
    let env = Env::new(SimOptions::default()).await;
    let id = env.create(seed_body("My Meeting Topic")).await.json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let feed0 = env.feed(env.admin(), &[]).await.text();
    assert!(unfold(&feed0).contains("SEQUENCE:0\n"));
    let mut body = seed_body("My Updated Meeting Topic");
    body["id"] = json!(id);
    body["startTime"] = json!("2020-04-07T09:30:00.000Z");
    body["endTime"] = json!("2020-04-07T10:30:00.000Z");
    let path = format!("/api/v6/meeting/{id}/false");
    let a = env
        .call(
            Method::PUT,
            &path,
            Some(&env.admin().id),
            Some(body.clone()),
        )
        .await;
    assert_eq!(a.status, 200);
    let d = a.json()["data"].clone();
    assert_eq!(d["icalSequence"], json!("1"));
    assert_eq!(d["topic"], json!("My Updated Meeting Topic"));
    assert_eq!(d["startTime"], json!("2020-04-07T09:30:00.000Z"));
    let feed1 = unfold(&env.feed(env.admin(), &[]).await.text());
    assert!(feed1.contains("SEQUENCE:1\n"), "{feed1}");
    assert!(feed1.contains("SUMMARY:My Updated Meeting Topic\n"));
    assert!(
        feed1.contains("DTSTART;TZID=Europe/Zurich:20200407T113000\n"),
        "{feed1}"
    );
    assert_eq!(env.sim.counters().mails_sent, 0);
    let t = env
        .call(
            Method::PUT,
            &format!("/api/v6/meeting/{id}/true"),
            Some(&env.admin().id),
            Some(body.clone()),
        )
        .await;
    assert_eq!(t.json()["data"]["icalSequence"], json!("2"));
    assert_eq!(env.sim.counters().mails_sent, 1);
    let other = env
        .call(
            Method::PUT,
            &format!("/api/v6/meeting/{id}/maybe"),
            Some(&env.admin().id),
            Some(body.clone()),
        )
        .await;
    assert_eq!(other.status, 404);
    // Another organizer may not touch it; a wrong body id is refused.
    let bob = env.sim.add_organizer(
        &env.account.account_id,
        "bob@example.com",
        "Bob",
        "Ross",
        "UTC",
    );
    let foreign = env
        .call(Method::PUT, &path, Some(&bob.id), Some(body.clone()))
        .await;
    assert_eq!(
        (foreign.status, foreign.json()["responseCode"].clone()),
        (403, json!(-3))
    );
    body["id"] = json!("5e945c36b863b82cefdddf54");
    let mismatch = env
        .call(Method::PUT, &path, Some(&env.admin().id), Some(body))
        .await;
    assert_eq!(
        (mismatch.status, mismatch.json()["responseCode"].clone()),
        (400, json!(-4))
    );
    assert_eq!(env.sim.meeting(&id).unwrap().ical_sequence, 2);
}

#[tokio::test]
async fn duration_rule_switch_decides_the_seed_inconsistency() {
    let env = Env::new(SimOptions::default()).await;
    let mut body = seed_body("x");
    body["startTime"] = json!("2020-04-07T09:05:00.000Z");
    body["endTime"] = json!("2020-04-07T10:00:05.000Z");
    let d = env.create(body.clone()).await.json()["data"].clone();
    assert_eq!(
        (d["duration"].clone(), d["endTime"].clone()),
        (json!("55"), json!("2020-04-07T10:00:05.000Z"))
    );
    env.sim
        .set_options(|o| o.duration_rule = DurationRule::DurationWins);
    let d = env.create(body.clone()).await.json()["data"].clone();
    assert_eq!(
        (d["duration"].clone(), d["endTime"].clone()),
        (json!("60"), json!("2020-04-07T10:05:00.000Z"))
    );
    env.sim
        .set_options(|o| o.duration_rule = DurationRule::Reject);
    let r = env.create(body).await;
    assert_eq!(
        (r.status, r.json()["responseCode"].clone()),
        (400, json!(-4))
    );
    // Matching values pass under Reject; duration as a string is accepted.
    let mut ok = seed_body("y");
    ok["duration"] = json!("60");
    assert_eq!(env.create(ok).await.json()["data"]["duration"], json!("60"));
}

#[tokio::test]
async fn create_validates_its_input() {
    let env = Env::new(SimOptions::default()).await;
    let no_user = env
        .call(Method::POST, "/api/v6/meeting", None, Some(seed_body("x")))
        .await;
    assert_eq!(
        (no_user.status, no_user.json()["responseCode"].clone()),
        (403, json!(-3))
    );
    let mut no_topic = seed_body("");
    no_topic["topic"] = Value::Null;
    assert_eq!(env.create(no_topic).await.json()["responseCode"], json!(-4));
    let mut bad_tz = seed_body("x");
    bad_tz["timezone"] = json!("Mars/Olympus");
    assert_eq!(env.create(bad_tz).await.json()["responseCode"], json!(-4));
    let not_json = env
        .send(
            env.http
                .post(env.url("/api/v6/meeting"))
                .header("X-API-KEY", "sim-api-key")
                .header("X-USER-ID", &env.admin().id)
                .body("{nope"),
        )
        .await;
    assert_eq!(
        (not_json.status, not_json.json()["responseCode"].clone()),
        (400, json!(-4))
    );
    // Participants: strings or objects in; per switch out.
    let mut body = seed_body("x");
    body["invitedParticipants"] =
        json!(["a@example.com", {"email": "b@example.com", "name": "Bé"}]);
    let d = env.create(body.clone()).await.json()["data"].clone();
    assert_eq!(
        d["invitedParticipants"],
        json!(["a@example.com", "b@example.com"])
    );
    env.sim
        .set_options(|o| o.participants = ParticipantShape::Objects);
    let d = env.create(body).await.json()["data"].clone();
    assert_eq!(
        d["invitedParticipants"],
        json!([{"email": "a@example.com", "name": null}, {"email": "b@example.com", "name": "Bé"}])
    );
    assert_eq!(env.sim.counters().creates_per_user[&env.admin().id], 2);
}

#[tokio::test]
async fn recurring_body_is_echoed_and_rendered() {
    let env = Env::new(SimOptions::default()).await;
    let mut body = seed_body("Standup");
    body["isRecurring"] = json!(true);
    body["recurring"] =
        json!({"frequencyType": "weekly", "frequency": 2, "endsType": "after", "endsAfter": 3});
    let d = env.create(body).await.json()["data"].clone();
    assert_eq!(d["recurring"]["frequencyType"], json!("weekly"));
    assert_eq!(d["recurring"]["endsAfter"], json!(3));
    assert_eq!(d["recurring"]["monthlyPattern"], json!(""));
    let feed = unfold(&feed_text(&env.sim, env.admin()));
    assert!(
        feed.contains("RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=3\n"),
        "{feed}"
    );
}

#[tokio::test]
async fn delete_paths_follow_the_switch() {
    let env = Env::new(SimOptions::default()).await;
    let user = env.admin().id.clone();
    let a = env
        .sim
        .create_meeting(&user, spec("A", "2030-01-01T10:00:00Z", 30));
    let b = env
        .sim
        .create_meeting(&user, spec("B", "2030-01-02T10:00:00Z", 30));
    let r = env
        .call(
            Method::DELETE,
            &format!("/api/v6/meeting/{a}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(r.json(), json!({"responseCode": 0, "data": null}));
    assert!(env.sim.meeting(&a).unwrap().deleted);
    assert!(!feed_text(&env.sim, env.admin()).contains(&format!("UID:{a}")));
    let again = env
        .call(
            Method::DELETE,
            &format!("/api/v6/meeting/{a}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(
        (again.status, again.json()["responseCode"].clone()),
        (404, json!(-4))
    );
    env.sim
        .set_options(|o| o.delete_paths = DeletePaths::PlainOnly);
    let suffixed = env
        .call(
            Method::DELETE,
            &format!("/api/v6/meeting/{b}/false"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(suffixed.status, 404);
    assert_eq!(env.sim.counters().not_found, 1);
    env.sim
        .set_options(|o| o.delete_paths = DeletePaths::FalseSuffixOnly);
    let ok = env
        .call(
            Method::DELETE,
            &format!("/api/v6/meeting/{b}/false"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(env.sim.counters().requests_to(Route::MeetingDelete), 3);
}

#[tokio::test]
async fn feed_etag_is_stable_and_conditional_get_answers_304() {
    let env = Env::new(SimOptions::default()).await;
    env.sim
        .create_meeting(&env.admin().id, spec("A", "2030-01-01T10:00:00Z", 30));
    let first = env.feed(env.admin(), &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("text/calendar; charset=utf-8")
    );
    let etag = first.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let lm = first.header("last-modified").unwrap();
    let second = env.feed(env.admin(), &[]).await;
    assert_eq!(second.header("etag").unwrap(), etag);
    assert_eq!(second.body, first.body);
    let cached = env.feed(env.admin(), &[("If-None-Match", &etag)]).await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag").unwrap(), etag);
    // Exact match only.
    let weak = format!("W/{etag}");
    assert_eq!(
        env.feed(env.admin(), &[("If-None-Match", &weak)])
            .await
            .status,
        200
    );
    let by_date = env.feed(env.admin(), &[("If-Modified-Since", &lm)]).await;
    assert_eq!(by_date.status, 304);
    let c = env.sim.counters();
    assert_eq!(
        (c.feed_200, c.feed_304, c.requests_to(Route::Feed)),
        (3, 2, 5)
    );
}

#[tokio::test]
async fn etag_changes_after_any_change() {
    let env = Env::new(SimOptions::default()).await;
    let user = env.admin().id.clone();
    let id = env
        .sim
        .create_meeting(&user, spec("A", "2030-01-01T10:00:00Z", 30));
    let e0 = env.feed(env.admin(), &[]).await.header("etag").unwrap();
    env.sim.update_meeting(&id, |m| m.topic = "B".into());
    let after = env.feed(env.admin(), &[("If-None-Match", &e0)]).await;
    assert_eq!(after.status, 200);
    let e1 = after.header("etag").unwrap();
    assert_ne!(e0, e1);
    assert!(unfold(&after.text()).contains("SUMMARY:B\nDESCRIPTION"));
    env.sim
        .create_meeting(&user, spec("C", "2030-01-03T10:00:00Z", 30));
    let e2 = env.feed(env.admin(), &[]).await.header("etag").unwrap();
    env.sim.delete_meeting(&id);
    let e3 = env.feed(env.admin(), &[]).await.header("etag").unwrap();
    assert!(e1 != e2 && e2 != e3 && e1 != e3);
    // The Rust view is exactly what is served.
    let served = env.feed(env.admin(), &[]).await.body;
    assert_eq!(served, env.sim.feed_bytes(&user));
}

#[tokio::test]
async fn validator_switches() {
    let env = Env::new(SimOptions::default()).await;
    env.sim.set_options(|o| o.validators = Validators::None);
    let a = env.feed(env.admin(), &[]).await;
    assert!(a.header("etag").is_none() && a.header("last-modified").is_none());
    assert_eq!(
        env.feed(env.admin(), &[("If-None-Match", "*")])
            .await
            .status,
        200
    );
    env.sim.set_options(|o| o.validators = Validators::WeakEtag);
    let w = env.feed(env.admin(), &[]).await.header("etag").unwrap();
    assert!(w.starts_with("W/\""), "{w}");
    assert_eq!(
        env.feed(env.admin(), &[("If-None-Match", &w)]).await.status,
        304
    );
    env.sim
        .set_options(|o| o.validators = Validators::LastModified);
    let l = env.feed(env.admin(), &[]).await;
    assert!(l.header("etag").is_none());
    let lm = l.header("last-modified").unwrap();
    assert_eq!(
        env.feed(env.admin(), &[("If-Modified-Since", &lm)])
            .await
            .status,
        304
    );
    let old = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(
        env.feed(env.admin(), &[("If-Modified-Since", old)])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn unknown_token_per_switch() {
    let env = Env::new(SimOptions::default()).await;
    let path = "/api/v6/meeting/calender/user/00000000-0000-4000-8000-000000000000-00000000-0000-4000-8000-000000000000";
    let a = env.send(env.http.get(env.url(path))).await;
    assert_eq!(a.status, 404);
    env.sim
        .set_options(|o| o.bad_token = BadToken::EmptyCalendar200);
    let b = env.send(env.http.get(env.url(path))).await;
    assert_eq!(b.status, 200);
    assert!(b.text().starts_with("BEGIN:VCALENDAR\r\n") && !b.text().contains("VEVENT"));
    env.sim.set_options(|o| o.bad_token = BadToken::Html200);
    let c = env.send(env.http.get(env.url(path))).await;
    assert_eq!(c.status, 200);
    assert!(c.header("content-type").unwrap().starts_with("text/html"));
    assert!(c.text().contains("<html>"));
}

#[tokio::test]
async fn every_fault_kind_is_observable() {
    let env = Env::new(SimOptions::default()).await;
    let user = env.admin().clone();
    env.sim
        .create_meeting(&user.id, spec("A", "2030-01-01T10:00:00Z", 30));
    let admin_path = format!("/api/v6/account/admin/{}", env.account.account_id);

    env.sim.inject_fault(Route::Feed, Fault::Status(503), 1);
    let a = env.feed(&user, &[]).await;
    assert_eq!(
        (a.status, a.json()["responseCode"].clone()),
        (503, json!(-99))
    );
    assert_eq!(
        env.feed(&user, &[]).await.status,
        200,
        "fault applies `times` times only"
    );

    env.sim.inject_fault(Route::AdminLookup, Fault::Html200, 1);
    let h = env.call(Method::GET, &admin_path, None, None).await;
    assert_eq!(h.status, 200);
    assert!(h.header("content-type").unwrap().starts_with("text/html"));
    env.sim.inject_fault(Route::AdminLookup, Fault::Html500, 1);
    let h5 = env.call(Method::GET, &admin_path, None, None).await;
    assert_eq!(h5.status, 500);
    assert!(h5.text().contains("<html>"));

    env.sim.inject_fault(
        Route::Feed,
        Fault::RateLimited {
            retry_after: Some("7".into()),
        },
        1,
    );
    env.sim
        .inject_fault(Route::Feed, Fault::RateLimited { retry_after: None }, 1);
    let r1 = env.feed(&user, &[]).await;
    assert_eq!(
        (r1.status, r1.header("retry-after")),
        (429, Some("7".to_string()))
    );
    let r2 = env.feed(&user, &[]).await;
    assert_eq!((r2.status, r2.header("retry-after")), (429, None));

    env.sim.inject_fault(Route::Feed, Fault::Truncated, 1);
    let resp = env.http.get(env.url(&user.ics_path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the head arrives");
    assert_eq!(
        resp.content_length(),
        Some(env.sim.feed_bytes(&user.id).len() as u64)
    );
    assert!(resp.bytes().await.is_err(), "the body stops short");

    // A truncated create answer: the meeting exists although the client saw an error.
    let before = env.sim.meetings_of(&user.id).len();
    env.sim
        .inject_fault(Route::MeetingCreate, Fault::Truncated, 1);
    let resp = env
        .http
        .post(env.url("/api/v6/meeting"))
        .header("X-API-KEY", "sim-api-key")
        .header("X-USER-ID", &user.id)
        .body(seed_body("half").to_string())
        .send()
        .await;
    let complete = match resp {
        Ok(r) => r
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        Err(_) => None,
    };
    assert!(complete.is_none());
    assert_eq!(env.sim.meetings_of(&user.id).len(), before + 1);

    env.sim
        .inject_fault(Route::Feed, Fault::Delay(Duration::from_millis(300)), 1);
    let t = Instant::now();
    assert_eq!(env.feed(&user, &[]).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    env.sim
        .inject_fault(Route::Feed, Fault::Delay(Duration::from_millis(500)), 1);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(impatient.get(env.url(&user.ics_path)).send().await.is_err());

    env.sim
        .inject_fault(Route::MeetingCreate, Fault::InvalidJson, 1);
    let ij = env.create(seed_body("x")).await;
    assert_eq!(ij.status, 200);
    assert!(serde_json::from_slice::<Value>(&ij.body).is_err());
    env.sim.inject_fault(Route::Feed, Fault::InvalidJson, 1);
    let broken = env.feed(&user, &[]).await.text();
    assert!(broken.starts_with("BEGIN:VCALENDAR") && !broken.contains("END:VCALENDAR"));

    env.sim
        .inject_fault(Route::MeetingCreate, Fault::ErrorEnvelope(-99), 1);
    let ee = env.create(seed_body("x")).await;
    assert_eq!(
        (ee.status, ee.json()["responseCode"].clone()),
        (200, json!(-99))
    );

    let normal = env.feed(&user, &[]).await;
    let etag = normal.header("etag").unwrap();
    env.sim.inject_fault(Route::Feed, Fault::EmptyCalendar, 1);
    let empty = env.feed(&user, &[("If-None-Match", &etag)]).await;
    assert_eq!(empty.status, 200);
    assert!(empty.text().contains("BEGIN:VCALENDAR") && !empty.text().contains("BEGIN:VEVENT"));
    assert_ne!(empty.header("etag").unwrap(), etag);

    env.sim.inject_fault(Route::Feed, Fault::EtagChurn, 2);
    let c1 = env.feed(&user, &[("If-None-Match", &etag)]).await;
    let c2 = env.feed(&user, &[]).await;
    assert_eq!((c1.status, c2.status), (200, 200));
    assert_eq!(c1.body, normal.body);
    let (t1, t2) = (c1.header("etag").unwrap(), c2.header("etag").unwrap());
    assert!(t1 != etag && t2 != etag && t1 != t2);
    assert_eq!(
        env.feed(&user, &[("If-None-Match", &etag)]).await.status,
        304
    );
    assert_eq!(env.sim.counters().faults_served, 15);
}

#[tokio::test]
async fn rate_limit_switch() {
    let env = Env::new(SimOptions {
        rate_limit: Some(RateLimit {
            per_second: 2,
            retry_after: true,
        }),
        ..SimOptions::default()
    })
    .await;
    let statuses = [
        env.feed(env.admin(), &[]).await,
        env.feed(env.admin(), &[]).await,
        env.feed(env.admin(), &[]).await,
    ];
    assert_eq!(
        statuses.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![200, 200, 429]
    );
    assert_eq!(statuses[2].header("retry-after").as_deref(), Some("1"));
    assert_eq!(env.sim.counters().rate_limited, 1);
    env.sim
        .set_options(|o| o.rate_limit.as_mut().unwrap().retry_after = false);
    assert_eq!(env.feed(env.admin(), &[]).await.header("retry-after"), None);
}

fn recurring_spec() -> MeetingSpec {
    // Wednesdays 09:00 Zurich across the 2030 DST change (31 March).
    let mut s = spec("Weekly sync", "2030-03-20T08:00:00Z", 60);
    s.recurrence = Some(Recurrence {
        freq: Freq::Weekly,
        interval: 1,
        count: Some(6),
        until: None,
        exdates: vec![at("2030-03-27T08:00:00Z")],
        overrides: vec![OverrideSpec {
            original_start: at("2030-04-10T07:00:00Z"),
            start: at("2030-04-10T08:00:00Z"),
            end: at("2030-04-10T09:00:00Z"),
            topic: Some("Weekly sync (moved)".into()),
        }],
    });
    s
}

#[tokio::test]
async fn recurring_meeting_renders_rrule_exdate_and_recurrence_id_with_vtimezone() {
    let env = Env::new(SimOptions::default()).await;
    let id = env.sim.create_meeting(&env.admin().id, recurring_spec());
    let feed = unfold(&env.feed(env.admin(), &[]).await.text());
    assert!(
        feed.contains("BEGIN:VTIMEZONE\nTZID:Europe/Zurich\n"),
        "{feed}"
    );
    assert_eq!(feed.matches("BEGIN:VTIMEZONE").count(), 1);
    let events = vevents(&feed);
    assert_eq!(events.len(), 2);
    let master = &events[0];
    assert!(master.contains(&format!("UID:{id}\n")));
    assert!(master.contains("DTSTART;TZID=Europe/Zurich:20300320T090000\n"));
    assert!(master.contains("DTEND;TZID=Europe/Zurich:20300320T100000\n"));
    assert!(master.contains("RRULE:FREQ=WEEKLY;INTERVAL=1;COUNT=6\n"));
    assert!(master.contains("EXDATE;TZID=Europe/Zurich:20300327T090000\n"));
    let moved = &events[1];
    assert!(moved.contains(&format!("UID:{id}\n")));
    assert!(
        moved.contains("RECURRENCE-ID;TZID=Europe/Zurich:20300410T090000\n"),
        "{moved}"
    );
    assert!(moved.contains("DTSTART;TZID=Europe/Zurich:20300410T100000\n"));
    assert!(moved.contains("SUMMARY:Weekly sync (moved)\n"));
    assert!(!moved.contains("RRULE"));

    env.sim.set_options(|o| o.tz = TzStyle::TzidOnly);
    let only = unfold(&feed_text(&env.sim, env.admin()));
    assert!(
        !only.contains("VTIMEZONE")
            && only.contains("DTSTART;TZID=Europe/Zurich:20300320T090000\n")
    );
    env.sim.set_options(|o| o.tz = TzStyle::Utc);
    let utc = unfold(&feed_text(&env.sim, env.admin()));
    assert!(!utc.contains("TZID") && utc.contains("DTSTART:20300320T080000Z\n"));
    assert!(
        utc.contains("EXDATE:20300327T080000Z\n")
            && utc.contains("RECURRENCE-ID:20300410T070000Z\n")
    );
}

#[tokio::test]
async fn expanded_recurrence_styles() {
    let env = Env::new(SimOptions {
        recurrence: RecurrenceStyle::ExpandedRecurrenceId,
        ..SimOptions::default()
    })
    .await;
    let id = env.sim.create_meeting(&env.admin().id, recurring_spec());
    let events = vevents(&feed_text(&env.sim, env.admin()));
    // 6 occurrences, one excluded.
    assert_eq!(events.len(), 5);
    assert!(events
        .iter()
        .all(|e| e.contains(&format!("UID:{id}\n"))
            && e.contains("RECURRENCE-ID;TZID=Europe/Zurich:")));
    assert!(events
        .iter()
        .all(|e| !e.contains("RRULE") && !e.contains("EXDATE")));
    // Local time stays 09:00 across the DST change, except the moved one.
    let starts: Vec<&str> = events
        .iter()
        .map(|e| {
            e.split("DTSTART;TZID=Europe/Zurich:")
                .nth(1)
                .unwrap()
                .split('\n')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        starts,
        vec![
            "20300320T090000",
            "20300403T090000",
            "20300410T100000",
            "20300417T090000",
            "20300424T090000"
        ]
    );
    env.sim
        .set_options(|o| o.recurrence = RecurrenceStyle::ExpandedOwnUid);
    let own = vevents(&feed_text(&env.sim, env.admin()));
    assert_eq!(own.len(), 5);
    let uids: std::collections::BTreeSet<String> = own
        .iter()
        .map(|e| {
            e.split("UID:")
                .nth(1)
                .unwrap()
                .split('\n')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(uids.len(), 5);
    assert!(uids.contains(&format!("{id}-20300403T070000Z")), "{uids:?}");
    assert!(own.iter().all(|e| !e.contains("RECURRENCE-ID")));
}

#[tokio::test]
async fn line_endings_switch() {
    let env = Env::new(SimOptions::default()).await;
    env.sim
        .create_meeting(&env.admin().id, spec("A", "2030-01-01T10:00:00Z", 30));
    let crlf = feed_text(&env.sim, env.admin());
    assert!(crlf.ends_with("END:VCALENDAR\r\n"));
    assert_eq!(crlf.matches('\n').count(), crlf.matches("\r\n").count());
    env.sim.set_options(|o| o.line_endings = LineEndings::Lf);
    let lf = env.feed(env.admin(), &[]).await.text();
    assert!(!lf.contains('\r'));
    assert!(lf.starts_with("BEGIN:VCALENDAR\nVERSION:2.0\n") && lf.ends_with("END:VCALENDAR\n"));
}

#[tokio::test]
async fn folding_never_exceeds_75_octets_nor_splits_utf8() {
    let env = Env::new(SimOptions::default()).await;
    let topics = [
        "Ü".repeat(100),
        "☕ Café planning ".repeat(9),
        "李".repeat(61),
        format!("a{}", "😀".repeat(40)),
        "Quarterly business review with the regional sales leadership team, and; more".into(),
    ];
    for t in &topics {
        let mut s = spec(t, "2030-01-01T10:00:00Z", 30);
        s.agenda = format!("Line one\nLine two — {t}");
        s.invited = vec![format!("{} <x@example.com>", "Zoë Müller ".repeat(8))];
        env.sim.create_meeting(&env.admin().id, s);
    }
    let body = env.feed(env.admin(), &[]).await.body;
    let mut longest = 0;
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            line.len() <= 75,
            "{} octets: {}",
            line.len(),
            String::from_utf8_lossy(line)
        );
        assert!(
            std::str::from_utf8(line).is_ok(),
            "line splits a UTF-8 sequence"
        );
        longest = longest.max(line.len());
    }
    assert!(
        longest >= 73,
        "long lines must actually be folded near the limit"
    );
    let text = unfold(&String::from_utf8(body).unwrap());
    for t in &topics {
        let escaped = t.replace(',', "\\,").replace(';', "\\;");
        assert!(text.contains(&format!("SUMMARY:{escaped}\n")), "{t}");
    }
    assert!(text.contains("DESCRIPTION:Line one\\nLine two — "));
}

#[test]
fn fold_is_exact_for_every_split_position() {
    let eol = "\r\n";
    for prefix in 0..8 {
        let line = format!("{}{}", "x".repeat(prefix), "é☕😀a".repeat(40));
        let mut out = String::new();
        feed::fold_into(&mut out, &line, eol);
        let physical: Vec<&str> = out.trim_end_matches(eol).split(eol).collect();
        assert!(physical.iter().all(|l| l.len() <= 75));
        assert!(physical[1..].iter().all(|l| l.starts_with(' ')));
        assert_eq!(out.replace("\r\n ", "").trim_end(), line);
    }
}

#[test]
fn text_escaping() {
    let mut out = String::new();
    feed::escape_text_into(&mut out, "a,b;c\\d\r\ne\nf\u{7}");
    assert_eq!(out, "a\\,b\\;c\\\\d\\ne\\nf");
}

#[tokio::test]
async fn event_properties_and_switches() {
    let env = Env::new(SimOptions::default()).await;
    let mut s = spec("Budget, staffing; and timeline", "2030-01-01T10:00:00Z", 45);
    s.agenda = "1. Status\n2. Risks".into();
    s.invited = vec![
        "Zoë Müller <zoe@example.test>".into(),
        "Smith, John <john@example.test>".into(),
        "plain@example.test".into(),
    ];
    s.extra_ics = vec![
        "X-MEETSYNC-TEST:keep-me".into(),
        "X-ALT-DESC;FMTTYPE=text/html:<b>hi</b>".into(),
    ];
    let id = env.sim.create_meeting(&env.admin().id, s);
    let m = env.sim.meeting(&id).unwrap();
    let link = format!(
        "https://meeting.example.test/j/{}",
        m.meeting_id.replace('-', "")
    );
    let feed = unfold(&feed_text(&env.sim, env.admin()));
    for needle in [
        "VERSION:2.0\n".to_string(),
        "CALSCALE:GREGORIAN\n".into(),
        "X-WR-CALNAME:Test User\n".into(),
        format!("UID:{id}\n"),
        "SUMMARY:Budget\\, staffing\\; and timeline\n".into(),
        format!("DESCRIPTION:1. Status\\n2. Risks\\n\\nJoin the meeting: {link}\n"),
        format!("URL:{link}\n"),
        "ORGANIZER;CN=\"Test User\":mailto:test-user@example.com\n".into(),
        "ATTENDEE;CN=\"Zoë Müller\";ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:zoe@example.test\n".into(),
        "ATTENDEE;CN=\"Smith, John\";ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:john@example.test\n".into(),
        "ATTENDEE;CN=\"plain@example.test\";".into(),
        "X-MEETSYNC-TEST:keep-me\n".into(),
        "X-ALT-DESC;FMTTYPE=text/html:<b>hi</b>\n".into(),
        "SEQUENCE:0\n".into(),
        "DTEND;TZID=Europe/Zurich:20300101T114500\n".into(),
    ] {
        assert!(feed.contains(&needle), "missing {needle:?} in\n{feed}");
    }
    assert!(!feed.contains("LOCATION"));
    env.sim
        .set_options(|o| o.join_link = JoinLinkStyle::Location);
    let loc = unfold(&feed_text(&env.sim, env.admin()));
    assert!(loc.contains(&format!("LOCATION:{link}\n")) && !loc.contains("URL:"));
    env.sim.set_options(|o| {
        o.join_link = JoinLinkStyle::DescriptionOnly;
        o.emit_attendees = false;
    });
    let plain = unfold(&feed_text(&env.sim, env.admin()));
    assert!(!plain.contains("URL:") && !plain.contains("LOCATION:") && plain.contains(&link));
    assert!(!plain.contains("ORGANIZER") && !plain.contains("ATTENDEE"));
}

#[tokio::test]
async fn uid_styles() {
    let env = Env::new(SimOptions::default()).await;
    let a = env
        .sim
        .create_meeting(&env.admin().id, spec("A", "2030-01-01T10:00:00Z", 30));
    let b = env
        .sim
        .create_meeting(&env.admin().id, spec("B", "2030-01-02T10:00:00Z", 30));
    let uids = |sim: &Sim| -> Vec<String> {
        vevents(&feed_text(sim, &env.account.admin))
            .iter()
            .map(|e| {
                e.split("UID:")
                    .nth(1)
                    .unwrap()
                    .split('\n')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(uids(&env.sim), vec![a.clone(), b.clone()]);
    env.sim.set_options(|o| o.uid_style = UidStyle::IdAtDomain);
    assert_eq!(
        uids(&env.sim),
        vec![
            format!("{a}@meeting.example.test"),
            format!("{b}@meeting.example.test")
        ]
    );
    env.sim
        .set_options(|o| o.uid_style = UidStyle::MeetingNumber);
    assert_eq!(
        uids(&env.sim),
        vec![
            env.sim.meeting(&a).unwrap().meeting_id,
            env.sim.meeting(&b).unwrap().meeting_id
        ]
    );
    env.sim.set_options(|o| o.uid_style = UidStyle::Random);
    let r1 = uids(&env.sim);
    env.sim.update_meeting(&a, |m| m.topic = "A2".into());
    assert_eq!(uids(&env.sim), r1, "random UIDs are stable");
    assert!(r1[0] != r1[1] && !r1[0].contains(&a));
}

#[tokio::test]
async fn deleted_styles() {
    let env = Env::new(SimOptions::default()).await;
    let keep = env
        .sim
        .create_meeting(&env.admin().id, spec("Keep", "2030-01-01T10:00:00Z", 30));
    let gone = env
        .sim
        .create_meeting(&env.admin().id, spec("Gone", "2030-01-02T10:00:00Z", 30));
    env.sim.delete_meeting(&gone);
    let vanish = feed_text(&env.sim, env.admin());
    assert!(vanish.contains(&format!("UID:{keep}")) && !vanish.contains(&format!("UID:{gone}")));
    env.sim.set_options(|o| o.deleted = DeletedStyle::Cancelled);
    let events = vevents(&feed_text(&env.sim, env.admin()));
    assert_eq!(events.len(), 2);
    assert!(
        events[1].contains(&format!("UID:{gone}\n")) && events[1].contains("STATUS:CANCELLED\n")
    );
    assert!(events[1].contains("SEQUENCE:1\n"));
    assert!(!events[0].contains("STATUS:CANCELLED"));
    env.sim
        .set_options(|o| o.deleted = DeletedStyle::MethodCancel);
    let text = unfold(&feed_text(&env.sim, env.admin()));
    let calendars: Vec<&str> = text.split("BEGIN:VCALENDAR\n").skip(1).collect();
    assert_eq!(calendars.len(), 2);
    assert!(
        calendars[0].contains("METHOD:PUBLISH\n") && calendars[0].contains(&format!("UID:{keep}"))
    );
    assert!(
        calendars[1].contains("METHOD:CANCEL\n") && calendars[1].contains(&format!("UID:{gone}"))
    );
    assert!(!calendars[0].contains(&format!("UID:{gone}")));
}

#[tokio::test]
async fn feed_window_drops_old_meetings_and_moves_with_the_clock() {
    let env = Env::new(SimOptions {
        feed_drop_ended_days: Some(7),
        ..SimOptions::default()
    })
    .await;
    let now = env.sim.now();
    let user = env.admin().id.clone();
    let mk = |topic: &str, days_ago: i64| {
        let start = now - chrono::Duration::days(days_ago);
        MeetingSpec {
            start,
            end: start + chrono::Duration::hours(1),
            ..spec(topic, "2030-01-01T00:00:00Z", 60)
        }
    };
    let old = env.sim.create_meeting(&user, mk("Old", 10));
    let recent = env.sim.create_meeting(&user, mk("Recent", 3));
    let mut series = mk("Series", 100);
    series.recurrence = Some(Recurrence {
        freq: Freq::Daily,
        interval: 1,
        count: Some(3),
        until: None,
        exdates: vec![],
        overrides: vec![],
    });
    let series = env.sim.create_meeting(&user, series);
    let text = feed_text(&env.sim, env.admin());
    assert!(!text.contains(&format!("UID:{old}")));
    assert!(text.contains(&format!("UID:{recent}")) && text.contains(&format!("UID:{series}")));
    env.sim.set_clock_offset(chrono::Duration::days(5));
    let later = feed_text(&env.sim, env.admin());
    assert!(!later.contains(&format!("UID:{recent}")) && later.contains(&format!("UID:{series}")));
}

#[tokio::test]
async fn cached_feed_expires_when_the_window_passes_a_meeting() {
    let env = Env::new(SimOptions {
        feed_drop_ended_days: Some(0),
        ..SimOptions::default()
    })
    .await;
    let now = env.sim.now();
    let s = MeetingSpec {
        start: now - chrono::Duration::minutes(30),
        end: now + chrono::Duration::milliseconds(300),
        ..spec("Ending", "2030-01-01T00:00:00Z", 1)
    };
    let id = env.sim.create_meeting(&env.admin().id, s);
    assert!(feed_text(&env.sim, env.admin()).contains(&id));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!feed_text(&env.sim, env.admin()).contains(&id));
}

#[tokio::test]
async fn put_response_and_sequence_switches() {
    let env = Env::new(SimOptions {
        put_response: PutResponse::NullData,
        sequence: SequenceMode::ConstantZero,
        ..SimOptions::default()
    })
    .await;
    let d = env.create(seed_body("x")).await.json()["data"].clone();
    let id = d["id"].as_str().unwrap();
    let mut body = seed_body("y");
    body["id"] = json!(id);
    let r = env
        .call(
            Method::PUT,
            &format!("/api/v6/meeting/{id}/false"),
            Some(&env.admin().id),
            Some(body),
        )
        .await;
    assert_eq!(r.json(), json!({"responseCode": 0, "data": null}));
    let feed = unfold(&feed_text(&env.sim, env.admin()));
    assert!(feed.contains("SUMMARY:y\n") && feed.contains("SEQUENCE:0\n"));
    let got = env
        .call(
            Method::GET,
            &format!("/api/v6/meeting/{id}"),
            Some(&env.admin().id),
            None,
        )
        .await;
    assert_eq!(got.json()["data"]["icalSequence"], json!("0"));
}

#[tokio::test]
async fn get_endpoints_switch() {
    let env = Env::new(SimOptions::default()).await;
    let user = env.admin().id.clone();
    let id = env
        .sim
        .create_meeting(&user, spec("A", "2030-01-01T10:00:00Z", 30));
    let gone = env
        .sim
        .create_meeting(&user, spec("B", "2030-01-01T12:00:00Z", 30));
    env.sim.delete_meeting(&gone);
    let one = env
        .call(
            Method::GET,
            &format!("/api/v6/meeting/{id}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(one.json()["data"]["topic"], json!("A"));
    assert_eq!(one.json()["data"]["duration"], json!("30"));
    let list = env
        .call(Method::GET, "/api/v6/meeting", Some(&user), None)
        .await
        .json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], json!(id));
    env.sim.set_options(|o| o.get_endpoints = false);
    assert_eq!(
        env.call(
            Method::GET,
            &format!("/api/v6/meeting/{id}"),
            Some(&user),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        env.call(Method::GET, "/api/v6/meeting", Some(&user), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn control_surface() {
    let env = Env::new(SimOptions::default()).await;
    let user = env.admin().id.clone();
    let post = |path: &str, body: Value| env.http.post(env.url(path)).body(body.to_string());
    let created = env
        .send(post("/_sim/meetings", json!({"user_id": user, "spec": {"topic": "Ctl", "start": "2030-05-01T10:00:00Z", "end": "2030-05-01T11:00:00Z", "invited": ["Zoë <z@example.test>"]}})))
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        env.sim.meeting(&id).unwrap().invited[0].name.as_deref(),
        Some("Zoë")
    );
    let patched = env
        .send(
            env.http
                .patch(env.url(&format!("/_sim/meetings/{id}")))
                .body(json!({"topic": "Ctl 2"}).to_string()),
        )
        .await;
    assert_eq!(patched.json()["icalSequence"], json!("1"));
    assert_eq!(env.sim.meeting(&id).unwrap().topic, "Ctl 2");
    let o = env
        .send(post(
            "/_sim/options",
            json!({"uid_style": "id_at_domain", "line_endings": "lf"}),
        ))
        .await;
    assert_eq!(o.status, 200);
    assert_eq!(env.sim.options().uid_style, UidStyle::IdAtDomain);
    assert_eq!(env.sim.options().line_endings, LineEndings::Lf);
    assert_eq!(
        env.send(post("/_sim/options", json!({"no_such_switch": 1})))
            .await
            .status,
        400
    );
    let f = env
        .send(post(
            "/_sim/faults",
            json!({"route": "feed", "kind": "status", "status": 502, "times": 1}),
        ))
        .await;
    assert_eq!(f.status, 200);
    assert_eq!(env.feed(env.admin(), &[]).await.status, 502);
    let counters = env
        .send(env.http.get(env.url("/_sim/counters")))
        .await
        .json();
    assert_eq!(counters["requests"]["feed"], json!(1));
    assert_eq!(counters["faults_served"], json!(1));
    let accounts = env
        .send(env.http.get(env.url("/_sim/accounts")))
        .await
        .json();
    assert_eq!(
        accounts[0]["users"][0]["ics_token"],
        json!(env.admin().ics_token)
    );
    let del = env
        .send(env.http.delete(env.url(&format!("/_sim/meetings/{id}"))))
        .await;
    assert_eq!(del.status, 200);
    assert!(env.sim.meeting(&id).unwrap().deleted);
    let org = env
        .send(post("/_sim/organizers", json!({"account_id": env.account.account_id, "email": "c@example.test", "first_name": "C", "last_name": "D"})))
        .await;
    assert_eq!(
        org.json()["ics_path"].as_str().unwrap().len(),
        "/api/v6/meeting/calender/user/".len() + 73
    );
    assert_eq!(env.sim.users(&env.account.account_id).len(), 2);
}

#[tokio::test]
async fn meeting_writes_are_logged_with_their_bodies_until_reset() {
    let env = Env::new(SimOptions::default()).await;
    let mut body = seed_body("Logged");
    body["invitedParticipants"] = json!(["ann@example.test"]);
    let created = env.create(body).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.json()["data"]["id"].as_str().unwrap().to_string();
    let user = env.admin().id.clone();
    let put = env
        .call(
            Method::PUT,
            &format!("/api/v6/meeting/{id}/false"),
            Some(&user),
            Some(seed_body("Renamed")),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    // a rejected write is logged with its status; reads and feeds are not
    let bad = env
        .call(
            Method::POST,
            "/api/v6/meeting",
            Some(&user),
            Some(json!({})),
        )
        .await;
    env.call(
        Method::GET,
        &format!("/api/v6/meeting/{id}"),
        Some(&user),
        None,
    )
    .await;
    env.feed(env.admin(), &[]).await;
    let log = env.sim.writes();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].status),
        ("POST", "/api/v6/meeting", 200)
    );
    assert_eq!(
        log[0].body["invitedParticipants"],
        json!(["ann@example.test"])
    );
    assert_eq!(log[0].user_id.as_deref(), Some(user.as_str()));
    assert_eq!(log[1].method, "PUT");
    assert_eq!(log[1].path, format!("/api/v6/meeting/{id}/false"));
    assert_eq!(log[1].body["topic"], json!("Renamed"));
    assert_eq!(log[2].status, bad.status);
    assert_ne!(log[2].status, 200);
    // the same through the control surface, without the API key
    let listed = env.send(env.http.get(env.url("/_sim/writes"))).await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(
        listed[1]["path"],
        json!(format!("/api/v6/meeting/{id}/false"))
    );
    assert_eq!(listed[0]["body"]["topic"], json!("Logged"));
    assert!(!listed.to_string().contains("sim-api-key"));
    env.send(env.http.post(env.url("/_sim/counters/reset")))
        .await;
    assert!(env.sim.writes().is_empty());
}

#[tokio::test]
async fn unknown_paths_are_404_and_stop_closes_the_port() {
    let env = Env::new(SimOptions::default()).await;
    let a = env.call(Method::GET, "/api/v6/nothing", None, None).await;
    assert_eq!(
        (a.status, a.json()["responseCode"].clone()),
        (404, json!(-99))
    );
    let put_plain = env
        .call(
            Method::PUT,
            "/api/v6/meeting/abc",
            Some("u"),
            Some(json!({})),
        )
        .await;
    assert_eq!(put_plain.status, 404);
    let addr = env.server.addr;
    env.server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Topic, start, end, zone, invitees, recurring.
type DemoDigest = (String, DateTime<Utc>, DateTime<Utc>, String, usize, bool);

#[test]
fn populate_demo_is_realistic_and_deterministic() {
    let make = || {
        let sim = Sim::new(SimOptions::default());
        let acc = sim.create_account("admin@example.test", "A", "B");
        let users = sim.populate_demo(&acc.account_id, 3, 200, 7);
        (sim, users)
    };
    let (s1, u1) = make();
    let (s2, u2) = make();
    assert_eq!(u1.len(), 3);
    let digest = |sim: &Sim, users: &[UserInfo]| -> Vec<DemoDigest> {
        users
            .iter()
            .flat_map(|u| sim.meetings_of(&u.id))
            .map(|m| {
                (
                    m.topic,
                    m.start,
                    m.end,
                    m.timezone,
                    m.invited.len(),
                    m.recurrence.is_some(),
                )
            })
            .collect()
    };
    let d1 = digest(&s1, &u1);
    assert_eq!(d1, digest(&s2, &u2), "same seed, same meetings");
    assert_eq!(d1.len(), 600);
    let recurring = d1.iter().filter(|m| m.5).count();
    assert!(
        (30..=100).contains(&recurring),
        "{recurring} recurring of 600"
    );
    let zones: std::collections::BTreeSet<&str> = d1.iter().map(|m| m.3.as_str()).collect();
    assert!(zones.len() >= 5, "{zones:?}");
    let today = Utc::now();
    assert!(d1
        .iter()
        .all(|m| m.1 > today - chrono::Duration::days(62)
            && m.1 < today + chrono::Duration::days(302)));
    assert!(d1
        .iter()
        .all(|m| (15..=120).contains(&(m.2 - m.1).num_minutes())));
    assert!(
        d1.iter().any(|m| m.0.len() > 75)
            && d1.iter().any(|m| !m.0.is_ascii())
            && d1.iter().any(|m| m.0.contains(';'))
    );
    assert!(d1.iter().any(|m| m.4 == 0) && d1.iter().any(|m| m.4 == 5));
    let all: String = u1.iter().map(|u| unfold(&feed_text(&s1, u))).collect();
    for needle in [
        "RRULE:",
        "EXDATE;TZID=",
        "RECURRENCE-ID;TZID=",
        "X-MEETSYNC-TEST:keep-me",
        "CN=\"Zoë Müller\"",
        "CN=\"李雷\"",
        "DESCRIPTION:1. Status\\n",
    ] {
        assert!(all.contains(needle), "demo feed lacks {needle}");
    }
    let other_seed = {
        let sim = Sim::new(SimOptions::default());
        let acc = sim.create_account("admin@example.test", "A", "B");
        let users = sim.populate_demo(&acc.account_id, 3, 200, 8);
        digest(&sim, &users)
    };
    assert_ne!(d1, other_seed);
}

/// `cargo test --release --lib sim::tests::populate_10k -- --nocapture` prints the figures.
#[test]
fn populate_10k_and_render() {
    let sim = Sim::new(SimOptions::default());
    let acc = sim.create_account("admin@example.test", "A", "B");
    let t0 = Instant::now();
    let users = sim.populate_demo(&acc.account_id, 1, 10_000, 1);
    let populated = t0.elapsed();
    let t1 = Instant::now();
    let body = sim.feed_bytes(&users[0].id);
    let rendered = t1.elapsed();
    let t2 = Instant::now();
    let again = sim.feed_bytes(&users[0].id);
    let cached = t2.elapsed();
    println!(
        "populate_demo(1 x 10000): {populated:?}; first feed_bytes: {rendered:?} ({} bytes); cached feed_bytes: {cached:?}",
        body.len()
    );
    assert_eq!(body, again);
    let text = String::from_utf8(body).unwrap();
    let masters = text.matches("BEGIN:VEVENT").count() - text.matches("RECURRENCE-ID").count();
    assert_eq!(masters, 10_000);
    assert!(
        cached < rendered,
        "the second call must come from the cache"
    );
}

#[test]
fn ids_embed_creation_time_and_tokens_are_uuid_pairs() {
    let sim = Sim::new(SimOptions::default());
    let acc = sim.create_account("a@example.test", "A", "B");
    let id = sim.create_meeting(&acc.admin.id, spec("x", "2030-01-01T00:00:00Z", 30));
    let secs = i64::from_str_radix(&id[..8], 16).unwrap();
    assert!((Utc::now().timestamp() - secs).abs() <= 2);
    let t = &acc.admin.ics_token;
    let parts: Vec<&str> = t.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12, 8, 4, 4, 4, 12]
    );
    assert!(parts[2].starts_with('4') && parts[7].starts_with('4'));
}

#[tokio::test]
async fn delay_after_acts_first_and_answers_late() {
    let env = Env::new(SimOptions::default()).await;
    let user = env.admin().clone();
    let wait = Duration::from_secs(3);
    env.sim
        .inject_fault(Route::MeetingCreate, Fault::DelayAfter(wait), 1);
    let started = Instant::now();
    let req = env
        .http
        .post(env.url("/api/v6/meeting"))
        .header("X-API-KEY", "sim-api-key")
        .header("X-USER-ID", &user.id)
        .body(seed_body("created, answer pending").to_string());
    let client = tokio::spawn(async move { req.send().await.map(|r| r.status()) });
    // The meeting exists on the server while the client still waits for its id.
    while env.sim.meetings_of(&user.id).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the create must happen before the delay"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!client.is_finished(), "the answer must wait");
    client.abort(); // the client dies between the server-side create and the answer
    assert!(started.elapsed() < wait);
    let c = env.sim.counters();
    assert_eq!(c.creates_per_user[&user.id], 1);
    assert_eq!(c.requests_to(Route::MeetingCreate), 1);
    assert_eq!(c.faults_served, 1);
    assert_eq!(
        env.sim.meetings_of(&user.id)[0].topic,
        "created, answer pending"
    );

    // Through the control surface; a patient client gets the normal answer.
    let f = env
        .send(env.http.post(env.url("/_sim/faults")).body(
            json!({"route": "meeting_create", "kind": "delay_after", "delay_ms": 300}).to_string(),
        ))
        .await;
    assert_eq!(f.status, 200, "{}", f.text());
    let t = Instant::now();
    let a = env.create(seed_body("late")).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(a.status, 200);
    let id = a.json()["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(env.sim.meeting(&id).unwrap().topic, "late");
    let missing = env
        .send(
            env.http
                .post(env.url("/_sim/faults"))
                .body(json!({"route": "meeting_create", "kind": "delay_after"}).to_string()),
        )
        .await;
    assert_eq!(missing.status, 400);
}

#[tokio::test]
async fn list_has_the_create_shape_and_only_the_callers_meetings() {
    let env = Env::new(SimOptions::default()).await;
    let admin = env.admin().id.clone();
    let bob = env.sim.add_organizer(
        &env.account.account_id,
        "bob@example.com",
        "Bob",
        "Ross",
        "UTC",
    );
    let mine = env.create(seed_body("Mine")).await.json()["data"].clone();
    let theirs = env
        .call(
            Method::POST,
            "/api/v6/meeting",
            Some(&bob.id),
            Some(seed_body("Bob's")),
        )
        .await
        .json()["data"]
        .clone();
    let list = env
        .call(Method::GET, "/api/v6/meeting", Some(&admin), None)
        .await;
    assert_eq!(list.status, 200);
    let v = list.json();
    assert_eq!(v["responseCode"], json!(0));
    let items = v["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0], mine, "same data shape as the create answer");
    for f in SEED_FIELDS {
        assert!(items[0].get(*f).is_some(), "{f} missing");
    }
    let bobs = env
        .call(Method::GET, "/api/v6/meeting", Some(&bob.id), None)
        .await
        .json();
    assert_eq!(bobs["data"], json!([theirs]));
    let nobody = env.call(Method::GET, "/api/v6/meeting", None, None).await;
    assert_eq!(
        (nobody.status, nobody.json()["responseCode"].clone()),
        (403, json!(-3))
    );
}
