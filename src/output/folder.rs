//! The rules actopo keeps in its output folder, in one place:
//! - it never writes, renames over or deletes one of the run's inputs (compared by canonical path);
//! - it replaces or deletes only files it wrote itself: Parquet files carrying its `actopo.version`
//!   metadata, its own manifests, and the hidden temporary files it names;
//! - it follows no symbolic link inside the folder (temporary files are created new, never opened);
//! - renames are durable: the file is synced before, its folder after;
//! - one process at a time writes a worker's share of the folder (a lock file).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Metadata key every Parquet file actopo writes carries; the mark of "ours".
pub const VERSION_KEY: &str = "actopo.version";

/// The files a run reads, by canonical path, with what each one is (for the message).
#[derive(Debug, Default)]
pub struct Inputs {
    files: Vec<(PathBuf, String)>,
}

impl Inputs {
    /// Adds an input file (ignored when it does not exist: it cannot be overwritten then).
    pub fn add(&mut self, path: &Path, what: impl Into<String>) {
        if let Ok(canonical) = std::fs::canonicalize(path) {
            self.files.push((canonical, what.into()));
        }
    }

    /// Refuses `output` when it is (a link to) one of the inputs.
    pub fn check_output(&self, output: &Path) -> anyhow::Result<()> {
        let Some(target) = canonical_target(output) else {
            return Ok(());
        };
        if let Some((input, what)) = self.files.iter().find(|(p, _)| *p == target) {
            bail!(
                "output {} would overwrite {what} {}; actopo never writes over its inputs. fix: choose an output.dir outside the data folder",
                output.display(),
                input.display()
            );
        }
        Ok(())
    }
}

/// Where writing `path` would land: its canonical path when it exists, else its folder's canonical
/// path joined with its name; None when the folder does not exist either.
fn canonical_target(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    Some(std::fs::canonicalize(parent).ok()?.join(path.file_name()?))
}

/// What sits at a path actopo wants to (re)write.
#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    Absent,
    /// A file actopo wrote.
    Ours,
    /// Anything else, with the reason, for the message.
    Foreign(&'static str),
}

/// Tells whether `path` is absent, a file actopo wrote, or something it must not touch.
pub fn existing(path: &Path) -> Existing {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Existing::Absent,
    };
    if meta.file_type().is_symlink() {
        return Existing::Foreign("is a symbolic link");
    }
    if !meta.is_file() {
        return Existing::Foreign("is not a regular file");
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let ours = if name.ends_with(".parquet") {
        parquet_is_ours(path)
    } else if name.ends_with(".json") {
        read_start(path, MANIFEST_START.len()).is_ok_and(|b| manifest_is_ours(&b))
    } else {
        false
    };
    if ours {
        Existing::Ours
    } else {
        Existing::Foreign("was not written by actopo")
    }
}

/// A Parquet file whose footer carries actopo's version key.
fn parquet_is_ours(path: &Path) -> bool {
    parquet_metadata(path).is_some_and(|kv| kv.iter().any(|(k, _)| k == VERSION_KEY))
}

/// The key-value metadata of a Parquet file's footer (None when it is not readable Parquet).
pub fn parquet_metadata(path: &Path) -> Option<Vec<(String, String)>> {
    use parquet::file::reader::FileReader;
    let file = File::open(path).ok()?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).ok()?;
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    Some(
        kv.iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect(),
    )
}

/// Up to `n` first bytes of a file (a manifest is recognised by its start alone).
fn read_start(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(n);
    File::open(path)?.take(n as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The start every manifest actopo writes has (pretty-printed JSON, `tool` first).
const MANIFEST_START: &[u8] = b"{\n  \"tool\": \"actopo\"";

/// An actopo manifest, or what is left of one cut short by a crash (empty or truncated).
pub fn manifest_is_ours(bytes: &[u8]) -> bool {
    let n = bytes.len().min(MANIFEST_START.len());
    bytes[..n] == MANIFEST_START[..n]
}

/// Refuses to touch `path` unless it is absent or actopo's own.
pub fn ensure_ours(path: &Path) -> anyhow::Result<()> {
    match existing(path) {
        Existing::Absent | Existing::Ours => Ok(()),
        Existing::Foreign(why) => bail!(
            "{} {why}; actopo only replaces or deletes files it wrote itself. fix: move it away, or choose another output.dir",
            path.display()
        ),
    }
}

/// Deletes `path` if it is actopo's own; refuses anything else. True when a file was removed.
pub fn remove_ours(path: &Path) -> anyhow::Result<bool> {
    ensure_ours(path)?;
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

/// Makes a folder's entries (renames, deletions) durable.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync folder {}", dir.display()))
}

/// A new hidden temporary file in `dir` named `.<stem>.XXXXXX<suffix>`, created with create-new
/// semantics (an existing file or link of that name is never opened).
pub fn temp_file(dir: &Path, stem: &str, suffix: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(suffix)
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot create a file in {}; check output.dir and its permissions",
                dir.display()
            )
        })
}

