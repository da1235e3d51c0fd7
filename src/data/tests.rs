//! Shard reading tests shared by the formats (they use one `read` helper).

use super::listing::detect_format;
use super::*;
use std::path::{Path, PathBuf};

#[test]
fn stems_and_formats() {
    assert_eq!(
        stem_of(Path::new("/d/t10k-images-idx3-ubyte.gz")),
        "t10k-images-idx3-ubyte"
    );
    assert_eq!(
        stem_of(Path::new("test-00000-of-00001.parquet")),
        "test-00000-of-00001"
    );
    assert_eq!(
        detect_format(Path::new("a/t10k-images-idx3-ubyte.gz")),
        Some(DataFormat::Idx)
    );
    assert_eq!(detect_format(Path::new("x.npz")), Some(DataFormat::Npz));
    assert_eq!(detect_format(Path::new("x.csv")), None);
}

#[test]
fn channel_stats_broadcast_or_match() {
    assert_eq!(
        channel_stats(&[0.5], &[2.0], 3).unwrap(),
        (vec![0.5; 3], vec![2.0; 3])
    );
    assert_eq!(
        channel_stats(&[0.1, 0.2], &[1.0, 1.0], 2).unwrap().0,
        vec![0.1, 0.2]
    );
    assert!(channel_stats(&[0.1, 0.2], &[1.0, 1.0], 3)
        .unwrap_err()
        .contains("data.mean"));
}

fn opts(limit: usize) -> ReadOptions {
    ReadOptions {
        input_shape: vec![1, 2, 2],
        image_column: "image".into(),
        label_column: Some("label".into()),
        limit,
    }
}

fn source(path: &Path, format: DataFormat) -> ShardSource {
    ShardSource {
        location: ShardLocation::Local(path.to_path_buf()),
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        stem: stem_of(path),
        format,
    }
}

/// Every event's content: (samples announced, values, labels, failures), or the error.
type Read = (usize, Vec<f32>, Vec<Option<i64>>, Vec<(usize, String)>);

fn read(path: &Path, format: DataFormat, limit: usize) -> Result<Read, DataError> {
    let mut out: Read = (0, Vec::new(), Vec::new(), Vec::new());
    stream_shard(&source(path, format), &opts(limit), 2, &mut |event| {
        match event {
            ShardEvent::Start { samples } => out.0 = samples,
            ShardEvent::Batch(b) => {
                out.1.extend(b.x);
                out.2.extend(b.labels);
                out.3.extend(b.failed);
            }
        }
        true
    })?;
    Ok(out)
}

/// An IDX image file of `n` 2x2 images.
fn idx_images(n: usize) -> Vec<u8> {
    let mut out = vec![0u8, 0, 8, 3];
    for d in [n as u32, 2, 2] {
        out.extend(d.to_be_bytes());
    }
    out.extend((0..n * 4).map(|i| (i * 37 % 256) as u8));
    out
}

fn idx_labels_file(n: usize) -> Vec<u8> {
    let mut out = vec![0u8, 0, 8, 1];
    out.extend((n as u32).to_be_bytes());
    out.extend((0..n).map(|i| (i % 10) as u8));
    out
}

