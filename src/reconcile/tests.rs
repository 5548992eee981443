//! Plans of the classic cases (snapshots), and a property test that runs
//! random edits on both sides through plan → in-memory execution.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;
use crate::model::When;

fn fields(summary: &str, start: i64) -> Fields {
    Fields {
        summary: summary.into(),
        description: String::new(),
        start: Some(When::Instant {
            unix: start,
            tzid: None,
        }),
        end: Some(When::Instant {
            unix: start + 1800,
            tzid: None,
        }),
        rrule: None,
        attendees: BTreeSet::new(),
    }
}

fn hash_of(f: &Fields) -> Hash {
    Sha256::digest(serde_json::to_vec(f).unwrap()).into()
}

fn remote(id: &str, f: &Fields) -> Remote {
    Remote {
        uid: id.into(),
        meeting_id: Some(id.into()),
        fields: f.clone(),
        hash: hash_of(f),
        last_end: Some(2_000_000_000),
    }
}

fn local(uid: &str, f: &Fields) -> Local {
    Local {
        uid: uid.into(),
        file: format!("{uid}.ics"),
        fields: f.clone(),
        hash: hash_of(f),
    }
}

fn base(uid: &str, id: &str, f: &Fields) -> Base {
    Base {
        local_uid: uid.into(),
        remote_uid: Some(id.into()),
        meeting_id: Some(id.into()),
        file: format!("{uid}.ics"),
        fields: f.clone(),
        local_hash: hash_of(f).to_vec(),
        remote_hash: hash_of(f).to_vec(),
        last_end: Some(2_000_000_000),
        tombstone: false,
    }
}

fn policy(c: ConflictPolicy) -> Policy {
    Policy {
        conflict: c,
        delete_remote: true,
        aged_before: 1_000_000_000,
    }
}

const ID1: &str = "5e945c36b863b82cefdddf54";
const ID2: &str = "5e945c36b863b82cefdddf55";

fn one_base() -> (Fields, Base) {
    let f = fields("Standup", 1_800_000_000);
    let b = base(ID1, ID1, &f);
    (f, b)
}

