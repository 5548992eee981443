//! Two-way pairs against the simulator: local edits, new events with
//! attendees, local deletes, platform edits and conflicts, each in one run;
//! a second run plans nothing; creates happen exactly once, even when the
//! process is killed between the POST and the commit.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use meetsync::cycle::Outcome;
use meetsync::ics::props;
use meetsync::model::{Fields, When};
use meetsync::sim::{Fault, MeetingSpec, Route, SimOptions};

/// A meeting with an agenda and one invitee.
fn spec(topic: &str, days: i64) -> MeetingSpec {
    MeetingSpec {
        agenda: format!("Agenda of {topic}"),
        invited: vec!["ann@example.test".into()],
        ..crate::common::spec(topic, days)
    }
}

const TWO_WAY: &str = "direction = \"two-way\"\n";

/// An environment whose pair is two-way with the given extra pair keys.
async fn two_way_env(pair_keys: &str) -> (Env, meetsync::sim::UserInfo, Vec<String>) {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    env.set_pair_keys(&format!("{TWO_WAY}{pair_keys}"));
    let u = env.users[0].clone();
    let ids = (0..6)
        .map(|i| {
            env.sim
                .create_meeting(&u.id, spec(&format!("Meeting {i}"), i + 1))
        })
        .collect();
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals().0, 6, "{}", r.render());
    (env, u, ids)
}

fn edit_summary(path: &std::path::Path, summary: &str) {
    let bytes = std::fs::read(path).unwrap();
    let mut f = props::read_event(&bytes).unwrap().fields;
    f.summary = summary.into();
    std::fs::write(path, props::apply_fields(&bytes, &f).unwrap()).unwrap();
}

#[tokio::test]
async fn every_kind_of_change_ends_as_the_policy_says_in_one_run() {
    let (env, u, ids) =
        two_way_env("conflict = \"keep-both\"\non_local_delete = \"delete\"\n").await;
    // a local edit
    edit_summary(&file_of(&env, &u, &ids[0]), "Edited in the calendar ✎");
    // a new local event with attendees
    let start = chrono::Utc::now().timestamp() + 3 * 86_400;
    let start = start - start % 60;
    let new = Fields {
        summary: "Created in khal".into(),
        description: "Bring ideas".into(),
        start: Some(When::Instant {
            unix: start,
            tzid: Some("Europe/Paris".into()),
        }),
        end: Some(When::Instant {
            unix: start + 2700,
            tzid: Some("Europe/Paris".into()),
        }),
        rrule: None,
        attendees: BTreeSet::from([
            "bob@example.test".to_string(),
            "zoe@example.test".to_string(),
        ]),
    };
    let coll = collection_of(&env, &u);
    write_event(
        &coll,
        "khal-new.ics",
        "khal-new-1@example.test",
        &new,
        start,
    );
    // a local delete
    std::fs::remove_file(file_of(&env, &u, &ids[2])).unwrap();
    // a platform edit
    env.sim
        .update_meeting(&ids[3], |m| m.topic = "Moved by the organizer".into());
    // the same field on both sides
    edit_summary(&file_of(&env, &u, &ids[4]), "Calendar title");
    env.sim
        .update_meeting(&ids[4], |m| m.topic = "Platform title".into());

    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    let o = org(&r, &u.email);
    assert_eq!(o.pushed, (1, 1, 1), "{}", r.render());
    assert_eq!(o.conflicts, 1, "{}", r.render());
    // the local edit reached the platform
    assert_eq!(
        env.sim.meeting(&ids[0]).unwrap().topic,
        "Edited in the calendar ✎"
    );
    // the new event is a meeting with its invitees
    let created: Vec<_> = env
        .sim
        .meetings_of(&u.id)
        .into_iter()
        .filter(|m| m.topic == "Created in khal" && !m.deleted)
        .collect();
    assert_eq!(created.len(), 1);
    let invited: BTreeSet<String> = created[0].invited.iter().map(|p| p.email.clone()).collect();
    assert_eq!(invited, new.attendees);
    assert_eq!(created[0].start.timestamp(), start);
    assert_eq!(created[0].agenda, "Bring ideas");
    // the local delete deleted the meeting
    assert!(env.sim.meeting(&ids[2]).is_none_or(|m| m.deleted));
    // the platform edit reached the calendar
    let d = std::fs::read_to_string(file_of(&env, &u, &ids[3])).unwrap();
    assert!(d.contains("SUMMARY:Moved by the organizer"), "{d}");
    // the conflict: keep-both → the platform's title, and a conflict copy with ours
    let e = std::fs::read_to_string(file_of(&env, &u, &ids[4])).unwrap();
    assert!(e.contains("SUMMARY:Platform title"), "{e}");
    assert_eq!(env.sim.meeting(&ids[4]).unwrap().topic, "Platform title");
    let copies: Vec<String> = ics_files(&coll)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter(|t| t.contains("X-MEETSYNC-CONFLICT-COPY"))
        .collect();
    assert_eq!(copies.len(), 1);
    assert!(copies[0].contains("SUMMARY:Calendar title"));
    // a second run plans nothing and writes nothing
    let before = snapshot(&env.cal());
    let c0 = env.sim.counters();
    let r2 = env.sync().await;
    assert!(quiet(&r2), "second run did something:\n{}", r2.render());
    assert_eq!(snapshot(&env.cal()), before);
    let c1 = env.sim.counters();
    assert_eq!(
        c1.requests_to(Route::MeetingUpdate),
        c0.requests_to(Route::MeetingUpdate)
    );
    assert_eq!(
        c1.requests_to(Route::MeetingCreate),
        c0.requests_to(Route::MeetingCreate)
    );
    // and a dry run shows an empty plan too
    let mut o = opts(now());
    o.dry_run = true;
    let r3 = env.sync_with(o).await;
    assert!(
        r3.organizers.iter().all(|o| o.plan.is_empty()),
        "{}",
        r3.render()
    );
}

