//! Shards that live behind URLs: S3 (and S3-compatible servers), Google Cloud Storage, Azure Blob
//! Storage, plain http(s), and Hugging Face dataset repositories, through `object_store`.
//!
//! One file per concern: `url` (schemes and their parts), `store` (clients from the environment,
//! retries, the I/O runtime), `listing` (globs), `reader` (Parquet's async reader on an object),
//! `parquet` (row groups by range requests, with prefetch), `fetch` (whole objects: IDX and npz shards, and objects' versions). Settings and
//! what is tested against a real server: `docs/remote-shards.md`.

use std::future::Future;

use ::parquet::errors::ParquetError;

mod fetch;
mod listing;
mod parquet;
mod reader;
mod store;
mod url;

pub use fetch::{fetch_whole, head, ObjectVersion};
pub use listing::expand;
pub use parquet::stream_parquet;
pub use store::describe;
pub use url::{looks_remote, RemoteUrl};

/// Runs `future` on the I/O runtime and waits for it; callable from any thread that is not
/// itself running async code (the reader stage's blocking thread, `validate`, tests).
pub(crate) fn block_on_io<T, F>(future: F) -> Result<T, String>
where
    F: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    futures::executor::block_on(store::io_runtime().spawn(future))
        .map_err(|e| format!("the remote read task ended: {e}"))?
}

/// A Parquet error on a remote shard: the store's own error when there is one (naming the
/// settings to check), else `what` and the error.
fn fetch_error(url: &RemoteUrl, what: &str, e: ParquetError) -> String {
    if let ParquetError::External(inner) = &e {
        if let Some(store_error) = inner.downcast_ref::<object_store::Error>() {
            return describe(url, store_error);
        }
    }
    format!("{url}: {what}: {e}")
}
