//! The TOML configuration: parsing, validation with file:line:column for every
//! problem (unknown keys included), and loading of secrets from their sources.
//!
//! The file is walked by hand over `toml`'s spanned tree instead of through
//! serde so that *all* problems are reported in one go, each with a position and
//! a hint. Secrets are never stored inline: an API key comes from a file, an
//! environment variable or a systemd credential, and is read when a job runs.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Default of `lease_secs`.
pub const DEFAULT_LEASE_SECS: u64 = 60;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where the sync state database lives.
    pub state_dir: PathBuf,
    /// How long a job's claim on an organizer lasts unless renewed: a
    /// process that died holding one blocks that organizer at most this long.
    pub lease_secs: u64,
    pub daemon: DaemonSettings,
    pub pairs: Vec<PairConfig>,
}

/// Settings of `meetsync run`.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// Jobs running at once, over all pairs.
    pub max_concurrent_jobs: usize,
    /// Random delay added to each scheduled run, up to this many seconds.
    pub jitter_secs: u64,
    /// First retry delay after a failed job; doubles per failure.
    pub backoff_base_secs: u64,
    /// Longest retry delay.
    pub backoff_max_secs: u64,
    /// Loopback address for /metrics, /healthz and /trigger; None = off.
    pub listen: Option<std::net::SocketAddr>,
    /// /healthz fails when every pair has been failing for this long.
    pub unhealthy_after_secs: u64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            max_concurrent_jobs: 2,
            jitter_secs: 30,
            backoff_base_secs: 60,
            backoff_max_secs: 3600,
            listen: None,
            unhealthy_after_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Platform → local store only.
    Pull,
    /// Both ways: local edits, new events and deletions reach the platform.
    TwoWay,
}

/// What two-way pairs do.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoWaySettings {
    pub conflict: crate::reconcile::ConflictPolicy,
    /// `on_local_delete = "delete"` deletes the meeting; "ignore" keeps it.
    pub delete_remote_on_local_delete: bool,
    /// Ask the platform to notify participants of updates (the `/true` path flag).
    pub notify_participants: bool,
    /// Most remote writes (creates, updates, deletes) per job; more is refused.
    pub max_remote_writes: u32,
}

impl Default for TwoWaySettings {
    fn default() -> Self {
        TwoWaySettings {
            conflict: crate::reconcile::ConflictPolicy::KeepBoth,
            delete_remote_on_local_delete: false,
            notify_participants: false,
            max_remote_writes: 50,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PairConfig {
    pub name: String,
    pub direction: Direction,
    pub two_way: TwoWaySettings,
    /// Cron expression (5 or 6 fields, or `@hourly` …) used by the daemon.
    pub schedule: String,
    /// Time zone the schedule is read in (default: the system's).
    pub schedule_timezone: Option<chrono_tz::Tz>,
    pub platform: PlatformConfig,
    pub store: StoreConfig,
    pub sync: SyncSettings,
}

#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// e.g. `https://meeting.example.com`, without a trailing slash.
    pub base_url: String,
    pub api_key: SecretSource,
    pub organizers: OrganizerSource,
    pub timeout_secs: u64,
    pub max_feed_bytes: u64,
    /// Requests per second to the platform's host (0 = no limit).
    pub max_requests_per_second: f64,
}

/// Where a secret comes from. The value itself is read only when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    Credential(String),
}

#[derive(Debug, Clone)]
pub enum OrganizerSource {
    /// Discovered through `GET /api/v6/account/admin/{account_id}`;
    /// `only` restricts them to these emails or user ids (empty = all).
    Account {
        account_id: String,
        only: Vec<String>,
    },
    /// Listed: each organizer's feed path (a secret: it holds the ICS token).
    Feeds(Vec<FeedSpec>),
}

#[derive(Debug, Clone)]
pub struct FeedSpec {
    pub name: String,
    pub ics_path: SecretSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One collection (sub-folder) per organizer.
    PerOrganizer,
    /// All organizers in one collection.
    Merged,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub layout: Layout,
    /// Collection name when `layout = "merged"`.
    pub collection: String,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub past_days: u32,
    pub future_days: u32,
    /// Refuse a job that would delete more than this share of the known items.
    pub max_delete_share: f64,
    /// The share rule applies once a collection holds at least this many items.
    pub delete_guard_min_items: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            past_days: 30,
            future_days: 365,
            max_delete_share: 0.5,
            delete_guard_min_items: 10,
        }
    }
}

/// One problem found in a config file, with its position.
#[derive(Debug, Clone)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Every problem of one config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
            if let Some(h) = &p.hint {
                write!(f, "\n    hint: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Read and validate a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        problems: vec![Problem {
            line: 1,
            column: 1,
            message: format!("cannot read the config file: {e}"),
            hint: Some("pass the file with --config PATH or set MEETSYNC_CONFIG".into()),
        }],
    })?;
    parse(&text, path)
}

