//! The rules actopo keeps in its output folder, in one place (`docs/data-safety.md`):
//! - it never writes, renames over or deletes one of the run's inputs (compared by canonical path);
//! - it replaces or deletes only files it wrote itself: Parquet files carrying its `actopo.version`
//!   metadata, its own manifests, and the hidden temporary files it names;
//! - it follows no symbolic link inside the folder (temporary files are created new, never opened);
//! - renames are durable: the file is synced before, its folder after;
//! - one process at a time writes a worker's share of the folder (a lock file: `lock.rs`).
//!
//! Reasons and details: `docs/data-safety.md`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::fault::{fault_point, FaultPoint};
use super::manifest;
use super::tables::Table;

/// Metadata key every Parquet file actopo writes carries; the mark of "ours".
const VERSION_KEY: &str = "actopo.version";

/// The files a run reads, by canonical path, with what each one is (for the message).
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    files: Vec<(PathBuf, String)>,
}

impl Inputs {
    /// Adds an input file (ignored when it does not exist: it cannot be overwritten then).
    pub(crate) fn add(&mut self, path: &Path, what: impl Into<String>) {
        if let Ok(canonical) = std::fs::canonicalize(path) {
            self.files.push((canonical, what.into()));
        }
    }

    /// Refuses `output` when it is (a link to) one of the inputs.
    pub(crate) fn check_output(&self, output: &Path) -> anyhow::Result<()> {
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
pub(crate) enum Existing {
    Absent,
    /// A file actopo wrote.
    Ours,
    /// Anything else, with the reason, for the message.
    Foreign(&'static str),
}

/// Tells whether `path` is absent, a file actopo wrote, or something it must not touch.
pub(crate) fn existing(path: &Path) -> Existing {
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
        manifest::file_is_ours(path)
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
pub(crate) fn parquet_metadata(path: &Path) -> Option<Vec<(String, String)>> {
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

/// Refuses to touch `path` unless it is absent or actopo's own.
fn ensure_ours(path: &Path) -> anyhow::Result<()> {
    match existing(path) {
        Existing::Absent | Existing::Ours => Ok(()),
        Existing::Foreign(why) => bail!(
            "{} {why}; actopo only replaces or deletes files it wrote itself. fix: move it away, or choose another output.dir",
            path.display()
        ),
    }
}

/// Deletes `path` if it is actopo's own; refuses anything else. True when a file was removed.
pub(crate) fn remove_ours(path: &Path) -> anyhow::Result<bool> {
    ensure_ours(path)?;
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

/// Makes a folder's entries (renames, deletions) durable.
pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync folder {}", dir.display()))
}

/// A new hidden temporary file in `dir` named `.<stem>.XXXXXX<suffix>`, created with create-new
/// semantics (an existing file or link of that name is never opened).
pub(crate) fn temp_file(
    dir: &Path,
    stem: &str,
    suffix: &str,
) -> anyhow::Result<tempfile::NamedTempFile> {
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
pub(crate) fn is_temp_name(name: &str, stem: &str, suffix: &str) -> bool {
    name.strip_prefix(&format!(".{stem}."))
        .and_then(|rest| rest.strip_suffix(suffix))
        .is_some_and(|random| {
            random.len() == 6 && random.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// Renames a synced temporary file over `target` (which must be absent or actopo's own), as an
/// ordinary readable file.
pub(crate) fn persist(temp: tempfile::NamedTempFile, target: &Path) -> anyhow::Result<()> {
    ensure_ours(target)?;
    rename_into_place(temp, target)
}

/// Syncs a temporary file, makes it an ordinary readable file and renames it over `target`.
fn rename_into_place(temp: tempfile::NamedTempFile, target: &Path) -> anyhow::Result<()> {
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

/// Writes a file the user named outright (`actopo diagrams --out`), replacing what is there:
/// a temporary file beside it, synced, made readable (0644) and renamed into place.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = temp_file(dir, &name, ".partial")?;
    temp.write_all(bytes)
        .with_context(|| format!("cannot write {}; check free space", temp.path().display()))?;
    rename_into_place(temp, path)
}

/// Writes `dir/<file>` atomically and durably (temporary file, sync, rename, sync the folder).
pub(crate) fn write_atomically(dir: &Path, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temp = temp_file(dir, file, ".partial")?;
    temp.write_all(bytes)
        .with_context(|| format!("cannot write {}; check free space", temp.path().display()))?;
    fault_point(FaultPoint::ManifestWritten);
    persist(temp, &dir.join(file))?;
    sync_dir(dir)
}

/// Refuses an output folder whose entries actopo uses (its table folders) are links or files.
pub(crate) fn check_table_dirs(dir: &Path, tables: &[Table]) -> anyhow::Result<()> {
    for table in tables {
        let path = table.dir(dir);
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
}
