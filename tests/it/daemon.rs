//! `meetsync run` as systemd runs it: sd_notify on a test NOTIFY_SOCKET,
//! signals, the loopback listener, schedules and backoff.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use meetsync::sim::{Fault, Route, SimOptions};

struct Daemon {
    child: Child,
    /// Filled by a thread that drains the notify socket, as systemd does.
    messages: Arc<Mutex<Vec<String>>>,
    pub port: u16,
    stderr_path: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    fn start(config: &Path, dir: &Path, port: u16) -> Daemon {
        let sock_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let notify = UnixDatagram::bind(&sock_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // ends when the test drops its Daemon (Arc count falls to 1)
            while Arc::strong_count(&sink) > 1 {
                if let Ok(n) = notify.recv(&mut buf) {
                    sink.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).to_string());
                }
            }
        });
        let stderr_path = dir.join(format!("daemon-{}.log", rand_suffix()));
        let child = Command::new(env!("CARGO_BIN_EXE_meetsync"))
            .args(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "2000000")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            messages,
            port,
            stderr_path,
        }
    }

    /// Wait until a notification starting with `prefix` arrived (or the deadline).
    fn wait_message(&mut self, prefix: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .messages
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.starts_with(prefix))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn stderr(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.stderr_path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// SIGTERM and wait for the exit code.
    fn stop(mut self, timeout: Duration) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

/// Value of one sample line of a Prometheus text page.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn daemon_section(port: u16, backoff: u64) -> String {
    format!(
        "[daemon]\njitter_secs = 0\nbackoff_base_secs = {backoff}\nlisten = \"127.0.0.1:{port}\"\n"
    )
}