#[tokio::test]
async fn local_wins_and_remote_wins_resolve_the_same_field_conflict() {
    for (policy, expect_remote, expect_local) in [
        ("local-wins", "Calendar title", "Calendar title"),
        ("remote-wins", "Platform title", "Platform title"),
    ] {
        let (env, u, ids) = two_way_env(&format!("conflict = \"{policy}\"\n")).await;
        let path = file_of(&env, &u, &ids[1]);
        edit_summary(&path, "Calendar title");
        env.sim.update_meeting(&ids[1], |m| {
            m.topic = "Platform title".into();
            m.agenda = "Agenda changed on the platform".into();
        });
        let r = env.sync().await;
        assert!(r.ok(), "{}", r.render());
        assert_eq!(org(&r, &u.email).conflicts, 1, "{policy}: {}", r.render());
        assert_eq!(
            env.sim.meeting(&ids[1]).unwrap().topic,
            expect_remote,
            "{policy}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("SUMMARY:{expect_local}")),
            "{policy}: {text}"
        );
        // the other field merged from the platform under both policies
        assert!(
            text.contains("Agenda changed on the platform"),
            "{policy}: {text}"
        );
        assert!(!ics_files(&collection_of(&env, &u))
            .iter()
            .any(|f| std::fs::read_to_string(f)
                .unwrap()
                .contains("CONFLICT-COPY")));
        assert!(quiet(&env.sync().await), "{policy}: second run not quiet");
    }
}

