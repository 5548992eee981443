//! `meetsync demo`: a two-way pair on this machine, end to end. Starts the
//! simulator on 127.0.0.1, fills it with realistic meetings, writes a config,
//! syncs into a vdir, syncs again (nothing changes), changes a few meetings on
//! the platform and syncs once more; then edits and creates events in the vdir
//! the way a calendar app would and shows what the platform received; last,
//! adds a reminder to a file, syncs, renames its meeting on the platform,
//! syncs, and checks the file for both.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::app;
use crate::cli::DemoArgs;
use crate::config::Config;
use crate::cycle::JobOptions;
use crate::sim::{MeetingSpec, Sim, SimOptions, UserInfo};

pub async fn run(args: &DemoArgs) -> anyhow::Result<i32> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("meetsync-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let opts = SimOptions::default();
    let api_key = opts.api_key.clone();
    let sim = Sim::new(opts);
    let running = sim.serve(([127, 0, 0, 1], 0).into()).await?;
    let account = sim.create_account("demo-admin@meeting.example.test", "Demo", "Admin");
    let users = sim.populate_demo(&account.account_id, args.organizers, args.meetings, 42);
    println!(
        "Simulator of the Web Meeting API v6 listening on {} ({} organizers, {} meetings each)",
        running.base_url(),
        users.len(),
        args.meetings
    );

    let key_file = dir.join("api-key");
    write_private(&key_file, &api_key)?;
    let cal_dir = dir.join("calendars");
    let config_path = dir.join("meetsync.toml");
    let config_text = format!(
        "# written by `meetsync demo`\nstate_dir = \"{state}\"\n\n[[pair]]\nname = \"demo\"\nschedule = \"*/5 * * * *\"\n\
         # what you change in the calendar goes back to the platform\ndirection = \"two-way\"\n\n\
         [pair.platform]\nkind = \"web-meeting-v6\"\nbase_url = \"{base}\"\napi_key_file = \"{key}\"\naccount_id = \"{account}\"\n\n\
         [pair.store]\nkind = \"vdir\"\npath = \"{cal}\"\nlayout = \"per-organizer\"\n",
        state = toml_str(&dir.join("state")),
        base = running.base_url(),
        key = toml_str(&key_file),
        account = account.account_id,
        cal = toml_str(&cal_dir),
    );
    std::fs::write(&config_path, config_text)?;
    let cfg = match app::load_config(&config_path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    println!("Config written to {}\n", config_path.display());

    println!("== first sync");
    let (code, _) = app::sync_once(&cfg, None, JobOptions::new(app::now_unix())).await;
    if code != app::EXIT_OK {
        return Ok(code);
    }

    let before = sim.counters();
    println!("\n== second sync (nothing changed on the platform)");
    let (code, reports) = app::sync_once(&cfg, None, JobOptions::new(app::now_unix())).await;
    let after = sim.counters();
    let (a, c, d) = reports.iter().fold((0, 0, 0), |acc, r| {
        let t = r.totals();
        (acc.0 + t.0, acc.1 + t.1, acc.2 + t.2)
    });
    println!(
        "   → {} feed requests answered 304 Not Modified; files written: {}",
        after.feed_304.saturating_sub(before.feed_304),
        a + c + d
    );
    if code != app::EXIT_OK {
        return Ok(code);
    }

    println!("\n== the organizer changes things on the platform: one meeting renamed, one deleted, one added");
    // meetings changed on the platform here are left alone by the steps below
    let mut touched = Vec::new();
    if let Some(user) = users.first() {
        let meetings = sim.meetings_of(&user.id);
        if let Some(m) = meetings.iter().find(|m| m.recurrence.is_none()) {
            sim.update_meeting(&m.id, |m| {
                m.topic = format!("{} (moved to room Ø)", m.topic)
            });
            touched.push(m.id.clone());
        }
        if let Some(m) = meetings.iter().rev().find(|m| m.recurrence.is_none()) {
            sim.delete_meeting(&m.id);
            touched.push(m.id.clone());
        }
        let start = chrono::Utc::now() + chrono::Duration::days(2);
        sim.create_meeting(
            &user.id,
            MeetingSpec {
                topic: "Rétrospective — sprint 42".into(),
                agenda: "What went well?\nWhat to change?".into(),
                start,
                end: start + chrono::Duration::minutes(45),
                timezone: "Europe/Paris".into(),
                invited: vec!["zoe.mueller@example.test".into()],
                recurrence: None,
                extra_ics: vec![],
            },
        );
    }
    let (mut code, _) = app::sync_once(&cfg, None, JobOptions::new(app::now_unix())).await;

    if code == app::EXIT_OK {
        if let Some(user) = users.first() {
            let control = Control::new(&running.base_url());
            code = both_directions(&cfg, &sim, &control, user, &cal_dir, &touched).await?;
        }
    }

    println!("\n== where things are");
    println!(
        "calendars (vdir, one folder per organizer): {}",
        cal_dir.display()
    );
    let mut collections: Vec<(String, usize)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&cal_dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                let n = std::fs::read_dir(e.path())
                    .map(|r| {
                        r.flatten()
                            .filter(|f| f.file_name().to_string_lossy().ends_with(".ics"))
                            .count()
                    })
                    .unwrap_or(0);
                collections.push((e.file_name().to_string_lossy().to_string(), n));
            }
        }
    }
    collections.sort();
    for (name, n) in &collections {
        println!("  {name}/  {n} .ics files");
    }
    let khal_conf = dir.join("khal.conf");
    std::fs::write(&khal_conf, khal_config(&cal_dir, &dir))?;
    println!("state: {}", cfg.state_dir.join("state.sqlite3").display());
    println!("config: {}", config_path.display());
    println!("\nLook at it with khal (pip install khal):");
    println!("  khal -c {} list today 30d", khal_conf.display());
    println!("Run it again against a live simulator: `meetsync sim` in one terminal, a config like the one above in another.");
    running.stop().await;
    Ok(code)
}

