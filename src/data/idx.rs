//! IDX files as distributed for MNIST / Fashion-MNIST, raw or gzipped, with their label files.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::listing::idx_label_file;
use super::{check_shape, effective, err, DataError, ReadOptions, SampleBatch, ShardEvent};

/// Opens a file, transparently gunzipping it when it starts with the gzip magic. Every member of
/// a multi-member gzip file is read (as gunzip does); bytes after the last member that are not
/// another member are an error when reached, like any other corruption.
fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read + Send>, bool), DataError> {
    let file = File::open(path).map_err(|e| err(path, None, format!("cannot open: {e}")))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let head = std::io::BufRead::fill_buf(&mut reader)
        .map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(flate2::bufread::MultiGzDecoder::new(reader)), true))
    } else {
        Ok((Box::new(reader), false))
    }
}

/// A read error in the middle of a file: for a gzipped one, a checksum or length mismatch, a
/// cut-off stream or bytes after it that are not gzip.
fn corrupt_file(path: &Path, e: std::io::Error) -> DataError {
    let why = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            format!("{e}: the gzip data is cut short or followed by bytes that are not gzip")
        }
        _ => e.to_string(),
    };
    err(
        path,
        None,
        format!("the file is corrupt ({why}); re-download or re-extract it"),
    )
}

/// Reads the rest of a file, which must be exactly `rest` bytes. Reaching the end is what makes
/// the gzip decoder check each member's CRC32 and length, so this is how a corrupt `.gz` fails
/// even when only part of it was needed.
fn finish_file(r: &mut dyn Read, path: &Path, rest: u64, what: &str) -> Result<(), DataError> {
    let got = std::io::copy(r, &mut std::io::sink()).map_err(|e| corrupt_file(path, e))?;
    match got.cmp(&rest) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(err(
            path,
            None,
            format!("the {what} ends {} bytes early; the file is truncated or corrupt, re-download or re-extract it", rest - got),
        )),
        std::cmp::Ordering::Greater => Err(err(
            path,
            None,
            format!("has {} bytes after the {what}; the file is corrupt or not one IDX file, re-download or re-extract it", got - rest),
        )),
    }
}

/// The dimensions an IDX image file's 16-byte header gives.
struct IdxHeader {
    images: usize,
    height: usize,
    width: usize,
}

impl IdxHeader {
    fn read(r: &mut dyn Read, path: &Path) -> Result<IdxHeader, DataError> {
        let mut header = [0u8; 16];
        r.read_exact(&mut header).map_err(|_| {
            err(
                path,
                None,
                "too short for an IDX image file (16-byte header)",
            )
        })?;
        if header[0..3] != [0, 0, 8] || header[3] != 3 {
            return Err(err(
                path,
                None,
                "not an IDX image file (expected magic 0x00000803: unsigned bytes, 3 dimensions)",
            ));
        }
        let dim =
            |i: usize| u32::from_be_bytes([0, 1, 2, 3].map(|b| header[4 + 4 * i + b])) as usize;
        Ok(IdxHeader {
            images: dim(0),
            height: dim(1),
            width: dim(2),
        })
    }

    /// Bytes of image data the header promises. Three u32 dimensions: their product fits in u128
    /// whatever the header says.
    fn data_bytes(&self) -> u128 {
        (self.images as u128) * (self.height as u128) * (self.width as u128)
    }

    /// The error for image data that does not match the header.
    fn truncated(&self, path: &Path, got: String) -> DataError {
        let IdxHeader {
            images,
            height,
            width,
        } = self;
        err(path, None, format!("IDX header says {images} images of {height}x{width} ({} bytes) but {got}; the file is truncated or corrupt", self.data_bytes()))
    }

    /// A raw (not gzipped) file must hold exactly the header and the data it promises.
    fn check_raw_length(&self, path: &Path) -> Result<(), DataError> {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if u128::from(len) == 16 + self.data_bytes() {
            return Ok(());
        }
        Err(self.truncated(
            path,
            format!(
                "the file has {} bytes after the header",
                len.saturating_sub(16)
            ),
        ))
    }
}

pub(super) fn stream_idx(
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let (mut r, gz) = open_maybe_gz(path)?;
    let header = IdxHeader::read(&mut r, path)?;
    check_shape(path, None, [1, header.height, header.width], opts)?;
    if !gz {
        header.check_raw_length(path)?;
    }
    let labels = idx_labels(path, header.images)?;
    let n = effective(header.images, opts);
    let image_len = header.height * header.width;
    // A gzipped file is read to its end before the shard's last event, so that its checksum is
    // verified before the shard can complete (raw files had their length checked above).
    let unread = ((header.images - n) * image_len) as u64;
    let finish = |r: &mut dyn Read| match gz {
        true => finish_file(r, path, unread, "image data"),
        false => Ok(()),
    };
    if n == 0 {
        finish(&mut r)?;
        emit(ShardEvent::Start { samples: 0 });
        return Ok(());
    }
    if !emit(ShardEvent::Start { samples: n }) {
        return Ok(());
    }
    let mut buf = vec![0u8; batch_size * image_len];
    for start in (0..n).step_by(batch_size) {
        let k = (n - start).min(batch_size);
        let bytes = &mut buf[..k * image_len];
        r.read_exact(bytes).map_err(|e| {
            header.truncated(
                path,
                format!("reading images {start}..{} failed ({e})", start + k),
            )
        })?;
        if start + k == n {
            finish(&mut r)?;
        }
        if !emit(ShardEvent::Batch(idx_batch(
            start,
            bytes,
            k,
            labels.as_deref(),
        ))) {
            return Ok(());
        }
    }
    Ok(())
}

/// `k` images from `start` on as a batch: bytes scaled to [0, 1], labels when there is a file.
fn idx_batch(start: usize, bytes: &[u8], k: usize, labels: Option<&[u8]>) -> SampleBatch {
    SampleBatch {
        start,
        n: k,
        x: bytes.iter().map(|&b| b as f32 / 255.0).collect(),
        labels: (start..start + k)
            .map(|i| labels.map(|l| i64::from(l[i])))
            .collect(),
        failed: Vec::new(),
    }
}

/// Reads the label file next to an IDX image file (`idx_label_file`): exactly `n` labels, the
/// file read to its end (so a gzipped one has its checksum verified).
fn idx_labels(images: &Path, n: usize) -> Result<Option<Vec<u8>>, DataError> {
    idx_label_file(images)
        .map(|p| read_idx_labels(&p, images, n))
        .transpose()
}

fn read_idx_labels(path: &Path, images: &Path, n: usize) -> Result<Vec<u8>, DataError> {
    let (mut r, _) = open_maybe_gz(path)?;
    let mut header = [0u8; 8];
    let magic_ok = r.read_exact(&mut header).is_ok() && header[0..4] == [0, 0, 8, 1];
    if !magic_ok {
        return Err(err(
            path,
            None,
            "not an IDX label file (expected magic 0x00000801)",
        ));
    }
    let count = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if count != n {
        return Err(err(
            path,
            None,
            format!("has {count} labels for {n} images in {}", images.display()),
        ));
    }
    // Grows with what the file holds, not with what its header claims.
    let mut labels = Vec::new();
    (&mut r)
        .take(n as u64)
        .read_to_end(&mut labels)
        .map_err(|e| corrupt_file(path, e))?;
    finish_file(&mut r, path, (n - labels.len()) as u64, "label data")?;
    Ok(labels)
}
