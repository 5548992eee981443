//! The binary: exit codes, messages, `--help`.

use std::path::Path;

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

/// The demo's calendar side: a local edit becomes a PUT, a new event with an
/// attendee a POST with that invitee, and a platform rename reaches a file
/// that got a reminder locally, which stays.
#[test]
fn demo_pushes_calendar_changes_and_keeps_a_local_reminder_through_a_platform_edit() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["demo", "--organizers", "1", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{stdout}"))
            .to_string()
    };
    let cal = dir.path().join("calendars");
    // the pull steps are still there
    assert!(
        stdout.contains("→ 2 feed requests answered 304 Not Modified; files written: 0"),
        "{stdout}"
    );
    // the edited file's meeting got a PUT with the new title
    let edited = line("edited ");
    let (path, title) = edited
        .trim_start_matches("edited ")
        .trim()
        .split_once(": SUMMARY → ")
        .unwrap();
    let title = title.trim_matches('"');
    assert!(title.ends_with("(now in room 4.2)"), "{edited}");
    let id = Path::new(path).file_stem().unwrap().to_string_lossy();
    assert_eq!(
        line("PUT "),
        format!("PUT /api/v6/meeting/{id}/false  topic \"{title}\""),
        "{stdout}"
    );
    // one PUT in all: neither the reminder nor the platform's rename is sent back
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.trim().starts_with("PUT "))
            .count(),
        1,
        "{stdout}"
    );
    let text = std::fs::read_to_string(cal.join(path)).unwrap();
    assert!(text.contains(&format!("SUMMARY:{title}")), "{text}");
    // the new event became a meeting with its invitee
    assert_eq!(
        line("POST "),
        "POST /api/v6/meeting  topic \"Kick-off Q3\", invitedParticipants [zoe.mueller@example.test]",
        "{stdout}"
    );
    // the platform rename reached the file that got a reminder
    let organizer = cal.join(Path::new(path).parent().unwrap());
    let renamed: Vec<String> = ics_files(&organizer)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter(|t| t.contains("(agenda updated)"))
        .collect();
    assert_eq!(renamed.len(), 1, "{stdout}");
    assert!(
        renamed[0]
            .replace("\r\n ", "")
            .lines()
            .any(|l| l.starts_with("SUMMARY:") && l.ends_with("(agenda updated)")),
        "{}",
        renamed[0]
    );
    assert_eq!(line("platform edit arrived:"), "platform edit arrived: yes");
    // and the reminder added locally is still in it
    assert_eq!(line("reminder kept:"), "reminder kept: yes", "{stdout}");
    assert!(
        renamed[0].contains("BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n"),
        "{}",
        renamed[0]
    );
}