/// The simulator's control surface under `/_sim/`, over HTTP as a script
/// driving `meetsync sim` would use it.
struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    fn new(base: &str) -> Control {
        Control {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(std::time::Duration::from_secs(10));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            anyhow::bail!(
                "simulator: {method} {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The meeting writes the platform handled since the last call.
    async fn take_writes(&self) -> anyhow::Result<Vec<Value>> {
        let writes = self
            .call(reqwest::Method::GET, "/_sim/writes", None)
            .await?;
        self.call(reqwest::Method::POST, "/_sim/counters/reset", None)
            .await?;
        Ok(writes.as_array().cloned().unwrap_or_default())
    }
}

/// One line per meeting write: method, path, topic (and invitees) as sent.
fn describe_write(w: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut s = format!("{} {}", text(&w["method"]), text(&w["path"]));
    if let Some(topic) = w["body"]["topic"].as_str() {
        s.push_str(&format!("  topic {topic:?}"));
    }
    // the invitees of a new meeting (an update repeats the current ones)
    if let Some(inv) = w["body"]["invitedParticipants"].as_array() {
        if w["method"] == "POST" && !inv.is_empty() {
            let list: Vec<String> = inv
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| p["email"].as_str().unwrap_or("?").to_string())
                })
                .collect();
            s.push_str(&format!(", invitedParticipants [{}]", list.join(", ")));
        }
    }
    let status = w["status"].as_u64().unwrap_or(0);
    if status != 200 {
        s.push_str(&format!(" → answered {status}"));
    }
    s
}

fn print_writes(writes: &[Value]) {
    if writes.is_empty() {
        println!("   → the platform received no meeting writes");
    } else {
        println!("   → the platform received:");
        for w in writes {
            println!("     {}", describe_write(w));
        }
    }
}

/// The file of a synced meeting (its feed UID is its id), if it is in the window.
fn file_of(collection: &Path, id: &str) -> Option<PathBuf> {
    let p = collection.join(format!("{}.ics", crate::ics::file_stem_for_uid(id)));
    p.is_file().then_some(p)
}

