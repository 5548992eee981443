//! The pull path against the simulator: first sync, no-change resync,
//! server-side changes, safety checks, bad answers.

use crate::common::*;
use meetsync::cycle::Outcome;
use meetsync::sim::{Fault, Freq, OverrideSpec, Recurrence, Route, SimOptions};

#[tokio::test]
async fn first_sync_writes_every_meeting_once_per_organizer() {
    let wide = "[pair.sync]\npast_days = 36500\nfuture_days = 36500\n";
    let env = Env::with_extra(SimOptions::default(), 3, 25, wide).await;
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    for u in &env.users {
        let feed = env.sim.feed_bytes(&u.id);
        let mut feed_uids = master_uids(&feed);
        feed_uids.sort();
        let files = ics_files(&collection_of(&env, u));
        let mut file_uids: Vec<String> = files
            .iter()
            .flat_map(|f| master_uids(&std::fs::read(f).unwrap()))
            .collect();
        file_uids.sort();
        assert_eq!(
            files.len(),
            feed_uids.len(),
            "one file per UID for {}",
            u.email
        );
        assert_eq!(file_uids, feed_uids, "UIDs of {}", u.email);
    }
    let (added, changed, deleted) = r.totals();
    assert_eq!((changed, deleted), (0, 0));
    assert_eq!(
        added,
        env.users
            .iter()
            .map(|u| master_uids(&env.sim.feed_bytes(&u.id)).len())
            .sum::<usize>()
    );
}

#[tokio::test]
async fn no_change_resync_writes_nothing_and_uses_304() {
    let env = Env::new(SimOptions::default(), 2, 20).await;
    assert!(env.sync().await.ok());
    let before = snapshot(&env.cal());
    let c0 = env.sim.counters();
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    // the two organizers and the account admin (who has no meetings)
    assert_eq!(r.organizers.len(), 3);
    assert!(
        r.organizers
            .iter()
            .all(|o| o.outcome == Outcome::NotModified),
        "{}",
        r.render()
    );
    let c1 = env.sim.counters();
    assert_eq!(c1.feed_304 - c0.feed_304, 3);
    assert_eq!(
        snapshot(&env.cal()),
        before,
        "a no-change sync must not touch the store"
    );
}

#[tokio::test]
async fn same_body_without_validators_is_unchanged_and_writes_nothing() {
    let env = Env::new(
        SimOptions {
            validators: meetsync::sim::Validators::None,
            ..SimOptions::default()
        },
        1,
        15,
    )
    .await;
    assert!(env.sync().await.ok());
    let before = snapshot(&env.cal());
    let r = env.sync().await;
    assert_eq!(
        org(&r, &env.users[0].email).outcome,
        Outcome::Unchanged,
        "{}",
        r.render()
    );
    assert_eq!(snapshot(&env.cal()), before);
}

#[tokio::test]
async fn server_side_add_change_delete_reach_the_store() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    let ids: Vec<String> = (0..12)
        .map(|i| {
            env.sim
                .create_meeting(&u.id, spec(&format!("Meeting {i}"), i + 1))
        })
        .collect();
    let r = env.sync().await;
    assert_eq!(r.totals(), (12, 0, 0), "{}", r.render());
    env.sim
        .update_meeting(&ids[0], |m| m.topic = "Renamed ☕".into());
    env.sim
        .update_meeting(&ids[1], |m| m.agenda = "New agenda".into());
    env.sim.delete_meeting(&ids[2]);
    let new_id = env.sim.create_meeting(&u.id, spec("Brand new", 3));
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals(), (1, 2, 1), "{}", r.render());
    let coll = collection_of(&env, &u);
    let all: String = ics_files(&coll)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(all.contains("Renamed ☕"));
    assert!(all.contains("Brand new"));
    assert!(
        !all.contains("Meeting 2\r\n"),
        "deleted meeting still present"
    );
    assert_eq!(ics_files(&coll).len(), 12);
    assert!(all.contains(&new_id) || master_uids(all.as_bytes()).len() == 12);
}