fn gzip(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes `images` (and labels for `n`) as `t-images-idx3-ubyte.gz` in `dir`.
fn write_idx_gz(dir: &Path, images: &[u8], n: usize) -> PathBuf {
    let p = dir.join("t-images-idx3-ubyte.gz");
    std::fs::write(&p, images).unwrap();
    let labels = gzip(&idx_labels_file(n), flate2::Compression::fast());
    std::fs::write(dir.join("t-labels-idx1-ubyte.gz"), labels).unwrap();
    p
}

#[test]
fn a_corrupt_gzip_fails_even_when_limit_stops_early() {
    let dir = tempfile::tempdir().unwrap();
    let good = gzip(&idx_images(5), flate2::Compression::fast());
    let len = good.len();
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x01;
        b
    };
    let mut garbage = good.clone();
    garbage.extend(b"trailing garbage");
    // stored blocks: the image bytes sit in the file as they are
    let images = idx_images(5);
    let mut stored = gzip(&images, flate2::Compression::none());
    let tail = &images[images.len() - 8..];
    let at = stored.windows(8).position(|w| w == tail).unwrap() + 5; // a pixel of the last image
    stored[at] ^= 0x01;
    let cases = [
        ("flipped CRC32", flip(len - 8)),
        ("flipped length", flip(len - 1)),
        ("cut trailer", good[..len - 4].to_vec()),
        ("no trailer", good[..len - 8].to_vec()),
        ("trailing garbage", garbage),
        ("corrupted stored block", stored),
    ];
    let p = write_idx_gz(dir.path(), &good, 5);
    assert_eq!(read(&p, DataFormat::Idx, 0).unwrap().0, 5);
    assert_eq!(read(&p, DataFormat::Idx, 2).unwrap().0, 2);
    for (what, bytes) in cases {
        let p = write_idx_gz(dir.path(), &bytes, 5);
        for limit in [0, 2] {
            let e = read(&p, DataFormat::Idx, limit)
                .expect_err(what)
                .to_string();
            assert!(
                e.contains("t-images-idx3-ubyte.gz")
                    && e.contains("corrupt")
                    && e.contains("re-download"),
                "{what}, limit {limit}: {e}"
            );
        }
    }
}

#[test]
fn extra_bytes_after_the_images_fail_raw_and_gzipped_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut images = idx_images(3);
    images.extend([7, 7, 7]);
    let p = write_idx_gz(dir.path(), &gzip(&images, flate2::Compression::fast()), 3);
    let e = read(&p, DataFormat::Idx, 0).unwrap_err().to_string();
    assert!(e.contains("has 3 bytes after the image data"), "{e}");
    let raw = dir.path().join("r-images-idx3-ubyte");
    std::fs::write(&raw, &images).unwrap();
    let e = read(&raw, DataFormat::Idx, 0).unwrap_err().to_string();
    assert!(e.contains("the file has 15 bytes after the header"), "{e}");
}

#[test]
fn a_gzip_of_several_members_reads_like_one() {
    let dir = tempfile::tempdir().unwrap();
    let images = idx_images(5);
    let one = write_idx_gz(dir.path(), &gzip(&images, flate2::Compression::fast()), 5);
    let expected = read(&one, DataFormat::Idx, 0).unwrap();
    // split inside an image, as `cat a.gz b.gz` makes
    let mut two = gzip(&images[..21], flate2::Compression::fast());
    two.extend(gzip(&images[21..], flate2::Compression::best()));
    let p = write_idx_gz(dir.path(), &two, 5);
    assert_eq!(read(&p, DataFormat::Idx, 0).unwrap(), expected);
    assert_eq!(expected.2[4], Some(4));
}

#[test]
fn a_corrupt_label_file_fails_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_idx_gz(
        dir.path(),
        &gzip(&idx_images(4), flate2::Compression::fast()),
        4,
    );
    let labels = dir.path().join("t-labels-idx1-ubyte.gz");
    let mut bytes = std::fs::read(&labels).unwrap();
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0x01;
    std::fs::write(&labels, &bytes).unwrap();
    let e = read(&p, DataFormat::Idx, 0).unwrap_err().to_string();
    assert!(
        e.contains("t-labels-idx1-ubyte.gz") && e.contains("corrupt"),
        "{e}"
    );
    // garbage after the gzip member
    bytes[crc] ^= 0x01;
    bytes.extend(b"garbage");
    std::fs::write(&labels, &bytes).unwrap();
    let e = read(&p, DataFormat::Idx, 0).unwrap_err().to_string();
    assert!(
        e.contains("t-labels-idx1-ubyte.gz") && e.contains("corrupt"),
        "{e}"
    );
    // raw label file with a byte too many
    std::fs::remove_file(&labels).unwrap();
    let mut raw = idx_labels_file(4);
    raw.push(9);
    std::fs::write(dir.path().join("t-labels-idx1-ubyte"), raw).unwrap();
    let e = read(&p, DataFormat::Idx, 0).unwrap_err().to_string();
    assert!(e.contains("has 1 bytes after the label data"), "{e}");
}