#[test]
fn nothing_changed_plans_nothing() {
    let (f, b) = one_base();
    let p = plan(
        Some(&[remote(ID1, &f)]),
        &[local(ID1, &f)],
        std::slice::from_ref(&b),
        &[],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert!(p.is_empty(), "{}", p.render());
    let p = plan(
        None,
        &[local(ID1, &f)],
        &[b],
        &[],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert!(p.is_empty());
}

#[test]
fn each_side_added_changed_deleted() {
    let (f, b) = one_base();
    let mut out = String::new();
    let pol = policy(ConflictPolicy::RemoteWins);
    // added
    let new_remote = fields("Planning", 1_800_100_000);
    let new_local = fields("Lunch with Zoë", 1_800_200_000);
    out += "## added on the platform, added in the calendar\n";
    out += &plan(
        Some(&[remote(ID1, &f), remote(ID2, &new_remote)]),
        &[local(ID1, &f), local("khal-1@example", &new_local)],
        std::slice::from_ref(&b),
        &[],
        &pol,
    )
    .render();
    // changed
    let mut rf = f.clone();
    rf.summary = "Standup (moved)".into();
    out += "## changed on the platform\n";
    out += &plan(
        Some(&[remote(ID1, &rf)]),
        &[local(ID1, &f)],
        std::slice::from_ref(&b),
        &[],
        &pol,
    )
    .render();
    let mut lf = f.clone();
    lf.description = "Agenda from the calendar".into();
    out += "## changed in the calendar (feed not modified)\n";
    out += &plan(
        None,
        &[local(ID1, &lf)],
        std::slice::from_ref(&b),
        &[],
        &pol,
    )
    .render();
    // deleted
    out += "## deleted on the platform\n";
    out += &plan(
        Some(&[]),
        &[local(ID1, &f)],
        std::slice::from_ref(&b),
        &[],
        &pol,
    )
    .render();
    out += "## deleted in the calendar, on_local_delete = delete\n";
    out += &plan(
        Some(&[remote(ID1, &f)]),
        &[],
        std::slice::from_ref(&b),
        &[],
        &pol,
    )
    .render();
    out += "## deleted in the calendar, on_local_delete = ignore\n";
    let ignore = Policy {
        delete_remote: false,
        ..pol.clone()
    };
    out += &plan(
        Some(&[remote(ID1, &f)]),
        &[],
        std::slice::from_ref(&b),
        &[],
        &ignore,
    )
    .render();
    out += "## both deleted\n";
    out += &plan(Some(&[]), &[], &[b], &[], &pol).render();
    insta::assert_snapshot!(out);
}

#[test]
fn both_changed_different_fields_merge() {
    let (f, b) = one_base();
    let mut rf = f.clone();
    rf.summary = "Standup — new room".into();
    let mut lf = f.clone();
    lf.description = "Bring the numbers".into();
    lf.attendees.insert("zoe@example.test".into());
    let p = plan(
        Some(&[remote(ID1, &rf)]),
        &[local(ID1, &lf)],
        &[b],
        &[],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert_eq!(p.conflicts(), 0);
    let s = &p.steps[0];
    assert_eq!(s.local, LocalOp::Transplant(vec![Field::Summary]));
    match &s.remote {
        RemoteOp::Update { fields, changed } => {
            assert_eq!(changed, &vec![Field::Description, Field::Attendees]);
            assert_eq!(fields.summary, "Standup — new room");
            assert_eq!(fields.description, "Bring the numbers");
        }
        other => panic!("{other:?}"),
    }
    insta::assert_snapshot!(p.render());
}

#[test]
fn both_changed_the_same_field_under_each_policy() {
    let (f, b) = one_base();
    let mut rf = f.clone();
    rf.summary = "Platform title".into();
    rf.description = "same on both".into();
    let mut lf = f.clone();
    lf.summary = "Calendar title".into();
    lf.description = "same on both".into();
    let mut out = String::new();
    for c in [
        ConflictPolicy::RemoteWins,
        ConflictPolicy::LocalWins,
        ConflictPolicy::KeepBoth,
    ] {
        let p = plan(
            Some(&[remote(ID1, &rf)]),
            &[local(ID1, &lf)],
            std::slice::from_ref(&b),
            &[],
            &policy(c),
        );
        assert_eq!(p.conflicts(), 1, "always reported");
        let s = &p.steps[0];
        assert_eq!(s.conflict.as_ref().unwrap().fields, vec![Field::Summary]);
        match c {
            ConflictPolicy::LocalWins => {
                assert_eq!(s.local, LocalOp::None);
                assert!(
                    matches!(&s.remote, RemoteOp::Update { fields, .. } if fields.summary == "Calendar title")
                );
            }
            _ => {
                assert_eq!(s.local, LocalOp::Transplant(vec![Field::Summary]));
                assert_eq!(s.remote, RemoteOp::None);
                assert_eq!(s.keep_local_copy, c == ConflictPolicy::KeepBoth);
            }
        }
        out += &format!("## {}\n{}", c.name(), p.render());
    }
    insta::assert_snapshot!(out);
}

#[test]
fn delete_versus_change_under_each_policy() {
    let (f, b) = one_base();
    let mut changed = f.clone();
    changed.summary = "Edited".into();
    let mut out = String::new();
    for c in [
        ConflictPolicy::RemoteWins,
        ConflictPolicy::LocalWins,
        ConflictPolicy::KeepBoth,
    ] {
        out += &format!("## {}: deleted on the platform, edited locally\n", c.name());
        out += &plan(
            Some(&[]),
            &[local(ID1, &changed)],
            std::slice::from_ref(&b),
            &[],
            &policy(c),
        )
        .render();
        out += &format!("## {}: deleted locally, edited on the platform\n", c.name());
        out += &plan(
            Some(&[remote(ID1, &changed)]),
            &[],
            std::slice::from_ref(&b),
            &[],
            &policy(c),
        )
        .render();
    }
    insta::assert_snapshot!(out);
}

#[test]
fn a_platform_delete_takes_an_event_whose_only_local_change_is_an_addition() {
    let (f, b) = one_base();
    // an alarm added in the calendar: other bytes, same synced fields
    let mut l = local(ID1, &f);
    l.hash = [7; 32];
    for c in [
        ConflictPolicy::RemoteWins,
        ConflictPolicy::LocalWins,
        ConflictPolicy::KeepBoth,
    ] {
        let p = plan(
            Some(&[]),
            std::slice::from_ref(&l),
            std::slice::from_ref(&b),
            &[],
            &policy(c),
        );
        let s = &p.steps[0];
        assert_eq!(s.conflict, None, "{}", c.name());
        assert_eq!(s.local, LocalOp::Delete, "{}", c.name());
        assert_eq!(s.remote, RemoteOp::None, "{}", c.name());
        assert!(!s.keep_local_copy);
    }
}

#[test]
fn a_local_delete_is_no_conflict_when_the_platform_only_re_rendered_the_meeting() {
    let (f, b) = one_base();
    // same fields, other bytes (e.g. the feed switched line ends)
    let mut r = remote(ID1, &f);
    r.hash = [7; 32];
    for c in [ConflictPolicy::KeepBoth, ConflictPolicy::RemoteWins] {
        let p = plan(
            Some(std::slice::from_ref(&r)),
            &[],
            std::slice::from_ref(&b),
            &[],
            &policy(c),
        );
        assert_eq!(p.conflicts(), 0, "{}", p.render());
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].remote, RemoteOp::Delete, "{}", p.render());
        assert_eq!(p.steps[0].local, LocalOp::None);
    }
    // with on_local_delete = "ignore" the delete is remembered, not undone
    let mut keep = policy(ConflictPolicy::KeepBoth);
    keep.delete_remote = false;
    let p = plan(
        Some(std::slice::from_ref(&r)),
        &[],
        std::slice::from_ref(&b),
        &[],
        &keep,
    );
    assert_eq!(p.conflicts(), 0, "{}", p.render());
    assert_eq!(p.steps[0].base, BaseOp::Tombstone, "{}", p.render());
}

#[test]
fn a_pending_create_is_adopted_not_sent_twice() {
    let f = fields("Created before the crash", 1_800_000_000);
    let intent = Intent {
        local_uid: "new@khal".into(),
        summary: f.summary.clone(),
        start: f.start.as_ref().map(|w| w.unix()),
    };
    let p = plan(
        Some(&[remote(ID2, &f)]),
        &[local("new@khal", &f)],
        &[],
        &[intent],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert_eq!(p.steps.len(), 1, "{}", p.render());
    assert!(p.steps[0].adopted);
    assert_eq!(p.steps[0].remote, RemoteOp::None);
    assert_eq!(p.steps[0].local, LocalOp::None);
    assert_eq!(p.remote_writes(), 0);
    insta::assert_snapshot!(p.render());
}

#[test]
fn aged_out_meetings_are_forgotten_not_deleted() {
    let f = fields("Long ago", 900_000_000);
    let mut b = base(ID1, ID1, &f);
    b.last_end = Some(900_001_800);
    let p = plan(
        Some(&[]),
        &[local(ID1, &f)],
        &[b],
        &[],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert_eq!(p.steps[0].local, LocalOp::None);
    assert_eq!(p.steps[0].base, BaseOp::Forget);
    // and an old meeting new in the feed is not added
    let mut r = remote(ID2, &f);
    r.last_end = Some(900_001_800);
    let p = plan(
        Some(&[r]),
        &[],
        &[],
        &[],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert!(p.is_empty());
}

#[test]
fn same_uid_on_both_sides_without_base_links_or_conflicts() {
    let f = fields("Shared", 1_800_000_000);
    let p = plan(
        Some(&[remote(ID1, &f)]),
        &[local(ID1, &f)],
        &[],
        &[],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert_eq!(p.steps[0].base, BaseOp::Set(f.clone()));
    assert_eq!(p.remote_writes(), 0);
    let mut other = f.clone();
    other.summary = "Different".into();
    let p = plan(
        Some(&[remote(ID1, &f)]),
        &[local(ID1, &other)],
        &[],
        &[],
        &policy(ConflictPolicy::RemoteWins),
    );
    assert_eq!(p.conflicts(), 1);
    assert_eq!(p.steps[0].local, LocalOp::Transplant(vec![Field::Summary]));
}

// ---------------------------------------------------------------------------
// Property test: random edits on both sides, one sync, invariants.

#[derive(Debug, Clone)]
enum Edit {
    AddLocal(u8),
    AddRemote(u8),
    ChangeLocal(usize, Field, u8),
    ChangeRemote(usize, Field, u8),
    DeleteLocal(usize),
    DeleteRemote(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let field = prop_oneof![
        Just(Field::Summary),
        Just(Field::Description),
        Just(Field::Start),
        Just(Field::Attendees)
    ];
    prop_oneof![
        any::<u8>().prop_map(Edit::AddLocal),
        any::<u8>().prop_map(Edit::AddRemote),
        (0..8usize, field.clone(), any::<u8>()).prop_map(|(i, f, v)| Edit::ChangeLocal(i, f, v)),
        (0..8usize, field, any::<u8>()).prop_map(|(i, f, v)| Edit::ChangeRemote(i, f, v)),
        (0..8usize).prop_map(Edit::DeleteLocal),
        (0..8usize).prop_map(Edit::DeleteRemote),
    ]
}

fn set_field(f: &mut Fields, which: Field, v: u8) {
    match which {
        Field::Summary => f.summary = format!("summary {v}"),
        Field::Description => f.description = format!("description {v}"),
        Field::Start => {
            f.start = Some(When::Instant {
                unix: 1_800_000_000 + i64::from(v) * 3600,
                tzid: None,
            })
        }
        Field::Attendees => {
            f.attendees.insert(format!("p{v}@example.test"));
        }
        _ => {}
    }
}

/// Both sides and the state, in memory, executing plans the way the cycle does.
#[derive(Default, Clone)]
struct World {
    calendar: BTreeMap<String, Fields>,
    platform: BTreeMap<String, Fields>,
    base: Vec<Base>,
    next_id: u32,
}

impl World {
    fn remotes(&self) -> Vec<Remote> {
        self.platform.iter().map(|(id, f)| remote(id, f)).collect()
    }

    fn locals(&self) -> Vec<Local> {
        self.calendar.iter().map(|(u, f)| local(u, f)).collect()
    }

    fn sync(&mut self, pol: &Policy) -> Plan {
        let p = plan(Some(&self.remotes()), &self.locals(), &self.base, &[], pol);
        let mut new_base: Vec<Base> = Vec::new();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for s in &p.steps {
            let luid = s.local_uid.clone().unwrap();
            touched.insert(luid.clone());
            let mut mid = s.meeting_id.clone();
            let remote_now = mid.as_ref().and_then(|m| self.platform.get(m)).cloned();
            match &s.local {
                LocalOp::None => {}
                LocalOp::Create | LocalOp::Replace => {
                    self.calendar
                        .insert(luid.clone(), remote_now.clone().unwrap());
                }
                LocalOp::Transplant(fs) => {
                    let r = remote_now.clone().unwrap();
                    let l = self.calendar.get_mut(&luid).unwrap();
                    for f in fs {
                        l.take(&r, *f);
                    }
                }
                LocalOp::Delete => {
                    self.calendar.remove(&luid);
                }
            }
            match &s.remote {
                RemoteOp::None => {}
                RemoteOp::Create(f) => {
                    self.next_id += 1;
                    let id = format!("{:024x}", 0xabc000 + self.next_id);
                    self.platform.insert(id.clone(), f.clone());
                    mid = Some(id);
                }
                RemoteOp::Update { fields, .. } => {
                    self.platform.insert(mid.clone().unwrap(), fields.clone());
                }
                RemoteOp::Delete => {
                    self.platform.remove(mid.as_ref().unwrap());
                }
            }
            let old = self.base.iter().find(|b| b.local_uid == luid).cloned();
            match &s.base {
                BaseOp::Keep => {
                    if let Some(b) = old {
                        new_base.push(b);
                    }
                }
                BaseOp::Forget => {}
                BaseOp::Tombstone => {
                    let mut b = old.unwrap();
                    b.tombstone = true;
                    new_base.push(b);
                }
                BaseOp::Set(f) => {
                    let lf = self.calendar.get(&luid).cloned().unwrap_or_default();
                    let rf = mid
                        .as_ref()
                        .and_then(|m| self.platform.get(m))
                        .cloned()
                        .unwrap_or_default();
                    new_base.push(Base {
                        local_uid: luid.clone(),
                        remote_uid: mid.clone(),
                        meeting_id: mid.clone(),
                        file: format!("{luid}.ics"),
                        fields: f.clone(),
                        local_hash: hash_of(&lf).to_vec(),
                        remote_hash: hash_of(&rf).to_vec(),
                        last_end: Some(2_000_000_000),
                        tombstone: false,
                    });
                }
            }
        }
        for b in &self.base {
            if !touched.contains(&b.local_uid) {
                new_base.push(b.clone());
            }
        }
        self.base = new_base;
        p
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_edits_converge_without_loss_or_duplicates(
        initial in 1usize..6,
        edits in proptest::collection::vec(edit(), 0..12),
        conflict in prop_oneof![Just(ConflictPolicy::RemoteWins), Just(ConflictPolicy::LocalWins), Just(ConflictPolicy::KeepBoth)],
    ) {
        let pol = policy(conflict);
        let mut w = World::default();
        for i in 0..initial {
            let f = fields(&format!("meeting {i}"), 1_800_000_000 + i as i64 * 86_400);
            w.platform.insert(format!("{:024x}", 0x100 + i), f);
        }
        w.sync(&pol);
        prop_assert!(w.sync(&pol).is_empty(), "settled after the first sync");
        let before = w.clone();
        // apply the edits to both sides
        let mut local_changed: BTreeMap<String, BTreeMap<Field, Fields>> = BTreeMap::new();
        let mut remote_changed: BTreeMap<String, BTreeMap<Field, Fields>> = BTreeMap::new();
        for e in &edits {
            match e {
                // adding a UID that exists already adds nothing (it would replace an edit made
                // earlier in this list, which is not an edit the sync could lose)
                Edit::AddLocal(v) => { w.calendar.entry(format!("local-{v}@khal")).or_insert_with(|| fields(&format!("new local {v}"), 1_800_000_000)); }
                Edit::AddRemote(v) => { w.platform.entry(format!("{:024x}", 0xf00 + *v as u32)).or_insert_with(|| fields(&format!("new remote {v}"), 1_800_000_000)); }
                Edit::ChangeLocal(i, f, v) => {
                    let keys: Vec<String> = w.calendar.keys().cloned().collect();
                    if let Some(k) = keys.get(i % keys.len().max(1)) {
                        let x = w.calendar.get_mut(k).unwrap();
                        set_field(x, *f, *v);
                        local_changed.entry(k.clone()).or_default().insert(*f, x.clone());
                    }
                }
                Edit::ChangeRemote(i, f, v) => {
                    let keys: Vec<String> = w.platform.keys().cloned().collect();
                    if let Some(k) = keys.get(i % keys.len().max(1)) {
                        let x = w.platform.get_mut(k).unwrap();
                        set_field(x, *f, *v);
                        remote_changed.entry(k.clone()).or_default().insert(*f, x.clone());
                    }
                }
                Edit::DeleteLocal(i) => {
                    let keys: Vec<String> = w.calendar.keys().cloned().collect();
                    if let Some(k) = keys.get(i % keys.len().max(1)) { w.calendar.remove(k); local_changed.remove(k); }
                }
                Edit::DeleteRemote(i) => {
                    let keys: Vec<String> = w.platform.keys().cloned().collect();
                    if let Some(k) = keys.get(i % keys.len().max(1)) { w.platform.remove(k); remote_changed.remove(k); }
                }
            }
        }
        let p = w.sync(&pol);
        // a second sync does nothing
        let again = w.sync(&pol);
        prop_assert!(again.is_empty(), "second sync planned:\n{}\nafter:\n{}", again.render(), p.render());
        // both sides agree: every live base links an equal pair, no duplicates
        let live: Vec<&Base> = w.base.iter().filter(|b| !b.tombstone).collect();
        for b in &live {
            let l = w.calendar.get(&b.local_uid);
            let r = b.meeting_id.as_ref().and_then(|m| w.platform.get(m));
            prop_assert!(l.is_some() && r.is_some(), "dangling base {b:?}");
            prop_assert_eq!(l.unwrap(), r.unwrap());
        }
        prop_assert_eq!(live.len(), w.calendar.len(), "every calendar item is linked once");
        let tomb = w.base.len() - live.len();
        prop_assert_eq!(live.len() + tomb, w.platform.len() , "every meeting is linked once");
        // no edit lost beyond what the policy says: a field changed on one side only keeps that value
        for (uid, fs) in &local_changed {
            for (f, value) in fs {
                let remote_also = w.base.iter().find(|b| &b.local_uid == uid)
                    .and_then(|b| b.meeting_id.clone())
                    .and_then(|m| remote_changed.get(&m))
                    .is_some_and(|rf| rf.contains_key(f));
                if let Some(now) = w.calendar.get(uid) {
                    if !remote_also || conflict == ConflictPolicy::LocalWins {
                        prop_assert!(now.same(value, *f), "local edit of {f:?} on {uid} lost under {conflict:?}:\n{}", p.render());
                    }
                }
            }
        }
        let _ = before;
    }
}
