//! Interop with the real tools from PyPI: python `icalendar` and
//! `recurring-ical-events` compare the vdir with the feed (10k meetings),
//! and khal reads the synced calendars. The venv is created on first use
//! (under target/), from tests/interop/requirements.txt.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use meetsync::sim::SimOptions;

fn venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let venv = target.join("interop-venv");
    let req = root.join("tests/interop/requirements.txt");
    let stamp = venv.join("requirements.done");
    let wanted = std::fs::read_to_string(&req).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return venv;
    }
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let st = Command::new(&py)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is installed");
    assert!(st.success(), "python3 -m venv failed");
    let st = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&req)
        .status()
        .unwrap();
    assert!(st.success(), "pip install of the interop tools failed");
    std::fs::write(&stamp, wanted).unwrap();
    venv
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_meetings_match_the_feed_in_python_icalendar_and_khal_reads_them() {
    let venv = tokio::task::spawn_blocking(venv).await.unwrap();

    // 1. 10k meetings, one organizer: every UID once, every occurrence equal.
    let env = Env::with_extra(
        SimOptions::default(),
        1,
        10_000,
        "[pair.sync]\npast_days = 36500\nfuture_days = 36500\n",
    )
    .await;
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    let u = &env.users[0];
    let feed = env.dir.path().join("feed.ics");
    std::fs::write(&feed, env.sim.feed_bytes(&u.id)).unwrap();
    let coll = collection_of(&env, u);
    let start = (chrono::Utc::now() - chrono::Duration::days(90))
        .format("%Y-%m-%dT00:00:00+00:00")
        .to_string();
    let end = (chrono::Utc::now() + chrono::Duration::days(400))
        .format("%Y-%m-%dT00:00:00+00:00")
        .to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_vdir.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(&script)
        .arg(&feed)
        .arg(&coll)
        .args([&start, &end])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["files"], 10_000, "{summary}");
    assert_eq!(summary["uids"], 10_000, "{summary}");
    assert!(
        summary["occurrences"].as_u64().unwrap() > 10_000,
        "{summary}"
    );

    // 2. khal lists the meetings of a smaller demo calendar.
    let env = Env::new(SimOptions::default(), 2, 30).await;
    assert!(env.sync().await.ok());
    let conf = env.dir.path().join("khal.conf");
    std::fs::write(
        &conf,
        meetsync::demo::khal_config(&env.cal(), env.dir.path()),
    )
    .unwrap();
    let out = Command::new(venv.join("bin/khal"))
        .arg("-c")
        .arg(&conf)
        .args([
            "list",
            "--format",
            "{title}",
            "--day-format",
            "",
            "today",
            "400d",
        ])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "khal failed: {stderr}");
    assert!(
        !stderr.contains("Traceback") && !stderr.to_lowercase().contains("error"),
        "khal complained: {stderr}"
    );
    let lines = stdout.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(lines >= 20, "khal listed only {lines} events:\n{stdout}");
    // a topic from the feed shows up as khal's title
    let any_topic = env
        .sim
        .meetings_of(&env.users[0].id)
        .into_iter()
        .find(|m| m.start > chrono::Utc::now())
        .unwrap()
        .topic;
    assert!(
        stdout.contains(&any_topic),
        "`{any_topic}` not in khal's list:\n{stdout}"
    );
}
