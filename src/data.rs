//! Input shards: Parquet (encoded image bytes, an image struct, or float
//! lists), IDX files as distributed for MNIST / Fashion-MNIST (optionally gzipped), and `.npz`.
//!
//! `list_shards` expands the globs in sorted order; `read_shard` decodes one shard into raw sample
//! values (8-bit images scaled to [0, 1]) checked against the model's input shape. Normalisation
//! with mean/std happens in the model (`forward`), so attacks can work in raw units.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::config::DataFormat;

mod labels;
mod npz;

/// One input file, with the names used for its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSource {
    pub path: PathBuf,
    /// File name, as written in the `shard` column.
    pub name: String,
    /// Output file stem: the name without `.gz` and its extension.
    pub stem: String,
    pub format: DataFormat,
}

/// The decoded samples of one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub n: usize,
    /// Values per sample (C * H * W).
    pub sample_len: usize,
    /// Raw values, sample-major; 8-bit images scaled to [0, 1].
    pub x: Vec<f32>,
    pub labels: Option<Vec<i64>>,
}

/// A data problem, naming the file, the sample when there is one, and the fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", path.display(), sample.map(|s| format!(" (sample {s})")).unwrap_or_default())]
pub struct DataError {
    pub path: PathBuf,
    pub sample: Option<usize>,
    pub message: String,
}

fn err(path: &Path, sample: Option<usize>, message: impl Into<String>) -> DataError {
    DataError {
        path: path.to_path_buf(),
        sample,
        message: message.into(),
    }
}

/// What a shard's samples must look like.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The model's input shape: [C, H, W] or [features].
    pub input_shape: Vec<usize>,
    pub image_column: String,
    pub label_column: Option<String>,
    /// Read at most this many samples (0 = all).
    pub limit: usize,
}

impl DataError {
    /// The message without the file name (for callers that name the file themselves).
    pub fn without_path(&self) -> String {
        match self.sample {
            Some(s) => format!("sample {s}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl ReadOptions {
    fn sample_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    fn describe_shape(&self) -> String {
        format!("{:?}", self.input_shape)
    }
}

fn detect_format(path: &Path) -> Option<DataFormat> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".parquet") {
        Some(DataFormat::Parquet)
    } else if name.ends_with(".npz") {
        Some(DataFormat::Npz)
    } else if name.contains("-images-idx") || name.ends_with("-ubyte") {
        Some(DataFormat::Idx)
    } else {
        None
    }
}

pub fn stem_of(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rsplit_once('.') {
        Some((stem, ext)) if matches!(ext, "parquet" | "npz") => stem.to_string(),
        _ => name.to_string(),
    }
}

/// Files besides `src.path` that reading the shard opens: an IDX image file's label file.
pub fn companion_files(src: &ShardSource) -> Vec<PathBuf> {
    match src.format {
        DataFormat::Idx => idx_label_file(&src.path).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// `*-labels-idx1-ubyte[.gz]` next to `*-images-idx3-ubyte[.gz]`, when there is one.
fn idx_label_file(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_string_lossy();
    if !name.contains("-images-idx3-ubyte") {
        return None;
    }
    let base = name.replace("-images-idx3-ubyte", "-labels-idx1-ubyte");
    let base = base.strip_suffix(".gz").unwrap_or(&base).to_string();
    [base.clone(), format!("{base}.gz")]
        .into_iter()
        .map(|n| images.with_file_name(n))
        .find(|p| p.is_file())
}

/// Expands `patterns` (globs) into shards in sorted order. IDX label files matched by a glob are
/// skipped: they are found from their image file.
pub fn list_shards(
    patterns: &[String],
    format: DataFormat,
) -> Result<Vec<ShardSource>, Vec<String>> {
    let mut problems = Vec::new();
    let mut paths = Vec::new();
    for pattern in patterns {
        match glob::glob(pattern) {
            Err(e) => problems.push(format!(
                "`data.shards`: \"{pattern}\" is not a valid glob: {e}"
            )),
            Ok(found) => {
                let before = paths.len();
                for entry in found.flatten() {
                    if entry.is_file() {
                        paths.push(entry);
                    }
                }
                if paths.len() == before {
                    problems.push(format!(
                        "`data.shards`: no file matches \"{pattern}\"; check the path (relative paths are relative to the config file)"
                    ));
                }
            }
        }
    }
    paths.sort();
    paths.dedup();
    let mut shards = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.contains("-labels-idx") {
            continue;
        }
        let fmt = match format {
            DataFormat::Auto => match detect_format(&path) {
                Some(f) => f,
                None => {
                    problems.push(format!(
                        "{}: cannot tell the format from the name; set data.format to parquet, idx or npz",
                        path.display()
                    ));
                    continue;
                }
            },
            f => f,
        };
        shards.push(ShardSource {
            stem: stem_of(&path),
            name,
            path,
            format: fmt,
        });
    }
    let mut stems: Vec<&str> = shards.iter().map(|s| s.stem.as_str()).collect();
    stems.sort();
    for w in stems.windows(2) {
        if w[0] == w[1] {
            problems.push(format!(
                "two shards share the output name `{}`: outputs are named by file stem, so rename one",
                w[0]
            ));
        }
    }
    if problems.is_empty() {
        Ok(shards)
    } else {
        Err(problems)
    }
}

/// What a shard reader emits: the sample count first, then batches in index order.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardEvent {
    Start { samples: usize },
    Batch(SampleBatch),
}

/// Consecutive samples of a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleBatch {
    /// Index of the first sample in the shard.
    pub start: usize,
    pub n: usize,
    /// Raw values, sample-major; a sample that failed to decode is all zeros.
    pub x: Vec<f32>,
    /// One label per sample; None where the data has none.
    pub labels: Vec<Option<i64>>,
    /// Samples that could not be decoded: (index in the shard, error). The run records them in
    /// `failures/` and goes on.
    pub failed: Vec<(usize, String)>,
}

