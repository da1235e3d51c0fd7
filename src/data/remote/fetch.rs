//! Whole objects (IDX and npz shards are small: read in one GET into a temporary file), and an
//! object's version as the store reports it (for the manifest's fingerprint).

use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;

use super::block_on_io;
use super::store::{describe, store_for};
use super::url::RemoteUrl;

/// What identifies an object's content without reading it: size, time, ETag and version id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub bytes: u64,
    /// Last modified, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
    pub etag: Option<String>,
    /// The store's version id, on buckets with versioning.
    pub version: Option<String>,
}

/// The object's current version (one HEAD request).
pub fn head(url: &RemoteUrl) -> Result<ObjectVersion, String> {
    let (store, key) = store_for(url)?;
    let at = url.clone();
    block_on_io(async move {
        let meta = store.head(&key).await.map_err(|e| describe(&at, &e))?;
        Ok(ObjectVersion {
            bytes: meta.size,
            modified_ns: meta
                .last_modified
                .timestamp_nanos_opt()
                .map_or(0, |n| n.max(0) as u64),
            etag: meta.e_tag,
            version: meta.version,
        })
    })
}

/// Downloads the object into `dir` under its own file name; `Ok(None)` when there is no such
/// object and `optional` (an IDX image file's labels may be absent).
pub fn fetch_whole(url: &RemoteUrl, dir: &Path, optional: bool) -> Result<Option<PathBuf>, String> {
    let (store, key) = store_for(url)?;
    let at = url.clone();
    let bytes = block_on_io(async move {
        match store.get(&key).await {
            Ok(got) => got.bytes().await.map(Some).map_err(|e| describe(&at, &e)),
            Err(object_store::Error::NotFound { .. }) if optional => Ok(None),
            Err(e) => Err(describe(&at, &e)),
        }
    })?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let path = dir.join(url.file_name());
    std::fs::write(&path, &bytes).map_err(|e| {
        format!(
            "{url}: cannot keep a temporary copy in {}: {e}; check free space in TMPDIR",
            dir.display()
        )
    })?;
    Ok(Some(path))
}