/// Calendar → platform, then a reminder added locally that a later platform
/// edit of the same meeting must not wipe out.
async fn both_directions(
    cfg: &Config,
    sim: &Sim,
    control: &Control,
    user: &UserInfo,
    cal_dir: &Path,
    touched: &[String],
) -> anyhow::Result<i32> {
    let collection = cal_dir.join(&user.email);
    let mut candidates = sim
        .meetings_of(&user.id)
        .into_iter()
        .filter(|m| !m.deleted && m.recurrence.is_none() && !touched.contains(&m.id))
        .filter_map(|m| file_of(&collection, &m.id).map(|f| (m, f)));
    let (Some((edited, edited_file)), Some((reminded, reminded_file))) =
        (candidates.next(), candidates.next())
    else {
        println!("\n(too few single meetings in the sync window to show the calendar side; try more --meetings)");
        return Ok(app::EXIT_OK);
    };
    control.take_writes().await?;

    println!(
        "\n== you change things in the calendar: one event renamed, one created with an invitee"
    );
    let new_title = format!("{} (now in room 4.2)", edited.topic);
    let text = std::fs::read_to_string(&edited_file)?;
    let Some(changed) = set_summary(&text, &new_title) else {
        anyhow::bail!("no SUMMARY in {}", edited_file.display());
    };
    std::fs::write(&edited_file, changed)?;
    println!(
        "   edited   {}: SUMMARY → {new_title:?}",
        rel(cal_dir, &edited_file)
    );
    let new_file = collection.join("kick-off-from-the-calendar.ics");
    std::fs::write(&new_file, new_event(user, chrono::Utc::now()))?;
    println!(
        "   created  {}: \"Kick-off Q3\" with ATTENDEE;CN=Zoé Müller:mailto:zoe.mueller@example.test",
        rel(cal_dir, &new_file)
    );
    let (code, _) = app::sync_once(cfg, None, JobOptions::new(app::now_unix())).await;
    print_writes(&control.take_writes().await?);
    if code != app::EXIT_OK {
        return Ok(code);
    }

    // synced on its own first, as the daemon's folder watcher would: a
    // reminder is the calendar's alone and sends nothing to the platform
    println!(
        "\n== a reminder added in the calendar, later the same meeting renamed on the platform"
    );
    let text = std::fs::read_to_string(&reminded_file)?;
    let Some(with_alarm) = add_reminder(&text) else {
        anyhow::bail!("no VEVENT in {}", reminded_file.display());
    };
    std::fs::write(&reminded_file, with_alarm)?;
    println!(
        "   added a reminder (VALARM, TRIGGER:-PT15M) to {}",
        rel(cal_dir, &reminded_file)
    );
    let (code, _) = app::sync_once(cfg, None, JobOptions::new(app::now_unix())).await;
    print_writes(&control.take_writes().await?);
    if code != app::EXIT_OK {
        return Ok(code);
    }
    let renamed = format!("{} (agenda updated)", reminded.topic);
    control
        .call(
            reqwest::Method::PATCH,
            &format!("/_sim/meetings/{}", reminded.id),
            Some(serde_json::json!({ "topic": renamed })),
        )
        .await?;
    println!(
        "   renamed on the platform (PATCH /_sim/meetings/{}) → {renamed:?}",
        reminded.id
    );
    let (code, _) = app::sync_once(cfg, None, JobOptions::new(app::now_unix())).await;
    print_writes(&control.take_writes().await?);
    let after = std::fs::read_to_string(&reminded_file).unwrap_or_default();
    let unfolded = after.replace("\r\n ", "").replace("\n ", "");
    let arrived = unfolded
        .lines()
        .any(|l| l.trim_end() == format!("SUMMARY:{}", escape_text(&renamed)));
    let kept = unfolded.lines().any(|l| l.trim_end() == "TRIGGER:-PT15M");
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("   the file {}:", rel(cal_dir, &reminded_file));
    println!("     platform edit arrived: {}", yes(arrived));
    println!(
        "     reminder kept: {}{}",
        yes(kept),
        if kept {
            ""
        } else {
            " (the file no longer has it)"
        }
    );
    Ok(code)
}