/// Validate config text; `path` names the file in messages and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut v = Validator {
        text,
        problems: Vec::new(),
    };
    let (root, errors) = DeTable::parse_recoverable(text);
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        v.problem(span, e.message().trim().to_string(), None);
    }
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let root_span = root.span();
    let root = root.into_inner();
    let cfg = v.config(&root, root_span, &base_dir, path);
    if v.problems.is_empty() {
        Ok(cfg)
    } else {
        v.problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError {
            path: path.to_path_buf(),
            problems: v.problems,
        })
    }
}

/// Fills problems while building the config; never stops at the first one.
struct Validator<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

type Table<'a> = DeTable<'a>;

/// A table being read: remembers which keys were consumed, so that the rest
/// are reported as unknown.
struct Reader<'a, 'i> {
    table: &'a Table<'i>,
    span: Range<usize>,
    what: String,
    known: Vec<&'static str>,
}

impl<'a, 'i> Reader<'a, 'i> {
    fn new(table: &'a Table<'i>, span: Range<usize>, what: impl Into<String>) -> Self {
        Reader {
            table,
            span,
            what: what.into(),
            known: Vec::new(),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.table.get(key)
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'t> Validator<'t> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn problem(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        let (line, column) = self.position(span.start);
        self.problems.push(Problem {
            line,
            column,
            message,
            hint,
        });
    }

    fn finish(&mut self, r: Reader<'_, '_>, hint_keys: &str) {
        for (k, _) in r.table.iter() {
            if !r.known.contains(&k.get_ref().as_ref()) {
                let name = k.get_ref().to_string();
                let suggestion = r
                    .known
                    .iter()
                    .find(|known| similar(known, &name))
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                self.problem(
                    k.span(),
                    format!("unknown key `{name}` in {}", r.what),
                    Some(format!("{suggestion}known keys here: {hint_keys}")),
                );
            }
        }
    }

    fn string(
        &mut self,
        r: &mut Reader<'_, '_>,
        key: &'static str,
    ) -> Option<(String, Range<usize>)> {
        let v = r.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            other => {
                self.problem(
                    v.span(),
                    format!(
                        "`{key}` in {} must be a string, not {}",
                        r.what,
                        type_name(other)
                    ),
                    None,
                );
                None
            }
        }
    }

    fn required_string(
        &mut self,
        r: &mut Reader<'_, '_>,
        key: &'static str,
        hint: &str,
    ) -> Option<(String, Range<usize>)> {
        let present = r.table.contains_key(key);
        let out = self.string(r, key);
        if !present {
            self.problem(
                r.span.clone(),
                format!("{} is missing `{key}`", r.what),
                Some(hint.to_string()),
            );
        }
        out
    }

    fn integer(
        &mut self,
        r: &mut Reader<'_, '_>,
        key: &'static str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = r.get(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.problem(
                    v.span(),
                    format!("`{key}` = {n} is out of range in {}", r.what),
                    Some(format!("use a whole number from {min} to {max}")),
                );
                None
            }
            None => {
                self.problem(
                    v.span(),
                    format!(
                        "`{key}` in {} must be an integer, not {}",
                        r.what,
                        type_name(v.get_ref())
                    ),
                    None,
                );
                None
            }
        }
    }

    fn float(
        &mut self,
        r: &mut Reader<'_, '_>,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        let v = r.get(key)?;
        let parsed = match v.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(i) => i.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n >= min && n <= max => Some(n),
            _ => {
                self.problem(
                    v.span(),
                    format!("`{key}` in {} must be a number from {min} to {max}", r.what),
                    None,
                );
                None
            }
        }
    }

    fn table<'a, 'i>(
        &mut self,
        r: &mut Reader<'a, 'i>,
        key: &'static str,
    ) -> Option<(&'a Table<'i>, Range<usize>)> {
        let v = r.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v.span())),
            other => {
                self.problem(
                    v.span(),
                    format!(
                        "`{key}` in {} must be a table, not {}",
                        r.what,
                        type_name(other)
                    ),
                    Some(format!("write it as a [..{key}] section")),
                );
                None
            }
        }
    }

    fn secret_source(
        &mut self,
        r: &mut Reader<'_, '_>,
        prefix: &'static str,
        keys: [&'static str; 4],
        base_dir: &Path,
    ) -> Option<SecretSource> {
        // keys: inline (refused), _file, _env, _credential
        let [inline, file, env, cred] = keys;
        if let Some(v) = r.get(inline) {
            self.problem(
                v.span(),
                format!("`{inline}` must not be written inline in {}", r.what),
                Some(format!(
                    "put the secret in a file (`{file}`, mode 0600), an environment variable (`{env}`) or a systemd credential (`{cred}`)"
                )),
            );
        }
        let mut found = Vec::new();
        if let Some((s, span)) = self.string(r, file) {
            found.push((SecretSource::File(resolve_path(&s, base_dir)), span));
        }
        if let Some((s, span)) = self.string(r, env) {
            found.push((SecretSource::Env(s), span));
        }
        if let Some((s, span)) = self.string(r, cred) {
            if s.is_empty() || s.contains('/') {
                self.problem(
                    span.clone(),
                    format!("`{cred}` must be a credential name without `/`"),
                    None,
                );
            }
            found.push((SecretSource::Credential(s), span));
        }
        match found.len() {
            1 => found.pop().map(|(s, _)| s),
            0 => {
                self.problem(
                    r.span.clone(),
                    format!("{} has no {prefix}", r.what),
                    Some(format!("set one of `{file}`, `{env}` or `{cred}`")),
                );
                None
            }
            _ => {
                let span = found[1].1.clone();
                self.problem(
                    span,
                    format!("{} sets its {prefix} more than once", r.what),
                    Some(format!("keep exactly one of `{file}`, `{env}` or `{cred}`")),
                );
                None
            }
        }
    }

    fn config(
        &mut self,
        root: &Table<'_>,
        span: Range<usize>,
        base_dir: &Path,
        path: &Path,
    ) -> Config {
        let mut r = Reader::new(root, span, "the top level");
        let state_dir = self
            .string(&mut r, "state_dir")
            .map(|(s, _)| resolve_path(&s, base_dir))
            .unwrap_or_else(default_state_dir);
        let lease_secs = self
            .integer(&mut r, "lease_secs", 1, 86_400)
            .map(|n| n as u64)
            .unwrap_or(DEFAULT_LEASE_SECS);
        let daemon = match self.table(&mut r, "daemon") {
            Some((t, sp)) => self.daemon(t, sp),
            None => DaemonSettings::default(),
        };
        let mut pairs = Vec::new();
        match r.get("pair") {
            None => self.problem(
                0..0,
                "no `[[pair]]` is configured".into(),
                Some("add a [[pair]] section; see config/meetsync.example.toml".into()),
            ),
            Some(v) => match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        match item.get_ref() {
                            DeValue::Table(t) => {
                                if let Some(p) = self.pair(t, item.span(), i, base_dir) {
                                    pairs.push((p, item.span()));
                                }
                            }
                            other => self.problem(
                                item.span(),
                                format!(
                                    "pair #{} must be a table, not {}",
                                    i + 1,
                                    type_name(other)
                                ),
                                None,
                            ),
                        }
                    }
                }
                other => self.problem(
                    v.span(),
                    format!(
                        "`pair` must be an array of tables, not {}",
                        type_name(other)
                    ),
                    Some("write each pair as a [[pair]] section".into()),
                ),
            },
        }
        self.finish(r, "state_dir, lease_secs, [daemon], [[pair]]");
        let mut seen = HashSet::new();
        for (p, span) in &pairs {
            if !seen.insert(p.name.clone()) {
                self.problem(
                    span.clone(),
                    format!("pair name `{}` is used twice", p.name),
                    Some("every pair needs its own name: it keys the sync state".into()),
                );
            }
        }
        Config {
            path: path.to_path_buf(),
            state_dir,
            lease_secs,
            daemon,
            pairs: pairs.into_iter().map(|(p, _)| p).collect(),
        }
    }

    fn pair(
        &mut self,
        t: &Table<'_>,
        span: Range<usize>,
        index: usize,
        base_dir: &Path,
    ) -> Option<PairConfig> {
        let mut r = Reader::new(t, span, format!("pair #{}", index + 1));
        let name =
            self.required_string(&mut r, "name", "give the pair a name, e.g. name = \"work\"");
        if let Some((n, _)) = &name {
            r.what = format!("pair `{n}`");
        }
        if let Some((n, s)) = &name {
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.problem(
                    s.clone(),
                    format!("pair name `{n}` is not usable"),
                    Some("use letters, digits, `-` and `_` only".into()),
                );
            }
        }
        let direction = match self.string(&mut r, "direction") {
            None => Some(Direction::Pull),
            Some((d, _)) if d == "pull" => Some(Direction::Pull),
            Some((d, _)) if d == "two-way" => Some(Direction::TwoWay),
            Some((d, s)) => {
                self.problem(
                    s,
                    format!("unknown direction `{d}`"),
                    Some("use \"pull\" or \"two-way\"".into()),
                );
                None
            }
        };
        let mut two_way = TwoWaySettings::default();
        if let Some((c, s)) = self.string(&mut r, "conflict") {
            use crate::reconcile::ConflictPolicy as C;
            match c.as_str() {
                "remote-wins" => two_way.conflict = C::RemoteWins,
                "local-wins" => two_way.conflict = C::LocalWins,
                "keep-both" => two_way.conflict = C::KeepBoth,
                _ => self.problem(
                    s,
                    format!("unknown conflict policy `{c}`"),
                    Some("use \"keep-both\" (default), \"remote-wins\" or \"local-wins\"".into()),
                ),
            }
        }
        if let Some((d, s)) = self.string(&mut r, "on_local_delete") {
            match d.as_str() {
                "delete" => two_way.delete_remote_on_local_delete = true,
                "ignore" => two_way.delete_remote_on_local_delete = false,
                _ => self.problem(
                    s,
                    format!("unknown on_local_delete `{d}`"),
                    Some("use \"ignore\" (default) or \"delete\"".into()),
                ),
            }
        }
        if let Some(v) = r.get("notify_participants") {
            match v.get_ref() {
                DeValue::Boolean(b) => two_way.notify_participants = *b,
                other => self.problem(
                    v.span(),
                    format!(
                        "`notify_participants` must be true or false, not {}",
                        type_name(other)
                    ),
                    None,
                ),
            }
        }
        if let Some(n) = self.integer(&mut r, "max_remote_writes", 0, 100_000) {
            two_way.max_remote_writes = n as u32;
        }
        let schedule = match self.string(&mut r, "schedule") {
            None => "*/15 * * * *".to_string(),
            Some((s, span)) => {
                if let Err(e) = parse_schedule(&s) {
                    self.problem(
                        span,
                        format!("schedule `{s}` is not a valid cron expression: {e}"),
                        Some("use 5 fields (min hour day month weekday), 6 with seconds first, or @hourly/@daily".into()),
                    );
                }
                s
            }
        };
        let schedule_timezone = match self.string(&mut r, "schedule_timezone") {
            None => None,
            Some((tz, span)) => match tz.parse::<chrono_tz::Tz>() {
                Ok(t) => Some(t),
                Err(_) => {
                    self.problem(
                        span,
                        format!("`{tz}` is not a time zone name"),
                        Some("use an IANA name such as \"Europe/Zurich\"".into()),
                    );
                    None
                }
            },
        };
        let platform = match self.table(&mut r, "platform") {
            Some((pt, ps)) => self.platform(pt, ps, &r.what, base_dir),
            None => {
                if !t.contains_key("platform") {
                    self.problem(
                        r.span.clone(),
                        format!("{} has no [pair.platform] section", r.what),
                        Some(
                            "add [pair.platform] with base_url, an API key source and account_id"
                                .into(),
                        ),
                    );
                }
                None
            }
        };
        let store = match self.table(&mut r, "store") {
            Some((st, ss)) => self.store(st, ss, &r.what, base_dir),
            None => {
                if !t.contains_key("store") {
                    self.problem(
                        r.span.clone(),
                        format!("{} has no [pair.store] section", r.what),
                        Some("add [pair.store] with path = \"…\" (a vdir folder)".into()),
                    );
                }
                None
            }
        };
        let sync = match self.table(&mut r, "sync") {
            Some((st, ss)) => self.sync(st, ss, &r.what),
            None => Some(SyncSettings::default()),
        };
        self.finish(
            r,
            "name, direction, conflict, on_local_delete, notify_participants, max_remote_writes, schedule, schedule_timezone, [pair.platform], [pair.store], [pair.sync]",
        );
        Some(PairConfig {
            name: name?.0,
            direction: direction?,
            two_way,
            schedule,
            schedule_timezone,
            platform: platform?,
            store: store?,
            sync: sync?,
        })
    }

    fn platform(
        &mut self,
        t: &Table<'_>,
        span: Range<usize>,
        pair: &str,
        base_dir: &Path,
    ) -> Option<PlatformConfig> {
        let mut r = Reader::new(t, span, format!("the platform of {pair}"));
        match self.string(&mut r, "kind") {
            None => {}
            Some((k, _)) if k == "web-meeting-v6" => {}
            Some((k, s)) => self.problem(
                s,
                format!("unknown platform kind `{k}`"),
                Some("this version supports kind = \"web-meeting-v6\"".into()),
            ),
        }
        let base_url = self
            .required_string(
                &mut r,
                "base_url",
                "e.g. base_url = \"https://meeting.example.com\"",
            )
            .and_then(|(u, s)| {
                let trimmed = u.trim_end_matches('/').to_string();
                let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
                    && reqwest::Url::parse(&trimmed).is_ok();
                if ok {
                    Some(trimmed)
                } else {
                    self.problem(
                        s,
                        format!("base_url `{u}` is not an http(s) URL"),
                        Some(
                            "write the scheme and host, e.g. \"https://meeting.example.com\""
                                .into(),
                        ),
                    );
                    None
                }
            });
        let api_key = self.secret_source(
            &mut r,
            "API key",
            [
                "api_key",
                "api_key_file",
                "api_key_env",
                "api_key_credential",
            ],
            base_dir,
        );
        let timeout_secs = self.integer(&mut r, "timeout_secs", 1, 3600).unwrap_or(60) as u64;
        let max_feed_bytes =
            self.integer(&mut r, "max_feed_mib", 1, 4096).unwrap_or(256) as u64 * 1024 * 1024;
        let max_requests_per_second = self
            .float(&mut r, "max_requests_per_second", 0.0, 10_000.0)
            .unwrap_or(crate::http::DEFAULT_MAX_REQUESTS_PER_SECOND);
        let account = self.string(&mut r, "account_id");
        let only: Vec<String> = match r.get("only") {
            None => Vec::new(),
            Some(v) => match v.get_ref() {
                DeValue::Array(a) => a
                    .iter()
                    .filter_map(|x| match x.get_ref() {
                        DeValue::String(s) => Some(s.to_string()),
                        other => {
                            self.problem(
                                x.span(),
                                format!("`only` entries must be strings, not {}", type_name(other)),
                                None,
                            );
                            None
                        }
                    })
                    .collect(),
                other => {
                    self.problem(
                        v.span(),
                        format!("`only` must be an array, not {}", type_name(other)),
                        None,
                    );
                    Vec::new()
                }
            },
        };
        let feeds = match r.get("feed") {
            None => None,
            Some(v) => match v.get_ref() {
                DeValue::Array(a) => {
                    let mut out = Vec::new();
                    for (i, x) in a.iter().enumerate() {
                        if let DeValue::Table(ft) = x.get_ref() {
                            let mut fr =
                                Reader::new(ft, x.span(), format!("feed #{} of {pair}", i + 1));
                            let name = self.required_string(
                                &mut fr,
                                "name",
                                "name the organizer, e.g. name = \"alice\"",
                            );
                            let src = self.secret_source(
                                &mut fr,
                                "feed path",
                                [
                                    "ics_path",
                                    "ics_path_file",
                                    "ics_path_env",
                                    "ics_path_credential",
                                ],
                                base_dir,
                            );
                            self.finish(
                                fr,
                                "name, ics_path_file, ics_path_env, ics_path_credential",
                            );
                            if let (Some((name, _)), Some(src)) = (name, src) {
                                out.push(FeedSpec {
                                    name,
                                    ics_path: src,
                                });
                            }
                        } else {
                            self.problem(x.span(), "each feed must be a table".into(), None);
                        }
                    }
                    Some(out)
                }
                other => {
                    self.problem(
                        v.span(),
                        format!(
                            "`feed` must be an array of tables, not {}",
                            type_name(other)
                        ),
                        Some("write each as a [[pair.platform.feed]] section".into()),
                    );
                    None
                }
            },
        };
        let organizers = match (account, feeds) {
            (Some((id, s)), None) => {
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    self.problem(
                        s,
                        format!("account_id `{id}` is not a valid id"),
                        Some("the 24-hex account id from the account creation".into()),
                    );
                    None
                } else {
                    Some(OrganizerSource::Account {
                        account_id: id,
                        only,
                    })
                }
            }
            (None, Some(f)) => {
                if !only.is_empty() {
                    self.problem(r.span.clone(), "`only` needs `account_id`".into(), None);
                }
                Some(OrganizerSource::Feeds(f))
            }
            (Some(_), Some(_)) => {
                self.problem(
                    r.span.clone(),
                    format!(
                        "{} sets both `account_id` and [[pair.platform.feed]]",
                        r.what
                    ),
                    Some(
                        "discover organizers from the account, or list their feeds, not both"
                            .into(),
                    ),
                );
                None
            }
            (None, None) => {
                self.problem(
                    r.span.clone(),
                    format!("{} names no organizers", r.what),
                    Some("set account_id = \"…\" (organizers are discovered) or list [[pair.platform.feed]] sections".into()),
                );
                None
            }
        };
        self.finish(
            r,
            "kind, base_url, api_key_file, api_key_env, api_key_credential, account_id, only, [[pair.platform.feed]], timeout_secs, max_feed_mib, max_requests_per_second",
        );
        Some(PlatformConfig {
            base_url: base_url?,
            api_key: api_key?,
            organizers: organizers?,
            timeout_secs,
            max_feed_bytes,
            max_requests_per_second,
        })
    }

    fn store(
        &mut self,
        t: &Table<'_>,
        span: Range<usize>,
        pair: &str,
        base_dir: &Path,
    ) -> Option<StoreConfig> {
        let mut r = Reader::new(t, span, format!("the store of {pair}"));
        match self.string(&mut r, "kind") {
            None => {}
            Some((k, _)) if k == "vdir" => {}
            Some((k, s)) => self.problem(
                s,
                format!("unknown store kind `{k}`"),
                Some("this version supports kind = \"vdir\"".into()),
            ),
        }
        let path = self
            .required_string(
                &mut r,
                "path",
                "e.g. path = \"~/.local/share/calendars/meetings\"",
            )
            .map(|(p, _)| resolve_path(&p, base_dir));
        let layout = match self.string(&mut r, "layout") {
            None => Some(Layout::PerOrganizer),
            Some((l, _)) if l == "per-organizer" => Some(Layout::PerOrganizer),
            Some((l, _)) if l == "merged" => Some(Layout::Merged),
            Some((l, s)) => {
                self.problem(
                    s,
                    format!("unknown layout `{l}`"),
                    Some("use \"per-organizer\" or \"merged\"".into()),
                );
                None
            }
        };
        let collection = match self.string(&mut r, "collection") {
            None => "meetings".to_string(),
            Some((c, s)) => {
                let ok = !c.is_empty()
                    && c != "."
                    && c != ".."
                    && c.chars()
                        .all(|ch| ch.is_alphanumeric() || "-_. ".contains(ch));
                if !ok {
                    self.problem(
                        s,
                        format!("collection name `{c}` is not a safe folder name"),
                        Some("use letters, digits, `-`, `_`, `.` and spaces".into()),
                    );
                }
                c
            }
        };
        self.finish(r, "kind, path, layout, collection");
        Some(StoreConfig {
            path: path?,
            layout: layout?,
            collection,
        })
    }

    fn daemon(&mut self, t: &Table<'_>, span: Range<usize>) -> DaemonSettings {
        let mut r = Reader::new(t, span, "[daemon]");
        let d = DaemonSettings::default();
        let listen = match self.string(&mut r, "listen") {
            None => None,
            Some((l, s)) => match l.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => Some(a),
                Ok(a) => {
                    self.problem(
                        s,
                        format!("listen address {a} is not a loopback address"),
                        Some("metrics and triggers are served on 127.0.0.1 or ::1 only, e.g. \"127.0.0.1:9187\"".into()),
                    );
                    None
                }
                Err(_) => {
                    self.problem(
                        s,
                        format!("`{l}` is not an address with a port"),
                        Some("e.g. listen = \"127.0.0.1:9187\"".into()),
                    );
                    None
                }
            },
        };
        let out = DaemonSettings {
            max_concurrent_jobs: self
                .integer(&mut r, "max_concurrent_jobs", 1, 256)
                .map(|n| n as usize)
                .unwrap_or(d.max_concurrent_jobs),
            jitter_secs: self
                .integer(&mut r, "jitter_secs", 0, 86_400)
                .map(|n| n as u64)
                .unwrap_or(d.jitter_secs),
            backoff_base_secs: self
                .integer(&mut r, "backoff_base_secs", 1, 86_400)
                .map(|n| n as u64)
                .unwrap_or(d.backoff_base_secs),
            backoff_max_secs: self
                .integer(&mut r, "backoff_max_secs", 1, 7 * 86_400)
                .map(|n| n as u64)
                .unwrap_or(d.backoff_max_secs),
            listen,
            unhealthy_after_secs: self
                .integer(&mut r, "unhealthy_after_secs", 1, 30 * 86_400)
                .map(|n| n as u64)
                .unwrap_or(d.unhealthy_after_secs),
        };
        self.finish(
            r,
            "max_concurrent_jobs, jitter_secs, backoff_base_secs, backoff_max_secs, listen, unhealthy_after_secs",
        );
        out
    }

    fn sync(&mut self, t: &Table<'_>, span: Range<usize>, pair: &str) -> Option<SyncSettings> {
        let mut r = Reader::new(t, span, format!("the sync settings of {pair}"));
        let d = SyncSettings::default();
        let s = SyncSettings {
            past_days: self
                .integer(&mut r, "past_days", 0, 36500)
                .map(|n| n as u32)
                .unwrap_or(d.past_days),
            future_days: self
                .integer(&mut r, "future_days", 1, 36500)
                .map(|n| n as u32)
                .unwrap_or(d.future_days),
            max_delete_share: self
                .float(&mut r, "max_delete_share", 0.0, 1.0)
                .unwrap_or(d.max_delete_share),
            delete_guard_min_items: self
                .integer(&mut r, "delete_guard_min_items", 1, 1_000_000)
                .map(|n| n as u32)
                .unwrap_or(d.delete_guard_min_items),
        };
        self.finish(
            r,
            "past_days, future_days, max_delete_share, delete_guard_min_items",
        );
        Some(s)
    }
}