#[tokio::test]
async fn recurring_overrides_timezones_and_x_properties_survive_byte_exact() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    let mut s = spec("Weekly sync — équipe", 3);
    s.start = start;
    s.end = start + chrono::Duration::minutes(45);
    s.timezone = "America/New_York".into();
    s.extra_ics = vec![
        "X-MEETSYNC-TEST:keep-me".into(),
        "X-MEETSYNC-TEST:keep-me-too".into(),
    ];
    s.recurrence = Some(Recurrence {
        freq: Freq::Weekly,
        interval: 1,
        count: Some(10),
        until: None,
        exdates: vec![start + chrono::Duration::weeks(2)],
        overrides: vec![OverrideSpec {
            original_start: start + chrono::Duration::weeks(3),
            start: start + chrono::Duration::weeks(3) + chrono::Duration::hours(2),
            end: start + chrono::Duration::weeks(3) + chrono::Duration::hours(3),
            topic: Some("Moved this week".into()),
        }],
    });
    env.sim.create_meeting(&u.id, s);
    let r = env.sync().await;
    assert_eq!(r.totals(), (1, 0, 0), "{}", r.render());
    let files = ics_files(&collection_of(&env, &u));
    assert_eq!(files.len(), 1, "master and override share one file");
    let file = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8(file.clone()).unwrap();
    for needle in [
        "RRULE:",
        "EXDATE",
        "RECURRENCE-ID",
        "Moved this week",
        "BEGIN:VTIMEZONE",
        "TZID:America/New_York",
        "X-MEETSYNC-TEST:keep-me\r\n",
        "X-MEETSYNC-TEST:keep-me-too\r\n",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert_eq!(text.matches("BEGIN:VEVENT").count(), 2);
    // every VEVENT of the file appears verbatim in the feed
    let feed = String::from_utf8(env.sim.feed_bytes(&u.id)).unwrap();
    for chunk in text.split("BEGIN:VEVENT").skip(1) {
        let ev = format!(
            "BEGIN:VEVENT{}",
            &chunk[..chunk.find("END:VEVENT").unwrap() + "END:VEVENT\r\n".len()]
        );
        assert!(feed.contains(&ev), "component not byte-exact:\n{ev}");
    }
}

#[tokio::test]
async fn hostile_uids_never_become_paths() {
    let long = "x".repeat(500);
    let uids = [
        "../escape",
        "/etc/passwd",
        "a/../../b",
        "ABC",
        "abc",
        long.as_str(),
        "nul\u{0}byte",
        ".hidden",
        "con",
        "ü@ß",
    ];
    let events: Vec<String> = uids.iter().map(|u| event(u, "hostile")).collect();
    let f = StaticFeed::new(&feed_of(&events)).await;
    let r = f.sync().await;
    assert!(r.ok(), "{}", r.render());
    let coll = f.collection();
    let files = ics_files(&coll);
    assert_eq!(files.len(), uids.len(), "{files:?}\n{}", r.render());
    for p in &files {
        assert_eq!(p.parent().unwrap(), coll);
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.len() <= 110
                && !name.contains('/')
                && !name.contains('\0')
                && !name.starts_with('.'),
            "{name}"
        );
    }
    // nothing escaped the store
    let base = f.dir.path();
    assert!(!base.join("escape").exists() && !base.join("cal/escape").exists());
    // ABC and abc did not collide, case-insensitively either
    let lower: std::collections::HashSet<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_lowercase())
        .collect();
    assert_eq!(lower.len(), files.len());
}

