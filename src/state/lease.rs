//! Claims (leases) on a pair's organizers, shared by every process that uses
//! the same state.
//!
//! A job claims an organizer before it reads anything it plans with: one row
//! per (pair, organizer) in `leases`, taken in one write transaction
//! (`BEGIN IMMEDIATE` on SQLite), holding the holder's identity (process id,
//! host, process start), the time it was taken, an expiry and a generation
//! that grows with every new holder. The job renews the expiry while it runs
//! and releases the row at the end; a holder that died leaves a row that
//! expires (or, on the same machine, is seen to be dead at once).
//!
//! Fencing: every write of a job for an organizer (items, feed validators,
//! pending rows, links, intents, the local file cache) checks, in its own
//! transaction, that the row still carries the generation this `State` took;
//! a process that lost its claim (stopped past its expiry, taken over) cannot
//! commit anything. The API is in terms of `try_claim` / `renew_claim` /
//! `release_claim` and a generation per held claim, so that a server database
//! can implement it with the same table and `SELECT … FOR UPDATE SKIP LOCKED`.

use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::{db_err, State, StateError};

/// Who holds a claim: a process on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// When the holding process started (unix seconds).
    pub started: i64,
    /// Identifies the process for a liveness check on the same machine:
    /// `<boot id>/<pid namespace>/<start time in clock ticks>`; empty where
    /// unknown (then only the expiry frees a dead holder's claim).
    pub instance: String,
}

impl Holder {
    /// This process.
    pub fn current() -> &'static Holder {
        static ME: OnceLock<Holder> = OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            let proc_stat = proc_start_ticks(pid);
            let started = proc_stat
                .and_then(|t| {
                    let btime = boot_time()?;
                    // SAFETY: sysconf has no preconditions
                    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
                    (hz > 0).then(|| btime + (t / hz as u64) as i64)
                })
                .unwrap_or_else(|| chrono::Utc::now().timestamp());
            let instance = match (machine_scope(), proc_stat) {
                (Some(scope), Some(t)) => format!("{scope}/{t}"),
                _ => String::new(),
            };
            Holder {
                pid,
                host: host_name(),
                started,
                instance,
            }
        })
    }

    /// Whether the holder still runs: `Some` only when that can be told from
    /// here (same host, same boot, same pid namespace).
    pub fn alive(&self) -> Option<bool> {
        let me = Holder::current();
        if self.host != me.host || self.instance.is_empty() || me.instance.is_empty() {
            return None;
        }
        let (scope, ticks) = self.instance.rsplit_once('/')?;
        let (my_scope, _) = me.instance.rsplit_once('/')?;
        if scope != my_scope {
            return None;
        }
        let ticks: u64 = ticks.parse().ok()?;
        Some(proc_start_ticks(self.pid) == Some(ticks))
    }
}

/// A claim as recorded in the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimInfo {
    pub pair: String,
    pub organizer: String,
    pub holder: Holder,
    /// When the holder took it (unix seconds).
    pub since: i64,
    /// When it expires unless renewed (unix milliseconds).
    pub expires_ms: i64,
    pub generation: i64,
}

impl ClaimInfo {
    /// "process 42 on host h since 2026-01-01 10:00:00 UTC"
    pub fn holder_text(&self) -> String {
        let since = chrono::DateTime::from_timestamp(self.since, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| self.since.to_string());
        format!(
            "process {} on host {} since {since}",
            self.holder.pid, self.holder.host
        )
    }
}

impl std::fmt::Display for ClaimInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pair {}, organizer {} is being synced by {}",
            self.pair,
            self.organizer,
            self.holder_text()
        )
    }
}

/// The answer to [`State::try_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This `State` holds the claim now; `took_over` is the previous
    /// holder's claim when it had not been released (died or stalled).
    Taken {
        generation: i64,
        took_over: Option<ClaimInfo>,
    },
    /// Someone else holds it.
    Busy(ClaimInfo),
}

