//! Remote Parquet shards: the object's size (HEAD), its footer, then the projected columns row group by row group with
//! range requests, fetched on the I/O runtime ahead of the decoder through a bounded channel.

use std::path::Path;

use arrow::array::RecordBatch;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use tokio::sync::mpsc;

use super::reader::ObjectReader;
use super::store::{describe, io_runtime, store_for};
use super::url::RemoteUrl;
use super::{block_on_io, fetch_error};
use crate::data::parquet::{emit_batches, plan_columns, BatchError};
use crate::data::{err, DataError, ReadOptions, ShardEvent};

/// Row groups fetched ahead of the one being decoded. Two keep the network busy while the model
/// works (one in flight, one ready) and bound memory to about three row groups per reader.
pub const PREFETCH_ROW_GROUPS: usize = 2;

type Fetched = Result<RecordBatch, BatchError>;

/// A remote shard opened: its row count, label column, and the receiving end of the prefetch.
struct RemoteShard {
    rows: usize,
    label: Option<String>,
    batches: mpsc::Receiver<Fetched>,
}

pub fn stream_parquet(
    url: &RemoteUrl,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let label = url.to_string();
    let path = Path::new(&label);
    let mut shard = open(url, path, opts, batch_size)?;
    let batches = std::iter::from_fn(|| shard.batches.blocking_recv());
    emit_batches(
        path,
        batches,
        shard.rows,
        shard.label.as_deref(),
        opts,
        emit,
    )
    // Dropping the receiver stops the fetching task at its next send.
}

/// Reads the footer, checks the columns, and starts fetching row groups on the I/O runtime.
fn open(
    url: &RemoteUrl,
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
) -> Result<RemoteShard, DataError> {
    let (store, key) = store_for(url).map_err(|e| err(path, None, e))?;
    let at = url.clone();
    let builder = block_on_io(async move {
        let size = store.head(&key).await.map_err(|e| describe(&at, &e))?.size;
        ParquetRecordBatchStreamBuilder::new(ObjectReader::new(store, key, size))
            .await
            .map_err(|e| fetch_error(&at, "not a readable Parquet file", e))
    })
    .map_err(|e| err(path, None, e))?;
    let plan = plan_columns(builder.schema(), path, opts)?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let biggest_group = (0..builder.metadata().num_row_groups())
        .map(|i| builder.metadata().row_group(i).num_rows().max(0) as usize)
        .max()
        .unwrap_or(0);
    let mask = ProjectionMask::roots(builder.parquet_schema(), plan.roots);
    let stream = builder
        .with_projection(mask)
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    let depth = prefetch_batches(biggest_group, batch_size);
    let (tx, rx) = mpsc::channel(depth);
    let url = url.clone();
    io_runtime().spawn(async move {
        let mut stream = stream;
        while let Some(batch) = stream.next().await {
            let url = url.clone();
            let batch = batch.map_err(|e| {
                Box::new(move |start: usize| {
                    fetch_error(
                        &url,
                        &format!("cannot read row group data at row {start}"),
                        e,
                    )
                }) as BatchError
            });
            if tx.send(batch).await.is_err() {
                break; // the reader stopped
            }
        }
    });
    Ok(RemoteShard {
        rows,
        label: plan.label,
        batches: rx,
    })
}

/// Channel depth in record batches: `PREFETCH_ROW_GROUPS` row groups' worth.
fn prefetch_batches(rows_per_group: usize, batch_size: usize) -> usize {
    let per_group = rows_per_group.div_ceil(batch_size.max(1)).max(1);
    (per_group * PREFETCH_ROW_GROUPS).clamp(2, 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefetch_holds_two_row_groups_of_batches() {
        assert_eq!(super::prefetch_batches(1000, 64), 32);
        assert_eq!(super::prefetch_batches(0, 64), 2);
        assert_eq!(super::prefetch_batches(10, 0), 20);
    }
}
