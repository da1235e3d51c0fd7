//! `.npz` shards: images in array `x`, optional labels in array `y`, both streamed from the
//! archive side by side (two handles on the file), so memory stays flat however large the shard.
//!
//! Nothing an array's header declares is trusted before it is checked: the header's own length
//! against the archive member's size (from the zip central directory), and the shape times the
//! item size against the bytes the member holds, all before anything is allocated; `y` must
//! have one label per image. Each member is read to its end before the shard's last batch is
//! handed on, so the zip CRC32 is checked too and a corrupt shard fails before it can complete.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use npyz::zip::read::ZipFile;
use npyz::zip::result::ZipError;
use npyz::zip::ZipArchive;
use npyz::{NpyFile, NpyHeader, Order, TypeChar};

use super::labels::{from_f64, from_u64};
use super::{check_shape, effective, err, DataError, ReadOptions, SampleBatch, ShardEvent};

/// numpy itself refuses headers over 10 000 bytes unless told otherwise; anything near this is
/// not an array header.
const MAX_HEADER_BYTES: u64 = 1 << 20;

type Archive = ZipArchive<BufReader<File>>;

fn open_archive(path: &Path) -> Result<Archive, DataError> {
    let file = File::open(path).map_err(|e| err(path, None, format!("cannot open: {e}")))?;
    ZipArchive::new(BufReader::new(file))
        .map_err(|e| err(path, None, format!("not a readable .npz file: {e}")))
}

/// One array of the archive: its header, read and checked, and the member positioned at the
/// start of its data.
struct Member<'a> {
    name: &'static str,
    header: NpyHeader,
    file: ZipFile<'a>,
}

/// Opens array `name`, or None when the archive has none.
fn open_member<'a>(
    archive: &'a mut Archive,
    path: &Path,
    name: &'static str,
) -> Result<Option<Member<'a>>, DataError> {
    let cannot =
        |e: &dyn std::fmt::Display| err(path, None, format!("cannot read array `{name}`: {e}"));
    let mut file = match archive.by_name(&npyz::npz::file_name_from_array_name(name)) {
        Ok(file) => file,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(cannot(&e)),
    };
    let member_size = file.size();
    let corrupt = |what: String| {
        err(path, None, format!("array `{name}`: {what}; the file is corrupt or was not written by numpy (np.savez), re-create it"))
    };
    // Magic (6 bytes) and version (2), then the header length: 2 bytes in version 1, 4 after.
    let mut prefix = vec![0u8; 8];
    file.read_exact(&mut prefix).map_err(|e| cannot(&e))?;
    if &prefix[..6] != b"\x93NUMPY" {
        return Err(corrupt("it is not a .npy array (no NUMPY magic)".into()));
    }
    let len_bytes = if prefix[6] == 1 { 2 } else { 4 };
    prefix.resize(8 + len_bytes, 0);
    file.read_exact(&mut prefix[8..]).map_err(|e| cannot(&e))?;
    let header_len = prefix[8..]
        .iter()
        .rev()
        .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    let header_end = prefix.len() as u64 + header_len;
    if header_len > MAX_HEADER_BYTES || header_end > member_size {
        return Err(corrupt(format!(
            "its header claims {header_len} bytes but the archive member holds {member_size} bytes in all"
        )));
    }
    let mut text = Vec::new();
    (&mut file)
        .take(header_len)
        .read_to_end(&mut text)
        .map_err(|e| cannot(&e))?;
    let header = NpyHeader::from_reader(io::Cursor::new(prefix).chain(&text[..]))
        .map_err(|e| corrupt(format!("unreadable header ({e})")))?;
    let declared = declared_data_bytes(&header);
    if declared != Some(member_size - header_end) {
        return Err(corrupt(format!(
            "its header declares shape {:?} of dtype {} ({}) but the archive member holds {} bytes of data",
            header.shape(),
            header.dtype().descr(),
            declared.map_or("more than 2^64 bytes".into(), |b| format!("{b} bytes")),
            member_size - header_end
        )));
    }
    Ok(Some(Member { name, header, file }))
}

/// Shape product times item size, or None when it overflows or the dtype has no fixed size.
fn declared_data_bytes(header: &NpyHeader) -> Option<u64> {
    if header.uses_pickled_array() {
        return None;
    }
    let item = u64::try_from(header.dtype().num_bytes()?).ok()?;
    header
        .shape()
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(d))
}

