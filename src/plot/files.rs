//! Writing figures and the report into a run's folder, by the folder's rules (`docs/data-safety.md`):
//! each file is written under a hidden temporary name beside its target, synced, then renamed; an
//! existing file is replaced only when actopo wrote it, known by its mark (the first line of an SVG
//! or HTML file, a `Software` text chunk in a PNG). Anything else, or a link, is refused.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};

use super::render::{MARK_PREFIX, PNG_MARK_KEY, PNG_MARK_PREFIX};
use crate::output::folder;

/// Whether `path` holds a file actopo wrote (judged by its mark).
fn is_ours(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(".png") {
        return png_is_ours(path);
    }
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // The mark is the first line of an SVG, the second of an HTML page (after the doctype).
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    head.lines().take(2).any(|l| l.starts_with(MARK_PREFIX))
}

fn png_is_ours(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(reader) = png::Decoder::new(std::io::BufReader::new(file)).read_info() else {
        return false;
    };
    reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .any(|t| t.keyword == PNG_MARK_KEY && t.text.starts_with(PNG_MARK_PREFIX))
}

/// Refuses `path` unless it is absent or a regular file actopo wrote.
fn check_replaceable(path: &Path) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let why = if meta.file_type().is_symlink() {
        "is a symbolic link"
    } else if !meta.is_file() {
        "is not a regular file"
    } else if !is_ours(path) {
        "was not written by actopo (it has no actopo mark)"
    } else {
        return Ok(());
    };
    bail!(
        "{} {why}; actopo only replaces files it wrote itself. fix: move it away, then rerun",
        path.display()
    )
}

/// Creates `dir` (a real folder, not a link) if needed.
pub fn ensure_folder(dir: &Path) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(dir) {
        if !meta.is_dir() {
            bail!(
                "{} is not a folder (or is a link); actopo writes its figures there. fix: move it away",
                dir.display()
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}; check its permissions", dir.display()))
}

/// Writes `dir/name` atomically and durably, replacing only a file actopo wrote.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let target = dir.join(name);
    check_replaceable(&target)?;
    let mut temp = folder::temp_file(dir, name, ".partial")?;
    temp.write_all(bytes)
        .and_then(|_| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}; check free space", temp.path().display()))?;
    // Temporary files are created private (0600); outputs are ordinary readable files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    temp.persist(&target)
        .map_err(|e| anyhow::anyhow!("cannot rename to {}: {}", target.display(), e.error))?;
    folder::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_its_own_files_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let svg = format!("{}\n<svg></svg>", super::super::render::mark());
        write_file(dir.path(), "a.svg", svg.as_bytes()).unwrap();
        write_file(dir.path(), "a.svg", svg.as_bytes()).unwrap();
        std::fs::write(dir.path().join("b.svg"), "<svg>mine</svg>").unwrap();
        let err = write_file(dir.path(), "b.svg", svg.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("not written by actopo"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b.svg")).unwrap(),
            "<svg>mine</svg>"
        );
        std::fs::write(dir.path().join("c.png"), b"\x89PNG not ours").unwrap();
        assert!(write_file(dir.path(), "c.png", b"x").is_err());
        std::os::unix::fs::symlink(dir.path().join("a.svg"), dir.path().join("d.svg")).unwrap();
        let err = write_file(dir.path(), "d.svg", svg.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }
}