fn write_parquet(path: &Path, columns: Vec<(&str, arrow::array::ArrayRef)>) {
    let batch = arrow::record_batch::RecordBatch::try_from_iter(columns).unwrap();
    let mut w = ::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A list<float64> image column of 2x2 images; `None` entries are null values in a list.
fn float_images(rows: &[[Option<f64>; 4]]) -> arrow::array::ArrayRef {
    use arrow::array::ListArray;
    use arrow::datatypes::Float64Type;
    std::sync::Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(
        rows.iter().map(|r| Some(r.to_vec())),
    ))
}

#[test]
fn parquet_labels_that_are_not_class_labels_fail_their_samples() {
    use arrow::array::{Float64Array, StringArray, UInt64Array};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.parquet");
    let img = [Some(0.5); 4];
    let labels = Float64Array::from(vec![Some(3.0), Some(2.7), None, Some(f64::NAN), Some(1e30)]);
    write_parquet(
        &p,
        vec![
            ("image", float_images(&[img; 5])),
            ("label", Arc::new(labels)),
        ],
    );
    let (n, x, labels, failed) = read(&p, DataFormat::Parquet, 0).unwrap();
    assert_eq!(n, 5);
    assert_eq!(labels, vec![Some(3), None, None, None, None]);
    let indices: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, vec![1, 3, 4]);
    assert!(
        failed[0].1.contains("label column `label` holds 2.7"),
        "{}",
        failed[0].1
    );
    assert_eq!(&x[0..4], &[0.5; 4]);
    assert_eq!(&x[4..8], &[0.0; 4], "a failed sample is all zeros");
    let labels = UInt64Array::from(vec![2, u64::MAX]);
    write_parquet(
        &p,
        vec![
            ("image", float_images(&[img; 2])),
            ("label", Arc::new(labels)),
        ],
    );
    let (_, _, labels, failed) = read(&p, DataFormat::Parquet, 0).unwrap();
    assert_eq!(
        (labels, failed.len(), failed[0].0),
        (vec![Some(2), None], 1, 1)
    );
    // a column of strings is refused once, for the shard
    let labels = StringArray::from(vec!["3", "cat"]);
    write_parquet(
        &p,
        vec![
            ("image", float_images(&[img; 2])),
            ("label", Arc::new(labels)),
        ],
    );
    let e = read(&p, DataFormat::Parquet, 0).unwrap_err();
    assert_eq!(e.sample, None);
    assert!(
        e.message.contains("label column `label` has type Utf8"),
        "{e}"
    );
}

#[test]
fn a_null_inside_an_image_list_fails_that_sample() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.parquet");
    let rows = [
        [Some(0.25); 4],
        [Some(0.5), None, Some(0.5), Some(0.5)],
        [Some(1.0); 4],
    ];
    write_parquet(&p, vec![("image", float_images(&rows))]);
    let (n, x, _, failed) = read(&p, DataFormat::Parquet, 0).unwrap();
    assert_eq!(n, 3);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 1);
    assert!(
        failed[0].1.contains("value 1 of the image is null"),
        "{}",
        failed[0].1
    );
    assert_eq!(x, [[0.25; 4], [0.0; 4], [1.0; 4]].concat());
}

#[test]
fn an_image_column_of_the_wrong_type_fails_the_shard_once() {
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.parquet");
    let columns: [(arrow::array::ArrayRef, &str); 2] = [
        (Arc::new(Int64Array::from(vec![1, 2, 3])), "Int64"),
        (Arc::new(StringArray::from(vec!["a", "b", "c"])), "Utf8"),
    ];
    for (images, name) in columns {
        write_parquet(&p, vec![("image", images)]);
        let mut events = 0;
        let e = stream_shard(&source(&p, DataFormat::Parquet), &opts(0), 2, &mut |_| {
            events += 1;
            true
        })
        .unwrap_err();
        assert_eq!(
            (events, e.sample),
            (0, None),
            "refused before the first event"
        );
        assert!(
            e.message
                .contains(&format!("image column `image` has type {name}")),
            "{e}"
        );
    }
}