/// The pair's next scheduled time after `after`, read in its
/// `schedule_timezone` (else the system zone); None for an unusable schedule.
pub fn next_by_schedule(
    cfg: &PairConfig,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::SubsecRound;
    // croner keeps sub-second parts; schedules are on whole seconds
    let after = after.trunc_subsecs(0);
    let cron = parse_schedule(&cfg.schedule).ok()?;
    match &cfg.schedule_timezone {
        Some(tz) => cron
            .find_next_occurrence(&after.with_timezone(tz), false)
            .map(|d| d.with_timezone(&chrono::Utc))
            .ok(),
        None => cron
            .find_next_occurrence(&after.with_timezone(&chrono::Local), false)
            .map(|d| d.with_timezone(&chrono::Utc))
            .ok(),
    }
}

/// Parse a cron schedule as the daemon will.
pub fn parse_schedule(s: &str) -> Result<croner::Cron, String> {
    use std::str::FromStr;
    croner::Cron::from_str(s).map_err(|e| e.to_string())
}

fn similar(a: &str, b: &str) -> bool {
    let a = a.to_ascii_lowercase().replace(['-', '_'], "");
    let b = b.to_ascii_lowercase().replace(['-', '_'], "");
    a == b
        || (a.len() > 3 && (a.starts_with(&b) || b.starts_with(&a)))
        || edit_distance(&a, &b) <= 2
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `~/x` → home, relative → relative to the config file's folder.
pub fn resolve_path(p: &str, base_dir: &Path) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let pb = PathBuf::from(p);
    if pb.is_absolute() {
        pb
    } else {
        base_dir.join(pb)
    }
}