#[tokio::test]
async fn html_page_401_404_and_truncated_feed_fail_cleanly_and_touch_nothing() {
    let env = Env::new(SimOptions::default(), 1, 12).await;
    assert!(env.sync().await.ok());
    // make the feed change so that a successful fetch would write
    let u = env.users[0].clone();
    env.sim.create_meeting(&u.id, spec("would be added", 2));
    let before = snapshot(&env.cal());
    let cases: Vec<(Fault, &str)> = vec![
        (Fault::Html200, "HTML"),
        (Fault::Status(404), "404"),
        (Fault::Status(401), "401"),
        (Fault::Truncated, "cut off"),
        (Fault::InvalidJson, "calendar"),
    ];
    for (fault, needle) in cases {
        env.sim.inject_fault(Route::Feed, fault.clone(), 10);
        let r = env.sync().await;
        assert!(!r.ok(), "{fault:?} should fail");
        let o = org(&r, &u.email);
        assert_eq!(o.outcome, Outcome::Failed, "{fault:?}: {}", r.render());
        let msg = o.error.clone().unwrap();
        assert!(
            msg.contains(needle),
            "{fault:?}: message `{msg}` should mention {needle}"
        );
        let line = r
            .render()
            .lines()
            .find(|l| l.contains(&msg) && l.contains(&u.email))
            .map(str::to_string)
            .unwrap_or_default();
        assert!(
            line.contains(&u.email),
            "the report names the organizer: {line}"
        );
        assert!(r.render().starts_with("pair work: FAILED"), "and the pair");
        assert!(!msg.contains(&u.ics_token), "the ICS token leaked: {msg}");
        assert_eq!(snapshot(&env.cal()), before, "{fault:?} touched the store");
        env.sim.clear_faults();
    }
    // a healthy fetch afterwards picks up the change
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals(), (1, 0, 0));
}

#[tokio::test]
async fn wrong_api_key_names_the_pair_and_cause() {
    let env = Env::new(SimOptions::default(), 1, 3).await;
    std::fs::write(env.dir.path().join("api-key"), "wrong-key").unwrap();
    let r = env.sync().await;
    assert!(!r.ok());
    let e = r.error.clone().unwrap();
    assert!(e.contains("401") && e.contains("API key"), "{e}");
    assert!(!e.contains("wrong-key"));
}

#[tokio::test]
async fn empty_feed_is_refused_until_forced() {
    let env = Env::new(SimOptions::default(), 1, 8).await;
    assert!(env.sync().await.ok());
    let coll = collection_of(&env, &env.users[0]);
    let n = ics_files(&coll).len();
    assert!(n > 0);
    let before = snapshot(&env.cal());
    env.sim.inject_fault(Route::Feed, Fault::EmptyCalendar, 10);
    let r = env.sync().await;
    let o = org(&r, &env.users[0].email);
    assert_eq!(o.outcome, Outcome::Refused, "{}", r.render());
    assert!(o.error.as_ref().unwrap().contains("--force-delete"));
    assert_eq!(snapshot(&env.cal()), before);
    let mut o = opts(now());
    o.force_delete = true;
    let r = env.sync_with(o).await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals().2, n);
    assert!(ics_files(&coll).is_empty());
}

#[tokio::test]
async fn losing_most_meetings_at_once_is_refused() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    let ids: Vec<String> = (0..20)
        .map(|i| env.sim.create_meeting(&u.id, spec(&format!("m{i}"), i + 1)))
        .collect();
    assert!(env.sync().await.ok());
    for id in &ids[..12] {
        env.sim.delete_meeting(id);
    }
    let before = snapshot(&env.cal());
    let r = env.sync().await;
    assert_eq!(
        org(&r, &u.email).outcome,
        Outcome::Refused,
        "{}",
        r.render()
    );
    assert_eq!(snapshot(&env.cal()), before);
    // a small loss goes through
    let env2 = Env::new(SimOptions::default(), 1, 0).await;
    let u2 = env2.users[0].clone();
    let ids2: Vec<String> = (0..20)
        .map(|i| {
            env2.sim
                .create_meeting(&u2.id, spec(&format!("m{i}"), i + 1))
        })
        .collect();
    assert!(env2.sync().await.ok());
    env2.sim.delete_meeting(&ids2[0]);
    let r = env2.sync().await;
    assert_eq!(r.totals(), (0, 0, 1), "{}", r.render());
}