/// The member's scalar type, as (kind, bytes, text such as `<f4`), or None for records.
fn scalar_type(header: &NpyHeader) -> Option<(TypeChar, u64, String)> {
    match header.dtype() {
        npyz::DType::Plain(t) => Some((t.type_char(), t.size_field(), t.to_string())),
        _ => None,
    }
}

impl Member<'_> {
    /// Reads what is left of the member, which must be exactly `rest` bytes (the samples past
    /// `data.limit`): reaching the end is what makes the zip reader check the member's CRC32.
    fn finish(&mut self, path: &Path, rest: u64) -> Result<(), DataError> {
        let got = io::copy(&mut self.file, &mut io::sink()).map_err(|e| {
            err(
                path,
                None,
                format!(
                    "array `{}` is corrupt ({e}); re-download or re-create the file",
                    self.name
                ),
            )
        })?;
        match got.cmp(&rest) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(err(
                path,
                None,
                format!(
                    "array `{}` ends {} bytes early; the file is truncated, re-create it",
                    self.name,
                    rest - got
                ),
            )),
            std::cmp::Ordering::Greater => Err(err(
                path,
                None,
                format!(
                    "array `{}` has {} bytes after its data; the file is corrupt, re-create it",
                    self.name,
                    got - rest
                ),
            )),
        }
    }

    /// Bytes of `count` items of this array.
    fn bytes_of(&self, count: usize) -> u64 {
        let item = self.header.dtype().num_bytes().unwrap_or(0) as u64;
        count as u64 * item
    }
}

/// Streams `x` (and `y`) in batches; see the module comment for what is checked.
pub(super) fn stream_npz(
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let mut x_archive = open_archive(path)?;
    let mut x = open_member(&mut x_archive, path, "x")?.ok_or_else(|| {
        err(
            path,
            None,
            "has no array named `x`; save the images with np.savez(path, x=images, y=labels)",
        )
    })?;
    let (total, chw) = image_shape(&x, path)?;
    check_shape(path, None, chw, opts)?;
    let mut y_archive = open_archive(path)?;
    let mut y = open_member(&mut y_archive, path, "y")?;
    if let Some(y) = &y {
        check_labels(y, path, total)?;
    }
    let shard = Shard {
        path,
        total,
        n: effective(total, opts),
        sample_len: chw.iter().product(),
        batch_size,
    };
    match scalar_type(&x.header).map(|(_, _, t)| t).as_deref() {
        Some("|u1") => shard.stream(&mut x, y.as_mut(), |b: u8| b as f32 / 255.0, emit),
        Some("<f4") => shard.stream(&mut x, y.as_mut(), |v: f32| v, emit),
        Some("<f8") => shard.stream(&mut x, y.as_mut(), |v: f64| v as f32, emit),
        _ => Err(err(
            path,
            None,
            format!(
                "array `x` has dtype {}; use uint8 or float32",
                x.header.dtype().descr()
            ),
        )),
    }
}

/// `x`'s sample count and per-sample [C, H, W] (features as [F, 1, 1]); it must be C-ordered.
fn image_shape(x: &Member, path: &Path) -> Result<(usize, [usize; 3]), DataError> {
    if x.header.order() != Order::C {
        return Err(err(
            path,
            None,
            "array `x` is in Fortran order; save it C-contiguous (np.ascontiguousarray)",
        ));
    }
    // The header's sizes were checked against the member, so each fits in memory's address space.
    let shape: Vec<usize> = x.header.shape().iter().map(|&d| d as usize).collect();
    let chw = match shape.as_slice() {
        [_, c, h, w] => [*c, *h, *w],
        [_, h, w] => [1, *h, *w],
        [_, f] => [*f, 1, 1],
        _ => {
            return Err(err(
                path,
                None,
                format!(
                "array `x` has shape {shape:?}; expected (N, C, H, W), (N, H, W) or (N, features)"
            ),
            ))
        }
    };
    Ok((shape[0], chw))
}

