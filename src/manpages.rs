//! `meetsync man` and `meetsync completions`: the man pages and the shell
//! completion scripts, generated from the clap definitions (`cli.rs`) and
//! from the documented example config, so they cannot drift from them.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;

/// The documented example config: every key with its explanation.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/meetsync.example.toml");
/// The second example: organizers listed by feed instead of discovered.
pub const LISTED_FEEDS_CONFIG: &str = include_str!("../config/listed-feeds.toml");

/// Write the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "meetsync", out);
}

/// Write meetsync(1) and one meetsync-COMMAND(1) per subcommand into
/// `dir/man1`, meetsync.toml(5) into `dir/man5`; returns the files written.
pub fn write_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join("man1"))?;
    std::fs::create_dir_all(dir.join("man5"))?;
    let mut written = Vec::new();
    let mut write = |name: String, bytes: Vec<u8>| -> io::Result<()> {
        let section = if name.ends_with(".5") { "man5" } else { "man1" };
        let path = dir.join(section).join(name);
        std::fs::write(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    let cmd = Cli::command();
    let mut top = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render(&mut top)?;
    top.extend_from_slice(see_also(&cmd).as_bytes());
    write("meetsync.1".into(), top)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("meetsync-{}", sub.get_name());
        // global options (--config, -v, …) apply to every subcommand
        let mut sub = sub
            .clone()
            .name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
            sub = sub.arg(arg.clone());
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        page.extend_from_slice(
            b".SH \"SEE ALSO\"\n\\fBmeetsync\\fR(1), \\fBmeetsync.toml\\fR(5)\n",
        );
        write(format!("{name}.1"), page)?;
    }
    write("meetsync.toml.5".into(), config_page().into_bytes())?;
    Ok(written)
}

fn see_also(cmd: &clap::Command) -> String {
    let mut s = String::from(".SH \"SEE ALSO\"\n");
    let mut refs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("\\fBmeetsync\\-{}\\fR(1)", roff_escape(s.get_name())))
        .collect();
    refs.push("\\fBmeetsync.toml\\fR(5)".into());
    refs.push("\\fBsystemctl\\fR(1)".into());
    refs.push("\\fBkhal\\fR(1)".into());
    s.push_str(&refs.join(", "));
    s.push('\n');
    s
}

/// Text for a roff line: backslashes and hyphens escaped, no leading control character.
fn roff_escape(s: &str) -> String {
    let e = s.replace('\\', "\\e").replace('-', "\\-");
    if e.starts_with('.') || e.starts_with('\'') {
        format!("\\&{e}")
    } else {
        e
    }
}

/// One `key = value` of the example (commented out when it is an alternative).
#[derive(Debug, PartialEq)]
pub struct ConfigKey {
    pub section: String,
    pub key: String,
    pub value: String,
    pub doc: Vec<String>,
}

/// A table of the example: its heading, its introduction and its keys.
#[derive(Debug, Default)]
struct Section {
    heading: String,
    intro: Vec<String>,
    keys: Vec<ConfigKey>,
}

/// `key = value`, or `# key = value` when `commented`.
fn key_line(line: &str) -> Option<(String, String)> {
    let (k, v) = line.split_once('=')?;
    let k = k.trim();
    let ok = k.starts_with(|c: char| c.is_ascii_lowercase())
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then(|| (k.to_string(), v.trim().to_string()))
}

/// Split the example config into tables and keys with the comments above them.
fn parse_example(text: &str) -> (Vec<String>, Vec<Section>) {
    let mut header = Vec::new();
    let mut sections = vec![Section {
        heading: "top level".into(),
        ..Section::default()
    }];
    let mut pending: Vec<String> = Vec::new();
    let mut in_header = true;
    for line in text.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix('#') {
            let c = c.trim();
            if let Some((k, v)) = key_line(c).filter(|_| !in_header) {
                let s = sections.last_mut().expect("one section");
                s.keys.push(ConfigKey {
                    section: s.heading.clone(),
                    key: k,
                    value: v,
                    doc: std::mem::take(&mut pending),
                });
            } else {
                pending.push(c.to_string());
            }
            continue;
        }
        if t.is_empty() {
            if in_header {
                header.append(&mut pending);
                in_header = false;
            } else if !pending.is_empty() {
                sections
                    .last_mut()
                    .expect("one section")
                    .intro
                    .append(&mut pending);
            }
            continue;
        }
        in_header = false;
        if t.starts_with('[') {
            sections.push(Section {
                heading: t.to_string(),
                intro: std::mem::take(&mut pending),
                keys: Vec::new(),
            });
        } else if let Some((k, v)) = key_line(t) {
            let s = sections.last_mut().expect("one section");
            let mut doc = std::mem::take(&mut pending);
            // a key right under another shares its explanation
            if let (true, Some(prev)) = (doc.is_empty(), s.keys.last()) {
                doc.push(format!("See {} above.", prev.key));
            }
            s.keys.push(ConfigKey {
                section: s.heading.clone(),
                key: k,
                value: v,
                doc,
            });
        }
    }
    (header, sections)
}

