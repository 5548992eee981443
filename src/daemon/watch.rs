//! Watches the calendar folders of two-way pairs (inotify through `notify`):
//! a file created, edited or deleted there marks the pair dirty; the
//! scheduler syncs it once the folder has been quiet for a moment, so an edit
//! reaches the platform within seconds instead of at the next schedule.

use std::path::PathBuf;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Temp files of our own writes and vdir metadata do not count as edits.
fn is_event_file(p: &std::path::Path) -> bool {
    let Some(name) = p.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".ics")
}

/// Start watching `folders` (pair name, vdir root); events send the pair name.
pub fn start(
    folders: &[(String, PathBuf)],
    tx: mpsc::UnboundedSender<String>,
) -> notify::Result<Option<RecommendedWatcher>> {
    if folders.is_empty() {
        return Ok(None);
    }
    let map: Vec<(String, PathBuf)> = folders.to_vec();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in ev.paths.iter().filter(|p| is_event_file(p)) {
            for (pair, root) in &map {
                if p.starts_with(root) {
                    let _ = tx.send(pair.clone());
                }
            }
        }
    })?;
    for (pair, root) in folders {
        if let Err(e) = std::fs::create_dir_all(root) {
            tracing::warn!(%pair, folder = %root.display(), error = %e, "cannot create the calendar folder to watch");
            continue;
        }
        watcher.watch(root, RecursiveMode::Recursive)?;
        tracing::info!(%pair, folder = %root.display(), "watching the calendar folder for local edits");
    }
    Ok(Some(watcher))
}
