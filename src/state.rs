//! The sync state: one SQLite file (WAL mode) under the state directory.
//!
//! Per feed it keeps the validators and the hash of the last body, so that an
//! unchanged feed costs one conditional GET. Per item it keeps the hash of
//! what the platform sent and of what we wrote, so that a changed feed costs
//! O(changed items) writes and a user's local edit is recognised. It also
//! keeps a row per job run for `meetsync status`. This module does no network
//! or vdir I/O.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::model::Fields;
use crate::reconcile::{Base, Intent};

mod lease;
pub use lease::{Claim, ClaimInfo, Holder};

/// A local file as last read: if its (mtime, size, inode) are the same, its
/// UID, hash and fields are too, and the file need not be read again.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedFile {
    pub file: String,
    pub mtime_ns: i64,
    pub size: i64,
    pub ino: i64,
    pub uid: String,
    pub hash: Vec<u8>,
    pub fields: Fields,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sync state database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A write for an organizer this `State` holds no claim on (a bug).
    #[error(
        "pair {pair}, organizer {organizer}: this job holds no claim on it; nothing was written"
    )]
    NotClaimed { pair: String, organizer: String },
    /// The job's claim was taken over (it stalled past its lease): fenced.
    #[error("pair {pair}, organizer {organizer}: this job lost its claim ({now}); it stops before writing anything more")]
    ClaimLost {
        pair: String,
        organizer: String,
        now: String,
    },
}

/// What is known about one organizer's feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedState {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub body_hash: Option<Vec<u8>>,
    pub items: i64,
}

/// What is known about one synced item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    pub uid: String,
    pub collection: String,
    pub file: String,
    /// Hash of the rendered remote item at the last sync.
    pub remote_hash: Vec<u8>,
    /// Hash of the file as we wrote it.
    pub local_hash: Vec<u8>,
    /// End of the item's last occurrence (unix seconds), if bounded.
    pub last_end: Option<i64>,
}

/// One finished job, for `status`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub pair: String,
    pub started: i64,
    pub finished: i64,
    pub ok: bool,
    pub summary: String,
    pub error: Option<String>,
    /// What happened to each organizer (empty when the job failed before
    /// reaching them).
    pub organizers: Vec<RunOrganizer>,
}

/// One organizer of a finished job, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOrganizer {
    /// The organizer's key in the state (user id or feed name).
    pub key: String,
    /// The email or feed name, as reports show it.
    pub label: String,
    pub collection: String,
    /// Whether the feed was read and planned in this run (not a 304, an
    /// unchanged body or a cancelled job): its notes are current then.
    pub read: bool,
    /// One line, as `sync --once` prints it: "+1 ~0 -0", "not modified (304)", "FAILED: …".
    pub summary: String,
    pub error: Option<String>,
    /// Every item note of the run (item and reason), as `sync --once` prints them.
    pub notes: Vec<String>,
}

/// How many meetings the state knows for one organizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrganizerCounts {
    /// Pull pairs: meetings written to the store.
    pub items: i64,
    /// Two-way pairs: events in the calendar folder at the last scan
    /// (conflict copies not counted).
    pub local: i64,
    /// Two-way pairs: events linked to a meeting on the platform.
    pub linked: i64,
}