/// Every key of the documented example, in order (commented alternatives included).
pub fn example_keys() -> Vec<ConfigKey> {
    parse_example(EXAMPLE_CONFIG)
        .1
        .into_iter()
        .flat_map(|s| s.keys)
        .collect()
}

/// meetsync.toml(5), from the documented example config.
pub fn config_page() -> String {
    let (header, sections) = parse_example(EXAMPLE_CONFIG);
    let version = env!("CARGO_PKG_VERSION");
    let mut p = format!(
        ".TH MEETSYNC.TOML 5 \"\" \"meetsync {version}\" \"File formats\"\n\
.SH NAME\nmeetsync.toml \\- configuration of the meetsync sync daemon\n\
.SH SYNOPSIS\n\\fI/etc/meetsync/meetsync.toml\\fR (system service), \
\\fI~/.config/meetsync/meetsync.toml\\fR (per\\-user service and commands), \
or the file named by \\fB\\-\\-config\\fR or \\fBMEETSYNC_CONFIG\\fR.\n\
.SH DESCRIPTION\n"
    );
    for l in &header {
        p.push_str(&roff_escape(l));
        p.push_str("\n.br\n");
    }
    p.push_str(
        ".PP\nThe file is TOML. Every key is described below, in the order of the \
documented example; keys shown as alternatives are mutually exclusive. \
\\fBmeetsync check\\-config\\fR reports every problem of a file with its \
line and column.\n",
    );
    for s in &sections {
        if s.keys.is_empty() && s.intro.is_empty() {
            continue;
        }
        p.push_str(&format!(
            ".SH \"{}\"\n",
            roff_escape(&s.heading).to_uppercase()
        ));
        if !s.intro.is_empty() {
            p.push_str(".PP\n");
            for l in &s.intro {
                p.push_str(&roff_escape(l));
                p.push('\n');
            }
        }
        for k in &s.keys {
            p.push_str(&format!(
                ".TP\n\\fB{}\\fR = {}\n",
                roff_escape(&k.key),
                roff_escape(&k.value)
            ));
            for l in &k.doc {
                p.push_str(&roff_escape(l));
                p.push('\n');
            }
        }
    }
    for (title, text) in [
        ("EXAMPLE", EXAMPLE_CONFIG),
        ("EXAMPLE: ORGANIZERS LISTED BY FEED", LISTED_FEEDS_CONFIG),
    ] {
        p.push_str(&format!(".SH \"{title}\"\n.nf\n"));
        for l in text.lines() {
            p.push_str(&roff_escape(l));
            p.push('\n');
        }
        p.push_str(".fi\n");
    }
    p.push_str(".SH \"SEE ALSO\"\n\\fBmeetsync\\fR(1), \\fBsystemd.exec\\fR(5) (credentials)\n");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_example_is_documented_in_the_page() {
        let keys = example_keys();
        // a sample of keys from every table, commented alternatives included
        for (section, key) in [
            ("top level", "state_dir"),
            ("[daemon]", "max_concurrent_jobs"),
            ("[daemon]", "listen"),
            ("[[pair]]", "name"),
            ("[[pair]]", "schedule_timezone"),
            ("[pair.platform]", "api_key_file"),
            ("[pair.platform]", "api_key_env"),
            ("[pair.platform]", "api_key_credential"),
            ("[pair.store]", "collection"),
            ("[pair.sync]", "delete_guard_min_items"),
        ] {
            assert!(
                keys.iter().any(|k| k.section == section && k.key == key),
                "{section} {key} missing: {keys:#?}"
            );
        }
        let page = config_page();
        for k in &keys {
            assert!(!k.doc.is_empty(), "{} has no explanation", k.key);
            let entry = format!(".TP\n\\fB{}\\fR = ", roff_escape(&k.key));
            assert!(page.contains(&entry), "{} not in the page", k.key);
            for l in &k.doc {
                assert!(page.contains(&roff_escape(l)), "{l}");
            }
        }
        // every uncommented `key =` line of the file is one of them
        let plain = EXAMPLE_CONFIG
            .lines()
            .filter(|l| key_line(l).is_some() && !l.starts_with('#'))
            .count();
        let commented = keys
            .iter()
            .filter(|k| EXAMPLE_CONFIG.contains(&format!("# {} =", k.key)))
            .count();
        assert_eq!(keys.len(), plain + commented);
    }

    #[test]
    fn roff_control_characters_are_escaped() {
        assert_eq!(roff_escape(".hidden"), "\\&.hidden");
        assert_eq!(roff_escape("a\\b-c"), "a\\eb\\-c");
    }
}