#[tokio::test]
async fn cancelled_style_deletes_like_vanish() {
    let env = Env::new(
        SimOptions {
            deleted: meetsync::sim::DeletedStyle::Cancelled,
            ..SimOptions::default()
        },
        1,
        0,
    )
    .await;
    let u = env.users[0].clone();
    let ids: Vec<String> = (0..5)
        .map(|i| env.sim.create_meeting(&u.id, spec(&format!("c{i}"), i + 1)))
        .collect();
    assert_eq!(env.sync().await.totals(), (5, 0, 0));
    env.sim.delete_meeting(&ids[4]);
    let r = env.sync().await;
    assert_eq!(r.totals(), (0, 0, 1), "{}", r.render());
    assert_eq!(ics_files(&collection_of(&env, &u)).len(), 4);
}

#[tokio::test]
async fn a_local_edit_follows_the_platform_and_the_overwritten_value_is_reported() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    let id = env.sim.create_meeting(&u.id, spec("Original", 2));
    for i in 0..3 {
        env.sim
            .create_meeting(&u.id, spec(&format!("other {i}"), 5));
    }
    assert!(env.sync().await.ok());
    let coll = collection_of(&env, &u);
    let file = ics_files(&coll)
        .into_iter()
        .find(|f| std::fs::read_to_string(f).unwrap().contains("Original"))
        .unwrap();
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("SUMMARY:Original", "SUMMARY:Edited by me")
        .replace("END:VEVENT", "X-MY-NOTE:mine\r\nEND:VEVENT");
    std::fs::write(&file, &edited).unwrap();
    // a platform change: the platform's fields follow the platform, the user's
    // own property stays, and the value overwritten is reported
    env.sim.update_meeting(&id, |m| {
        m.topic = "Changed on the platform".into();
        m.agenda = "Agenda from the platform".into();
    });
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("SUMMARY:Changed on the platform"), "{text}");
    assert!(text.contains("Agenda from the platform"), "{text}");
    assert!(text.contains("X-MY-NOTE:mine"), "{text}");
    assert!(
        r.render().contains("summary was \"Edited by me\""),
        "{}",
        r.render()
    );
    // deleting it on the platform deletes the file, now the platform's version
    env.sim.delete_meeting(&id);
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert!(!file.exists());
}

#[tokio::test]
async fn meetings_ageing_out_of_the_platform_window_are_not_deleted() {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    let u = env.users[0].clone();
    let now = now();
    let mut old = spec("Long ago", -36);
    old.end = old.start + chrono::Duration::hours(1);
    env.sim.create_meeting(&u.id, old);
    let recent_id = env.sim.create_meeting(&u.id, spec("Ten days ago", -10));
    for i in 0..3 {
        env.sim
            .create_meeting(&u.id, spec(&format!("future {i}"), 10 + i));
    }
    // first sync as of 31 days ago: everything is inside the 30-day window
    let r = env.sync_with(opts(now - 31 * 86_400)).await;
    assert_eq!(r.totals(), (5, 0, 0), "{}", r.render());
    // the platform drops meetings that ended more than 35 days ago; one recent one is deleted
    env.sim.set_options(|o| o.feed_drop_ended_days = Some(35));
    env.sim.delete_meeting(&recent_id);
    let r = env.sync_with(opts(now)).await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals(), (0, 0, 1), "{}", r.render());
    assert_eq!(org(&r, &u.email).aged_out, 1);
    let all: String = ics_files(&collection_of(&env, &u))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(all.contains("Long ago"), "aged-out meeting must stay");
    assert!(!all.contains("Ten days ago"));
}

