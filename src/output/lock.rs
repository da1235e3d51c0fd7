//! The run lock: one process at a time writes a worker's share of an output folder.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};

/// Held while a run writes into a folder. Locks are advisory (flock) and vanish with the process,
/// so a killed run never leaves a stale lock behind.
#[derive(Debug)]
pub(crate) struct RunLock {
    _folder: File,
    _worker: File,
}

/// Locks `dir` for one worker: a shared lock on the folder for `--shard-index` workers (several
/// may share it) or an exclusive one for a single-process run, plus an exclusive lock per worker.
pub(crate) fn lock(dir: &Path, manifest_file: &str, sharded: bool) -> anyhow::Result<RunLock> {
    let open = |name: &str| -> anyhow::Result<File> {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            bail!(
                "{} is not a regular file; fix: remove it (actopo uses it as its lock file)",
                path.display()
            );
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create lock file {}", path.display()))
    };
    let busy = |what: &str| {
        anyhow::anyhow!(
            "output.dir {} is in use by another actopo run ({what}); fix: wait for it to finish, or use another output.dir",
            dir.display()
        )
    };
    let folder = open(".actopo.lock")?;
    let locked = if sharded {
        folder.try_lock_shared()
    } else {
        folder.try_lock()
    };
    locked.map_err(|_| {
        busy(if sharded {
            "a single-process run"
        } else {
            "a run or worker"
        })
    })?;
    let worker = open(&format!(".{manifest_file}.lock"))?;
    worker.try_lock().map_err(|_| busy("the same worker"))?;
    Ok(RunLock {
        _folder: folder,
        _worker: worker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_worker_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "manifest.json", false).unwrap();
        let e = lock(dir.path(), "manifest.json", false).unwrap_err();
        assert!(
            e.to_string().contains("in use by another actopo run"),
            "{e}"
        );
        let e = lock(dir.path(), "manifest-00000-of-00002.json", true).unwrap_err();
        assert!(e.to_string().contains("single-process run"), "{e}");
        drop(first);
        let a = lock(dir.path(), "manifest-00000-of-00002.json", true).unwrap();
        let _b = lock(dir.path(), "manifest-00001-of-00002.json", true).unwrap();
        assert!(lock(dir.path(), "manifest-00000-of-00002.json", true).is_err());
        drop(a);
    }
}
