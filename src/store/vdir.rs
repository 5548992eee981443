//! A vdir store: `root/<collection>/<file>.ics`.
//!
//! Writes are atomic and batched: every new version goes to a temp file in the
//! same folder, all temp files are made durable together (one `syncfs` for a
//! big batch instead of one `fsync` per file), then renamed into place, then
//! the folder is fsynced. Only after that may the caller commit the sync
//! state. File names come from `ics::file_stem_for_uid`, never from raw UIDs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Temp files carry this marker so a crashed run's leftovers can be removed.
const TMP_MARK: &str = ".meetsync-tmp";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Vdir {
    root: PathBuf,
}

impl Vdir {
    pub fn new(root: impl Into<PathBuf>) -> Vdir {
        Vdir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn collection_dir(&self, collection: &str) -> PathBuf {
        self.root.join(collection)
    }

    /// Create the collection folder (and its `displayname`, as vdirsyncer
    /// keeps it) if missing, and remove temp files of an interrupted run.
    pub fn prepare_collection(
        &self,
        collection: &str,
        displayname: &str,
    ) -> Result<PathBuf, StoreError> {
        let dir = self.collection_dir(collection);
        fs::create_dir_all(&dir).map_err(io_err("cannot create the calendar folder", &dir))?;
        let dn = dir.join("displayname");
        if !dn.exists() {
            write_atomic(&dn, displayname.as_bytes())?;
        }
        let entries =
            fs::read_dir(&dir).map_err(io_err("cannot list the calendar folder", &dir))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // leftovers of other (crashed) processes; our own temp files
            // belong to jobs in flight and are removed by their batches
            let ours = format!("{TMP_MARK}-{}-", std::process::id());
            if name.starts_with('.') && name.contains(TMP_MARK) && !name.contains(&ours) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(dir)
    }

    /// The current bytes of a file, `None` when it does not exist.
    pub fn read(&self, collection: &str, file: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.collection_dir(collection).join(file);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                action: "cannot read",
                path: p,
                source: e,
            }),
        }
    }

    pub fn batch(&self, collection: &str) -> Batch {
        self.batch_for(collection, 0)
    }

    /// A batch that expects about `files` writes: a big one skips the
    /// per-file fsync from the start and flushes once with `syncfs`.
    pub fn batch_for(&self, collection: &str, files: usize) -> Batch {
        Batch {
            dir: self.collection_dir(collection),
            staged: Vec::new(),
            deletes: Vec::new(),
            big: files > SYNCFS_THRESHOLD,
        }
    }

    /// The names in a collection folder (one listing instead of one lookup per file).
    pub fn names(&self, collection: &str) -> Result<std::collections::HashSet<String>, StoreError> {
        let dir = self.collection_dir(collection);
        match fs::read_dir(&dir) {
            Ok(rd) => Ok(rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(StoreError::Io {
                action: "cannot list",
                path: dir,
                source: e,
            }),
        }
    }
}

/// A set of writes and deletes in one folder, made durable together.
pub struct Batch {
    dir: PathBuf,
    staged: Vec<(PathBuf, PathBuf)>,
    deletes: Vec<PathBuf>,
    /// Flush with one `syncfs` at commit instead of an fsync per file.
    big: bool,
}

/// Above this many files, one `syncfs` is cheaper than an `fsync` per file.
const SYNCFS_THRESHOLD: usize = 16;

impl Batch {
    /// Write `bytes` to a temp file that `commit` renames to `file`.
    pub fn stage(&mut self, file: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.stage_inner(file, bytes, false).map(|_| ())
    }

