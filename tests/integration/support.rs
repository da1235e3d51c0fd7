//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::sweeps::Sweep;

/// The Fashion-MNIST test images from the Debian package (scripts/setup.sh installs it).
pub const FASHION: &str = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";

/// A path inside the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs with fault injection: `var` (ACTOPOTEST_CRASH_AT or _PANIC_AT) set to `point`.
pub fn faulted(s: &Sweep, var: &str, point: &str, extra: &[&str]) -> Output {
    s.cmd(extra).env(var, point).output().unwrap()
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

/// A zip of the given .npy members (`x`, `y`, ...), as np.savez_compressed writes it.
pub fn write_npz(path: &Path, members: &[(&str, &[u8])]) {
    use npyz::zip::write::FileOptions;
    use npyz::zip::{CompressionMethod, ZipWriter};
    use std::io::Write;
    let mut zip = ZipWriter::new(fs::File::create(path).unwrap());
    let options = FileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(true);
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// The .npy header (version 1) of an array; its data follows.
pub fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out
}

/// The actopo binary with `args`, its output captured.
pub fn run_actopo(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args(args)
        .output()
        .unwrap()
}

/// `run` (or `validate`) of the demo config on two images with `sets` added.
pub fn demo_args(command: &str, out: &Path, sets: &[&str]) -> Vec<String> {
    let mut args = vec![
        command.to_string(),
        repo("config/fashion-mnist.toml").display().to_string(),
        "--set".into(),
        "data.limit=2".into(),
        "--set".into(),
        format!("data.shards=[\"{FASHION}\"]"),
        "--set".into(),
        format!("output.dir=\"{}\"", out.display()),
    ];
    for set in sets {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    args
}
