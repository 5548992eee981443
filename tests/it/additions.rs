//! What a user adds to a synced event in a calendar app — a reminder
//! (VALARM), CATEGORIES, an X- property, attendee parameters — is theirs: it
//! survives platform edits in two-way and pull pairs, creates from the
//! calendar, every conflict policy and a job that died between writing the
//! files and committing the state.

use std::path::{Path, PathBuf};

use crate::common::*;
use meetsync::ics::props;
use meetsync::sim::{MeetingSpec, Route, SimOptions, UserInfo};

const ANN: &str = "ann@example.test";
const ANN_LINE: &str = "ATTENDEE;CN=\"Ann Example\";PARTSTAT=ACCEPTED:mailto:ann@example.test";

/// Lines the user adds, as a calendar app writes them.
const ADDITIONS: [&str; 4] = [
    "CATEGORIES:Project X",
    "X-MY-NOTE:bring the slides",
    ANN_LINE,
    "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Reminder\r\nTRIGGER:-PT15M\r\nEND:VALARM",
];

fn spec_with_ann(topic: &str, days: i64) -> MeetingSpec {
    MeetingSpec {
        agenda: format!("Agenda of {topic}"),
        invited: vec![ANN.into()],
        ..crate::common::spec(topic, days)
    }
}

fn unfolded(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .replace("\r\n ", "")
        .replace("\n ", "")
}

/// Edit a synced file the way a calendar app does: Ann's attendee line gets
/// her name and answer, and the other additions go at the end of the master
/// event (the file is rewritten unfolded).
fn add_user_additions(path: &Path) {
    let text = unfolded(path);
    let mut out = String::new();
    let mut in_master = false;
    let mut master_done = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare == "BEGIN:VEVENT" && !master_done {
            in_master = true;
        }
        if in_master && bare.starts_with("ATTENDEE") && bare.ends_with(&format!("mailto:{ANN}")) {
            continue;
        }
        if in_master && bare == "END:VEVENT" {
            for a in ADDITIONS {
                out.push_str(a);
                out.push_str("\r\n");
            }
            in_master = false;
            master_done = true;
        }
        out.push_str(line);
    }
    assert!(master_done, "no VEVENT in {}", path.display());
    std::fs::write(path, out).unwrap();
}

#[track_caller]
fn assert_additions_kept(path: &Path, ctx: &str) {
    let text = unfolded(path);
    for a in ADDITIONS {
        assert!(
            text.contains(a),
            "{ctx}: {a:?} lost in {}:\n{text}",
            path.display()
        );
    }
    assert_eq!(
        text.matches(&format!("mailto:{ANN}")).count(),
        1,
        "{ctx}: Ann once:\n{text}"
    );
}

fn start_of(path: &Path) -> i64 {
    props::read_event(&std::fs::read(path).unwrap())
        .unwrap()
        .fields
        .start
        .unwrap()
        .unix()
}

/// A pair (two-way when `pair_keys` says so) with three synced meetings, Ann invited to each.
async fn env_with(pair_keys: &str) -> (Env, UserInfo, Vec<String>) {
    let env = Env::new(SimOptions::default(), 1, 0).await;
    env.set_pair_keys(pair_keys);
    let u = env.users[0].clone();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            env.sim
                .create_meeting(&u.id, spec_with_ann(&format!("Meeting {i}"), i + 1))
        })
        .collect();
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.totals().0, 3, "{}", r.render());
    (env, u, ids)
}

fn move_meeting(env: &Env, id: &str, topic: &str) {
    env.sim.update_meeting(id, |m| {
        m.topic = topic.into();
        m.start += chrono::Duration::hours(2);
        m.end += chrono::Duration::hours(2);
    });
}

#[tokio::test]
async fn additions_survive_platform_edits_in_a_two_way_pair() {
    let (env, u, ids) = env_with("direction = \"two-way\"\n").await;
    let path = file_of(&env, &u, &ids[0]);
    add_user_additions(&path);
    // the additions alone push nothing
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(org(&r, &u.email).pushed, (0, 0, 0), "{}", r.render());
    assert_eq!(env.sim.counters().requests_to(Route::MeetingUpdate), 0);

    let before = start_of(&path);
    move_meeting(&env, &ids[0], "Renamed by the organizer");
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(summary_of(&path), "Renamed by the organizer");
    assert_eq!(start_of(&path), before + 7200, "the move arrived");
    assert_additions_kept(&path, "after a platform edit");
    // and again, now that the file already holds a merged version
    move_meeting(&env, &ids[0], "Renamed twice");
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(summary_of(&path), "Renamed twice");
    assert_additions_kept(&path, "after a second platform edit");
    assert_eq!(env.sim.counters().requests_to(Route::MeetingUpdate), 0);
    assert!(quiet(&env.sync().await), "second run not quiet");
}