/// A claim this `State` holds.
#[derive(Debug, Clone)]
pub(super) struct Held {
    generation: i64,
    collection: String,
    lease_ms: i64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn read_claim(
    tx: &Transaction<'_>,
    pair: &str,
    organizer: &str,
) -> rusqlite::Result<Option<ClaimInfo>> {
    tx.query_row(
        &format!("SELECT {CLAIM_COLUMNS} FROM leases WHERE pair=?1 AND organizer=?2"),
        params![pair, organizer],
        |r| claim_of_row(pair, r),
    )
    .optional()
}

/// The columns [`claim_of_row`] reads, in its order.
const CLAIM_COLUMNS: &str =
    "organizer, pid, host, started, instance, since, expires_ms, generation";

fn claim_of_row(pair: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<ClaimInfo> {
    Ok(ClaimInfo {
        pair: pair.to_string(),
        organizer: r.get(0)?,
        holder: Holder {
            pid: r.get::<_, i64>(1)? as u32,
            host: r.get(2)?,
            started: r.get(3)?,
            instance: r.get(4)?,
        },
        since: r.get(5)?,
        expires_ms: r.get(6)?,
        generation: r.get(7)?,
    })
}

/// Checks, inside a write transaction, that `held` is still the organizer's
/// claim, and extends its expiry (every commit point renews).
pub(super) fn fence(
    tx: &Transaction<'_>,
    held: Option<&Held>,
    pair: &str,
    organizer: &str,
    path: &std::path::Path,
) -> Result<(), StateError> {
    let Some(h) = held else {
        return Err(StateError::NotClaimed {
            pair: pair.to_string(),
            organizer: organizer.to_string(),
        });
    };
    let err = db_err(path);
    let row = read_claim(tx, pair, organizer).map_err(err)?;
    let me = Holder::current();
    match row {
        Some(c)
            if c.generation == h.generation
                && c.holder.pid == me.pid
                && c.holder.host == me.host =>
        {
            tx.execute(
                "UPDATE leases SET expires_ms = max(expires_ms, ?3) WHERE pair=?1 AND organizer=?2",
                params![pair, organizer, now_ms() + h.lease_ms],
            )
            .map_err(err)?;
            Ok(())
        }
        Some(c) => Err(StateError::ClaimLost {
            pair: pair.to_string(),
            organizer: organizer.to_string(),
            now: format!(
                "taken over by {}{}",
                c.holder_text(),
                if c.expires_ms == 0 {
                    ", which has finished since"
                } else {
                    ""
                }
            ),
        }),
        None => Err(StateError::ClaimLost {
            pair: pair.to_string(),
            organizer: organizer.to_string(),
            now: "its record is gone".into(),
        }),
    }
}

impl State {
    /// Claim one organizer of a pair for a job of this `State`, in one
    /// transaction: free, released, expired or held by a process known to be
    /// dead → taken (a new generation); else busy. `collection` is the
    /// organizer's calendar folder (its file cache is fenced by this claim).
    pub fn try_claim(
        &mut self,
        pair: &str,
        organizer: &str,
        collection: &str,
        lease: Duration,
    ) -> Result<Claim, StateError> {
        let err = db_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let now = now_ms();
        let row = read_claim(&tx, pair, organizer).map_err(err)?;
        let generation = row.as_ref().map_or(0, |c| c.generation);
        if let Some(c) = &row {
            // a live claim of a process that is gone is free (its /proc is read only then)
            if c.expires_ms > now && c.holder.alive() != Some(false) {
                return Ok(Claim::Busy(c.clone()));
            }
        }
        // released claims (expiry 0) are free; others ended without a release
        let previous = row.filter(|c| c.expires_ms != 0);
        let me = Holder::current();
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        let generation = generation + 1;
        tx.execute(
            "INSERT INTO leases (pair, organizer, pid, host, started, instance, since, expires_ms, generation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (pair, organizer) DO UPDATE SET pid=excluded.pid, host=excluded.host,
               started=excluded.started, instance=excluded.instance, since=excluded.since,
               expires_ms=excluded.expires_ms, generation=excluded.generation",
            params![
                pair,
                organizer,
                me.pid,
                me.host,
                me.started,
                me.instance,
                now / 1000,
                now + lease_ms,
                generation
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        self.held.insert(
            (pair.to_string(), organizer.to_string()),
            Held {
                generation,
                collection: collection.to_string(),
                lease_ms,
            },
        );
        Ok(Claim::Taken {
            generation,
            took_over: previous,
        })
    }

    /// Extend a held claim; `ClaimLost` when another process took it over.
    pub fn renew_claim(&mut self, pair: &str, organizer: &str) -> Result<(), StateError> {
        let err = db_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        fence(
            &tx,
            self.held.get(&(pair.to_string(), organizer.to_string())),
            pair,
            organizer,
            &self.path,
        )?;
        tx.commit().map_err(err)
    }

    /// Give a held claim back (a claim lost meanwhile is left alone).
    pub fn release_claim(&mut self, pair: &str, organizer: &str) -> Result<(), StateError> {
        let Some(h) = self.held.remove(&(pair.to_string(), organizer.to_string())) else {
            return Ok(());
        };
        self.conn
            .execute(
                "UPDATE leases SET expires_ms=0 WHERE pair=?1 AND organizer=?2 AND generation=?3",
                params![pair, organizer, h.generation],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Claims not released (held, expired, or of a holder that died), by pair.
    pub fn claims(&self, pair: &str) -> Result<Vec<ClaimInfo>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {CLAIM_COLUMNS} FROM leases WHERE pair=?1 AND expires_ms != 0 ORDER BY organizer"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pair], |r| claim_of_row(pair, r))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The held claim that covers a collection of a pair (its file cache).
    pub(super) fn held_for_collection(
        &self,
        pair: &str,
        collection: &str,
    ) -> Option<(&str, &Held)> {
        self.held
            .iter()
            .find(|((p, _), h)| p == pair && h.collection == collection)
            .map(|((_, o), h)| (o.as_str(), h))
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is NUL-terminated or truncated
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The start time of a process in clock ticks after boot; None when it does
/// not run (or is a zombie), or where /proc is missing.
fn proc_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name is in parentheses and may hold spaces
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | Some(&"x")) {
        return None;
    }
    // field 22 of stat; fields[0] is field 3
    fields.get(19)?.parse().ok()
}

fn boot_time() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `<boot id>/<pid namespace>`: processes with the same scope see each
/// other's process ids.
fn machine_scope() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!(
        "{}/{}",
        boot.trim(),
        ns.to_string_lossy().replace('/', "_")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Commit, LinkCommit};

    fn open(dir: &std::path::Path) -> State {
        State::open(dir).unwrap()
    }

    #[test]
    fn one_holder_at_a_time_and_a_released_claim_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(dir.path());
        let mut b = open(dir.path());
        let lease = Duration::from_secs(60);
        let Claim::Taken { generation: g1, .. } = a.try_claim("p", "o", "c", lease).unwrap() else {
            panic!("free claim not taken");
        };
        match b.try_claim("p", "o", "c", lease).unwrap() {
            Claim::Busy(info) => {
                assert_eq!(info.holder, *Holder::current());
                assert_eq!(info.generation, g1);
                let text = info.to_string();
                assert!(
                    text.starts_with(&format!(
                        "pair p, organizer o is being synced by process {} on host ",
                        std::process::id()
                    )),
                    "{text}"
                );
            }
            other => panic!("second claim not refused: {other:?}"),
        }
        // another organizer of the pair is free
        assert!(matches!(
            b.try_claim("p", "o2", "c2", lease).unwrap(),
            Claim::Taken { .. }
        ));
        assert_eq!(a.claims("p").unwrap().len(), 2);
        a.release_claim("p", "o").unwrap();
        match b.try_claim("p", "o", "c", lease).unwrap() {
            Claim::Taken {
                generation,
                took_over,
            } => {
                assert_eq!(generation, g1 + 1);
                assert_eq!(took_over, None, "a released claim is not taken over");
            }
            other => panic!("released claim not taken: {other:?}"),
        }
    }

    #[test]
    fn writes_are_fenced_by_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(dir.path());
        let mut b = open(dir.path());
        // no claim: no write
        let e = a.commit("p", "o", &Commit::default()).unwrap_err();
        assert!(matches!(e, StateError::NotClaimed { .. }), "{e}");
        // a claim that expires at once: taken over by the next claimant
        let short = Duration::from_millis(0);
        assert!(matches!(
            a.try_claim("p", "o", "c", short).unwrap(),
            Claim::Taken { .. }
        ));
        a.commit("p", "o", &Commit::default()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        match b.try_claim("p", "o", "c", Duration::from_secs(60)).unwrap() {
            Claim::Taken { took_over, .. } => assert!(took_over.is_some()),
            other => panic!("expired claim not taken over: {other:?}"),
        }
        // every kind of write of the old holder is refused, nothing lands
        let lost = |e: StateError| {
            assert!(matches!(e, StateError::ClaimLost { .. }), "{e}");
            assert!(e.to_string().contains("taken over by process"), "{e}");
        };
        lost(a.commit("p", "o", &Commit::default()).unwrap_err());
        lost(
            a.commit_links("p", "o", &LinkCommit::default())
                .unwrap_err(),
        );
        let intent = crate::reconcile::Intent {
            local_uid: "l".into(),
            summary: "s".into(),
            start: None,
        };
        lost(a.add_intent("p", "o", &intent, 1).unwrap_err());
        lost(a.add_pending("p", "o", &[]).unwrap_err());
        lost(a.add_pending_links("p", "o", &[]).unwrap_err());
        lost(a.set_local_cache("p", "c", &[]).unwrap_err());
        lost(a.renew_claim("p", "o").unwrap_err());
        assert!(a.intents("p", "o").unwrap().is_empty());
        // releasing a lost claim leaves the new holder's alone
        a.release_claim("p", "o").unwrap();
        b.add_intent("p", "o", &intent, 1).unwrap();
        b.renew_claim("p", "o").unwrap();
        assert_eq!(b.claims("p").unwrap().len(), 1);
    }

    #[test]
    fn a_dead_holder_on_this_machine_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut a = open(dir.path());
        assert!(matches!(
            a.try_claim("p", "o", "c", Duration::from_secs(60)).unwrap(),
            Claim::Taken { .. }
        ));
        let me = Holder::current();
        assert_eq!(me.alive(), Some(true), "{me:?}");
        // the row now names a process that has exited (same machine)
        let scope = me.instance.rsplit_once('/').unwrap().0;
        a.conn
            .execute(
                "UPDATE leases SET pid=?1, instance=?2",
                params![pid, format!("{scope}/1")],
            )
            .unwrap();
        let mut b = open(dir.path());
        assert!(matches!(
            b.try_claim("p", "o", "c", Duration::from_secs(60)).unwrap(),
            Claim::Taken {
                took_over: Some(_),
                ..
            }
        ));
        // a holder on another host is waited for until its claim expires
        b.conn
            .execute("UPDATE leases SET pid=1, host='elsewhere'", [])
            .unwrap();
        let mut c = open(dir.path());
        assert!(matches!(
            c.try_claim("p", "o", "c", Duration::from_secs(60)).unwrap(),
            Claim::Busy(_)
        ));
    }
}
