//! Realistic, seeded test data: organizers in several zones, meetings spread
//! from 60 days back to 300 days ahead, some recurring with EXDATEs and moved
//! occurrences, non-ASCII and long topics, multi-line agendas, invitees with
//! non-ASCII names and a few raw `X-` properties. Deterministic for a seed
//! (times relative to today 00:00 UTC).

use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::recur::{occurrences, resolve_local};
use super::wire::MeetingInput;
use super::{Freq, MeetingSpec, OverrideSpec, Recurrence, Sim, UserInfo};

const ORGANIZERS: &[(&str, &str, &str)] = &[
    ("Alice", "Martin", "Europe/Paris"),
    ("Bruno", "Schäfer", "Europe/Zurich"),
    ("Chloé", "Lefèvre", "Europe/Paris"),
    ("Daniel", "Kim", "America/New_York"),
    ("Eva", "Novák", "Europe/Zurich"),
    ("Farid", "Haddad", "Europe/London"),
    ("Grace", "Liu", "America/Los_Angeles"),
    ("Hiroshi", "Tanaka", "Asia/Tokyo"),
    ("Ingrid", "Ødegård", "Europe/Zurich"),
    ("Jamal", "Rao", "Asia/Kolkata"),
    ("Kate", "Wilson", "Australia/Sydney"),
    ("Luis", "García", "Europe/Paris"),
];

const ZONES: &[&str] = &[
    "Europe/Zurich",
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "UTC",
];

const INVITEES: &[(&str, &str)] = &[
    ("Zoë Müller", "zoe.mueller@example.test"),
    ("José Núñez", "jose.nunez@example.test"),
    ("李雷", "li.lei@example.test"),
    ("Anna Keller", "anna.keller@example.test"),
    ("Olivier Dubois", "olivier.dubois@example.test"),
    ("Priya Sharma", "priya.sharma@example.test"),
    ("Kenji Watanabe", "kenji.watanabe@example.test"),
    ("Sarah O'Connor", "sarah.oconnor@example.test"),
    ("Mats Ødegård", "mats.odegard@example.test"),
    ("Łukasz Wróbel", "lukasz.wrobel@example.test"),
    ("Smith, John", "john.smith@example.test"),
    ("Émile Zola-Martin", "emile.zola@example.test"),
];

const TOPICS: &[&str] = &[
    "Weekly sync",
    "Project kickoff",
    "1:1",
    "Budget review",
    "Sprint planning",
    "Customer demo",
    "Design review",
    "All hands",
    "Incident postmortem",
    "Hiring committee",
    "Café planning ☕",
    "Revue trimestrielle — Q3",
    "Übergabe Projekt Ä",
    "Réunion d'équipe",
    "Planificación del año",
    "周会 / weekly",
    "Budget, staffing; and timeline",
    "Review: A, B; C",
    "Q&A; follow-ups, next steps",
    "Quarterly business review with the regional sales leadership team and the product owners (EMEA + APAC)",
    "Überprüfung der Datenschutz-Folgenabschätzung für das neue Kundenportal — Abstimmung mit der Rechtsabteilung",
];

const AGENDAS: &[&str] = &[
    "",
    "",
    "",
    "1. Status\n2. Risks; blockers\n3. Next steps, owners",
    "Bring your numbers.\nSlides: https://docs.example.test/q3",
    "Ordre du jour :\n— tour de table\n— décisions",
    "Demo of the new onboarding flow, then Q&A.",
    "Tagesordnung:\n1) Rückblick\n2) Übergabe, Zuständigkeiten\n3) Sonstiges",
];

const DURATIONS: &[i64] = &[15, 20, 25, 30, 30, 45, 45, 50, 60, 60, 60, 75, 90, 120];

