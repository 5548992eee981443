//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use meetsync::config::{self, Config};
use meetsync::cycle::{self, JobOptions, PairReport};
use meetsync::http::RetryPolicy;
use meetsync::model::{Fields, When};
use meetsync::sim::{AccountInfo, MeetingSpec, RunningSim, Sim, SimOptions, UserInfo};
use meetsync::state::State;

pub const API_KEY: &str = "test-api-key-0123456789";

/// A simulator, an account with organizers, and a config pointing at both.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
    pub running: RunningSim,
    pub account: AccountInfo,
    pub users: Vec<UserInfo>,
    pub config_path: PathBuf,
}

impl Env {
    pub async fn new(opts: SimOptions, organizers: usize, meetings: usize) -> Env {
        Env::with_extra(opts, organizers, meetings, "").await
    }

    /// `extra` is appended to the pair's TOML (e.g. a [pair.sync] section).
    pub async fn with_extra(
        mut opts: SimOptions,
        organizers: usize,
        meetings: usize,
        extra: &str,
    ) -> Env {
        opts.api_key = API_KEY.to_string();
        let sim = Sim::new(opts);
        let running = sim
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .expect("sim starts");
        let account = sim.create_account("admin@meeting.example.test", "Ada", "Admin");
        let users = if meetings > 0 {
            sim.populate_demo(&account.account_id, organizers, meetings, 7)
        } else {
            (0..organizers)
                .map(|i| {
                    sim.add_organizer(
                        &account.account_id,
                        &format!("org{i}@meeting.example.test"),
                        "Org",
                        &format!("Nr{i}"),
                        "Europe/Zurich",
                    )
                })
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-key"), API_KEY).unwrap();
        set_private(&dir.path().join("api-key"));
        let config_path = dir.path().join("meetsync.toml");
        let text = format!(
            "state_dir = \"state\"\n[[pair]]\nname = \"work\"\n[pair.platform]\nbase_url = \"{}\"\napi_key_file = \"api-key\"\naccount_id = \"{}\"\n[pair.store]\npath = \"cal\"\n{extra}",
            running.base_url(),
            account.account_id
        );
        std::fs::write(&config_path, text).unwrap();
        Env {
            dir,
            sim,
            running,
            account,
            users,
            config_path,
        }
    }

    pub fn config(&self) -> Config {
        config::load(&self.config_path).expect("test config is valid")
    }

    pub fn cal(&self) -> PathBuf {
        self.dir.path().join("cal")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub async fn sync(&self) -> PairReport {
        self.sync_with(opts(now())).await
    }

    /// Add `keys` (TOML lines) to the pair, e.g. `direction = "two-way"\n`.
    pub fn set_pair_keys(&self, keys: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let text = text.replacen("name = \"work\"\n", &format!("name = \"work\"\n{keys}"), 1);
        std::fs::write(&self.config_path, text).unwrap();
    }

    pub async fn sync_with(&self, o: JobOptions) -> PairReport {
        let cfg = self.config();
        let state = Arc::new(Mutex::new(State::open(&cfg.state_dir).unwrap()));
        cycle::sync_pair(&cfg.pairs[0], state, &o).await
    }
}

/// The meetsync binary of this build.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_meetsync"))
}

/// A 30-minute meeting `days` from now, on a whole minute, with no agenda
/// and no invitees.
pub fn spec(topic: &str, days: i64) -> MeetingSpec {
    let start = chrono::Utc::now() + chrono::Duration::days(days);
    let start = start - chrono::Duration::seconds(start.timestamp() % 60);
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

/// The fields of a 30-minute event (UTC) `days` from now, on a whole minute,
/// and its start.
pub fn event_fields(summary: &str, days: i64) -> (Fields, i64) {
    let start = now() + days * 86_400;
    let start = start - start % 60;
    let f = Fields {
        summary: summary.into(),
        start: Some(When::Instant {
            unix: start,
            tzid: None,
        }),
        end: Some(When::Instant {
            unix: start + 1800,
            tzid: None,
        }),
        ..Fields::default()
    };
    (f, start)
}

/// Write a new event file, as a calendar app would; returns its path.
pub fn write_event(dir: &Path, file: &str, uid: &str, f: &Fields, start: i64) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, meetsync::ics::props::new_event(uid, f, start, &[])).unwrap();
    path
}

pub fn set_private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Job options with fast retries, so fault tests finish quickly.
pub fn opts(now: i64) -> JobOptions {
    let mut o = JobOptions::new(now);
    o.retry = Some(RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    });
    o
}

/// Every file under `root` with its bytes and mtime: equal snapshots mean
/// nothing was written, renamed or deleted.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime, u64)> {
    let mut out = BTreeMap::new();
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, SystemTime, u64)>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                walk(&path, out);
            } else {
                use std::os::unix::fs::MetadataExt;
                out.insert(
                    path.clone(),
                    (
                        std::fs::read(&path).unwrap(),
                        md.modified().unwrap(),
                        md.ino(),
                    ),
                );
            }
        }
    }
    walk(root, &mut out);
    out
}

/// `.ics` files of one collection.
pub fn ics_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ics"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The collection folder of an organizer (per-organizer layout).
pub fn collection_of(env: &Env, user: &UserInfo) -> PathBuf {
    env.cal()
        .join(meetsync::ics::file_stem_for_uid(&user.email.to_lowercase()))
}