#[tokio::test]
async fn additions_survive_platform_moves_in_a_pull_pair_and_overwritten_values_are_reported() {
    let (env, u, ids) = env_with("").await;
    let path = file_of(&env, &u, &ids[1]);
    add_user_additions(&path);
    // the user also edits a field the platform holds: it follows the platform, reported
    let bytes = std::fs::read(&path).unwrap();
    let mut f = props::read_event(&bytes).unwrap().fields;
    f.summary = "My own title".into();
    std::fs::write(&path, props::apply_fields(&bytes, &f).unwrap()).unwrap();
    let before = start_of(&path);

    move_meeting(&env, &ids[1], "Moved by the organizer");
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(start_of(&path), before + 7200, "the move arrived");
    assert_eq!(summary_of(&path), "Moved by the organizer");
    assert_additions_kept(&path, "pull: after a move");
    let notes = org(&r, &u.email).notes.join("\n");
    assert!(
        notes.contains("summary was \"My own title\"") && notes.contains("edited locally"),
        "the overwritten value is reported: {notes}"
    );
    // a later platform change: the file is ours since the last run, the additions still stay
    move_meeting(&env, &ids[1], "Moved again");
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(summary_of(&path), "Moved again");
    assert_eq!(start_of(&path), before + 4 * 3600);
    assert_additions_kept(&path, "pull: after a second move");
    let notes = org(&r, &u.email).notes.join("\n");
    assert!(!notes.contains("edited locally"), "{notes}");
    // nothing changed: nothing written
    let snap = snapshot(&env.cal());
    let r = env.sync().await;
    assert!(r.ok() && r.totals() == (0, 0, 0), "{}", r.render());
    assert_eq!(snapshot(&env.cal()), snap);
}

#[tokio::test]
async fn additions_of_an_event_made_in_the_calendar_survive_its_create_and_later_edits() {
    let (env, u, _) = env_with("direction = \"two-way\"\n").await;
    let coll = collection_of(&env, &u);
    let (mut f, start) = event_fields("Made in khal", 4);
    f.attendees = [ANN.to_string(), "bob@example.test".to_string()].into();
    let path = write_event(
        &coll,
        "khal-made.ics",
        "khal-made-1@example.test",
        &f,
        start,
    );
    add_user_additions(&path);
    let made = std::fs::read(&path).unwrap();

    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(org(&r, &u.email).pushed, (1, 0, 0), "{}", r.render());
    let created: Vec<_> = env
        .sim
        .meetings_of(&u.id)
        .into_iter()
        .filter(|m| m.topic == "Made in khal" && !m.deleted)
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].invited.len(), 2);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        made,
        "the create leaves the file alone"
    );
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_additions_kept(&path, "after the create settled");

    move_meeting(
        &env,
        &created[0].id,
        "Made in khal, renamed on the platform",
    );
    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(summary_of(&path), "Made in khal, renamed on the platform");
    assert_eq!(start_of(&path), start + 7200);
    assert_additions_kept(&path, "created, then edited on the platform");
    let text = unfolded(&path);
    assert!(text.contains("UID:khal-made-1@example.test"), "{text}");
    assert!(text.contains("bob@example.test"), "{text}");
    assert!(quiet(&env.sync().await), "not quiet");
    assert_eq!(env.sim.counters().requests_to(Route::MeetingCreate), 1);
}