/// Checks `y`'s count against the images and its type, before reading any of it.
fn check_labels(y: &Member, path: &Path, images: usize) -> Result<(), DataError> {
    let count = y
        .header
        .shape()
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d));
    if count != Some(images as u64) {
        return Err(err(
            path,
            None,
            format!(
                "array `y` has shape {:?} but `x` has {images} images; save one label per image",
                y.header.shape()
            ),
        ));
    }
    match scalar_type(&y.header) {
        Some((TypeChar::Int | TypeChar::Uint, 1 | 2 | 4 | 8, _) | (TypeChar::Float, 4 | 8, _)) => Ok(()),
        _ => Err(err(
            path,
            None,
            format!(
                "array `y` has dtype {}; labels must be integers or integral floats (save y.astype(np.int64))",
                y.header.dtype().descr()
            ),
        )),
    }
}

/// Labels of `y`, each converted on its own: a value that is not a label fails its sample.
type LabelValues<'r> = Box<dyn Iterator<Item = io::Result<Result<i64, String>>> + 'r>;

fn label_values<'r>(y: &'r mut Member<'_>) -> Result<LabelValues<'r>, npyz::DTypeError> {
    fn each<'r, T: npyz::Deserialize + 'r>(
        npy: NpyFile<impl Read + 'r>,
        convert: fn(T) -> Result<i64, String>,
    ) -> Result<LabelValues<'r>, npyz::DTypeError> {
        Ok(Box::new(npy.data::<T>()?.map(move |v| v.map(convert))))
    }
    const Y: &str = "array `y`";
    let kind = scalar_type(&y.header).map(|(k, size, _)| (k, size));
    let npy = NpyFile::with_header(y.header.clone(), &mut y.file);
    match kind {
        Some((TypeChar::Int, 1)) => each(npy, |v: i8| Ok(v.into())),
        Some((TypeChar::Int, 2)) => each(npy, |v: i16| Ok(v.into())),
        Some((TypeChar::Int, 4)) => each(npy, |v: i32| Ok(v.into())),
        Some((TypeChar::Uint, 1)) => each(npy, |v: u8| Ok(v.into())),
        Some((TypeChar::Uint, 2)) => each(npy, |v: u16| Ok(v.into())),
        Some((TypeChar::Uint, 4)) => each(npy, |v: u32| Ok(v.into())),
        Some((TypeChar::Uint, 8)) => each(npy, |v: u64| from_u64(v, Y)),
        Some((TypeChar::Float, 4)) => each(npy, |v: f32| from_f64(v.into(), Y)),
        Some((TypeChar::Float, 8)) => each(npy, |v: f64| from_f64(v, Y)),
        // i8 and anything check_labels let through that is not listed above.
        _ => each(npy, |v: i64| Ok(v)),
    }
}

/// The sizes of one shard's stream.
struct Shard<'p> {
    path: &'p Path,
    /// Images in the file.
    total: usize,
    /// Images to read (`data.limit`).
    n: usize,
    sample_len: usize,
    batch_size: usize,
}