/// `path` relative to the calendars folder, for shorter lines.
fn rel(cal_dir: &Path, path: &Path) -> String {
    path.strip_prefix(cal_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The line ending a file uses.
fn newline(ics: &str) -> &'static str {
    if ics.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// A TEXT value escaped for a content line.
fn escape_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(';', "\\;")
        .replace(',', "\\,")
        .replace('\n', "\\n")
}

/// A content line folded at 75 octets.
fn fold(line: &str, nl: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str(nl);
            out.push(' ');
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out
}

/// The file with the SUMMARY of its first VEVENT replaced, the way a calendar
/// app saves a new title: only that property changes.
fn set_summary(ics: &str, summary: &str) -> Option<String> {
    let nl = newline(ics);
    let lines: Vec<&str> = ics.split(nl).collect();
    let event = lines.iter().position(|l| *l == "BEGIN:VEVENT")?;
    let is_summary = |l: &str| {
        let u = l.to_ascii_uppercase();
        u.starts_with("SUMMARY:") || u.starts_with("SUMMARY;")
    };
    let start = event + lines[event..].iter().position(|l| is_summary(l))?;
    let mut end = start + 1;
    while end < lines.len() && (lines[end].starts_with(' ') || lines[end].starts_with('\t')) {
        end += 1;
    }
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    out.push(fold(&format!("SUMMARY:{}", escape_text(summary)), nl));
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    Some(out.join(nl))
}

/// The file with a 15-minute display reminder at the end of its first VEVENT.
fn add_reminder(ics: &str) -> Option<String> {
    let nl = newline(ics);
    let at = ics.find(&format!("{nl}END:VEVENT"))? + nl.len();
    let alarm = format!(
        "BEGIN:VALARM{nl}ACTION:DISPLAY{nl}DESCRIPTION:Reminder{nl}TRIGGER:-PT15M{nl}END:VALARM{nl}"
    );
    Some(format!("{}{alarm}{}", &ics[..at], &ics[at..]))
}

/// A new event as a calendar app writes it: three days from now, 09:00 UTC,
/// with one attendee.
fn new_event(organizer: &UserInfo, now: chrono::DateTime<chrono::Utc>) -> String {
    let day = (now + chrono::Duration::days(3)).format("%Y%m%d");
    let lines = [
        "BEGIN:VCALENDAR".to_string(),
        "VERSION:2.0".into(),
        "PRODID:-//meetsync demo//a calendar app//EN".into(),
        "BEGIN:VEVENT".into(),
        format!("UID:kick-off-{}@calendar.example.test", now.timestamp()),
        format!("DTSTAMP:{}", now.format("%Y%m%dT%H%M%SZ")),
        format!("DTSTART:{day}T090000Z"),
        format!("DTEND:{day}T094500Z"),
        "SUMMARY:Kick-off Q3".into(),
        "DESCRIPTION:Goals and owners for the quarter".into(),
        fold(
            &format!(
                "ORGANIZER;CN={}:mailto:{}",
                organizer.display_name(),
                organizer.email
            ),
            "\r\n",
        ),
        fold(
            "ATTENDEE;CN=Zoé Müller;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION:mailto:zoe.mueller@example.test",
            "\r\n",
        ),
        "END:VEVENT".into(),
        "END:VCALENDAR".into(),
    ];
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

fn toml_str(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

fn write_private(path: &PathBuf, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(value.as_bytes())?;
    f.write_all(b"\n")
}

/// A khal config that discovers every collection of the demo vdir.
pub fn khal_config(cal_dir: &Path, dir: &Path) -> String {
    format!(
        "[calendars]\n[[meetings]]\npath = {}/*\ntype = discover\n\n[sqlite]\npath = {}/khal.db\n\n\
         [locale]\ntimeformat = %H:%M\ndateformat = %Y-%m-%d\nlongdateformat = %Y-%m-%d\n\
         datetimeformat = %Y-%m-%d %H:%M\nlongdatetimeformat = %Y-%m-%d %H:%M\n",
        cal_dir.display(),
        dir.display()
    )
}

/// `meetsync sim`: the simulator alone, until Ctrl-C or SIGTERM.
pub async fn run_sim(args: &crate::cli::SimArgs) -> anyhow::Result<()> {
    let opts = SimOptions {
        api_key: args.api_key.clone(),
        ..SimOptions::default()
    };
    let sim = Sim::new(opts);
    let running = sim.serve(([127, 0, 0, 1], args.port).into()).await?;
    let account = sim.create_account("admin@meeting.example.test", "Sim", "Admin");
    let users = sim.populate_demo(
        &account.account_id,
        args.organizers,
        args.meetings,
        args.seed,
    );
    println!("listening on {}", running.base_url());
    println!("api key: {}", args.api_key);
    println!("account id: {}", account.account_id);
    println!("organizers: {}", users.len());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    running.stop().await;
    Ok(())
}