    /// [`stage`](Self::stage), returning the temp file's name and the inode
    /// the file will have once renamed into place: a later run tells by them
    /// whether the rename happened (the temp file is gone) and whether the
    /// file in place is still that one.
    pub fn stage_tracked(&mut self, file: &str, bytes: &[u8]) -> Result<(String, u64), StoreError> {
        let ino = self.stage_inner(file, bytes, true)?.unwrap_or(0);
        let tmp = self
            .staged
            .last()
            .and_then(|(t, _)| t.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok((tmp, ino))
    }

    fn stage_inner(
        &mut self,
        file: &str,
        bytes: &[u8],
        want_ino: bool,
    ) -> Result<Option<u64>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let target = self.dir.join(file);
        // unique per process and call: concurrent jobs may share a folder
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{file}{TMP_MARK}-{}-{seq}", std::process::id()));
        let res = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(bytes)?;
            if !self.big && self.staged.len() < SYNCFS_THRESHOLD {
                // small batches: fsync now; big ones: one syncfs in commit
                f.sync_data()?;
            }
            if want_ino {
                return Ok(Some(f.metadata()?.ino()));
            }
            Ok(None)
        })();
        match res {
            Ok(ino) => {
                self.staged.push((tmp, target));
                Ok(ino)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(StoreError::Io {
                    action: "cannot write",
                    path: target,
                    source: e,
                })
            }
        }
    }

    pub fn delete(&mut self, file: &str) {
        self.deletes.push(self.dir.join(file));
    }

    pub fn len(&self) -> usize {
        self.staged.len() + self.deletes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Make everything durable, rename into place, delete, fsync the folder.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        if self.big || self.staged.len() >= SYNCFS_THRESHOLD {
            let d = File::open(&self.dir)
                .map_err(io_err("cannot open the calendar folder", &self.dir))?;
            sync_filesystem(&d).map_err(io_err("cannot flush the calendar folder", &self.dir))?;
        }
        let staged = std::mem::take(&mut self.staged);
        for (i, (tmp, target)) in staged.iter().enumerate() {
            if let Err(e) = fs::rename(tmp, target) {
                for (t, _) in &staged[i..] {
                    let _ = fs::remove_file(t);
                }
                return Err(StoreError::Io {
                    action: "cannot move into place",
                    path: target.clone(),
                    source: e,
                });
            }
        }
        for p in std::mem::take(&mut self.deletes) {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        action: "cannot delete",
                        path: p,
                        source: e,
                    })
                }
            }
        }
        let d =
            File::open(&self.dir).map_err(io_err("cannot open the calendar folder", &self.dir))?;
        d.sync_all()
            .map_err(io_err("cannot flush the calendar folder", &self.dir))?;
        Ok(())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // an uncommitted batch leaves nothing behind
        for (tmp, _) in &self.staged {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(target_os = "linux")]
fn sync_filesystem(f: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes a valid open descriptor and touches no memory.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_f: &File) -> std::io::Result<()> {
    // no syncfs: fall back to a global sync
    unsafe { libc::sync() };
    Ok(())
}

/// Write one small file atomically (temp + fsync + rename + folder fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut b = Batch {
        dir: dir.to_path_buf(),
        staged: Vec::new(),
        deletes: Vec::new(),
        big: false,
    };
    b.stage(&name, bytes)?;
    b.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_writes_renames_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vdir::new(dir.path());
        let c = v.prepare_collection("c", "Calendar").unwrap();
        fs::write(c.join("old.ics"), b"x").unwrap();
        let mut b = v.batch("c");
        for i in 0..40 {
            b.stage(&format!("{i}.ics"), format!("item {i}").as_bytes())
                .unwrap();
        }
        b.delete("old.ics");
        b.commit().unwrap();
        assert_eq!(v.read("c", "7.ics").unwrap().unwrap(), b"item 7");
        assert!(v.read("c", "old.ics").unwrap().is_none());
        let leftovers: Vec<_> = fs::read_dir(&c)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(TMP_MARK))
            .collect();
        assert!(leftovers.is_empty());
        assert_eq!(
            fs::read_to_string(c.join("displayname")).unwrap(),
            "Calendar"
        );
    }

    #[test]
    fn concurrent_batches_in_one_folder_do_not_disturb_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vdir::new(dir.path());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        // every thread prepares the folder (cleaning leftovers) and writes
                        v.prepare_collection("c", "C").unwrap();
                        let mut b = v.batch("c");
                        b.stage("shared.ics", format!("{t}-{i}").as_bytes())
                            .unwrap();
                        b.stage(&format!("{t}-{i}.ics"), b"x").unwrap();
                        b.commit().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(ics_count(&dir.path().join("c")), 8 * 20 + 1);
    }

    fn ics_count(p: &Path) -> usize {
        fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ics"))
            .count()
    }

    #[test]
    fn dropped_batch_leaves_no_temp_files_and_prepare_cleans_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vdir::new(dir.path());
        let c = v.prepare_collection("c", "C").unwrap();
        {
            let mut b = v.batch("c");
            b.stage("a.ics", b"a").unwrap();
        }
        assert!(v.read("c", "a.ics").unwrap().is_none());
        fs::write(c.join(format!(".b.ics{TMP_MARK}-999999999-1")), b"partial").unwrap();
        v.prepare_collection("c", "C").unwrap();
        let names: Vec<String> = fs::read_dir(&c)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec!["displayname".to_string()]);
    }
}
