//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The Fashion-MNIST test images from the Debian package (scripts/setup.sh installs it).
pub const FASHION: &str = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";

/// A path inside the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every record batch of a Parquet file.
pub fn read_batches(path: &Path) -> Vec<RecordBatch> {
    read_parquet(path).0
}

/// Every record batch of a Parquet file, and its key-value metadata.
pub fn read_parquet(path: &Path) -> (Vec<RecordBatch>, HashMap<String, String>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
    let meta: HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    (builder.build().unwrap().map(|b| b.unwrap()).collect(), meta)
}