/// UIDs of the VEVENTs of a feed or file (unfolded, masters only).
pub fn master_uids(ics: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(ics)
        .replace("\r\n ", "")
        .replace("\n ", "");
    let mut out = Vec::new();
    let mut uid = None;
    let mut is_override = false;
    let mut depth_event = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line == "BEGIN:VEVENT" {
            depth_event = true;
            uid = None;
            is_override = false;
        } else if line == "END:VEVENT" {
            if let (Some(u), false) = (uid.take(), is_override) {
                out.push(u);
            }
            depth_event = false;
        } else if depth_event {
            if let Some(u) = line.strip_prefix("UID:") {
                uid = Some(u.to_string());
            } else if line.starts_with("RECURRENCE-ID") {
                is_override = true;
            }
        }
    }
    out
}

/// A minimal feed server for hand-written (hostile, broken) feeds, with a
/// listed-feed config pointing at it.
type FeedReply = Arc<Mutex<(u16, &'static str, Vec<u8>)>>;

pub struct StaticFeed {
    pub dir: tempfile::TempDir,
    body: FeedReply,
    pub config_path: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl StaticFeed {
    pub async fn new(body: &[u8]) -> StaticFeed {
        use axum::extract::State as AxState;
        use axum::response::IntoResponse;
        let shared = Arc::new(Mutex::new((
            200u16,
            "text/calendar; charset=utf-8",
            body.to_vec(),
        )));
        let app = axum::Router::new()
            .route(
                "/feeds/{token}",
                axum::routing::get(|AxState(s): AxState<FeedReply>| async move {
                    let (status, ct, body) = s.lock().unwrap().clone();
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [(axum::http::header::CONTENT_TYPE, ct)],
                        body,
                    )
                        .into_response()
                }),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-key"), API_KEY).unwrap();
        set_private(&dir.path().join("api-key"));
        std::fs::write(
            dir.path().join("feed-path"),
            "/feeds/secret-feed-token-4242",
        )
        .unwrap();
        set_private(&dir.path().join("feed-path"));
        let config_path = dir.path().join("meetsync.toml");
        std::fs::write(
            &config_path,
            format!(
                "state_dir = \"state\"\n[[pair]]\nname = \"static\"\n[pair.platform]\nbase_url = \"http://{addr}\"\napi_key_file = \"api-key\"\n[[pair.platform.feed]]\nname = \"feed\"\nics_path_file = \"feed-path\"\n[pair.store]\npath = \"cal\"\n[pair.sync]\npast_days = 36500\nfuture_days = 36500\n"
            ),
        )
        .unwrap();
        StaticFeed {
            dir,
            body: shared,
            config_path,
            shutdown: Some(tx),
        }
    }

    pub fn set(&self, status: u16, ct: &'static str, body: &[u8]) {
        *self.body.lock().unwrap() = (status, ct, body.to_vec());
    }

    pub fn collection(&self) -> PathBuf {
        self.dir.path().join("cal").join("feed")
    }

    pub async fn sync(&self) -> PairReport {
        let cfg = config::load(&self.config_path).unwrap();
        let state = Arc::new(Mutex::new(State::open(&cfg.state_dir).unwrap()));
        cycle::sync_pair(&cfg.pairs[0], state, &opts(now())).await
    }
}

impl Drop for StaticFeed {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Wrap VEVENT bodies into a feed (CRLF).
pub fn feed_of(events: &[String]) -> Vec<u8> {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n");
    for e in events {
        s.push_str(e);
    }
    s.push_str("END:VCALENDAR\r\n");
    s.into_bytes()
}

pub fn event(uid: &str, summary: &str) -> String {
    format!(
        "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20270105T100000Z\r\nDTEND:20270105T110000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
    )
}

/// The report of one organizer, by email.
pub fn org<'a>(r: &'a PairReport, email: &str) -> &'a meetsync::cycle::OrganizerReport {
    r.organizers
        .iter()
        .find(|o| o.organizer == email)
        .unwrap_or_else(|| panic!("no report for {email}:\n{}", r.render()))
}

pub fn quiet(r: &meetsync::cycle::PairReport) -> bool {
    r.ok()
        && r.totals() == (0, 0, 0)
        && r.organizers
            .iter()
            .all(|o| o.pushed == (0, 0, 0) && o.conflicts == 0)
}

/// The file of the meeting with this id (its feed UID is the id).
pub fn file_of(env: &Env, u: &meetsync::sim::UserInfo, id: &str) -> std::path::PathBuf {
    collection_of(env, u).join(format!("{}.ics", meetsync::ics::file_stem_for_uid(id)))
}

/// Make the state refuse (or accept again) to store feed validators. A
/// two-way job stores them in the one transaction that links the files it
/// has just moved into place, so the job stops right there, in the state a
/// SIGKILL at that moment leaves behind; the settling of an earlier job's
/// links at the start of a run still goes through.
pub fn refuse_link_commits(env: &Env, refuse: bool) {
    let c = rusqlite::Connection::open(env.state_dir().join("state.sqlite3")).unwrap();
    let sql = if refuse {
        "CREATE TRIGGER refuse_ins BEFORE INSERT ON feeds BEGIN SELECT RAISE(ABORT, 'injected: died before the link commit'); END;
         CREATE TRIGGER refuse_upd BEFORE UPDATE ON feeds BEGIN SELECT RAISE(ABORT, 'injected: died before the link commit'); END;"
    } else {
        "DROP TRIGGER refuse_ins; DROP TRIGGER refuse_upd;"
    };
    c.execute_batch(sql).unwrap();
}

pub fn summary_of(path: &std::path::Path) -> String {
    meetsync::ics::props::read_event(&std::fs::read(path).unwrap())
        .unwrap()
        .fields
        .summary
}

/// Poll `f` every 50 ms until it holds or `timeout` passes; its last answer.
pub async fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}
