//! Several processes on one state: every organizer job runs under a claim
//! (lease) in the state, so two `sync --once`, or a manual run next to the
//! daemon, never sync one organizer at once; a holder that died is taken
//! over, and one that stalled past its lease cannot commit (fenced).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use meetsync::ics::props;
use meetsync::sim::{Fault, Route, SimOptions, UserInfo};

/// The documented exit code of a run that skipped a claimed organizer.
const EXIT_BUSY: i32 = 75;

/// A two-way pair with one organizer and `lease_secs = 2`, synced once.
async fn two_way(extra_top: &str) -> (Env, UserInfo) {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    env.set_pair_keys("direction = \"two-way\"\n");
    let u = env.users[0].clone();
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    // the organizer of the test only (not the account's admin)
    let text = text.replacen(
        "[pair.store]",
        &format!("only = [\"{}\"]\n[pair.store]", u.email),
        1,
    );
    let text = text.replacen(
        "state_dir = \"state\"\n",
        &format!("state_dir = \"state\"\nlease_secs = 2\n{extra_top}"),
        1,
    );
    std::fs::write(&env.config_path, text).unwrap();
    env.sim.create_meeting(&u.id, spec("Already there", 2));
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    (env, u)
}

/// A new calendar event with two attendees.
fn new_local_event(env: &Env, u: &UserInfo, n: usize, summary: &str) {
    let (mut f, start) = event_fields(summary, 3 + n as i64);
    f.attendees = BTreeSet::from([
        format!("ann{n}@example.test"),
        format!("bob{n}@example.test"),
    ]);
    write_event(
        &collection_of(env, u),
        &format!("local-{n}.ics"),
        &format!("local-{n}@example.test"),
        &f,
        start,
    );
}

fn sync_cmd(env: &Env, args: &[&str], log: &str) -> Command {
    let mut c = bin();
    c.args(["sync", "--once", "--config"])
        .arg(&env.config_path)
        .args(args)
        .env("RUST_LOG", "meetsync=info")
        .stdout(std::fs::File::create(env.dir.path().join(format!("{log}.out"))).unwrap())
        .stderr(std::fs::File::create(env.dir.path().join(format!("{log}.err"))).unwrap());
    c
}

fn output_of(env: &Env, log: &str) -> String {
    let read = |ext: &str| {
        std::fs::read_to_string(env.dir.path().join(format!("{log}.{ext}"))).unwrap_or_default()
    };
    format!("{}{}", read("out"), read("err"))
}