/// Reads a shard batch by batch, in flat memory: IDX and npz are streamed from the (decompressed)
/// file, Parquet row group by row group. `emit` gets `Start` first; it returns false to stop early.
/// An error after `Start` means the shard could not be read to the end.
pub fn stream_shard(
    src: &ShardSource,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let batch_size = batch_size.max(1);
    match src.format {
        DataFormat::Idx => stream_idx(&src.path, opts, batch_size, emit),
        DataFormat::Npz => npz::stream_npz(&src.path, opts, batch_size, emit),
        DataFormat::Parquet => stream_parquet(&src.path, opts, batch_size, emit),
        DataFormat::Auto => unreachable!("list_shards resolves the format"),
    }
}

/// Reads a whole shard into memory (for `validate` and tests); a sample that fails to decode is an
/// error here.
pub fn read_shard(src: &ShardSource, opts: &ReadOptions) -> Result<Samples, DataError> {
    let sample_len = opts.sample_len();
    let mut out = Samples {
        n: 0,
        sample_len,
        x: Vec::new(),
        labels: None,
    };
    let mut failure = None;
    stream_shard(src, opts, 256, &mut |event| {
        if let ShardEvent::Batch(b) = event {
            if let Some((i, e)) = b.failed.first() {
                failure = Some(err(&src.path, Some(*i), e.clone()));
                return false;
            }
            out.n += b.n;
            out.x.extend(b.x);
            if b.labels.iter().any(Option::is_some) {
                out.labels
                    .get_or_insert_with(Vec::new)
                    .extend(b.labels.iter().map(|l| l.unwrap_or(-1)));
            }
        }
        true
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn effective(n: usize, opts: &ReadOptions) -> usize {
    if opts.limit > 0 {
        n.min(opts.limit)
    } else {
        n
    }
}

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

/// Checks an image's [C, H, W] against the model's input shape.
fn check_shape(
    path: &Path,
    sample: Option<usize>,
    chw: [usize; 3],
    opts: &ReadOptions,
) -> Result<(), DataError> {
    let fits = match opts.input_shape.as_slice() {
        [c, h, w] => chw == [*c, *h, *w],
        _ => chw.iter().product::<usize>() == opts.sample_len(),
    };
    if fits {
        Ok(())
    } else {
        Err(err(
            path,
            sample,
            format!(
                "image is {}x{} with {} channel(s) but the model's input_shape is {}; resize the images or use a model spec whose input_shape matches",
                chw[1], chw[2], chw[0], opts.describe_shape()
            ),
        ))
    }
}

fn stream_idx(
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let (mut r, gz) = open_maybe_gz(path)?;
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
    let dim = |i: usize| u32::from_be_bytes([0, 1, 2, 3].map(|b| header[4 + 4 * i + b])) as usize;
    let (n, h, w) = (dim(0), dim(1), dim(2));
    check_shape(path, None, [1, h, w], opts)?;
    // Three u32 dimensions: their product fits in u128 whatever the header says.
    let data_bytes = (n as u128) * (h as u128) * (w as u128);
    let truncated = |got: String| {
        err(path, None, format!("IDX header says {n} images of {h}x{w} ({data_bytes} bytes) but {got}; the file is truncated or corrupt"))
    };
    if !gz {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if u128::from(len) != 16 + data_bytes {
            return Err(truncated(format!(
                "the file has {} bytes after the header",
                len.saturating_sub(16)
            )));
        }
    }
    let labels = idx_labels(path, n)?;
    let total = n;
    let n = effective(total, opts);
    let image_len = h * w;
    // A gzipped file is read to its end before the shard's last event, so that its checksum is
    // verified before the shard can complete (raw files had their length checked above).
    let finish = |r: &mut dyn Read| match gz {
        true => finish_file(r, path, ((total - n) * image_len) as u64, "image data"),
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
            truncated(format!(
                "reading images {start}..{} failed ({e})",
                start + k
            ))
        })?;
        if start + k == n {
            finish(&mut r)?;
        }
        let batch = SampleBatch {
            start,
            n: k,
            x: bytes.iter().map(|&b| b as f32 / 255.0).collect(),
            labels: (start..start + k)
                .map(|i| labels.as_ref().map(|l| i64::from(l[i])))
                .collect(),
            failed: Vec::new(),
        };
        if !emit(ShardEvent::Batch(batch)) {
            return Ok(());
        }
    }
    Ok(())
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

/// Decodes one encoded image (PNG, JPEG) into [0, 1] values in C, H, W order.
fn decode_image(bytes: &[u8], opts: &ReadOptions, out: &mut Vec<f32>) -> Result<(), String> {
    let img = image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    let (channels, h, w) = match opts.input_shape.as_slice() {
        [c, h, w] => (*c, *h, *w),
        _ => (1, 0, 0),
    };
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let fits = if opts.input_shape.len() == 3 {
        (ih, iw) == (h, w)
    } else {
        ih * iw == opts.sample_len()
    };
    if !fits {
        return Err(format!(
            "image is {ih}x{iw} but the model's input_shape is {}; resize the images or use a model spec whose input_shape matches",
            opts.describe_shape()
        ));
    }
    match channels {
        1 => out.extend(
            img.to_luma8()
                .into_raw()
                .into_iter()
                .map(|b| b as f32 / 255.0),
        ),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            for c in 0..3 {
                out.extend(rgb.iter().skip(c).step_by(3).map(|&b| b as f32 / 255.0));
            }
        }
        c => {
            return Err(format!(
                "the model expects {c} channels; encoded images can give 1 (grey) or 3 (RGB)"
            ))
        }
    }
    Ok(())
}

/// Whether a Parquet image column of this type can hold images; checked once per shard, so a
/// wrong column fails the shard once instead of every sample.
fn check_image_type(data_type: &DataType, column: &str) -> Result<(), String> {
    let binary = |t: &DataType| {
        matches!(
            t,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    };
    let ok = match data_type {
        DataType::Struct(fields) => fields
            .iter()
            .any(|f| f.name() == "bytes" && binary(f.data_type())),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            matches!(item.data_type(), DataType::Float32 | DataType::Float64)
        }
        t => binary(t),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "image column `{column}` has type {data_type}; expected an image struct {{bytes, path}} with binary bytes, binary image bytes, or a list of float32/float64; set data.image_column to the image column or convert it"
        ))
    }
}

