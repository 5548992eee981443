//! `meetsync demo`: the whole pull path on this machine, end to end. Starts the
//! simulator on 127.0.0.1, fills it with realistic meetings, writes a config,
//! syncs into a vdir, syncs again (nothing changes), changes a few meetings on
//! the platform and syncs once more.

use std::path::{Path, PathBuf};

use crate::app;
use crate::cli::DemoArgs;
use crate::cycle::JobOptions;
use crate::sim::{MeetingSpec, Sim, SimOptions};

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
        "# written by `meetsync demo`\nstate_dir = \"{state}\"\n\n[[pair]]\nname = \"demo\"\nschedule = \"*/5 * * * *\"\n\n\
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
    if let Some(user) = users.first() {
        let meetings = sim.meetings_of(&user.id);
        if let Some(m) = meetings.iter().find(|m| m.recurrence.is_none()) {
            sim.update_meeting(&m.id, |m| {
                m.topic = format!("{} (moved to room Ø)", m.topic)
            });
        }
        if let Some(m) = meetings.iter().rev().find(|m| m.recurrence.is_none()) {
            sim.delete_meeting(&m.id);
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
    let (code, _) = app::sync_once(&cfg, None, JobOptions::new(app::now_unix())).await;

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
