//! Content hashes: a file's SHA-256, and a shard's fingerprint (its input files' sizes, times and
//! hashes), which tells a rerun whether a done shard's inputs changed since.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{self, ShardSource};

/// SHA-256 of a file, read in blocks (shards may be large).
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One input file as it was when its shard was processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileFingerprint {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub(crate) modified_ns: u64,
    pub(crate) sha256: String,
}

/// A shard's input files (the data file, and an IDX image file's labels) and one hash over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceFingerprint {
    pub(crate) sha256: String,
    pub(crate) files: Vec<FileFingerprint>,
}

fn size_and_mtime(path: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((meta.len(), modified))
}

/// The files reading a shard opens: the data file, then an IDX image file's labels.
fn source_files(src: &ShardSource) -> Vec<PathBuf> {
    std::iter::once(src.path.clone())
        .chain(data::companion_files(src))
        .collect()
}

/// Reads a shard's files once to fingerprint them.
pub(crate) fn fingerprint(src: &ShardSource) -> std::io::Result<SourceFingerprint> {
    let mut files = Vec::new();
    for path in source_files(src) {
        let (bytes, modified_ns) = size_and_mtime(&path)?;
        files.push(FileFingerprint {
            sha256: sha256_file(&path)?,
            path,
            bytes,
            modified_ns,
        });
    }
    let joined: Vec<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
    Ok(SourceFingerprint {
        sha256: hex_sha256(joined.join("\n").as_bytes()),
        files,
    })
}

impl SourceFingerprint {
    /// Whether `src` still holds what was fingerprinted. Files whose size and modification time
    /// are as recorded are taken as unchanged (like make and rsync); others are hashed again, so
    /// a copied dataset (new times, same bytes) is not redone.
    pub(crate) fn unchanged(&self, src: &ShardSource) -> bool {
        let paths = source_files(src);
        paths.len() == self.files.len()
            && paths
                .iter()
                .zip(&self.files)
                .all(|(path, old)| match size_and_mtime(path) {
                    Ok((bytes, modified)) if bytes == old.bytes && modified == old.modified_ns => {
                        true
                    }
                    Ok((bytes, _)) if bytes == old.bytes => {
                        sha256_file(path).is_ok_and(|h| h == old.sha256)
                    }
                    _ => false,
                })
    }
}