/// Add a `[daemon]` table and set the pair's schedule.
fn write_daemon_config(env: &Env, daemon: &str, schedule: &str) {
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text.replace(
        "name = \"work\"\n",
        &format!("name = \"work\"\nschedule = \"{schedule}\"\n"),
    );
    std::fs::write(&env.config_path, format!("{text}\n{daemon}")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_syncs_on_schedule_notifies_systemd_and_serves_metrics() {
    let env = Env::new(SimOptions::default(), 1, 5).await;
    let port = free_port();
    write_daemon_config(&env, &daemon_section(port, 60), "* * * * * *");
    let mut d = Daemon::start(&env.config_path, env.dir.path(), port);
    assert!(
        d.wait_message("READY=1", Duration::from_secs(15)),
        "no READY=1: {}",
        d.stderr()
    );
    let sim = env.sim.clone();
    assert!(
        poll_until(Duration::from_secs(20), || sim
            .counters()
            .requests_to(Route::Feed)
            >= 6)
        .await,
        "{}",
        d.stderr()
    );
    assert!(
        d.wait_message("STATUS=work: 2 organizers", Duration::from_secs(5)),
        "{:?}",
        d.messages
    );
    assert!(d.wait_message("WATCHDOG=1", Duration::from_secs(5)));
    let c = env.sim.counters();
    assert!(
        c.feed_304 >= 2,
        "scheduled resyncs use conditional GETs: {c:?}"
    );
    // the first scheduled run wrote the calendar
    assert!(!ics_files(&collection_of(&env, &env.users[0])).is_empty());
    let (st, text) = d.get("/metrics").await;
    assert_eq!(st, 200);
    assert!(
        metric(&text, "meetsync_jobs_total{pair=\"work\",result=\"ok\"}").unwrap() >= 2.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "meetsync_http_requests_total{pair=\"work\",status=\"304\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "meetsync_feed_not_modified_ratio{pair=\"work\"}").unwrap() > 0.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "meetsync_items_total{pair=\"work\",action=\"added\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "meetsync_last_success_timestamp_seconds{pair=\"work\"}"
        )
        .unwrap()
            > 1.7e9,
        "{text}"
    );
    assert!(
        text.contains("meetsync_job_duration_seconds_count{pair=\"work\"}"),
        "{text}"
    );
    assert!(!text.contains(API_KEY) && !text.contains(&env.users[0].ics_token));
    assert_eq!(d.get("/healthz").await.0, 200);
    assert_eq!(d.post("/trigger/work").await, 202);
    assert_eq!(d.post("/trigger/nope").await, 404);
    // status reads the state while the daemon runs
    let out = Command::new(env!("CARGO_BIN_EXE_meetsync"))
        .args(["status", "--config"])
        .arg(&env.config_path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("last run:") && s.contains(" ok ") && s.contains("next run:"),
        "{s}"
    );
    let log = d.stderr();
    assert!(
        !log.contains(API_KEY) && !log.contains(&env.users[0].ics_token),
        "secret in the log"
    );
    assert_eq!(d.stop(Duration::from_secs(15)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_adds_a_pair_and_a_broken_config_is_rejected() {
    let env = Env::new(SimOptions::default(), 1, 4).await;
    let port = free_port();
    write_daemon_config(&env, &daemon_section(port, 60), "*/2 * * * * *");
    let mut d = Daemon::start(&env.config_path, env.dir.path(), port);
    assert!(d.wait_message("READY=1", Duration::from_secs(15)));
    let cal = env.cal();
    assert!(poll_until(Duration::from_secs(15), || cal.exists()).await);
    // add a second pair (a merged calendar of the same account) and reload
    let good = std::fs::read_to_string(&env.config_path).unwrap();
    let second = format!(
        "\n[[pair]]\nname = \"second\"\nschedule = \"*/2 * * * * *\"\n[pair.platform]\nbase_url = \"{}\"\napi_key_file = \"api-key\"\naccount_id = \"{}\"\n[pair.store]\npath = \"cal2\"\nlayout = \"merged\"\n",
        env.running.base_url(),
        env.account.account_id
    );
    std::fs::write(&env.config_path, format!("{good}{second}")).unwrap();
    d.signal(libc::SIGHUP);
    let merged = env.dir.path().join("cal2/meetings");
    assert!(
        poll_until(Duration::from_secs(15), || !ics_files(&merged).is_empty()).await,
        "second pair never synced: {}",
        d.stderr()
    );
    // a broken config is rejected; the running one goes on
    std::fs::write(&env.config_path, "[[pair]\nname = ").unwrap();
    d.signal(libc::SIGHUP);
    let sim = env.sim.clone();
    assert!(
        poll_until(Duration::from_secs(10), || d.stderr().contains("rejected")).await,
        "{}",
        d.stderr()
    );
    let before = sim.counters().requests_to(Route::Feed);
    assert!(
        poll_until(Duration::from_secs(10), || sim
            .counters()
            .requests_to(Route::Feed)
            >= before + 4)
        .await,
        "the old config stopped syncing"
    );
    assert!(
        d.stderr().contains("meetsync.toml:1:"),
        "the rejection names the position: {}",
        d.stderr()
    );
    assert_eq!(d.stop(Duration::from_secs(15)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_sync_exits_0_and_the_next_run_finishes_the_job() {
    let env = Env::new(SimOptions::default(), 6, 5).await;
    let port = free_port();
    write_daemon_config(&env, &daemon_section(port, 60), "0 0 1 1 *");
    // every feed answers slowly: 4 organizers in flight, 3 not yet started
    env.sim
        .inject_fault(Route::Feed, Fault::Delay(Duration::from_secs(2)), 100);
    let mut d = Daemon::start(&env.config_path, env.dir.path(), port);
    assert!(d.wait_message("READY=1", Duration::from_secs(15)));
    let sim = env.sim.clone();
    assert!(
        poll_until(Duration::from_secs(10), || sim
            .counters()
            .requests_to(Route::Feed)
            >= 4)
        .await
    );
    let t = Instant::now();
    assert_eq!(
        d.stop(Duration::from_secs(20)),
        Some(0),
        "exit 0 on SIGTERM"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    // the in-flight organizers committed; the rest were not started
    let synced_after_stop: usize = env
        .users
        .iter()
        .filter(|u| !ics_files(&collection_of(&env, u)).is_empty())
        .count();
    assert!(
        synced_after_stop < env.users.len(),
        "all organizers ran; the test did not interrupt anything"
    );
    env.sim.clear_faults();
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert!(
        r.organizers
            .iter()
            .any(|o| o.outcome == meetsync::cycle::Outcome::NotModified),
        "{}",
        r.render()
    );
    assert!(
        r.totals().0 > 0,
        "the next run finishes the job: {}",
        r.render()
    );
    // and every organizer's calendar is complete, each UID once
    for u in &env.users {
        let files = ics_files(&collection_of(&env, u));
        let mut uids: Vec<String> = files
            .iter()
            .flat_map(|f| master_uids(&std::fs::read(f).unwrap()))
            .collect();
        let n = uids.len();
        uids.dedup();
        assert_eq!(uids.len(), n);
    }
    assert!(env
        .sync()
        .await
        .organizers
        .iter()
        .all(|o| o.outcome == meetsync::cycle::Outcome::NotModified));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pair_backs_off_while_another_keeps_syncing() {
    let env = Env::new(SimOptions::default(), 1, 3).await;
    let port = free_port();
    let dead = free_port(); // nothing listens there
    write_daemon_config(&env, &daemon_section(port, 30), "* * * * * *");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let bad = format!(
        "\n[[pair]]\nname = \"bad\"\nschedule = \"* * * * * *\"\n[pair.platform]\nbase_url = \"http://127.0.0.1:{dead}\"\napi_key_file = \"api-key\"\naccount_id = \"a1\"\ntimeout_secs = 2\n[pair.store]\npath = \"bad\"\n"
    );
    std::fs::write(&env.config_path, format!("{text}{bad}")).unwrap();
    let mut d = Daemon::start(&env.config_path, env.dir.path(), port);
    assert!(d.wait_message("READY=1", Duration::from_secs(15)));
    tokio::time::sleep(Duration::from_secs(9)).await;
    let (_, text) = d.get("/metrics").await;
    let good_ok = metric(&text, "meetsync_jobs_total{pair=\"work\",result=\"ok\"}").unwrap_or(0.0);
    let bad_failed =
        metric(&text, "meetsync_jobs_total{pair=\"bad\",result=\"failed\"}").unwrap_or(0.0);
    assert!(
        good_ok >= 5.0,
        "the healthy pair kept its schedule: {good_ok}\n{text}"
    );
    assert!(
        (1.0..=2.0).contains(&bad_failed),
        "the failing pair backed off: {bad_failed}\n{text}"
    );
    assert!(
        metric(&text, "meetsync_errors_total{pair=\"bad\",kind=\"pair\"}").unwrap_or(0.0) >= 1.0
    );
    // one healthy pair keeps the daemon healthy
    assert_eq!(d.get("/healthz").await.0, 200);
    let out = Command::new(env!("CARGO_BIN_EXE_meetsync"))
        .args(["status", "--config"])
        .arg(&env.config_path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("backing off after"), "{s}");
    assert!(
        s.contains("last error:") && s.contains("cannot connect"),
        "{s}"
    );
    assert_eq!(d.stop(Duration::from_secs(15)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_edit_in_a_two_way_pair_reaches_the_platform_within_seconds() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    let id = env.sim.create_meeting(&u.id, spec("Before", 2));
    let port = free_port();
    // a yearly schedule: only the folder watcher can explain a quick sync
    write_daemon_config(&env, &daemon_section(port, 60), "0 0 1 1 *");
    env.set_pair_keys("direction = \"two-way\"\n");
    let mut d = Daemon::start(&env.config_path, env.dir.path(), port);
    assert!(d.wait_message("READY=1", Duration::from_secs(15)));
    let file =
        collection_of(&env, &u).join(format!("{}.ics", meetsync::ics::file_stem_for_uid(&id)));
    assert!(
        poll_until(Duration::from_secs(15), || file.exists()).await,
        "{}",
        d.stderr()
    );
    // let the first job finish and its own writes settle: they do not count
    // as local changes (no second run)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = |text: &str| metric(text, "meetsync_jobs_total{pair=\"work\",result=\"ok\"}");
    let (_, text) = d.get("/metrics").await;
    assert_eq!(runs(&text), Some(1.0), "{text}\n{}", d.stderr());
    let bytes = std::fs::read(&file).unwrap();
    let mut f = meetsync::ics::props::read_event(&bytes).unwrap().fields;
    f.summary = "After, saved in the calendar".into();
    std::fs::write(
        &file,
        meetsync::ics::props::apply_fields(&bytes, &f).unwrap(),
    )
    .unwrap();
    let saved = Instant::now();
    let sim = env.sim.clone();
    let reached = poll_until(Duration::from_secs(20), || {
        sim.meeting(&id)
            .is_some_and(|m| m.topic == "After, saved in the calendar")
    })
    .await;
    assert!(
        reached,
        "the edit never reached the platform: {}",
        d.stderr()
    );
    assert!(
        saved.elapsed() < Duration::from_secs(10),
        "took {:?}",
        saved.elapsed()
    );
    // one run for the edit, none for what that run wrote
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, text) = d.get("/metrics").await;
    assert_eq!(runs(&text), Some(2.0), "{text}\n{}", d.stderr());
    assert_eq!(d.stop(Duration::from_secs(15)), Some(0));
}

/// A file saved while a job runs (after the job read the folder) is synced by
/// a run right after that job, not left for the schedule.
#[tokio::test(flavor = "multi_thread")]
async fn an_edit_saved_during_a_job_is_synced_right_after_it() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    let a = env.sim.create_meeting(&u.id, spec("A", 2));
    let b = env.sim.create_meeting(&u.id, spec("B", 3));
    let port = free_port();
    write_daemon_config(&env, &daemon_section(port, 60), "0 0 1 1 *");
    env.set_pair_keys("direction = \"two-way\"\n");
    let mut d = Daemon::start(&env.config_path, env.dir.path(), port);
    assert!(d.wait_message("READY=1", Duration::from_secs(15)));
    let path = |id: &str| {
        collection_of(&env, &u).join(format!("{}.ics", meetsync::ics::file_stem_for_uid(id)))
    };
    let edit = |id: &str, summary: &str| {
        let bytes = std::fs::read(path(id)).unwrap();
        let mut f = meetsync::ics::props::read_event(&bytes).unwrap().fields;
        f.summary = summary.into();
        std::fs::write(
            path(id),
            meetsync::ics::props::apply_fields(&bytes, &f).unwrap(),
        )
        .unwrap();
    };
    assert!(poll_until(Duration::from_secs(15), || path(&b).exists()).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // the job for A's edit is held in its push for 3 s; B is saved meanwhile
    env.sim.inject_fault(
        Route::MeetingUpdate,
        Fault::Delay(Duration::from_secs(3)),
        1,
    );
    edit(&a, "A edited");
    let sim = env.sim.clone();
    assert!(
        poll_until(Duration::from_secs(10), || sim
            .counters()
            .requests_to(Route::MeetingUpdate)
            > 0)
        .await,
        "{}",
        d.stderr()
    );
    edit(&b, "B edited during the job");
    let reached = poll_until(Duration::from_secs(20), || {
        sim.meeting(&a).is_some_and(|m| m.topic == "A edited")
            && sim
                .meeting(&b)
                .is_some_and(|m| m.topic == "B edited during the job")
    })
    .await;
    assert!(reached, "B's edit waited for the schedule: {}", d.stderr());
    assert_eq!(d.stop(Duration::from_secs(15)), Some(0));
}

/// An item problem (a local event with RDATE, which the platform cannot hold)
/// is logged once at warn level, naming the item and the reason, although
/// every run meets it again; `status` names it too.
#[tokio::test(flavor = "multi_thread")]
async fn an_item_problem_is_logged_once_at_warn_and_shown_by_status() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    env.sim.create_meeting(&u.id, spec("Known", 2));
    let port = free_port();
    write_daemon_config(&env, &daemon_section(port, 60), "* * * * * *");
    env.set_pair_keys("direction = \"two-way\"\n");
    // the calendar folder exists with the event before the daemon starts
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    crate::status::write_rdate_event(&collection_of(&env, &u));
    let mut d = Daemon::start(&env.config_path, env.dir.path(), port);
    assert!(d.wait_message("READY=1", Duration::from_secs(15)));
    let runs = |text: &str| {
        metric(text, "meetsync_jobs_total{pair=\"work\",result=\"ok\"}").unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = d.get("/metrics").await;
        if runs(&text) >= 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}\n{}", d.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = d.stderr();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("RDATE"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("planning.ics")
            && warned[0].contains("Planning with extra dates")
            && warned[0].contains("which the platform cannot hold"),
        "{log}"
    );
    // every run met it (the run summaries say so at info level)
    assert!(log.matches("1 item problem").count() >= 4, "{log}");
    let out = Command::new(env!("CARGO_BIN_EXE_meetsync"))
        .args(["status", "--config"])
        .arg(&env.config_path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.lines().any(|l| l.trim_start().starts_with("! ")
            && l.contains("planning.ics")
            && l.contains("RDATE")),
        "{s}"
    );
    assert_eq!(d.stop(Duration::from_secs(15)), Some(0));
}