/// `$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/meetsync`, else `~/.local/state/meetsync`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, separated by ':'
        let s = d.to_string_lossy().to_string();
        return PathBuf::from(s.split(':').next().unwrap_or(&s));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("meetsync");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/meetsync"),
        None => PathBuf::from("/var/lib/meetsync"),
    }
}

/// The config file used when none is given.
pub fn default_config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("CONFIGURATION_DIRECTORY") {
        let s = d.to_string_lossy().to_string();
        return PathBuf::from(s.split(':').next().unwrap_or(&s)).join("meetsync.toml");
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(d).join("meetsync/meetsync.toml");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".config/meetsync/meetsync.toml"),
        None => PathBuf::from("/etc/meetsync/meetsync.toml"),
    }
}

/// Why a secret could not be read. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set")]
    Env(String),
    #[error("systemd credential `{0}` is not available ($CREDENTIALS_DIRECTORY is not set; add LoadCredential= to the unit)")]
    NoCredentialsDir(String),
    #[error("the secret from {0} is empty")]
    Empty(String),
}

/// A loaded secret plus a warning when its file is readable by others.
pub struct LoadedSecret {
    pub value: SecretString,
    pub warning: Option<String>,
}

impl SecretSource {
    /// A description that never includes the value.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::Credential(c) => format!("systemd credential {c}"),
        }
    }

    pub fn load(&self) -> Result<LoadedSecret, SecretError> {
        let (raw, warning) = match self {
            SecretSource::File(p) => read_secret_file(p)?,
            SecretSource::Env(v) => (
                std::env::var(v).map_err(|_| SecretError::Env(v.clone()))?,
                None,
            ),
            SecretSource::Credential(c) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| SecretError::NoCredentialsDir(c.clone()))?;
                read_secret_file(&PathBuf::from(dir).join(c))?
            }
        };
        let trimmed = raw.trim().to_string();
        if trimmed.is_empty() {
            return Err(SecretError::Empty(self.describe()));
        }
        Ok(LoadedSecret {
            value: SecretString::from(trimmed),
            warning,
        })
    }
}