impl Shard<'_> {
    /// Streams the samples as batches of raw values (`convert` maps one stored value). The
    /// last batch is held back until both members have been read to their end and verified.
    fn stream<T: npyz::Deserialize>(
        &self,
        x: &mut Member,
        mut y: Option<&mut Member>,
        convert: fn(T) -> f32,
        emit: &mut dyn FnMut(ShardEvent) -> bool,
    ) -> Result<(), DataError> {
        let path = self.path;
        let last = if self.n == 0 {
            None
        } else {
            if !emit(ShardEvent::Start { samples: self.n }) {
                return Ok(());
            }
            let mut values = NpyFile::with_header(x.header.clone(), &mut x.file)
                .data::<T>()
                .map_err(|e| err(path, None, format!("array `x`: {e}")))?;
            let mut labels = match y.as_deref_mut() {
                Some(y) => {
                    Some(label_values(y).map_err(|e| err(path, None, format!("array `y`: {e}")))?)
                }
                None => None,
            };
            let mut start = 0;
            loop {
                let batch = self.batch(start, &mut values, labels.as_mut(), convert)?;
                start += batch.n;
                if start == self.n {
                    break Some(batch);
                }
                if !emit(ShardEvent::Batch(batch)) {
                    return Ok(());
                }
            }
        };
        let rest = self.total - self.n;
        x.finish(path, x.bytes_of(rest * self.sample_len))?;
        if let Some(y) = y {
            y.finish(path, y.bytes_of(rest))?;
        }
        match last {
            None => emit(ShardEvent::Start { samples: 0 }),
            Some(batch) => emit(ShardEvent::Batch(batch)),
        };
        Ok(())
    }

    /// Reads the batch of samples from `start`; a sample whose label is not a label fails.
    fn batch<T>(
        &self,
        start: usize,
        values: &mut impl Iterator<Item = io::Result<T>>,
        labels: Option<&mut LabelValues>,
        convert: fn(T) -> f32,
    ) -> Result<SampleBatch, DataError> {
        let path = self.path;
        let unreadable = |name: &str, e: Option<io::Error>| {
            let why = e.map(|e| format!(" ({e})")).unwrap_or_default();
            err(path, None, format!("cannot read array `{name}`{why}; the file is truncated or corrupt, re-create it"))
        };
        let k = (self.n - start).min(self.batch_size);
        let len = self.sample_len;
        let mut x = Vec::with_capacity(k * len);
        for _ in 0..k * len {
            match values.next() {
                Some(Ok(v)) => x.push(convert(v)),
                Some(Err(e)) => return Err(unreadable("x", Some(e))),
                None => return Err(unreadable("x", None)),
            }
        }
        let mut failed = Vec::new();
        let mut batch_labels = vec![None; k];
        if let Some(labels) = labels {
            for (row, slot) in batch_labels.iter_mut().enumerate() {
                match labels.next() {
                    Some(Ok(Ok(label))) => *slot = Some(label),
                    Some(Ok(Err(e))) => {
                        failed.push((start + row, e));
                        x[row * len..(row + 1) * len].fill(0.0);
                    }
                    Some(Err(e)) => return Err(unreadable("y", Some(e))),
                    None => return Err(unreadable("y", None)),
                }
            }
        }
        Ok(SampleBatch {
            start,
            n: k,
            x,
            labels: batch_labels,
            failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataFormat;
    use crate::data::{stream_shard, ShardSource};
    use npyz::zip::write::FileOptions;
    use npyz::zip::{CompressionMethod, ZipWriter};
    use std::fs;
    use std::io::Write;

    /// A version 1 .npy file of `data` (already in the dtype's bytes).
    fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    /// An .npz of the given members (name without `.npy`, bytes).
    fn write_npz(path: &Path, members: &[(&str, &[u8])], method: CompressionMethod) {
        let mut zip = ZipWriter::new(File::create(path).unwrap());
        let options = FileOptions::default()
            .compression_method(method)
            .large_file(true);
        for (name, bytes) in members {
            zip.start_file(format!("{name}.npy"), options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    fn source(path: &Path) -> ShardSource {
        ShardSource {
            location: crate::data::ShardLocation::Local(path.to_path_buf()),
            name: "t.npz".into(),
            stem: "t".into(),
            format: DataFormat::Npz,
        }
    }

    fn options(limit: usize) -> ReadOptions {
        ReadOptions {
            input_shape: vec![1, 2, 2],
            image_column: "image".into(),
            label_column: Some("label".into()),
            limit,
        }
    }

    /// What a shard's events held: (samples announced, labels, failed indices).
    type Events = (usize, Vec<Option<i64>>, Vec<usize>);

    fn read(path: &Path, limit: usize) -> Result<Events, DataError> {
        let (mut samples, mut labels, mut failed) = (0, Vec::new(), Vec::new());
        stream_shard(&source(path), &options(limit), 2, &mut |event| {
            match event {
                ShardEvent::Start { samples: n } => samples = n,
                ShardEvent::Batch(b) => {
                    labels.extend(b.labels);
                    failed.extend(b.failed.into_iter().map(|(i, _)| i));
                }
            }
            true
        })?;
        Ok((samples, labels, failed))
    }

    fn images(n: usize) -> Vec<u8> {
        npy("|u1", &[n, 2, 2], &(0..n as u8 * 4).collect::<Vec<u8>>())
    }

    #[test]
    fn labels_and_images_stream_together() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        let y: Vec<u8> = [4i64, 5, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npz(
            &p,
            &[("x", &images(3)), ("y", &npy("<i8", &[3], &y))],
            CompressionMethod::Deflated,
        );
        assert_eq!(
            read(&p, 0).unwrap(),
            (3, vec![Some(4), Some(5), Some(6)], vec![])
        );
        assert_eq!(read(&p, 1).unwrap(), (1, vec![Some(4)], vec![]));
    }

    #[test]
    fn more_labels_than_images_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        let y = npy("|u1", &[1 << 20], &vec![0u8; 1 << 20]);
        write_npz(
            &p,
            &[("x", &images(4)), ("y", &y)],
            CompressionMethod::Deflated,
        );
        let e = read(&p, 0).unwrap_err().to_string();
        assert!(
            e.contains("array `y` has shape [1048576] but `x` has 4 images"),
            "{e}"
        );
    }

    #[test]
    fn an_absurd_header_length_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        // version 2: a 4-byte header length
        let mut y = b"\x93NUMPY\x02\x00".to_vec();
        y.extend(0xffff_fff0u32.to_le_bytes());
        y.extend(b"{'descr': '<i8'");
        write_npz(
            &p,
            &[("x", &images(2)), ("y", &y)],
            CompressionMethod::Stored,
        );
        let e = read(&p, 0).unwrap_err().to_string();
        assert!(
            e.contains("array `y`") && e.contains("header claims 4294967280 bytes"),
            "{e}"
        );
    }

    #[test]
    fn a_shape_larger_than_the_member_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        let x = npy("|u1", &[1 << 40, 2, 2], &[0u8; 8]);
        write_npz(&p, &[("x", &x)], CompressionMethod::Stored);
        let e = read(&p, 0).unwrap_err().to_string();
        assert!(
            e.contains("declares shape [1099511627776, 2, 2]") && e.contains("holds 8 bytes"),
            "{e}"
        );
        // a shape whose product overflows
        let x = npy("<f8", &[1 << 40, 1 << 40, 2], &[0u8; 8]);
        write_npz(&p, &[("x", &x)], CompressionMethod::Stored);
        let e = read(&p, 0).unwrap_err().to_string();
        assert!(e.contains("more than 2^64 bytes"), "{e}");
        // bytes after the data
        let mut x = images(2);
        x.extend([1, 2, 3]);
        write_npz(&p, &[("x", &x)], CompressionMethod::Stored);
        let e = read(&p, 0).unwrap_err().to_string();
        assert!(e.contains("holds 11 bytes of data"), "{e}");
    }

    #[test]
    fn a_corrupt_member_fails_even_when_limit_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        let x = images(4);
        write_npz(&p, &[("x", &x)], CompressionMethod::Stored);
        let mut bytes = fs::read(&p).unwrap();
        let data = bytes.windows(6).position(|w| w == b"\x93NUMPY").unwrap() + x.len() - 2;
        bytes[data] ^= 0x40; // the last image's pixels: its CRC32 no longer matches
        fs::write(&p, bytes).unwrap();
        for limit in [0, 1] {
            let e = read(&p, limit).unwrap_err().to_string();
            assert!(
                e.contains("array `x` is corrupt") && e.contains("re-download"),
                "{e}"
            );
        }
    }

    #[test]
    fn labels_that_are_not_class_labels_fail_their_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npz");
        let floats = [3.0f64, 2.7, f64::NAN, 1e30, -1.0];
        let y: Vec<u8> = floats.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npz(
            &p,
            &[("x", &images(5)), ("y", &npy("<f8", &[5], &y))],
            CompressionMethod::Stored,
        );
        assert_eq!(
            read(&p, 0).unwrap(),
            (5, vec![Some(3), None, None, None, Some(-1)], vec![1, 2, 3])
        );
        let y: Vec<u8> = [1u64, u64::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write_npz(
            &p,
            &[("x", &images(2)), ("y", &npy("<u8", &[2], &y))],
            CompressionMethod::Stored,
        );
        assert_eq!(read(&p, 0).unwrap(), (2, vec![Some(1), None], vec![1]));
        let y = npy("<U1", &[2], &[b'a', 0, 0, 0, b'b', 0, 0, 0]);
        write_npz(
            &p,
            &[("x", &images(2)), ("y", &y)],
            CompressionMethod::Stored,
        );
        let e = read(&p, 0).unwrap_err().to_string();
        assert!(
            e.contains("array `y` has dtype") && e.contains("astype(np.int64)"),
            "{e}"
        );
    }
}