#[tokio::test]
async fn a_failing_organizer_does_not_stop_the_others() {
    let env = Env::new(SimOptions::default(), 3, 5).await;
    env.sim.inject_fault(Route::Feed, Fault::Status(500), 2);
    // one organizer at a time: both attempts of the first fetch get the 500
    let mut o = opts(now());
    o.concurrency = 1;
    let r = env.sync_with(o).await;
    let failed = r
        .organizers
        .iter()
        .filter(|o| o.outcome == Outcome::Failed)
        .count();
    let synced = r
        .organizers
        .iter()
        .filter(|o| o.outcome == Outcome::Synced)
        .count();
    // three organizers plus the account admin
    assert_eq!((failed, synced), (1, 3), "{}", r.render());
    assert!(r.organizers[0].error.as_ref().unwrap().contains("500"));
    assert!(!r.ok());
}

#[tokio::test]
async fn dry_run_plans_and_writes_nothing() {
    let env = Env::new(SimOptions::default(), 1, 10).await;
    let mut o = opts(now());
    o.dry_run = true;
    let r = env.sync_with(o).await;
    assert!(r.ok());
    assert!(r.totals().0 > 0);
    assert!(r.render().contains("+ "), "{}", r.render());
    assert!(snapshot(&env.cal()).is_empty());
    // and the real run afterwards still adds everything
    let r2 = env.sync().await;
    assert_eq!(r2.totals().0, r.totals().0);
}

#[tokio::test]
async fn crash_leftovers_are_adopted_not_duplicated() {
    let env = Env::new(SimOptions::default(), 1, 10).await;
    assert!(env.sync().await.ok());
    let files = snapshot(&env.cal());
    // lose the state (as if the commit never happened) but keep the files
    std::fs::remove_dir_all(env.state_dir()).unwrap();
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    let after = snapshot(&env.cal());
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &files {
        assert_eq!(v.0, after[k].0);
    }
}

#[tokio::test]
async fn a_broken_component_is_skipped_and_reported_while_the_rest_syncs() {
    let good = event("good-1", "fine");
    let no_uid =
        "BEGIN:VEVENT\r\nDTSTART:20270105T100000Z\r\nSUMMARY:no uid\r\nEND:VEVENT\r\n".to_string();
    let f = StaticFeed::new(&feed_of(&[
        good.clone(),
        no_uid,
        event("good-2", "fine too"),
    ]))
    .await;
    let r = f.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals(), (2, 0, 0));
    assert_eq!(r.organizers[0].item_errors, 1);
    assert!(r.render().contains("UID"), "{}", r.render());
    assert_eq!(ics_files(&f.collection()).len(), 2);
    // an HTML error page with status 200 fails the job and keeps the store
    let before = snapshot(&f.collection());
    f.set(
        200,
        "text/html",
        b"<!DOCTYPE html><html><body>Maintenance</body></html>",
    );
    let r = f.sync().await;
    assert!(!r.ok());
    assert!(r.render().contains("HTML"), "{}", r.render());
    // the token in the feed path is redacted in the message
    assert!(
        !r.render().contains("secret-feed-token-4242"),
        "{}",
        r.render()
    );
    assert_eq!(snapshot(&f.collection()), before);
}

#[tokio::test]
async fn a_meeting_whose_component_breaks_later_is_kept_not_deleted() {
    let f = StaticFeed::new(&feed_of(&[
        event("keep-me", "fine"),
        event("other", "fine"),
    ]))
    .await;
    assert_eq!(f.sync().await.totals(), (2, 0, 0));
    // the same UID now comes with invalid UTF-8: skipped and reported, not deleted
    let mut broken = event("keep-me", "fine").into_bytes();
    let at = broken.len() - "END:VEVENT\r\n".len();
    broken.splice(at..at, b"X-BAD:\xff\xfe\r\n".iter().copied());
    let mut body = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n".to_vec();
    body.extend_from_slice(&broken);
    body.extend_from_slice(event("other", "fine").as_bytes());
    body.extend_from_slice(b"END:VCALENDAR\r\n");
    f.set(200, "text/calendar", &body);
    let r = f.sync().await;
    assert_eq!(r.totals(), (0, 0, 0), "{}", r.render());
    assert_eq!(r.organizers[0].item_errors, 1, "{}", r.render());
    assert_eq!(ics_files(&f.collection()).len(), 2);
}
