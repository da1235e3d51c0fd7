//! Content hashes: a file's SHA-256, and a shard's fingerprint (its input files' sizes, times and
//! hashes; for a remote object its URL, size, time, ETag and version), which tells a rerun whether
//! a done shard's inputs changed since.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::remote::{self, ObjectVersion, RemoteUrl};
use crate::data::{self, ShardLocation, ShardSource};

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
    /// For a local file, the SHA-256 of its bytes; for a remote object (whose bytes are read by
    /// ranges, never whole), the SHA-256 of its URL, size, time, ETag and version.
    pub(crate) sha256: String,
    /// A remote object's ETag, as the store reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etag: Option<String>,
    /// A remote object's version id (buckets with versioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
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

/// The local files reading a shard opens: the data file, then an IDX image file's labels.
fn source_files(src: &ShardSource) -> Vec<PathBuf> {
    src.location
        .local()
        .map(Path::to_path_buf)
        .into_iter()
        .chain(data::companion_files(src))
        .collect()
}

/// A remote object's record: what the store says about it, with a hash over that.
fn object_fingerprint(url: &RemoteUrl, v: ObjectVersion) -> FileFingerprint {
    let identity = format!(
        "{url}\n{}\n{}\n{}\n{}",
        v.bytes,
        v.modified_ns,
        v.etag.as_deref().unwrap_or(""),
        v.version.as_deref().unwrap_or("")
    );
    FileFingerprint {
        path: PathBuf::from(url.to_string()),
        bytes: v.bytes,
        modified_ns: v.modified_ns,
        sha256: hex_sha256(identity.as_bytes()),
        etag: v.etag,
        version: v.version,
    }
}

/// Reads a shard's files once to fingerprint them (a remote object: one HEAD request).
pub(crate) fn fingerprint(src: &ShardSource) -> std::io::Result<SourceFingerprint> {
    let mut files = Vec::new();
    if let ShardLocation::Remote(url) = &src.location {
        let version = remote::head(url).map_err(std::io::Error::other)?;
        files.push(object_fingerprint(url, version));
    }
    for path in source_files(src) {
        let (bytes, modified_ns) = size_and_mtime(&path)?;
        files.push(FileFingerprint {
            sha256: sha256_file(&path)?,
            path,
            bytes,
            modified_ns,
            etag: None,
            version: None,
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
        if let ShardLocation::Remote(url) = &src.location {
            // Asked again: the same size, time, ETag and version mean the same object.
            return remote::head(url)
                .is_ok_and(|v| [object_fingerprint(url, v)] == self.files.as_slice());
        }
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
