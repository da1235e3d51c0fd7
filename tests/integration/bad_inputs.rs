//! Bad input files through the binary: a corrupt gzip, an npz whose headers claim more than it
//! holds, labels that are not class labels, null pixels and an image column of the wrong type.
//! Each must fail its shard (one failures row with no index) or its samples (one row each),
//! never pass with different numbers, and the good shards of the run must still complete.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray};
use arrow::datatypes::{Float32Type, Int64Type, UInt32Type};

use crate::support::{failures, npy_header, read_batches, repo, stderr, write_npz};

/// A run folder with the demo CCFF model (28x28 inputs) and shards under `data/`.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        let cfg = format!(
            "[model]\nspec = \"{}\"\ndevice = \"cpu\"\n[data]\nshards = [\"data/*\"]\n[pipeline]\nbatch_size = 4\n[output]\ndir = \"out\"\n",
            repo("models/ccff.toml").display()
        );
        fs::write(dir.path().join("run.toml"), cfg).unwrap();
        Case { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_actopo"))
            .arg("run")
            .arg(self.path("run.toml"))
            .args(extra)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn status(&self, out: &str, shard: &str) -> String {
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(self.path(&format!("{out}/manifest.json"))).unwrap())
                .unwrap();
        let entry = m["shards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == shard);
        entry.unwrap()["status"].as_str().unwrap().to_string()
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `<stem>-images-idx3-ubyte.gz` of `n` 28x28 images, with its labels file, and the images' gzip
/// bytes.
fn write_idx(dir: &Path, stem: &str, n: usize) -> Vec<u8> {
    let mut images = vec![0u8, 0, 8, 3];
    for d in [n, 28, 28] {
        images.extend((d as u32).to_be_bytes());
    }
    images.extend((0..n * 784).map(|i| (i * 31 % 251) as u8));
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    let images = gz(&images);
    fs::write(dir.join(format!("{stem}-images-idx3-ubyte.gz")), &images).unwrap();
    fs::write(
        dir.join(format!("{stem}-labels-idx1-ubyte.gz")),
        gz(&labels),
    )
    .unwrap();
    images
}

fn summary(path: &Path) -> (Vec<u32>, Vec<Option<i64>>) {
    let mut indices = Vec::new();
    let mut labels = Vec::new();
    for b in read_batches(path) {
        indices.extend(
            b.column_by_name("index")
                .unwrap()
                .as_primitive::<UInt32Type>()
                .values(),
        );
        let l = b
            .column_by_name("label")
            .unwrap()
            .as_primitive::<Int64Type>();
        labels.extend((0..l.len()).map(|i| l.is_valid(i).then(|| l.value(i))));
    }
    (indices, labels)
}

#[test]
fn a_corrupt_gzip_fails_its_shard_even_when_limit_stops_early() {
    let c = Case::new();
    let data = c.path("data");
    write_idx(&data, "good", 6);
    let image = write_idx(&data, "crc", 6);
    let len = image.len();
    let mut flipped = image.clone();
    flipped[len - 8] ^= 0x01;
    fs::write(data.join("crc-images-idx3-ubyte.gz"), flipped).unwrap();
    write_idx(&data, "cut", 6);
    fs::write(data.join("cut-images-idx3-ubyte.gz"), &image[..len - 4]).unwrap();
    write_idx(&data, "junk", 6);
    let mut junk = image.clone();
    junk.extend(b"\0\0\0\0junk");
    fs::write(data.join("junk-images-idx3-ubyte.gz"), junk).unwrap();
    for (out, limit) in [("all", "0"), ("limited", "2")] {
        let o = c.run(&[
            "--set",
            &format!("output.dir=\"{out}\""),
            "--set",
            &format!("data.limit={limit}"),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(c.status(out, "good-images-idx3-ubyte.gz"), "done");
        assert!(c
            .path(&format!("{out}/summary/good-images-idx3-ubyte.parquet"))
            .exists());
        for bad in ["crc", "cut", "junk"] {
            let stem = format!("{bad}-images-idx3-ubyte");
            assert_eq!(
                c.status(out, &format!("{stem}.gz")),
                "failed",
                "{bad}, limit {limit}"
            );
            assert!(!c.path(&format!("{out}/summary/{stem}.parquet")).exists());
            let f = failures(&c.path(&format!("{out}/failures/{stem}.parquet")));
            assert_eq!(f.len(), 1, "{f:?}");
            assert_eq!((f[0].0, f[0].2.as_str()), (None, "read"));
            assert!(
                f[0].3.contains("corrupt") && f[0].3.contains("re-download"),
                "{}",
                f[0].3
            );
        }
    }
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = arrow::record_batch::RecordBatch::try_from_iter(columns).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(fs::File::create(path).unwrap(), batch.schema(), None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// 28x28 list<float32> images; a row's `Some(i)` puts a null at value i.
fn float_images(nulls: &[Option<usize>]) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(
        nulls.iter().enumerate().map(|(row, null)| {
            Some(
                (0..784).map(move |i| {
                    (Some(i) != *null).then_some(((row * 7 + i) % 100) as f32 / 100.0)
                }),
            )
        }),
    ))
}

#[test]
fn an_image_column_of_the_wrong_type_is_one_shard_failure() {
    let c = Case::new();
    let ints: ArrayRef = Arc::new(Int64Array::from((0..20).collect::<Vec<i64>>()));
    write_parquet(
        &c.path("data/ints.parquet"),
        vec![("image", ints.clone()), ("label", ints)],
    );
    write_parquet(
        &c.path("data/good.parquet"),
        vec![("image", float_images(&[None; 3]))],
    );
    let o = c.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(c.status("out", "ints.parquet"), "failed");
    assert_eq!(c.status("out", "good.parquet"), "done");
    let f = failures(&c.path("out/failures/ints.parquet"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].0, f[0].2.as_str()), (None, "read"));
    assert!(
        f[0].3.contains("image column `image` has type Int64"),
        "{}",
        f[0].3
    );
    assert!(!c.path("out/summary/ints.parquet").exists());
}

fn npy_images(n: usize) -> Vec<u8> {
    let mut x = npy_header("|u1", &[n, 28, 28]);
    x.extend((0..n * 784).map(|i| (i % 256) as u8));
    x
}

#[test]
fn labels_that_are_not_class_labels_and_null_pixels_fail_their_samples() {
    let c = Case::new();
    // Parquet: 2.7, NaN and 1e30 are not labels, 3.0 is; a null label is "unlabelled";
    // sample 5 has a null pixel.
    let labels = Float64Array::from(vec![
        Some(3.0),
        Some(2.7),
        Some(f64::NAN),
        None,
        Some(1e30),
        Some(5.0),
    ]);
    let images = float_images(&[None, None, None, None, None, Some(300)]);
    write_parquet(
        &c.path("data/floats.parquet"),
        vec![("image", images), ("label", Arc::new(labels))],
    );
    // npz: 2^64-1 does not fit a label
    let mut y = npy_header("<u8", &[3]);
    y.extend([1u64, u64::MAX, 2].iter().flat_map(|v| v.to_le_bytes()));
    write_npz(&c.path("data/big.npz"), &[("x", &npy_images(3)), ("y", &y)]);
    // a column of strings fails the shard once
    let words: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["3", "cat"]));
    write_parquet(
        &c.path("data/words.parquet"),
        vec![("image", float_images(&[None; 2])), ("label", words)],
    );
    let o = c.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    let f = failures(&c.path("out/failures/floats.parquet"));
    let indices: Vec<Option<u32>> = f.iter().map(|r| r.0).collect();
    assert_eq!(indices, vec![Some(1), Some(2), Some(4), Some(5)], "{f:?}");
    assert!(f.iter().all(|r| r.2 == "read"));
    for (row, value) in [
        (0, "2.7"),
        (1, "NaN"),
        (2, "1000000000000000000000000000000"),
    ] {
        let e = &f[row].3;
        assert!(
            e.contains(&format!("label column `label` holds {value}")) && e.contains("int64"),
            "{e}"
        );
    }
    assert!(
        f[3].3.contains("value 300 of the image is null"),
        "{}",
        f[3].3
    );
    assert_eq!(
        summary(&c.path("out/summary/floats.parquet")),
        (vec![0, 3], vec![Some(3), None])
    );

    let f = failures(&c.path("out/failures/big.parquet"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, Some(1));
    assert!(
        f[0].3.contains("array `y` holds 18446744073709551615"),
        "{}",
        f[0].3
    );
    assert_eq!(
        summary(&c.path("out/summary/big.parquet")),
        (vec![0, 2], vec![Some(1), Some(2)])
    );

    assert_eq!(c.status("out", "words.parquet"), "failed");
    let f = failures(&c.path("out/failures/words.parquet"));
    assert_eq!((f.len(), f[0].0), (1, None), "{f:?}");
    assert!(
        f[0].3.contains("label column `label` has type Utf8"),
        "{}",
        f[0].3
    );
}

#[test]
fn an_npz_that_claims_more_than_it_holds_is_refused_before_reading() {
    let c = Case::new();
    // 2^27 one-byte labels deflate to about 130 kB; reading them would take over 1 GB as i64.
    let mut y = npy_header("|u1", &[1 << 27]);
    y.resize(y.len() + (1 << 27), 0);
    write_npz(
        &c.path("data/many.npz"),
        &[("x", &npy_images(4)), ("y", &y)],
    );
    // a version 2 header that claims 0xfffffff0 bytes of header text
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend(0xffff_fff0u32.to_le_bytes());
    v2.extend(b"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 28, 28), }\n");
    write_npz(&c.path("data/header.npz"), &[("x", &v2)]);
    write_npz(&c.path("data/good.npz"), &[("x", &npy_images(2))]);
    let o = c.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(c.status("out", "good.npz"), "done");
    let many = failures(&c.path("out/failures/many.parquet"));
    assert_eq!((many.len(), many[0].0), (1, None), "{many:?}");
    assert!(
        many[0]
            .3
            .contains("array `y` has shape [134217728] but `x` has 4 images"),
        "{}",
        many[0].3
    );
    let header = failures(&c.path("out/failures/header.parquet"));
    assert_eq!((header.len(), header[0].0), (1, None), "{header:?}");
    assert!(
        header[0].3.contains("header claims 4294967280 bytes"),
        "{}",
        header[0].3
    );
}