#[tokio::test]
async fn mass_deletes_and_write_storms_are_refused_in_both_directions() {
    let (env, u, ids) = two_way_env("on_local_delete = \"delete\"\nmax_remote_writes = 3\n").await;
    let coll = collection_of(&env, &u);
    // the calendar folder emptied: no meeting is deleted
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = ics_files(&coll)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(&f).unwrap();
            (f, b)
        })
        .collect();
    for (f, _) in &saved {
        std::fs::remove_file(f).unwrap();
    }
    let r = env.sync().await;
    assert_eq!(
        org(&r, &u.email).outcome,
        Outcome::Refused,
        "{}",
        r.render()
    );
    assert_eq!(env.sim.counters().requests_to(Route::MeetingDelete), 0);
    assert!(ids
        .iter()
        .all(|id| env.sim.meeting(id).is_some_and(|m| !m.deleted)));
    for (f, b) in &saved {
        std::fs::write(f, b).unwrap();
    }
    // five new local events with max_remote_writes = 3: refused, nothing sent
    for i in 0..5 {
        let start = chrono::Utc::now().timestamp() + 86_400 * (i + 1);
        let f = Fields {
            summary: format!("storm {i}"),
            start: Some(When::Instant {
                unix: start - start % 60,
                tzid: None,
            }),
            end: Some(When::Instant {
                unix: start - start % 60 + 600,
                tzid: None,
            }),
            ..Fields::default()
        };
        std::fs::write(
            coll.join(format!("storm-{i}.ics")),
            props::new_event(&format!("storm-{i}@x"), &f, start, &[]),
        )
        .unwrap();
    }
    let r = env.sync().await;
    let o = org(&r, &u.email);
    assert_eq!(o.outcome, Outcome::Refused, "{}", r.render());
    assert!(o.error.as_ref().unwrap().contains("max_remote_writes"));
    assert_eq!(env.sim.counters().requests_to(Route::MeetingCreate), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_post_and_commit_creates_exactly_one_meeting() {
    let (env, u, _) = two_way_env("").await;
    let (mut f, start) = event_fields("Created once, killed once", 5);
    f.attendees = BTreeSet::from(["kim@example.test".to_string()]);
    let coll = collection_of(&env, &u);
    write_event(&coll, "kill.ics", "kill-1@example.test", &f, start);
    // the platform creates the meeting, then takes 30 s to answer
    env.sim.inject_fault(
        Route::MeetingCreate,
        Fault::DelayAfter(Duration::from_secs(30)),
        1,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_meetsync"))
        .args(["sync", "--once", "--config"])
        .arg(&env.config_path)
        .stdout(std::fs::File::create(env.dir.path().join("killed.out")).unwrap())
        .stderr(std::fs::File::create(env.dir.path().join("killed.err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.sim.counters().requests_to(Route::MeetingCreate) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.sim.counters().requests_to(Route::MeetingCreate),
        1,
        "the POST was sent: {}{}",
        std::fs::read_to_string(env.dir.path().join("killed.out")).unwrap_or_default(),
        std::fs::read_to_string(env.dir.path().join("killed.err")).unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    env.sim.clear_faults();
    // restart: the meeting is adopted, not created again
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert!(r.render().contains("adopted"), "{}", r.render());
    let same: Vec<_> = env
        .sim
        .meetings_of(&u.id)
        .into_iter()
        .filter(|m| m.topic == "Created once, killed once" && !m.deleted)
        .collect();
    assert_eq!(same.len(), 1, "exactly one meeting");
    assert_eq!(env.sim.counters().requests_to(Route::MeetingCreate), 1);
    // the pair has settled: no new file for the adopted meeting, nothing left to do
    let files_with_topic = ics_files(&coll)
        .iter()
        .filter(|p| {
            props::read_event(&std::fs::read(p).unwrap())
                .unwrap()
                .fields
                .summary
                == "Created once, killed once"
        })
        .count();
    assert_eq!(files_with_topic, 1);
    assert!(quiet(&env.sync().await));
}

#[tokio::test]
async fn a_corrupted_local_file_is_left_alone_not_taken_for_a_delete() {
    let (env, u, ids) = two_way_env("on_local_delete = \"delete\"\n").await;
    let path = file_of(&env, &u, &ids[0]);
    std::fs::write(&path, b"this is not a calendar").unwrap();
    // a user file that happens to carry the name of a new meeting's file is not overwritten
    let new_id = env.sim.create_meeting(&u.id, spec("Newcomer", 9));
    let clash = file_of(&env, &u, &new_id);
    let other = Fields {
        summary: "Mine".into(),
        start: Some(When::Instant {
            unix: 1_900_000_000,
            tzid: None,
        }),
        end: Some(When::Instant {
            unix: 1_900_000_600,
            tzid: None,
        }),
        ..Fields::default()
    };
    std::fs::write(
        &clash,
        props::new_event("someone-else@x", &other, 1_900_000_000, &[]),
    )
    .unwrap();
    let r = env.sync().await;
    assert!(r.render().contains("not a usable event"), "{}", r.render());
    assert!(
        r.render().contains("already holds another event"),
        "{}",
        r.render()
    );
    assert!(
        env.sim.meeting(&ids[0]).is_some_and(|m| !m.deleted),
        "the meeting was deleted"
    );
    assert_eq!(env.sim.counters().requests_to(Route::MeetingDelete), 0);
    assert_eq!(std::fs::read(&path).unwrap(), b"this is not a calendar");
    let mine = props::read_event(&std::fs::read(&clash).unwrap()).unwrap();
    assert_eq!(mine.uid, "someone-else@x");
}

#[tokio::test]
async fn a_new_weekly_series_becomes_a_recurring_meeting_and_settles() {
    let (env, u, _) = two_way_env("notify_participants = true\n").await;
    let start = chrono::Utc::now().timestamp() + 2 * 86_400;
    let start = start - start % 3600;
    let f = Fields {
        summary: "Weekly sync — équipe".into(),
        start: Some(When::Instant {
            unix: start,
            tzid: Some("Europe/Paris".into()),
        }),
        end: Some(When::Instant {
            unix: start + 1800,
            tzid: Some("Europe/Paris".into()),
        }),
        rrule: Some("FREQ=WEEKLY;COUNT=6".into()),
        ..Fields::default()
    };
    let coll = collection_of(&env, &u);
    let path = write_event(&coll, "weekly.ics", "weekly-1@example.test", &f, start);
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(org(&r, &u.email).pushed, (1, 0, 0), "{}", r.render());
    let m = env
        .sim
        .meetings_of(&u.id)
        .into_iter()
        .find(|m| m.topic == f.summary)
        .unwrap();
    assert!(m.is_recurring);
    let rec = m.recurrence.clone().expect("the platform holds the rule");
    assert_eq!(rec.count, Some(6));
    // the local file still has its rule, and the pair has settled
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("RRULE:FREQ=WEEKLY;COUNT=6"), "{text}");
    assert!(quiet(&env.sync().await));
    // an edit of the series reaches the platform, with the notify flag (/true)
    let bytes = std::fs::read(&path).unwrap();
    let mut g = props::read_event(&bytes).unwrap().fields;
    g.summary = "Weekly sync — renamed".into();
    std::fs::write(&path, props::apply_fields(&bytes, &g).unwrap()).unwrap();
    let mails = env.sim.counters().mails_sent;
    let r = env.sync().await;
    assert_eq!(org(&r, &u.email).pushed, (0, 1, 0), "{}", r.render());
    assert_eq!(
        env.sim.meeting(&m.id).unwrap().topic,
        "Weekly sync — renamed"
    );
    assert_eq!(
        env.sim.counters().mails_sent,
        mails + 1,
        "notify_participants maps to /true"
    );
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("RRULE:FREQ=WEEKLY;COUNT=6"));
    assert!(quiet(&env.sync().await));
}

#[tokio::test]
async fn an_empty_feed_is_refused_in_two_way_pairs_too() {
    let (env, u, _) = two_way_env("").await;
    let before = snapshot(&env.cal());
    env.sim.inject_fault(Route::Feed, Fault::EmptyCalendar, 10);
    let r = env.sync().await;
    assert_eq!(
        org(&r, &u.email).outcome,
        Outcome::Refused,
        "{}",
        r.render()
    );
    assert_eq!(snapshot(&env.cal()), before);
}

#[tokio::test]
async fn a_job_that_died_after_writing_files_knows_them_as_its_own_on_the_next_run() {
    for policy in ["keep-both", "local-wins", "remote-wins"] {
        let (env, u, ids) = two_way_env(&format!("conflict = \"{policy}\"\n")).await;
        let coll = collection_of(&env, &u);
        // three kinds of local writes the dying job makes: a platform edit taken
        // (A), a platform edit merged into a local edit that is still to be
        // pushed (B), a new platform meeting written (C)
        env.sim
            .update_meeting(&ids[0], |m| m.topic = "A edited on the platform".into());
        edit_summary(&file_of(&env, &u, &ids[1]), "B edited in the calendar");
        env.sim
            .update_meeting(&ids[1], |m| m.agenda = "B agenda from the platform".into());
        let c = env
            .sim
            .create_meeting(&u.id, spec("C new on the platform", 9));
        env.sim
            .update_meeting(&ids[2], |m| m.topic = "D edited on the platform".into());
        refuse_link_commits(&env, true);
        let r = env.sync().await;
        assert!(
            !r.ok(),
            "{policy}: the link commit was refused: {}",
            r.render()
        );
        assert_eq!(
            summary_of(&file_of(&env, &u, &ids[0])),
            "A edited on the platform"
        );
        assert!(file_of(&env, &u, &c).exists(), "{policy}");
        let b = std::fs::read_to_string(file_of(&env, &u, &ids[1])).unwrap();
        assert!(b.contains("B agenda from the platform"), "{policy}: {b}");
        assert_eq!(
            env.sim.counters().requests_to(Route::MeetingUpdate),
            0,
            "{policy}: nothing was pushed by the dying job"
        );
        refuse_link_commits(&env, false);

        // meanwhile the platform changes them again, and the calendar's user
        // edits the new file (C, saved as a new file the way editors do) and
        // one the job replaced (D, in place)
        env.sim
            .update_meeting(&ids[0], |m| m.topic = "A edited twice".into());
        env.sim
            .update_meeting(&ids[1], |m| m.agenda = "B agenda changed again".into());
        env.sim
            .update_meeting(&c, |m| m.agenda = "C agenda from the platform".into());
        let c_path = file_of(&env, &u, &c);
        let tmp = c_path.with_extension("swp");
        std::fs::copy(&c_path, &tmp).unwrap();
        edit_summary(&tmp, "C renamed in the calendar");
        std::fs::rename(&tmp, &c_path).unwrap();
        env.sim
            .update_meeting(&ids[2], |m| m.agenda = "D agenda from the platform".into());
        edit_summary(&file_of(&env, &u, &ids[2]), "D edited in the calendar");

        let r = env.sync().await;
        assert!(r.ok(), "{policy}: {}", r.render());
        let o = org(&r, &u.email);
        assert_eq!(o.conflicts, 0, "{policy}: not a conflict: {}", r.render());
        assert_eq!(summary_of(&file_of(&env, &u, &ids[0])), "A edited twice");
        for (id, summary, agenda) in [
            (
                &c,
                "C renamed in the calendar",
                "C agenda from the platform",
            ),
            (
                &ids[2],
                "D edited in the calendar",
                "D agenda from the platform",
            ),
        ] {
            let text = std::fs::read_to_string(file_of(&env, &u, id)).unwrap();
            assert!(
                text.contains(&format!("SUMMARY:{summary}")),
                "{policy}: {text}"
            );
            assert!(text.contains(agenda), "{policy}: {text}");
            let m = env.sim.meeting(id).unwrap();
            assert_eq!(m.topic, summary, "{policy}");
            assert!(m.agenda.contains(agenda), "{policy}: {}", m.agenda);
        }
        let b = std::fs::read_to_string(file_of(&env, &u, &ids[1])).unwrap();
        assert!(
            b.contains("SUMMARY:B edited in the calendar"),
            "{policy}: {b}"
        );
        assert!(b.contains("B agenda changed again"), "{policy}: {b}");
        // the platform keeps its newer edits and gets the calendar's one
        assert_eq!(env.sim.meeting(&ids[0]).unwrap().topic, "A edited twice");
        let mb = env.sim.meeting(&ids[1]).unwrap();
        assert_eq!(mb.topic, "B edited in the calendar", "{policy}");
        assert!(
            mb.agenda.contains("B agenda changed again"),
            "{policy}: {}",
            mb.agenda
        );
        assert!(
            !ics_files(&coll).iter().any(|f| std::fs::read_to_string(f)
                .unwrap()
                .contains("CONFLICT-COPY")),
            "{policy}: no conflict copy"
        );
        assert!(quiet(&env.sync().await), "{policy}: second run not quiet");
        let st = meetsync::state::State::open(&env.state_dir()).unwrap();
        assert!(
            st.pending_links("work", &u.id).unwrap().is_empty(),
            "{policy}"
        );
    }
}

#[tokio::test]
async fn a_merge_whose_push_failed_is_pushed_later_without_a_conflict() {
    for policy in ["keep-both", "local-wins"] {
        let (env, u, ids) = two_way_env(&format!("conflict = \"{policy}\"\n")).await;
        let path = file_of(&env, &u, &ids[1]);
        edit_summary(&path, "B edited in the calendar");
        env.sim
            .update_meeting(&ids[1], |m| m.agenda = "B agenda from the platform".into());
        // the merged file is written; the platform refuses the update
        env.sim
            .inject_fault(Route::MeetingUpdate, Fault::ErrorEnvelope(-1), 100);
        let r = env.sync().await;
        assert_eq!(org(&r, &u.email).item_errors, 1, "{policy}: {}", r.render());
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("B agenda from the platform"));
        env.sim.clear_faults();
        // the platform changes the agenda again before the next run
        env.sim
            .update_meeting(&ids[1], |m| m.agenda = "B agenda changed again".into());
        let r = env.sync().await;
        assert!(r.ok(), "{policy}: {}", r.render());
        assert_eq!(org(&r, &u.email).conflicts, 0, "{policy}: {}", r.render());
        let m = env.sim.meeting(&ids[1]).unwrap();
        assert_eq!(m.topic, "B edited in the calendar", "{policy}");
        assert!(
            m.agenda.contains("B agenda changed again"),
            "{policy}: {}",
            m.agenda
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("B agenda changed again"), "{policy}: {text}");
        assert!(quiet(&env.sync().await), "{policy}: second run not quiet");
    }
}

/// An event saved by Outlook names its zone the Windows way; the meeting must
/// start at the same instant and carry the IANA zone.
#[tokio::test]
async fn an_event_with_a_windows_zone_name_becomes_a_meeting_at_the_right_time() {
    let (env, u, _) = two_way_env("").await;
    let coll = collection_of(&env, &u);
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:Microsoft Exchange Server 2010\r\n\
BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n\
BEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:040000008200E00074C5B7101A82E008000000001@outlook.test\r\n\
DTSTAMP:20261120T100000Z\r\nSUMMARY:Planned in Outlook\r\n\
DTSTART;TZID=W. Europe Standard Time:20270615T140000\r\n\
DTEND;TZID=W. Europe Standard Time:20270615T150000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    std::fs::write(coll.join("outlook.ics"), ics).unwrap();
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(org(&r, &u.email).pushed.0, 1, "{}", r.render());
    let m = env
        .sim
        .meetings_of(&u.id)
        .into_iter()
        .find(|m| m.topic == "Planned in Outlook")
        .expect("created");
    // 14:00 in Berlin in June is 12:00 UTC
    assert_eq!(m.start.to_rfc3339(), "2027-06-15T12:00:00+00:00");
    assert_eq!(m.end.to_rfc3339(), "2027-06-15T13:00:00+00:00");
    assert_eq!(m.timezone, "Europe/Berlin");
    // the file is left as Outlook wrote it, and the pair settles
    assert_eq!(
        std::fs::read_to_string(coll.join("outlook.ics")).unwrap(),
        ics
    );
    assert!(quiet(&env.sync().await));
}

/// Two jobs die in a row after writing the same event (first as a new file,
/// then replaced by a later platform edit); the platform edits it once more.
/// The link of the later job must win: no conflict, the newest edit stays.
#[tokio::test]
async fn two_jobs_dying_in_a_row_leave_the_newer_link() {
    for policy in ["keep-both", "local-wins", "remote-wins"] {
        let (env, u, _) = two_way_env(&format!("conflict = \"{policy}\"\n")).await;
        let c = env.sim.create_meeting(&u.id, spec("C v1", 9));
        refuse_link_commits(&env, true);
        assert!(!env.sync().await.ok());
        assert_eq!(summary_of(&file_of(&env, &u, &c)), "C v1");
        env.sim.update_meeting(&c, |m| m.topic = "C v2".into());
        let r = env.sync().await;
        assert!(!r.ok(), "{policy}: {}", r.render());
        assert_eq!(summary_of(&file_of(&env, &u, &c)), "C v2", "{policy}");
        // the first job's row was settled when the second started: one row,
        // the second job's
        let st = meetsync::state::State::open(&env.state_dir()).unwrap();
        let rows = st.pending_links("work", &u.id).unwrap();
        assert_eq!(rows.len(), 1, "{policy}: {rows:?}");
        let now_hash = meetsync::ics::content_hash(&std::fs::read(file_of(&env, &u, &c)).unwrap());
        assert_eq!(rows[0].file_hash, now_hash.to_vec(), "{policy}");
        drop(st);
        refuse_link_commits(&env, false);
        env.sim.update_meeting(&c, |m| m.topic = "C v3".into());
        let r = env.sync().await;
        assert!(r.ok(), "{policy}: {}", r.render());
        assert_eq!(org(&r, &u.email).conflicts, 0, "{policy}: {}", r.render());
        assert_eq!(summary_of(&file_of(&env, &u, &c)), "C v3", "{policy}");
        assert_eq!(env.sim.meeting(&c).unwrap().topic, "C v3", "{policy}");
        assert!(quiet(&env.sync().await), "{policy}: second run not quiet");
        let st = meetsync::state::State::open(&env.state_dir()).unwrap();
        assert!(
            st.pending_links("work", &u.id).unwrap().is_empty(),
            "{policy}"
        );
    }
}

/// A write that fails at its rename leaves no pending link behind: a file
/// put there later must not be taken for the job's.
#[tokio::test]
async fn a_failed_rename_forgets_the_pending_link_of_the_file_not_written() {
    let (env, u, _) = two_way_env("").await;
    let c = env.sim.create_meeting(&u.id, spec("Blocked", 4));
    // a folder where the file should go makes its rename fail
    let blocker = file_of(&env, &u, &c);
    std::fs::create_dir_all(blocker.join("inside")).unwrap();
    let r = env.sync().await;
    assert!(!r.ok(), "{}", r.render());
    let st = meetsync::state::State::open(&env.state_dir()).unwrap();
    assert!(
        st.pending_links("work", &u.id).unwrap().is_empty(),
        "{:?}",
        st.pending_links("work", &u.id)
    );
    drop(st);
    std::fs::remove_dir_all(&blocker).unwrap();
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(summary_of(&blocker), "Blocked");
    assert!(quiet(&env.sync().await));
}

/// A job dies after writing a file that is then unreadable for a while (a
/// half-saved edit): its pending link waits for the file instead of being
/// dropped, and is taken once the file reads again.
#[tokio::test]
async fn a_pending_link_waits_while_its_file_cannot_be_read() {
    let (env, u, ids) = two_way_env("conflict = \"local-wins\"\n").await;
    env.sim
        .update_meeting(&ids[0], |m| m.topic = "A from the platform".into());
    refuse_link_commits(&env, true);
    assert!(!env.sync().await.ok());
    refuse_link_commits(&env, false);
    let path = file_of(&env, &u, &ids[0]);
    let written = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMM").unwrap();
    let r = env.sync().await;
    assert_eq!(org(&r, &u.email).item_errors, 1, "{}", r.render());
    let st = meetsync::state::State::open(&env.state_dir()).unwrap();
    assert_eq!(st.pending_links("work", &u.id).unwrap().len(), 1);
    drop(st);
    // the file is whole again; the platform changed meanwhile
    std::fs::write(&path, &written).unwrap();
    env.sim
        .update_meeting(&ids[0], |m| m.topic = "A edited again".into());
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(org(&r, &u.email).conflicts, 0, "{}", r.render());
    assert_eq!(env.sim.meeting(&ids[0]).unwrap().topic, "A edited again");
    assert_eq!(summary_of(&path), "A edited again");
}

#[tokio::test]
async fn a_feed_with_revisions_and_duplicate_overrides_keeps_syncing_its_event() {
    // a weekly series exported with two revisions of its master, two of one
    // override (SEQUENCE) and a true duplicate of another override (a tie)
    let feed = |title: &str| {
        let master = |seq: u32, summary: &str| {
            format!(
                "BEGIN:VEVENT\r\nUID:series-1\r\nSEQUENCE:{seq}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20270105T100000Z\r\nDTEND:20270105T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=8\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
            )
        };
        let ovr = |rid: &str, seq: u32, summary: &str| {
            format!(
                "BEGIN:VEVENT\r\nUID:series-1\r\nSEQUENCE:{seq}\r\nRECURRENCE-ID:{rid}\r\nDTSTART:{rid}\r\nDTEND:20270301T000000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
            )
        };
        feed_of(&[
            master(1, "Old title"),
            ovr("20270112T100000Z", 2, "moved, newer"),
            master(2, title),
            ovr("20270112T100000Z", 1, "moved, older"),
            ovr("20270119T100000Z", 0, "tie one"),
            ovr("20270119T100000Z", 0, "tie two"),
            event("other-1", "Other"),
        ])
    };
    let sf = StaticFeed::new(&feed("Series")).await;
    let text = std::fs::read_to_string(&sf.config_path).unwrap();
    std::fs::write(
        &sf.config_path,
        text.replacen(
            "name = \"static\"\n",
            "name = \"static\"\ndirection = \"two-way\"\n",
            1,
        ),
    )
    .unwrap();
    let r = sf.sync().await;
    assert!(r.ok(), "{}", r.render());
    let path = sf.collection().join("series-1.ics");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("SUMMARY:Series"), "the newest master: {text}");
    assert!(
        text.contains("moved, newer") && !text.contains("moved, older"),
        "{text}"
    );
    assert!(
        text.contains("tie two") && !text.contains("tie one"),
        "{text}"
    );
    // the platform renames the series: the change arrives although the feed
    // still holds the duplicate override (reported, not a reason to wait)
    sf.set(
        200,
        "text/calendar; charset=utf-8",
        &feed("Series, renamed"),
    );
    let r = sf.sync().await;
    assert!(r.ok(), "{}", r.render());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("SUMMARY:Series, renamed"), "{text}");
    assert!(
        r.render().contains("duplicate RECURRENCE-ID"),
        "{}",
        r.render()
    );
}