/// ASCII local part for an email address.
fn ascii_slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        let mapped = match c {
            'a'..='z' | '0'..='9' => Some(c),
            'á' | 'à' | 'â' | 'ä' | 'å' => Some('a'),
            'é' | 'è' | 'ê' | 'ë' => Some('e'),
            'í' | 'ì' | 'î' | 'ï' => Some('i'),
            'ó' | 'ò' | 'ô' | 'ö' | 'ø' => Some('o'),
            'ú' | 'ù' | 'û' | 'ü' => Some('u'),
            'ñ' => Some('n'),
            'ç' => Some('c'),
            'ł' => Some('l'),
            'š' => Some('s'),
            _ => None,
        };
        if let Some(m) = mapped {
            out.push(m);
        }
    }
    if out.is_empty() {
        out.push_str("user");
    }
    out
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn demo_recurrence(
    rng: &mut StdRng,
    start: DateTime<Utc>,
    minutes: i64,
    zone: Tz,
    topic: &str,
) -> Recurrence {
    let roll = rng.random_range(0..10);
    let (freq, interval, period_days) = if roll < 6 {
        let i = rng.random_range(1..=2);
        (Freq::Weekly, i, 7 * i64::from(i))
    } else if roll < 8 {
        (Freq::Daily, 1, 1)
    } else {
        (Freq::Monthly, 1, 30)
    };
    let mut rule = Recurrence {
        freq,
        interval,
        count: None,
        until: None,
        exdates: Vec::new(),
        overrides: Vec::new(),
    };
    match rng.random_range(0..10) {
        0..=3 => rule.count = Some(rng.random_range(5..=20)),
        4..=6 => rule.until = Some(start + Duration::days(period_days * rng.random_range(6..=20))),
        _ => {}
    }
    let first = occurrences(start, &rule, zone, start + Duration::days(800), 12);
    if first.len() > 3 {
        let mut free: Vec<usize> = (1..first.len()).collect();
        for _ in 0..rng.random_range(0..=2) {
            if free.len() < 3 {
                break;
            }
            let i = free.remove(rng.random_range(0..free.len()));
            rule.exdates.push(first[i]);
        }
        rule.exdates.sort();
        for _ in 0..rng.random_range(1..=2) {
            if free.is_empty() {
                break;
            }
            let i = free.remove(rng.random_range(0..free.len()));
            let shift = if rng.random_bool(0.5) {
                Duration::hours(1)
            } else {
                Duration::days(1)
            };
            let moved = first[i] + shift;
            rule.overrides.push(OverrideSpec {
                original_start: first[i],
                start: moved,
                end: moved + Duration::minutes(minutes),
                topic: rng.random_bool(0.5).then(|| format!("{topic} (moved)")),
            });
        }
        rule.overrides.sort_by_key(|o| o.original_start);
    }
    rule
}

fn demo_meeting(rng: &mut StdRng, today: DateTime<Utc>, home_zone: &str) -> MeetingSpec {
    let zone_name = if rng.random_bool(0.7) {
        home_zone
    } else {
        pick(rng, ZONES)
    };
    let zone: Tz = zone_name.parse().unwrap_or(Tz::UTC);
    let day = today.date_naive() + Duration::days(rng.random_range(-60..=300));
    let time = NaiveTime::from_hms_opt(rng.random_range(7..=18), 15 * rng.random_range(0..4), 0)
        .unwrap_or_default();
    let start = resolve_local(zone, day.and_time(time));
    let minutes = *pick(rng, DURATIONS);
    let topic = pick(rng, TOPICS).to_string();
    let invited = {
        let k = rng.random_range(0..=5);
        rand::seq::index::sample(rng, INVITEES.len(), k)
            .into_iter()
            .map(|i| format!("{} <{}>", INVITEES[i].0, INVITEES[i].1))
            .collect()
    };
    let recurrence = rng
        .random_bool(0.1)
        .then(|| demo_recurrence(rng, start, minutes, zone, &topic));
    let extra_ics = if rng.random_bool(0.03) {
        vec![
            "X-MEETSYNC-TEST:keep-me".to_string(),
            "X-ALT-DESC;FMTTYPE=text/html:<b>hi</b>".to_string(),
        ]
    } else {
        Vec::new()
    };
    MeetingSpec {
        topic,
        agenda: pick(rng, AGENDAS).to_string(),
        start,
        end: start + Duration::minutes(minutes),
        timezone: zone_name.to_string(),
        invited,
        recurrence,
        extra_ics,
    }
}

pub(crate) fn populate(
    sim: &Sim,
    account_id: &str,
    organizers: usize,
    meetings_per_organizer: usize,
    seed: u64,
) -> Vec<UserInfo> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = sim.lock();
    let today = w
        .now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let domain = w.opts.domain.clone();
    let stale = w.started;
    let mut users = Vec::with_capacity(organizers);
    for n in 0..organizers {
        let (first, last, zone) = ORGANIZERS[n % ORGANIZERS.len()];
        let base = format!("{}.{}", ascii_slug(first), ascii_slug(last));
        let mut attempt = 1;
        let user = loop {
            let email = if attempt == 1 {
                format!("{base}@{domain}")
            } else {
                format!("{base}{attempt}@{domain}")
            };
            match w.add_user(account_id, &email, first, last, zone, "en") {
                Ok(u) => break u,
                Err(e) if e.code == -10 => attempt += 1,
                Err(e) => panic!("populate_demo({account_id}): {}", e.message),
            }
        };
        for _ in 0..meetings_per_organizer {
            let spec = demo_meeting(&mut rng, today, zone);
            if let Err(e) = w.create_meeting(&user.id, MeetingInput::from_spec(spec, stale)) {
                panic!("populate_demo: {}", e.message);
            }
        }
        users.push(user);
    }
    users
}