/// One row's image values, or why there are none. The column's type passed `check_image_type`.
fn parquet_row(
    images: &dyn Array,
    row: usize,
    opts: &ReadOptions,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    if images.is_null(row) {
        return Err("image is null".into());
    }
    let before = out.len();
    match images.data_type() {
        DataType::Struct(_) => {
            let bytes = images.as_struct().column_by_name("bytes").ok_or_else(|| {
                format!(
                    "column `{}` is a struct without a `bytes` field",
                    opts.image_column
                )
            })?;
            decode_image(
                binary_at(bytes.as_ref(), row).ok_or("image bytes are null")?,
                opts,
                out,
            )
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let values = list_at(images, row);
            if let Some(i) = (0..values.len()).find(|&i| values.is_null(i)) {
                return Err(format!(
                    "value {i} of the image is null; fill or drop the sample"
                ));
            }
            match values.data_type() {
                DataType::Float32 => {
                    out.extend(values.as_primitive::<Float32Type>().values().iter())
                }
                DataType::Float64 => out.extend(
                    values
                        .as_primitive::<Float64Type>()
                        .values()
                        .iter()
                        .map(|&v| v as f32),
                ),
                t => {
                    return Err(format!(
                        "column `{}` is a list of {t}; use float32 or float64 values",
                        opts.image_column
                    ))
                }
            }
            let got = out.len() - before;
            if got != opts.sample_len() {
                out.truncate(before);
                return Err(format!(
                    "has {got} values but the model's input_shape {} needs {}",
                    opts.describe_shape(),
                    opts.sample_len()
                ));
            }
            Ok(())
        }
        _ => decode_image(
            binary_at(images, row).ok_or("image bytes are null")?,
            opts,
            out,
        ),
    }
}