pub struct State {
    conn: Connection,
    path: PathBuf,
    /// Claims this `State` holds, by (pair, organizer): every write of a job
    /// is fenced by its claim's generation.
    held: HashMap<(String, String), lease::Held>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feeds (
    pair TEXT NOT NULL, organizer TEXT NOT NULL,
    etag TEXT, last_modified TEXT, body_hash BLOB, items INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pair, organizer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    pair TEXT NOT NULL, organizer TEXT NOT NULL, uid TEXT NOT NULL,
    collection TEXT NOT NULL, file TEXT NOT NULL,
    remote_hash BLOB NOT NULL, local_hash BLOB NOT NULL, last_end INTEGER,
    PRIMARY KEY (pair, organizer, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_file ON items (pair, collection, file);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, pair TEXT NOT NULL, started INTEGER NOT NULL,
    finished INTEGER NOT NULL, ok INTEGER NOT NULL, summary TEXT NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_pair ON runs (pair, id);
CREATE TABLE IF NOT EXISTS run_organizers (
    run INTEGER NOT NULL, pair TEXT NOT NULL, organizer TEXT NOT NULL, label TEXT NOT NULL,
    collection TEXT NOT NULL, read INTEGER NOT NULL, summary TEXT NOT NULL, error TEXT,
    notes TEXT NOT NULL,
    PRIMARY KEY (run, organizer)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_organizers_by_org ON run_organizers (pair, organizer, run);
CREATE TABLE IF NOT EXISTS links (
    pair TEXT NOT NULL, organizer TEXT NOT NULL, local_uid TEXT NOT NULL,
    remote_uid TEXT, meeting_id TEXT, file TEXT NOT NULL, fields TEXT NOT NULL,
    local_hash BLOB NOT NULL, remote_hash BLOB NOT NULL, last_end INTEGER,
    tombstone INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pair, organizer, local_uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (
    pair TEXT NOT NULL, organizer TEXT NOT NULL, local_uid TEXT NOT NULL,
    summary TEXT NOT NULL, start INTEGER, created INTEGER NOT NULL,
    PRIMARY KEY (pair, organizer, local_uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS local_cache (
    pair TEXT NOT NULL, collection TEXT NOT NULL, file TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, ino INTEGER NOT NULL,
    uid TEXT NOT NULL, hash BLOB NOT NULL, fields TEXT NOT NULL,
    PRIMARY KEY (pair, collection, file)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    pair TEXT NOT NULL, organizer TEXT NOT NULL, uid TEXT NOT NULL, hash BLOB NOT NULL,
    collection TEXT NOT NULL, file TEXT NOT NULL,
    PRIMARY KEY (pair, organizer, uid, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_links (
    pair TEXT NOT NULL, organizer TEXT NOT NULL, local_uid TEXT NOT NULL, file_hash BLOB NOT NULL,
    file_ino INTEGER NOT NULL, fresh INTEGER NOT NULL, temp_name TEXT NOT NULL, remote_uid TEXT, meeting_id TEXT, file TEXT NOT NULL, fields TEXT NOT NULL,
    local_hash BLOB NOT NULL, remote_hash BLOB NOT NULL, last_end INTEGER,
    PRIMARY KEY (pair, organizer, local_uid, file_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    pair TEXT NOT NULL, organizer TEXT NOT NULL,
    pid INTEGER NOT NULL, host TEXT NOT NULL, started INTEGER NOT NULL, instance TEXT NOT NULL,
    since INTEGER NOT NULL, expires_ms INTEGER NOT NULL, generation INTEGER NOT NULL,
    PRIMARY KEY (pair, organizer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule (
    pair TEXT PRIMARY KEY, next_run INTEGER NOT NULL, failures INTEGER NOT NULL
);
";

/// Changes of one job, committed in one transaction after the files are durable.
#[derive(Debug, Default)]
pub struct Commit {
    pub upserts: Vec<ItemState>,
    pub removals: Vec<String>,
    pub feed: Option<FeedState>,
    /// The job's pending writes are settled: forget them.
    pub clear_pending: bool,
}

/// Link changes of a two-way job (or of one push), committed in one transaction.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCommit<'a> {
    pub upserts: &'a [Base],
    /// Local UIDs whose links are dropped.
    pub removals: &'a [String],
    /// Local UIDs whose create intents are settled.
    pub intents_done: &'a [String],
    /// The feed's validators, when every platform change is applied.
    pub feed: Option<&'a FeedState>,
    /// Local UIDs whose pending links are settled (the job's own writes,
    /// now linked): forget them.
    pub pending_done: &'a [String],
}

/// A file a pull job is about to move into place, recorded before the rename:
/// if the job dies before its commit, the next run knows the file is its own
/// (not a user's edit or file) by this hash. Every version written since the
/// last commit is kept (several runs may die in a row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite {
    pub uid: String,
    pub collection: String,
    pub file: String,
    pub hash: Vec<u8>,
}

/// The link a two-way job is about to commit for a calendar file it writes,
/// recorded before the file is moved into place. If the job dies before its
/// link commit, the next run takes `base` as the last agreed state instead of
/// the older link when the file in place is the job's (so the job's own write
/// is not mistaken for a calendar edit): the same bytes (`file_hash`), or,
/// once the temp file `temp_name` is gone (renamed into place), the same inode
/// (`file_ino`: edited in place since) or any file where there was none
/// (`fresh`). The next run settles the rows before it writes anything, so
/// they never outlive one interrupted job.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingLink {
    pub file_hash: Vec<u8>,
    pub file_ino: u64,
    pub fresh: bool,
    pub temp_name: String,
    pub base: Base,
}

/// Maps a database error to [`StateError::Db`] naming the file; borrows only
/// the path, so it can be used while a transaction borrows the connection.
fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + Copy + '_ {
    move |source| StateError::Db {
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    /// Open (or create) `state_dir/state.sqlite3`.
    pub fn open(state_dir: &Path) -> Result<State, StateError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StateError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join("state.sqlite3");
        let conn = Connection::open(&path).map_err(|source| StateError::Db {
            path: path.clone(),
            source,
        })?;
        let s = State {
            conn,
            path,
            held: HashMap::new(),
        };
        s.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| s.err(e))?;
        s.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| s.err(e))?;
        // Files are fsynced before the state commits; NORMAL keeps the DB
        // consistent and a lost last commit is redone (idempotently) next run.
        s.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| s.err(e))?;
        s.conn.execute_batch(SCHEMA).map_err(|e| s.err(e))?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            source,
        }
    }

    pub fn feed(&self, pair: &str, organizer: &str) -> Result<FeedState, StateError> {
        self.conn
            .query_row(
                "SELECT etag, last_modified, body_hash, items FROM feeds WHERE pair=?1 AND organizer=?2",
                params![pair, organizer],
                |r| {
                    Ok(FeedState {
                        etag: r.get(0)?,
                        last_modified: r.get(1)?,
                        body_hash: r.get(2)?,
                        items: r.get(3)?,
                    })
                },
            )
            .optional()
            .map(|o| o.unwrap_or_default())
            .map_err(|e| self.err(e))
    }

    /// All items of one organizer, by UID.
    pub fn items(
        &self,
        pair: &str,
        organizer: &str,
    ) -> Result<HashMap<String, ItemState>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT uid, collection, file, remote_hash, local_hash, last_end FROM items WHERE pair=?1 AND organizer=?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair, organizer], |r| {
                Ok(ItemState {
                    uid: r.get(0)?,
                    collection: r.get(1)?,
                    file: r.get(2)?,
                    remote_hash: r.get(3)?,
                    local_hash: r.get(4)?,
                    last_end: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            out.insert(row.uid.clone(), row);
        }
        Ok(out)
    }

    /// Every file of a collection with the organizer and UID that own it.
    pub fn file_owners(
        &self,
        pair: &str,
        collection: &str,
    ) -> Result<HashMap<String, (String, String)>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT file, organizer, uid FROM items WHERE pair=?1 AND collection=?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair, collection], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<HashMap<_, _>, _>>()
            .map_err(|e| self.err(e))
    }

    /// Apply one job's changes atomically.
    pub fn commit(&mut self, pair: &str, organizer: &str, c: &Commit) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let tx = write_tx(&mut self.conn, &self.held, &self.path, pair, organizer)?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO items (pair, organizer, uid, collection, file, remote_hash, local_hash, last_end)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (pair, organizer, uid) DO UPDATE SET collection=excluded.collection,
                       file=excluded.file, remote_hash=excluded.remote_hash,
                       local_hash=excluded.local_hash, last_end=excluded.last_end",
                )
                .map_err(err)?;
            for i in &c.upserts {
                up.execute(params![
                    pair,
                    organizer,
                    i.uid,
                    i.collection,
                    i.file,
                    i.remote_hash,
                    i.local_hash,
                    i.last_end
                ])
                .map_err(err)?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM items WHERE pair=?1 AND organizer=?2 AND uid=?3")
                .map_err(err)?;
            for uid in &c.removals {
                del.execute(params![pair, organizer, uid]).map_err(err)?;
            }
            if c.clear_pending {
                // a pair switched from two-way to pull leaves no stale links behind
                for table in ["pending", "pending_links"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE pair=?1 AND organizer=?2"),
                        params![pair, organizer],
                    )
                    .map_err(err)?;
                }
            }
            if let Some(f) = &c.feed {
                upsert_feed(&tx, pair, organizer, f).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Record files about to be moved into place (before the renames).
    pub fn add_pending(
        &mut self,
        pair: &str,
        organizer: &str,
        writes: &[PendingWrite],
    ) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let tx = write_tx(&mut self.conn, &self.held, &self.path, pair, organizer)?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO pending (pair, organizer, uid, collection, file, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for w in writes {
                up.execute(params![
                    pair,
                    organizer,
                    w.uid,
                    w.collection,
                    w.file,
                    w.hash
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Writes of interrupted jobs of this organizer, by UID.
    pub fn pending(
        &self,
        pair: &str,
        organizer: &str,
    ) -> Result<HashMap<String, Vec<PendingWrite>>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT uid, collection, file, hash FROM pending WHERE pair=?1 AND organizer=?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair, organizer], |r| {
                Ok(PendingWrite {
                    uid: r.get(0)?,
                    collection: r.get(1)?,
                    file: r.get(2)?,
                    hash: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out: HashMap<String, Vec<PendingWrite>> = HashMap::new();
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            out.entry(row.uid.clone()).or_default().push(row);
        }
        Ok(out)
    }

    pub fn record_run(&mut self, r: &RunRecord) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO runs (pair, started, finished, ok, summary, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.pair, r.started, r.finished, r.ok, r.summary, r.error],
        )
        .map_err(err)?;
        let run = tx.last_insert_rowid();
        for o in &r.organizers {
            let notes = serde_json::to_string(&o.notes).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "INSERT OR REPLACE INTO run_organizers (run, pair, organizer, label, collection, read, summary, error, notes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![run, r.pair, o.key, o.label, o.collection, o.read, o.summary, o.error, notes],
            )
            .map_err(err)?;
        }
        // keep the history bounded
        tx.execute(
            "DELETE FROM runs WHERE pair=?1 AND id NOT IN (SELECT id FROM runs WHERE pair=?1 ORDER BY id DESC LIMIT 100)",
            params![r.pair],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM run_organizers WHERE pair=?1 AND run NOT IN (SELECT id FROM runs WHERE pair=?1)",
            params![r.pair],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// The last run of every pair, and the last failed one (with their organizers).
    pub fn last_runs(
        &self,
        pair: &str,
    ) -> Result<(Option<RunRecord>, Option<RunRecord>), StateError> {
        let q = |sql: &str| {
            let rec = self
                .conn
                .query_row(sql, params![pair], |r| {
                    Ok((
                        r.get::<_, i64>(6)?,
                        RunRecord {
                            pair: r.get(0)?,
                            started: r.get(1)?,
                            finished: r.get(2)?,
                            ok: r.get(3)?,
                            summary: r.get(4)?,
                            error: r.get(5)?,
                            organizers: Vec::new(),
                        },
                    ))
                })
                .optional()
                .map_err(|e| self.err(e))?;
            match rec {
                Some((id, mut rec)) => {
                    rec.organizers = self.run_organizers(
                        "SELECT organizer, label, collection, read, summary, error, notes
                         FROM run_organizers WHERE run=?1 ORDER BY label",
                        params![id],
                    )?;
                    Ok(Some(rec))
                }
                None => Ok(None),
            }
        };
        let last = q("SELECT pair, started, finished, ok, summary, error, id FROM runs WHERE pair=?1 ORDER BY id DESC LIMIT 1")?;
        let failed = q("SELECT pair, started, finished, ok, summary, error, id FROM runs WHERE pair=?1 AND ok=0 ORDER BY id DESC LIMIT 1")?;
        Ok((last, failed))
    }

    /// The organizers of the last run that reached any, with that run's start.
    pub fn last_organizers(
        &self,
        pair: &str,
    ) -> Result<(Vec<RunOrganizer>, Option<i64>), StateError> {
        let hit: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT r.started, o.run FROM run_organizers o JOIN runs r ON r.id = o.run
                 WHERE o.pair=?1 ORDER BY o.run DESC LIMIT 1",
                params![pair],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((started, run)) = hit else {
            return Ok((Vec::new(), None));
        };
        let orgs = self.run_organizers(
            "SELECT organizer, label, collection, read, summary, error, notes
             FROM run_organizers WHERE run=?1 ORDER BY label",
            params![run],
        )?;
        Ok((orgs, Some(started)))
    }

    /// The last run that read this organizer's feed (its notes are the
    /// organizer's current item problems), with that run's start.
    pub fn last_read(
        &self,
        pair: &str,
        organizer: &str,
    ) -> Result<Option<(i64, RunOrganizer)>, StateError> {
        self.last_organizer_run(pair, organizer, "o.read=1")
    }

    /// The last run in which this organizer failed, with that run's start.
    pub fn last_organizer_error(
        &self,
        pair: &str,
        organizer: &str,
    ) -> Result<Option<(i64, RunOrganizer)>, StateError> {
        self.last_organizer_run(pair, organizer, "o.error IS NOT NULL")
    }

    fn last_organizer_run(
        &self,
        pair: &str,
        organizer: &str,
        condition: &str,
    ) -> Result<Option<(i64, RunOrganizer)>, StateError> {
        let sql = format!(
            "SELECT r.started, o.run FROM run_organizers o JOIN runs r ON r.id = o.run
             WHERE o.pair=?1 AND o.organizer=?2 AND {condition} ORDER BY o.run DESC LIMIT 1"
        );
        let hit: Option<(i64, i64)> = self
            .conn
            .query_row(&sql, params![pair, organizer], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((started, run)) = hit else {
            return Ok(None);
        };
        let rows = self.run_organizers(
            "SELECT organizer, label, collection, read, summary, error, notes
             FROM run_organizers WHERE run=?1 AND organizer=?2",
            params![run, organizer],
        )?;
        Ok(rows.into_iter().next().map(|o| (started, o)))
    }

    fn run_organizers(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<RunOrganizer>, StateError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                let notes: String = r.get(6)?;
                Ok(RunOrganizer {
                    key: r.get(0)?,
                    label: r.get(1)?,
                    collection: r.get(2)?,
                    read: r.get(3)?,
                    summary: r.get(4)?,
                    error: r.get(5)?,
                    notes: serde_json::from_str(&notes).unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The meetings the state knows for one organizer (`collection` is its
    /// folder in the store).
    pub fn organizer_counts(
        &self,
        pair: &str,
        organizer: &str,
        collection: &str,
    ) -> Result<OrganizerCounts, StateError> {
        let count = |sql: &str, a: &str, b: &str| -> Result<i64, StateError> {
            self.conn
                .query_row(sql, params![a, b], |r| r.get(0))
                .map_err(|e| self.err(e))
        };
        Ok(OrganizerCounts {
            items: count(
                "SELECT COUNT(*) FROM items WHERE pair=?1 AND organizer=?2",
                pair,
                organizer,
            )?,
            local: count(
                "SELECT COUNT(*) FROM local_cache WHERE pair=?1 AND collection=?2 AND uid != ''",
                pair,
                collection,
            )?,
            linked: count(
                "SELECT COUNT(*) FROM links WHERE pair=?1 AND organizer=?2 AND tombstone=0
                 AND (remote_uid IS NOT NULL OR meeting_id IS NOT NULL)",
                pair,
                organizer,
            )?,
        })
    }

    /// The daemon's next run for a pair, and its failures in a row.
    pub fn set_schedule(&self, pair: &str, next_run: i64, failures: u32) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO schedule (pair, next_run, failures) VALUES (?1, ?2, ?3)
                 ON CONFLICT (pair) DO UPDATE SET next_run=excluded.next_run, failures=excluded.failures",
                params![pair, next_run, failures],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn schedule(&self, pair: &str) -> Result<Option<(i64, u32)>, StateError> {
        self.conn
            .query_row(
                "SELECT next_run, failures FROM schedule WHERE pair=?1",
                params![pair],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Two-way links (the base) of one organizer.
    pub fn links(&self, pair: &str, organizer: &str) -> Result<Vec<Base>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT local_uid, remote_uid, meeting_id, file, fields, local_hash, remote_hash, last_end, tombstone
                 FROM links WHERE pair=?1 AND organizer=?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair, organizer], |r| {
                let fields: String = r.get(4)?;
                Ok(Base {
                    local_uid: r.get(0)?,
                    remote_uid: r.get(1)?,
                    meeting_id: r.get(2)?,
                    file: r.get(3)?,
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                    local_hash: r.get(5)?,
                    remote_hash: r.get(6)?,
                    last_end: r.get(7)?,
                    tombstone: r.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn intents(&self, pair: &str, organizer: &str) -> Result<Vec<Intent>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT local_uid, summary, start FROM intents WHERE pair=?1 AND organizer=?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair, organizer], |r| {
                Ok(Intent {
                    local_uid: r.get(0)?,
                    summary: r.get(1)?,
                    start: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Record a create before it is sent (committed at once, durably).
    pub fn add_intent(
        &mut self,
        pair: &str,
        organizer: &str,
        i: &Intent,
        now: i64,
    ) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let tx = write_tx(&mut self.conn, &self.held, &self.path, pair, organizer)?;
        tx.execute(
            "INSERT OR REPLACE INTO intents (pair, organizer, local_uid, summary, start, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![pair, organizer, i.local_uid, i.summary, i.start, now],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Apply link changes (and settle intents) in one transaction.
    pub fn commit_links(
        &mut self,
        pair: &str,
        organizer: &str,
        c: &LinkCommit<'_>,
    ) -> Result<(), StateError> {
        let LinkCommit {
            upserts,
            removals,
            intents_done,
            feed,
            pending_done,
        } = *c;
        let err = db_err(&self.path);
        let tx = write_tx(&mut self.conn, &self.held, &self.path, pair, organizer)?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO links (pair, organizer, local_uid, remote_uid, meeting_id, file, fields, local_hash, remote_hash, last_end, tombstone)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (pair, organizer, local_uid) DO UPDATE SET remote_uid=excluded.remote_uid,
                       meeting_id=excluded.meeting_id, file=excluded.file, fields=excluded.fields,
                       local_hash=excluded.local_hash, remote_hash=excluded.remote_hash,
                       last_end=excluded.last_end, tombstone=excluded.tombstone",
                )
                .map_err(err)?;
            for b in upserts {
                let fields = serde_json::to_string(&b.fields).unwrap_or_default();
                up.execute(params![
                    pair,
                    organizer,
                    b.local_uid,
                    b.remote_uid,
                    b.meeting_id,
                    b.file,
                    fields,
                    b.local_hash,
                    b.remote_hash,
                    b.last_end,
                    b.tombstone
                ])
                .map_err(err)?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM links WHERE pair=?1 AND organizer=?2 AND local_uid=?3")
                .map_err(err)?;
            for u in removals {
                del.execute(params![pair, organizer, u]).map_err(err)?;
            }
            let mut done = tx
                .prepare_cached(
                    "DELETE FROM intents WHERE pair=?1 AND organizer=?2 AND local_uid=?3",
                )
                .map_err(err)?;
            for u in intents_done {
                done.execute(params![pair, organizer, u]).map_err(err)?;
            }
            if let Some(f) = feed {
                upsert_feed(&tx, pair, organizer, f).map_err(err)?;
            }
            let mut settled = tx
                .prepare_cached(
                    "DELETE FROM pending_links WHERE pair=?1 AND organizer=?2 AND local_uid=?3",
                )
                .map_err(err)?;
            for u in pending_done {
                settled.execute(params![pair, organizer, u]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Settle the pending links an interrupted job left: store the links
    /// taken over (`recovered`) and forget the rows of every UID that was
    /// checked, in one transaction.
    pub fn settle_pending_links(
        &mut self,
        pair: &str,
        organizer: &str,
        recovered: &[Base],
        checked: &[String],
    ) -> Result<(), StateError> {
        self.commit_links(
            pair,
            organizer,
            &LinkCommit {
                upserts: recovered,
                pending_done: checked,
                ..LinkCommit::default()
            },
        )
    }

    /// Record the links a two-way job will commit for the files it is about
    /// to move into place (settled by the job's link commit, else by the next
    /// run).
    pub fn add_pending_links(
        &mut self,
        pair: &str,
        organizer: &str,
        links: &[PendingLink],
    ) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let tx = write_tx(&mut self.conn, &self.held, &self.path, pair, organizer)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO pending_links (pair, organizer, local_uid, file_hash, file_ino, fresh, temp_name, remote_uid, meeting_id, file, fields, local_hash, remote_hash, last_end)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(err)?;
            for p in links {
                let b = &p.base;
                let fields = serde_json::to_string(&b.fields).unwrap_or_default();
                ins.execute(params![
                    pair,
                    organizer,
                    b.local_uid,
                    p.file_hash,
                    p.file_ino as i64,
                    p.fresh,
                    p.temp_name,
                    b.remote_uid,
                    b.meeting_id,
                    b.file,
                    fields,
                    b.local_hash,
                    b.remote_hash,
                    b.last_end
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Links recorded by two-way jobs that died before their link commit.
    pub fn pending_links(
        &self,
        pair: &str,
        organizer: &str,
    ) -> Result<Vec<PendingLink>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT local_uid, file_hash, remote_uid, meeting_id, file, fields, local_hash, remote_hash, last_end, file_ino, fresh, temp_name
                 FROM pending_links WHERE pair=?1 AND organizer=?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair, organizer], |r| {
                let fields: String = r.get(5)?;
                Ok(PendingLink {
                    file_hash: r.get(1)?,
                    file_ino: r.get::<_, i64>(9)? as u64,
                    fresh: r.get(10)?,
                    temp_name: r.get(11)?,
                    base: Base {
                        local_uid: r.get(0)?,
                        remote_uid: r.get(2)?,
                        meeting_id: r.get(3)?,
                        file: r.get(4)?,
                        fields: serde_json::from_str(&fields).unwrap_or_default(),
                        local_hash: r.get(6)?,
                        remote_hash: r.get(7)?,
                        last_end: r.get(8)?,
                        tombstone: false,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// What was read from each local file last time, keyed by file name.
    pub fn local_cache(
        &self,
        pair: &str,
        collection: &str,
    ) -> Result<HashMap<String, CachedFile>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT file, mtime_ns, size, ino, uid, hash, fields FROM local_cache WHERE pair=?1 AND collection=?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair, collection], |r| {
                let fields: String = r.get(6)?;
                Ok(CachedFile {
                    file: r.get(0)?,
                    mtime_ns: r.get(1)?,
                    size: r.get(2)?,
                    ino: r.get(3)?,
                    uid: r.get(4)?,
                    hash: r.get(5)?,
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            out.insert(row.file.clone(), row);
        }
        Ok(out)
    }

    /// Replace the cache of one collection.
    pub fn set_local_cache(
        &mut self,
        pair: &str,
        collection: &str,
        rows: &[CachedFile],
    ) -> Result<(), StateError> {
        let err = db_err(&self.path);
        // the cache of an organizer's folder is written under its claim
        let organizer = self
            .held_for_collection(pair, collection)
            .map(|(o, _)| o.to_string())
            .ok_or_else(|| StateError::NotClaimed {
                pair: pair.to_string(),
                organizer: format!("of the folder {collection}"),
            })?;
        let tx = write_tx(&mut self.conn, &self.held, &self.path, pair, &organizer)?;
        tx.execute(
            "DELETE FROM local_cache WHERE pair=?1 AND collection=?2",
            params![pair, collection],
        )
        .map_err(err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO local_cache (pair, collection, file, mtime_ns, size, ino, uid, hash, fields)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            for c in rows {
                let fields = serde_json::to_string(&c.fields).unwrap_or_default();
                ins.execute(params![
                    pair, collection, c.file, c.mtime_ns, c.size, c.ino, c.uid, c.hash, fields
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Number of items synced for a pair.
    pub fn item_count(&self, pair: &str) -> Result<i64, StateError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM items WHERE pair=?1",
                params![pair],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

/// A write transaction of a job for one organizer: taken at once (no
/// upgrade from a read snapshot) and fenced by the job's claim.
fn write_tx<'c>(
    conn: &'c mut Connection,
    held: &HashMap<(String, String), lease::Held>,
    path: &Path,
    pair: &str,
    organizer: &str,
) -> Result<rusqlite::Transaction<'c>, StateError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err(path))?;
    let h = held.get(&(pair.to_string(), organizer.to_string()));
    lease::fence(&tx, h, pair, organizer, path)?;
    Ok(tx)
}

/// Record what is known about one organizer's feed, inside a job's transaction.
fn upsert_feed(
    tx: &rusqlite::Transaction<'_>,
    pair: &str,
    organizer: &str,
    f: &FeedState,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO feeds (pair, organizer, etag, last_modified, body_hash, items)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (pair, organizer) DO UPDATE SET etag=excluded.etag,
           last_modified=excluded.last_modified, body_hash=excluded.body_hash, items=excluded.items",
        params![pair, organizer, f.etag, f.last_modified, f.body_hash, f.items],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(s: &mut State, organizer: &str) {
        let c = s
            .try_claim(
                "p",
                organizer,
                organizer,
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        assert!(matches!(c, Claim::Taken { .. }), "{c:?}");
    }

    #[test]
    fn commit_roundtrip_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        claim(&mut s, "o");
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let item = ItemState {
            uid: "u1".into(),
            collection: "c".into(),
            file: "u1.ics".into(),
            remote_hash: vec![1],
            local_hash: vec![2],
            last_end: Some(5),
        };
        s.commit(
            "p",
            "o",
            &Commit {
                upserts: vec![item.clone()],
                removals: vec![],
                feed: Some(FeedState {
                    etag: Some("\"e\"".into()),
                    last_modified: None,
                    body_hash: Some(vec![9]),
                    items: 1,
                }),
                clear_pending: false,
            },
        )
        .unwrap();
        assert_eq!(s.items("p", "o").unwrap().get("u1"), Some(&item));
        assert_eq!(s.feed("p", "o").unwrap().etag.as_deref(), Some("\"e\""));
        assert_eq!(
            s.file_owners("p", "c").unwrap().get("u1.ics"),
            Some(&("o".to_string(), "u1".to_string()))
        );
        s.commit(
            "p",
            "o",
            &Commit {
                upserts: vec![],
                removals: vec!["u1".into()],
                feed: None,
                clear_pending: false,
            },
        )
        .unwrap();
        assert!(s.items("p", "o").unwrap().is_empty());
        assert_eq!(s.feed("p", "o").unwrap().items, 1);
    }

    #[test]
    fn pending_writes_last_until_a_commit_settles_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        claim(&mut s, "o");
        claim(&mut s, "other");
        let w = |uid: &str| PendingWrite {
            uid: uid.into(),
            collection: "c".into(),
            file: format!("{uid}.ics"),
            hash: vec![7],
        };
        s.add_pending("p", "o", &[w("a"), w("b")]).unwrap();
        s.add_pending("p", "other", &[w("x")]).unwrap();
        assert_eq!(s.pending("p", "o").unwrap().len(), 2);
        assert_eq!(s.pending("p", "o").unwrap()["a"], vec![w("a")]);
        // a second interrupted run adds its version, the first one stays known
        let mut a2 = w("a");
        a2.hash = vec![8];
        s.add_pending("p", "o", &[a2.clone(), w("a")]).unwrap();
        let mut got = s.pending("p", "o").unwrap()["a"].clone();
        got.sort_by(|x, y| x.hash.cmp(&y.hash));
        assert_eq!(got, vec![w("a"), a2]);
        // a commit that does not settle them (new validators only) keeps them
        s.commit("p", "o", &Commit::default()).unwrap();
        assert_eq!(s.pending("p", "o").unwrap().len(), 2);
        s.commit(
            "p",
            "o",
            &Commit {
                clear_pending: true,
                ..Commit::default()
            },
        )
        .unwrap();
        assert!(s.pending("p", "o").unwrap().is_empty());
        assert_eq!(s.pending("p", "other").unwrap().len(), 1);
    }
}
