//! The binary: exit codes, messages, `--help`.

use crate::common::*;
use meetsync::sim::SimOptions;

#[test]
fn check_config_reports_every_problem_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[[pair]]\nname = \"a\"\nschedul = \"@hourly\"\n[pair.platform]\nbase_url = \"https://h\"\naccount_id = \"x1\"\n[pair.store]\npath = \"c\"\nlayout = \"flat\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:1: error: unknown key `schedul`"),
        "{err}"
    );
    assert!(err.contains("has no API key"), "{err}");
    assert!(
        err.contains("bad.toml:9:10: error: unknown layout `flat`"),
        "{err}"
    );
    let out = bin()
        .args(["sync", "--once", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn help_on_every_command() {
    for cmd in [
        vec!["--help"],
        vec!["sync", "--help"],
        vec!["check-config", "--help"],
        vec!["demo", "--help"],
        vec!["sim", "--help"],
        vec!["status", "--help"],
    ] {
        let out = bin().args(&cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{cmd:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_once_prints_a_summary_and_exits_by_outcome() {
    let env = Env::new(SimOptions::default(), 2, 6).await;
    let cfg = env.config_path.clone();
    let run = move |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                bin().args(args).arg("--config").arg(&cfg).output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = run(&["sync", "--once"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pair work: ok"), "{stdout}");
    let out = run(&["sync", "--once"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("3 not modified (304)"), "{stdout}");
    let out = run(&["status"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("last run:") && stdout.contains("ok"),
        "{stdout}"
    );
    // a failing platform: exit 1, the secret is not printed
    env.sim.inject_fault(
        meetsync::sim::Route::AdminLookup,
        meetsync::sim::Fault::Status(503),
        100,
    );
    let out = run(&["sync", "--once", "-vvv"]).await;
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("503"), "{all}");
    assert!(!all.contains(API_KEY), "API key leaked:\n{all}");
    for u in &env.users {
        assert!(!all.contains(&u.ics_token), "ICS token leaked");
    }
}

#[test]
fn unknown_pair_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/meetsync.example.toml");
    let out = bin()
        .args(["sync", "--once", "--pair", "nope", "--config"])
        .arg(&p)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pair named `nope`"));
}

/// Before the daemon ever ran, `status` computes the next run from the
/// schedule, in the pair's `schedule_timezone`.
#[tokio::test]
async fn status_before_the_daemon_ran_reads_the_schedule_in_its_zone() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    env.set_pair_keys("schedule = \"30 9 * * *\"\nschedule_timezone = \"Asia/Tokyo\"\n");
    let out = bin()
        .args(["status", "--config"])
        .arg(&env.config_path)
        .env("TZ", "America/Los_Angeles")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("09:30 JST by the schedule `30 9 * * *` (the daemon has not run yet)"),
        "{stdout}"
    );
}