/// The shard's label column, if it has one: checked once when the shard is opened.
fn parquet_label_column(
    schema: &arrow::datatypes::Schema,
    opts: &ReadOptions,
) -> Result<Option<(usize, String)>, String> {
    let Some(name) = &opts.label_column else {
        return Ok(None);
    };
    let Ok(idx) = schema.index_of(name) else {
        return Ok(None); // an unlabelled shard
    };
    labels::check_column_type(schema.field(idx).data_type(), name)?;
    Ok(Some((idx, name.clone())))
}

fn stream_parquet(
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let file = File::open(path).map_err(|e| err(path, None, format!("cannot open: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(path, None, format!("not a readable Parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let image_idx = schema.index_of(&opts.image_column).map_err(|_| {
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        err(
            path,
            None,
            format!(
                "has no column `{}` (columns: {}); set data.image_column",
                opts.image_column,
                names.join(", ")
            ),
        )
    })?;
    check_image_type(schema.field(image_idx).data_type(), &opts.image_column)
        .map_err(|e| err(path, None, e))?;
    let label = parquet_label_column(&schema, opts).map_err(|e| err(path, None, e))?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let roots: Vec<usize> = std::iter::once(image_idx)
        .chain(label.as_ref().map(|(idx, _)| *idx))
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    let n = effective(total, opts);
    if !emit(ShardEvent::Start { samples: n }) {
        return Ok(());
    }
    let sample_len = opts.sample_len();
    let mut start = 0usize;
    for batch in reader {
        if start >= n {
            break;
        }
        let batch = batch.map_err(|e| {
            err(
                path,
                None,
                format!("corrupt Parquet data at row {start}: {e}"),
            )
        })?;
        let k = batch.num_rows().min(n - start);
        let column = |name: &str| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                err(
                    path,
                    None,
                    format!("column `{name}` is missing from the data read"),
                )
            })
        };
        let images = column(&opts.image_column)?;
        let labels = match &label {
            None => vec![Ok(None); k],
            Some((_, name)) => labels::from_column(column(name)?.as_ref(), k, name)
                .map_err(|e| err(path, None, e))?,
        };
        let mut x = Vec::with_capacity(k * sample_len);
        let mut failed = Vec::new();
        let mut batch_labels = Vec::with_capacity(k);
        for (row, label) in labels.into_iter().enumerate() {
            let before = x.len();
            let read = parquet_row(images.as_ref(), row, opts, &mut x);
            let label = read.and(label);
            if let Err(e) = &label {
                x.truncate(before);
                x.resize(before + sample_len, 0.0);
                failed.push((start + row, e.clone()));
            }
            batch_labels.push(label.unwrap_or(None));
        }
        if !emit(ShardEvent::Batch(SampleBatch {
            start,
            n: k,
            x,
            labels: batch_labels,
            failed,
        })) {
            return Ok(());
        }
        start += k;
    }
    if start < n {
        return Err(err(path, None, format!("metadata says {n} rows but only {start} could be read; the file is truncated or corrupt")));
    }
    Ok(())
}

fn binary_at(array: &dyn Array, row: usize) -> Option<&[u8]> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(row),
        DataType::LargeBinary => array.as_binary::<i64>().value(row),
        DataType::BinaryView => array.as_binary_view().value(row),
        _ => return None,
    })
}

fn list_at(array: &dyn Array, row: usize) -> arrow::array::ArrayRef {
    match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        _ => array.as_fixed_size_list().value(row),
    }
}

/// One mean and one std per input channel: a single value applies to every channel.
pub fn channel_stats(
    mean: &[f32],
    std: &[f32],
    channels: usize,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let expand = |v: &[f32], key: &str| -> Result<Vec<f32>, String> {
        match v.len() {
            1 => Ok(vec![v[0]; channels]),
            n if n == channels => Ok(v.to_vec()),
            n => Err(format!("`data.{key}` has {n} values but the model input has {channels} channels; give 1 or {channels}")),
        }
    };
    Ok((expand(mean, "mean")?, expand(std, "std")?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            path: path.to_path_buf(),
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
        let mut w =
            parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None)
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
        let labels =
            Float64Array::from(vec![Some(3.0), Some(2.7), None, Some(f64::NAN), Some(1e30)]);
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
}
