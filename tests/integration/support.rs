//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;
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

/// Rows of failures/<stem>.parquet: (index, variant, stage, error).
pub fn failures(path: &Path) -> Vec<(Option<u32>, Option<String>, String, String)> {
    let mut rows = Vec::new();
    for b in read_batches(path) {
        let index = b
            .column_by_name("index")
            .unwrap()
            .as_primitive::<UInt32Type>()
            .clone();
        let variant = b
            .column_by_name("variant")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let stage = b
            .column_by_name("stage")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let error = b
            .column_by_name("error")
            .unwrap()
            .as_string::<i32>()
            .clone();
        for i in 0..b.num_rows() {
            rows.push((
                index.is_valid(i).then(|| index.value(i)),
                variant.is_valid(i).then(|| variant.value(i).to_string()),
                stage.value(i).to_string(),
                error.value(i).to_string(),
            ));
        }
    }
    rows
}