/// Wait for a child with a deadline; its exit code.
fn wait_child(child: &mut Child, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not finish in {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live meetings with this topic on the platform.
fn meetings_named(env: &Env, u: &UserInfo, topic: &str) -> usize {
    env.sim
        .meetings_of(&u.id)
        .iter()
        .filter(|m| m.topic == topic && !m.deleted)
        .count()
}

/// Calendar files with this summary, and whether any file is a conflict copy.
fn files_named(dir: &Path, summary: &str) -> usize {
    ics_files(dir)
        .iter()
        .filter(|p| {
            props::read_event(&std::fs::read(p).unwrap())
                .map(|i| i.fields.summary == summary)
                .unwrap_or(false)
        })
        .count()
}

fn conflict_copies(dir: &Path) -> Vec<PathBuf> {
    ics_files(dir)
        .into_iter()
        .filter(|p| {
            String::from_utf8_lossy(&std::fs::read(p).unwrap()).contains("X-MEETSYNC-CONFLICT-COPY")
        })
        .collect()
}

fn quiet(r: &meetsync::cycle::PairReport) -> bool {
    r.ok()
        && r.totals() == (0, 0, 0)
        && r.organizers
            .iter()
            .all(|o| o.pushed == (0, 0, 0) && o.conflicts == 0 && o.item_errors == 0)
}

fn assert_one_each(env: &Env, u: &UserInfo, summary: &str, ctx: &str) {
    let coll = collection_of(env, u);
    assert_eq!(meetings_named(env, u, summary), 1, "{ctx}: meetings");
    assert_eq!(files_named(&coll, summary), 1, "{ctx}: files");
    assert!(
        conflict_copies(&coll).is_empty(),
        "{ctx}: conflict copies {:?}",
        conflict_copies(&coll)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_syncs_started_together_create_each_meeting_once() {
    let (env, u) = two_way("").await;
    let rounds = 20;
    for n in 0..rounds {
        let summary = format!("Planned in the calendar #{n}");
        new_local_event(&env, &u, n, &summary);
        let creates = env.sim.counters().creates_total();
        // the platform takes a second to answer the POST
        env.sim.inject_fault(
            Route::MeetingCreate,
            Fault::Delay(Duration::from_secs(1)),
            1,
        );
        let mut a = sync_cmd(&env, &["--wait", "0"], &format!("r{n}a"))
            .spawn()
            .unwrap();
        let mut b = sync_cmd(&env, &["--wait", "0"], &format!("r{n}b"))
            .spawn()
            .unwrap();
        let (ca, cb) = (
            wait_child(&mut a, Duration::from_secs(60)),
            wait_child(&mut b, Duration::from_secs(60)),
        );
        let (oa, ob) = (
            output_of(&env, &format!("r{n}a")),
            output_of(&env, &format!("r{n}b")),
        );
        let ctx = format!("round {n}: exit codes {ca} and {cb}\n--- a:\n{oa}\n--- b:\n{ob}");
        assert_eq!(env.sim.counters().creates_total(), creates + 1, "{ctx}");
        assert_one_each(&env, &u, &summary, &ctx);
        // one ran, the other said why it did not, with the documented code
        let (winner, loser_out) = match (ca, cb) {
            (0, EXIT_BUSY) => (a.id(), &ob),
            (EXIT_BUSY, 0) => (b.id(), &oa),
            _ => panic!("expected one run and one skipped: {ctx}"),
        };
        let needle = format!(
            "pair work, organizer {} is being synced by process {winner} on host ",
            u.email
        );
        assert!(loser_out.contains(&needle), "{needle}\n{ctx}");
        env.sim.clear_faults();
    }
    let r = env.sync().await;
    assert!(quiet(&r), "{}", r.render());
}

/// A plain `meetsync run` with its listener on `port`.
fn start_daemon(env: &Env, port: u16) -> Child {
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text.replace(
        "name = \"work\"\n",
        "name = \"work\"\nschedule = \"0 0 1 1 *\"\n",
    );
    std::fs::write(
        &env.config_path,
        format!("{text}\n[daemon]\njitter_secs = 0\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    bin()
        .args(["run", "--config"])
        .arg(&env.config_path)
        .env("RUST_LOG", "meetsync=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join("daemon.log")).unwrap())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs recorded for the pair (the daemon's and the manual ones).
fn runs(env: &Env) -> i64 {
    let db = rusqlite::Connection::open(env.state_dir().join("state.sqlite3")).unwrap();
    db.query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

fn live_claims(env: &Env) -> usize {
    meetsync::state::State::open(&env.state_dir())
        .unwrap()
        .claims("work")
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_sync_next_to_the_daemon_creates_each_meeting_once() {
    let (env, u) = two_way("").await;
    let port = free_port();
    let mut daemon = start_daemon(&env, port);
    let log = env.dir.path().join("daemon.log");
    // the daemon's first run of the new pair
    let before = runs(&env);
    assert!(
        poll_until(Duration::from_secs(30), || runs(&env) > before).await,
        "the daemon did not run: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let client = reqwest::Client::new();
    let (mut manual_skipped, mut manual_ran) = (0, 0);
    for n in 0..20 {
        let summary = format!("Planned next to the daemon #{n}");
        let creates = env.sim.counters().creates_total();
        env.sim.inject_fault(
            Route::MeetingCreate,
            Fault::Delay(Duration::from_secs(1)),
            1,
        );
        new_local_event(&env, &u, n, &summary);
        let trigger = || async {
            let status = client
                .post(format!("http://127.0.0.1:{port}/trigger/work"))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "trigger: {status}");
        };
        let code = if n % 2 == 0 {
            // the daemon is triggered (its folder watcher sees the new file
            // too), a manual run starts at the same time
            trigger().await;
            let mut m = sync_cmd(&env, &["--wait", "0"], &format!("m{n}"))
                .spawn()
                .unwrap();
            wait_child(&mut m, Duration::from_secs(60))
        } else {
            // a manual run is sending the POST when the daemon is triggered:
            // the daemon skips the organizer
            let mut m = sync_cmd(&env, &["--wait", "0"], &format!("m{n}"))
                .spawn()
                .unwrap();
            let sim = env.sim.clone();
            let posts = sim.counters().requests_to(Route::MeetingCreate);
            assert!(
                poll_until(Duration::from_secs(30), || sim
                    .counters()
                    .requests_to(Route::MeetingCreate)
                    > posts)
                .await
            );
            trigger().await;
            let needle = format!(
                "skipped: pair work, organizer {} is being synced by process {} on host ",
                u.email,
                m.id()
            );
            assert!(
                poll_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains(&needle))
                .await,
                "round {n}: the daemon did not skip: {needle}"
            );
            wait_child(&mut m, Duration::from_secs(60))
        };
        let out = output_of(&env, &format!("m{n}"));
        match code {
            0 => manual_ran += 1,
            EXIT_BUSY => {
                manual_skipped += 1;
                assert!(
                    out.contains(&format!(
                        "pair work, organizer {} is being synced by process {} on host ",
                        u.email,
                        daemon.id()
                    )),
                    "round {n}: {out}"
                );
            }
            c => panic!("round {n}: manual run exited {c}: {out}"),
        }
        // the meeting exists once, and whoever ran last let go of the claim
        let sim = env.sim.clone();
        let uid = u.id.clone();
        let s = summary.clone();
        assert!(
            poll_until(Duration::from_secs(30), || {
                sim.meetings_of(&uid)
                    .iter()
                    .any(|m| m.topic == s && !m.deleted)
            })
            .await,
            "round {n}: never created: {out}"
        );
        assert!(
            poll_until(Duration::from_secs(30), || live_claims(&env) == 0).await,
            "round {n}: a claim stays held"
        );
        let ctx = format!(
            "round {n} (manual exit {code}): {out}\n--- daemon:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert_eq!(env.sim.counters().creates_total(), creates + 1, "{ctx}");
        assert_one_each(&env, &u, &summary, &ctx);
        env.sim.clear_faults();
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let daemon_skipped = log_text.matches("is being synced by process").count();
    assert!(manual_skipped > 0 && daemon_skipped > 0);
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(wait_child(&mut daemon, Duration::from_secs(30)), 0);
    let r = env.sync().await;
    assert!(quiet(&r), "{}", r.render());
    eprintln!(
        "manual runs: {manual_ran} ran, {manual_skipped} skipped; daemon skips: {daemon_skipped}"
    );
}

/// Starts a run whose POST the platform takes `hold` to answer (the meeting
/// exists at once), and waits until the POST arrived.
async fn run_with_held_post(env: &Env, u: &UserInfo, summary: &str, hold: Duration) -> Child {
    new_local_event(env, u, 0, summary);
    env.sim
        .inject_fault(Route::MeetingCreate, Fault::DelayAfter(hold), 1);
    let child = sync_cmd(env, &[], "holder").spawn().unwrap();
    let sim = env.sim.clone();
    assert!(
        poll_until(Duration::from_secs(30), || sim
            .counters()
            .requests_to(Route::MeetingCreate)
            == 1)
        .await,
        "the POST never came: {}",
        output_of(env, "holder")
    );
    child
}

fn links_and_intents(env: &Env, u: &UserInfo) -> (Vec<(String, Option<String>)>, usize) {
    let st = meetsync::state::State::open(&env.state_dir()).unwrap();
    let links = st
        .links("work", &u.id)
        .unwrap()
        .into_iter()
        .map(|b| (b.local_uid, b.meeting_id))
        .collect();
    (links, st.intents("work", &u.id).unwrap().len())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_holder_is_taken_over_and_the_pair_converges() {
    let (env, u) = two_way("").await;
    let summary = "Created by a run that was killed";
    let mut a = run_with_held_post(&env, &u, summary, Duration::from_secs(30)).await;
    a.kill().unwrap(); // SIGKILL, holding the claim
    a.wait().unwrap();
    env.sim.clear_faults();
    // status shows the claim the dead process left
    let st = bin()
        .args(["status", "--config"])
        .arg(&env.config_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout).to_string();
    assert!(
        text.contains(&format!(
            "being synced: organizer {} by process {}",
            u.id,
            a.id()
        )) && text.contains("that process is gone"),
        "{text}"
    );
    // the same, as if it had run on another machine (only its lease can end it)
    let db = rusqlite::Connection::open(env.state_dir().join("state.sqlite3")).unwrap();
    db.execute("UPDATE leases SET host = 'elsewhere'", [])
        .unwrap();
    let Output { status, stdout, .. } = sync_cmd(&env, &["--wait", "0"], "busy").output().unwrap();
    let out = output_of(&env, "busy") + &String::from_utf8_lossy(&stdout);
    assert_eq!(status.code(), Some(EXIT_BUSY), "{out}");
    assert!(
        out.contains(&format!(
            "pair work, organizer {} is being synced by process {} on host elsewhere since ",
            u.email,
            a.id()
        )),
        "{out}"
    );
    // a run that waits longer than lease_secs takes it over and converges
    let t = Instant::now();
    let status = sync_cmd(&env, &["--wait", "10"], "takeover")
        .status()
        .unwrap();
    let out = output_of(&env, "takeover");
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(out.contains("adopted"), "{out}");
    assert!(out.contains("taking over the claim of process"), "{out}");
    assert_one_each(&env, &u, summary, &out);
    assert_eq!(env.sim.counters().creates_total(), 1);
    let (links, intents) = links_and_intents(&env, &u);
    assert_eq!(intents, 0);
    assert!(
        links
            .iter()
            .any(|(l, m)| l == "local-0@example.test" && m.is_some()),
        "{links:?}"
    );
    assert_eq!(live_claims(&env), 0);
    let r = env.sync().await;
    assert!(quiet(&r), "{}", r.render());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_stopped_past_its_lease_cannot_commit() {
    let (env, u) = two_way("").await;
    let summary = "Created by a run that was stopped";
    let mut a = run_with_held_post(&env, &u, summary, Duration::from_secs(4)).await;
    unsafe { libc::kill(a.id() as i32, libc::SIGSTOP) };
    // another run waits for the stalled claim to expire (lease_secs = 2),
    // takes it over and adopts the meeting the stopped run created
    let t = Instant::now();
    let status = sync_cmd(&env, &["--wait", "10"], "second")
        .status()
        .unwrap();
    let second = output_of(&env, "second");
    assert_eq!(status.code(), Some(0), "{second}");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "did not wait for the lease"
    );
    assert!(second.contains("adopted"), "{second}");
    let after_second = links_and_intents(&env, &u);
    // the stopped run goes on: its commit is refused, it stops
    unsafe { libc::kill(a.id() as i32, libc::SIGCONT) };
    let code = wait_child(&mut a, Duration::from_secs(30));
    let first = output_of(&env, "holder");
    assert_eq!(code, 1, "{first}");
    assert!(first.contains("lost its claim"), "{first}");
    assert!(first.contains("taken over by process"), "{first}");
    // it wrote nothing: links and intents are what the second run left
    assert_eq!(links_and_intents(&env, &u), after_second);
    assert_one_each(&env, &u, summary, &format!("{first}\n{second}"));
    assert_eq!(env.sim.counters().creates_total(), 1);
    assert_eq!(after_second.1, 0, "intent left");
    assert_eq!(live_claims(&env), 0);
    let r = env.sync().await;
    assert!(quiet(&r), "{}", r.render());
}