fn read_secret_file(p: &Path) -> Result<(String, Option<String>), SecretError> {
    let err = |source| SecretError::File {
        path: p.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(p).map_err(err)?;
    let mut warning = None;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(md) = std::fs::metadata(p) {
            if md.permissions().mode() & 0o077 != 0 {
                warning = Some(format!(
                    "secret file {} is readable by other users (mode {:o}); run chmod 600 on it",
                    p.display(),
                    md.permissions().mode() & 0o777
                ));
            }
        }
    }
    Ok((text, warning))
}

/// Problems that only show when secrets are looked up (used by `check-config`).
pub fn check_secrets(cfg: &Config) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &cfg.pairs {
        let mut sources = vec![("API key", &p.platform.api_key)];
        if let OrganizerSource::Feeds(f) = &p.platform.organizers {
            for feed in f {
                sources.push(("feed path", &feed.ics_path));
            }
        }
        for (what, src) in sources {
            match src.load() {
                Ok(s) => {
                    if let Some(w) = s.warning {
                        out.entry(p.name.clone())
                            .or_default()
                            .push(format!("warning: {w}"));
                    }
                }
                Err(e) => out
                    .entry(p.name.clone())
                    .or_default()
                    .push(format!("error: {what}: {e}")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Config, ConfigError> {
        parse(s, Path::new("/etc/meetsync/test.toml"))
    }

    const GOOD: &str = r#"
state_dir = "/tmp/state"
[[pair]]
name = "work"
schedule = "*/10 * * * *"
[pair.platform]
base_url = "https://meeting.example.com/"
api_key_file = "key"
account_id = "5e9459c5b863b82cefdddf4f"
[pair.store]
path = "cal"
"#;

    #[test]
    fn good_config_loads_with_defaults() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.pairs.len(), 1);
        let p = &c.pairs[0];
        assert_eq!(p.platform.base_url, "https://meeting.example.com");
        assert_eq!(
            p.platform.api_key,
            SecretSource::File(PathBuf::from("/etc/meetsync/key"))
        );
        assert_eq!(p.store.path, PathBuf::from("/etc/meetsync/cal"));
        assert_eq!(p.store.layout, Layout::PerOrganizer);
        assert_eq!(p.sync.past_days, 30);
        assert_eq!(c.state_dir, PathBuf::from("/tmp/state"));
        assert_eq!(c.lease_secs, DEFAULT_LEASE_SECS);
        assert_eq!(
            p.platform.max_requests_per_second,
            crate::http::DEFAULT_MAX_REQUESTS_PER_SECOND
        );
    }

    #[test]
    fn max_requests_per_second_is_a_non_negative_number() {
        let with = |v: &str| {
            parse_str(&GOOD.replace(
                "[pair.store]",
                &format!("max_requests_per_second = {v}\n[pair.store]"),
            ))
        };
        assert_eq!(
            with("2.5").unwrap().pairs[0]
                .platform
                .max_requests_per_second,
            2.5
        );
        assert_eq!(
            with("0").unwrap().pairs[0].platform.max_requests_per_second,
            0.0
        );
        let e = with("-1").unwrap_err().to_string();
        assert!(e.contains("max_requests_per_second"), "{e}");
        let e = with("\"fast\"").unwrap_err().to_string();
        assert!(e.contains("max_requests_per_second"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_position() {
        let bad = r#"
[[pair]]
name = "work"
shedule = "*/10 * * * *"
[pair.platform]
base_url = "ftp://x"
api_key = "inline-secret-value"
account_id = "abc"
[pair.store]
path = "cal"
layout = "sideways"
"#;
        let e = parse_str(bad).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("test.toml:4:1: error: unknown key `shedule`"),
            "{text}"
        );
        assert!(text.contains("did you mean `schedule`"), "{text}");
        assert!(
            text.contains("test.toml:6:12: error: base_url `ftp://x`"),
            "{text}"
        );
        assert!(
            text.contains("`api_key` must not be written inline"),
            "{text}"
        );
        assert!(text.contains("unknown layout `sideways`"), "{text}");
        assert!(!text.contains("inline-secret-value"), "{text}");
        assert!(e.problems.len() >= 5, "{text}");
    }

    #[test]
    fn lease_secs_is_a_positive_number_of_seconds() {
        let with = |v: &str| parse_str(&format!("lease_secs = {v}\n{GOOD}"));
        assert_eq!(with("2").unwrap().lease_secs, 2);
        for bad in ["0", "-5", "\"60s\"", "1.5", "100000"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("lease_secs"), "{bad}: {e}");
        }
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse_str("[[pair]\nname=").unwrap_err();
        assert!(e.problems[0].line >= 1);
        assert!(e.to_string().contains("test.toml:1:"), "{e}");
    }

    #[test]
    fn bad_cron_and_duplicate_names() {
        let text = format!("{GOOD}\n[[pair]]\nname = \"work\"\nschedule = \"61 * * * *\"\n[pair.platform]\nbase_url = \"http://h\"\napi_key_env = \"K\"\naccount_id = \"a1\"\n[pair.store]\npath = \"/x\"\n");
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(e.contains("not a valid cron expression"), "{e}");
        assert!(e.contains("pair name `work` is used twice"), "{e}");
    }

    #[test]
    fn secrets_load_and_warn_on_open_modes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "s3cret\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let s = SecretSource::File(f.clone()).load().unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(s.value.expose_secret(), "s3cret");
        assert!(s.warning.unwrap().contains("chmod 600"));
        let missing = SecretSource::Env("MEETSYNC_TEST_SURELY_UNSET".into()).load();
        assert!(matches!(missing, Err(SecretError::Env(_))));
    }
}
