//! `meetsync status` tells what the state knows: per organizer the meetings
//! in the store (linked ones in two-way pairs), the last run's result and
//! every item problem of the last run, named as `sync --once` prints it.

use crate::common::*;
use meetsync::sim::SimOptions;

fn status(env: &Env) -> String {
    let out = bin()
        .args(["status", "--config"])
        .arg(&env.config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The lines of one organizer in `status`: its line and the indented ones below.
fn block(status: &str, email: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for l in status.lines() {
        if l.starts_with("  ") && !l.starts_with("    ") {
            inside = l.contains(email);
        }
        if inside {
            out.push_str(l);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "no organizer {email}:\n{status}");
    out
}

/// A local event with RDATE occurrences, which the platform cannot hold.
pub fn write_rdate_event(dir: &std::path::Path) -> std::path::PathBuf {
    let (f, start) = event_fields("Planning with extra dates", 4);
    let rdate = chrono::DateTime::from_timestamp(start + 7 * 86_400, 0)
        .unwrap()
        .format("RDATE:%Y%m%dT%H%M%SZ")
        .to_string();
    let path = dir.join("planning.ics");
    std::fs::write(
        &path,
        meetsync::ics::props::new_event("planning-rdate@test", &f, start, &[rdate]),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn status_of_a_two_way_pair_counts_linked_meetings_and_names_item_problems() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    env.set_pair_keys("direction = \"two-way\"\n");
    let u = env.users[0].clone();
    for i in 0..5 {
        env.sim
            .create_meeting(&u.id, spec(&format!("Meeting {i}"), i + 1));
    }
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals().0, 5, "{}", r.render());
    let all = status(&env);
    assert!(all.contains("pair work (two-way"), "{all}");
    let s = block(&all, &u.email);
    assert!(
        s.contains("5 event(s) in the calendar, 5 linked to meetings"),
        "{all}"
    );
    assert!(s.contains("    last run: +5 ~0 -0"), "{all}");
    assert!(s.contains("item problems: none"), "{all}");

    write_rdate_event(&collection_of(&env, &u));
    let r = env.sync().await;
    assert_eq!(org(&r, &u.email).item_errors, 1, "{}", r.render());
    let printed = r.render();
    let note = printed
        .lines()
        .find(|l| l.contains("RDATE"))
        .expect("sync --once names the problem")
        .trim()
        .to_string();
    assert!(note.contains("planning.ics"), "{note}");
    let all = status(&env);
    assert!(all.contains("1 item problem"), "{all}");
    let s = block(&all, &u.email);
    // the local event is in the calendar but not linked
    assert!(
        s.contains("6 event(s) in the calendar, 5 linked to meetings"),
        "{all}"
    );
    // named as sync --once prints it
    assert!(s.contains(&note), "{note}\n{all}");
    assert!(!s.contains("item problems: none"), "{all}");
}

#[tokio::test]
async fn status_of_a_pull_pair_counts_per_organizer() {
    let env = Env::new(SimOptions::default(), 2, 4).await;
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    let s = status(&env);
    assert!(s.contains("pair work (pull"), "{s}");
    for u in &env.users {
        assert!(
            s.lines()
                .any(|l| l.contains(&u.email) && l.ends_with("4 meeting(s) in the store")),
            "{s}"
        );
    }
    // a second run is a 304 for both: the counts stay, the run says so
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    let s = status(&env);
    for u in &env.users {
        let b = block(&s, &u.email);
        assert!(b.contains("4 meeting(s) in the store"), "{s}");
        assert!(b.contains("    last run: not modified (304)"), "{s}");
    }
}

/// A run that did not read the feed (same body as last time) keeps the item
/// problems of the last run that did, dated.
#[tokio::test]
async fn item_problems_of_the_last_run_that_read_the_feed_stay_in_status() {
    let body = feed_of(&[
        event("good@test", "Fine"),
        event("twice@test", "First version"),
        event("twice@test", "Second version"),
    ]);
    let sf = StaticFeed::new(&body).await;
    let r = sf.sync().await;
    assert_eq!(r.organizers[0].item_errors, 2, "{}", r.render());
    let printed = r.render();
    let notes: Vec<String> = printed
        .lines()
        .filter(|l| l.contains("twice@test"))
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(notes.len(), 2, "{printed}");
    let status = |cfg: &std::path::Path| {
        let out = bin()
            .args(["status", "--config"])
            .arg(cfg)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let s = status(&sf.config_path);
    for note in &notes {
        assert!(s.contains(&format!("    {note}\n")), "{note}\n{s}");
    }
    assert!(s.contains("1 meeting(s) in the store"), "{s}");
    // the same body again: nothing is parsed, the problem is still there
    let r = sf.sync().await;
    assert!(
        r.organizers[0].notes.is_empty() && r.organizers[0].item_errors == 0,
        "{}",
        r.render()
    );
    let s = status(&sf.config_path);
    assert!(s.contains("    last run: unchanged (same content)"), "{s}");
    for note in &notes {
        assert!(
            s.lines()
                .any(|l| l.starts_with(&format!("    {note} (as of the run of "))),
            "{note}\n{s}"
        );
    }
    // a feed without the problem clears it
    sf.set(
        200,
        "text/calendar; charset=utf-8",
        &feed_of(&[event("good@test", "Fine")]),
    );
    let r = sf.sync().await;
    assert!(r.ok(), "{}", r.render());
    let s = status(&sf.config_path);
    assert!(!s.contains("twice@test"), "{s}");
    assert!(s.contains("item problems: none"), "{s}");
}