#[tokio::test]
async fn additions_survive_each_conflict_policy() {
    for policy in ["keep-both", "remote-wins", "local-wins"] {
        let (env, u, ids) = env_with(&format!(
            "direction = \"two-way\"\nconflict = \"{policy}\"\n"
        ))
        .await;
        let path = file_of(&env, &u, &ids[2]);
        add_user_additions(&path);
        let bytes = std::fs::read(&path).unwrap();
        let mut f = props::read_event(&bytes).unwrap().fields;
        f.summary = "Calendar title".into();
        std::fs::write(&path, props::apply_fields(&bytes, &f).unwrap()).unwrap();
        env.sim.update_meeting(&ids[2], |m| {
            m.topic = "Platform title".into();
            m.agenda = "Agenda from the platform".into();
        });
        let r = env.sync().await;
        assert!(r.ok(), "{policy}: {}", r.render());
        assert_eq!(org(&r, &u.email).conflicts, 1, "{policy}: {}", r.render());
        let want = if policy == "local-wins" {
            "Calendar title"
        } else {
            "Platform title"
        };
        assert_eq!(summary_of(&path), want, "{policy}");
        assert!(
            unfolded(&path).contains("Agenda from the platform"),
            "{policy}"
        );
        assert_additions_kept(&path, policy);
        let copies: Vec<PathBuf> = ics_files(&collection_of(&env, &u))
            .into_iter()
            .filter(|p| unfolded(p).contains("X-MEETSYNC-CONFLICT-COPY"))
            .collect();
        if policy == "keep-both" {
            assert_eq!(copies.len(), 1);
            assert_eq!(summary_of(&copies[0]), "Calendar title");
            assert_additions_kept(&copies[0], "the conflict copy");
        } else {
            assert!(copies.is_empty(), "{policy}");
        }
        assert!(quiet(&env.sync().await), "{policy}: not quiet");
    }
}

#[tokio::test]
async fn additions_survive_a_job_that_died_between_writing_and_committing() {
    for keys in ["direction = \"two-way\"\n", ""] {
        let (env, u, ids) = env_with(keys).await;
        let path = file_of(&env, &u, &ids[0]);
        add_user_additions(&path);
        let r = env.sync().await;
        assert!(r.ok(), "{keys}: {}", r.render());

        move_meeting(&env, &ids[0], "Moved before the crash");
        refuse_link_commits(&env, true);
        let r = env.sync().await;
        assert!(!r.ok(), "{keys}: the commit was refused: {}", r.render());
        assert_eq!(summary_of(&path), "Moved before the crash", "{keys}");
        assert_additions_kept(&path, "written by the dying job");
        refuse_link_commits(&env, false);

        move_meeting(&env, &ids[0], "Moved after the crash");
        let r = env.sync().await;
        assert!(r.ok(), "{keys}: {}", r.render());
        assert_eq!(org(&r, &u.email).conflicts, 0, "{keys}: {}", r.render());
        assert_eq!(summary_of(&path), "Moved after the crash", "{keys}");
        assert_additions_kept(&path, "after recovery");
        let notes = org(&r, &u.email).notes.join("\n");
        assert!(!notes.contains("edited locally"), "{keys}: {notes}");
        assert!(
            ics_files(&collection_of(&env, &u))
                .iter()
                .all(|p| !unfolded(p).contains("CONFLICT-COPY")),
            "{keys}"
        );
        assert_eq!(
            env.sim.counters().requests_to(Route::MeetingUpdate),
            0,
            "{keys}"
        );
        let r = env.sync().await;
        assert!(r.ok() && r.totals() == (0, 0, 0), "{keys}: {}", r.render());
    }
}

#[tokio::test]
async fn a_new_file_of_a_killed_pull_run_that_the_user_edited_is_adopted_with_its_additions() {
    let (env, u, _) = env_with("").await;
    let id = env
        .sim
        .create_meeting(&u.id, spec_with_ann("New on the platform", 6));
    refuse_link_commits(&env, true);
    let r = env.sync().await;
    assert!(!r.ok(), "the commit was refused: {}", r.render());
    refuse_link_commits(&env, false);
    let path = file_of(&env, &u, &id);
    assert!(path.exists(), "the dying run wrote the file");
    add_user_additions(&path);
    env.sim
        .update_meeting(&id, |m| m.topic = "Renamed meanwhile".into());

    let r = env.sync().await;
    assert!(r.ok(), "{}", r.render());
    assert_eq!(summary_of(&path), "Renamed meanwhile");
    assert_additions_kept(&path, "adopted");
    let notes = org(&r, &u.email).notes.join("\n");
    assert!(!notes.contains("exists with other content"), "{notes}");
    let r = env.sync().await;
    assert!(
        r.ok() && r.totals() == (0, 0, 0),
        "adopted, so quiet: {}",
        r.render()
    );
}