/// True for the names `temp_file(dir, stem, suffix)` gives.
pub fn is_temp_name(name: &str, stem: &str, suffix: &str) -> bool {
    name.strip_prefix(&format!(".{stem}."))
        .and_then(|rest| rest.strip_suffix(suffix))
        .is_some_and(|random| {
            random.len() == 6 && random.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// Renames a synced temporary file over `target` (which must be absent or actopo's own), as an
/// ordinary readable file.
pub fn persist(temp: tempfile::NamedTempFile, target: &Path) -> anyhow::Result<()> {
    ensure_ours(target)?;
    temp.as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", temp.path().display()))?;
    // Temporary files are created private (0600); outputs are ordinary readable files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    temp.persist(target)
        .map_err(|e| anyhow::anyhow!("cannot rename to {}: {}", target.display(), e.error))?;
    Ok(())
}

/// Writes `dir/<file>` atomically and durably (temporary file, sync, rename, sync the folder).
pub fn write_atomically(dir: &Path, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temp = temp_file(dir, file, ".partial")?;
    temp.write_all(bytes)
        .with_context(|| format!("cannot write {}; check free space", temp.path().display()))?;
    fault_point("manifest-written");
    persist(temp, &dir.join(file))?;
    sync_dir(dir)
}

/// Refuses an output folder whose entries actopo uses (its table folders) are links or files.
pub fn check_table_dirs(dir: &Path, tables: &[&str]) -> anyhow::Result<()> {
    for table in tables {
        let path = dir.join(table);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.is_dir() {
                bail!(
                    "{} is {} but actopo writes a folder there; fix: move it away, or choose another output.dir",
                    path.display(),
                    if meta.file_type().is_symlink() { "a symbolic link" } else { "not a folder" }
                );
            }
        }
    }
    Ok(())
}

/// Fault injection for the crash tests: `ACTOPOTEST_CRASH_AT=<point>` (or `<point>:<n>`, the n-th
/// time it is reached) aborts the process there, as a kill -9 or a power cut would;
/// `ACTOPOTEST_PANIC_AT` panics the thread that reaches it instead (a stage's bug).
pub fn fault_point(point: &str) {
    if reached("ACTOPOTEST_CRASH_AT", point) {
        std::process::abort();
    }
    if reached("ACTOPOTEST_PANIC_AT", point) {
        panic!("fault injected at {point} (ACTOPOTEST_PANIC_AT)");
    }
}

/// Whether `point` is reached for the n-th time the variable `var` asks for.
fn reached(var: &str, point: &str) -> bool {
    static REACHED: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());
    let Some(wanted) = std::env::var_os(var) else {
        return false;
    };
    let wanted = wanted.to_string_lossy();
    let (name, nth) = match wanted.rsplit_once(':') {
        Some((name, n)) if n.parse::<usize>().is_ok() => (name, n.parse().unwrap_or(1)),
        _ => (wanted.as_ref(), 1),
    };
    if name != point {
        return false;
    }
    let mut counts = REACHED.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{var}/{point}");
    let count = match counts.iter_mut().find(|(p, _)| *p == key) {
        Some((_, c)) => {
            *c += 1;
            *c
        }
        None => {
            counts.push((key, 1));
            1
        }
    };
    count == nth
}

/// Held while a run writes into a folder. Locks are advisory (flock) and vanish with the process,
/// so a killed run never leaves a stale lock behind.
#[derive(Debug)]
pub struct RunLock {
    _folder: File,
    _worker: File,
}

/// Locks `dir` for one worker: a shared lock on the folder for `--shard-index` workers (several
/// may share it) or an exclusive one for a single-process run, plus an exclusive lock per worker.
pub fn lock(dir: &Path, manifest_file: &str, sharded: bool) -> anyhow::Result<RunLock> {
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
    fn temp_names_are_recognised_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let t = temp_file(dir.path(), "part-1", ".parquet.partial").unwrap();
        let name = t.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_temp_name(&name, "part-1", ".parquet.partial"), "{name}");
        assert!(!is_temp_name(&name, "part", ".parquet.partial"));
        assert!(!is_temp_name(
            ".part-1.mine.parquet.partial",
            "part-1",
            ".parquet.partial"
        ));
    }

    #[test]
    fn manifests_cut_short_are_ours_others_are_not() {
        assert!(manifest_is_ours(b""));
        assert!(manifest_is_ours(b"{\n  \"to"));
        assert!(manifest_is_ours(
            b"{\n  \"tool\": \"actopo\",\n  \"version\""
        ));
        assert!(!manifest_is_ours(b"{\"tool\": \"actopo\"}"));
        assert!(!manifest_is_ours(b"[1, 2]"));
    }

    #[test]
    fn foreign_files_and_links_are_never_ours() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("x.parquet");
        std::fs::write(&user, b"PAR1 not really").unwrap();
        assert_eq!(
            existing(&user),
            Existing::Foreign("was not written by actopo")
        );
        assert!(remove_ours(&user).is_err());
        assert!(user.exists());
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink(&user, &link).unwrap();
        assert_eq!(existing(&link), Existing::Foreign("is a symbolic link"));
        assert_eq!(existing(&dir.path().join("none")), Existing::Absent);
    }

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
