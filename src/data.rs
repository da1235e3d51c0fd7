//! Input shards (design.md section 5): Parquet (encoded image bytes, an image struct, or float
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
    let name = src.path.file_name().unwrap_or_default().to_string_lossy();
    if src.format != DataFormat::Idx || !name.contains("-images-idx3-ubyte") {
        return Vec::new();
    }
    let base = name.replace("-images-idx3-ubyte", "-labels-idx1-ubyte");
    let base = base.strip_suffix(".gz").unwrap_or(&base).to_string();
    [base.clone(), format!("{base}.gz")]
        .into_iter()
        .map(|n| src.path.with_file_name(n))
        .filter(|p| p.is_file())
        .take(1)
        .collect()
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
        DataFormat::Npz => stream_npz(&src.path, opts, batch_size, emit),
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

/// Opens a file, transparently gunzipping it when it starts with the gzip magic.
fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read + Send>, bool), DataError> {
    let file = File::open(path).map_err(|e| err(path, None, format!("cannot open: {e}")))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let head = std::io::BufRead::fill_buf(&mut reader)
        .map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(flate2::read::GzDecoder::new(reader)), true))
    } else {
        Ok((Box::new(reader), false))
    }
}

fn read_all_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let (mut r, _) = open_maybe_gz(path)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| {
        err(
            path,
            None,
            format!("corrupt data: {e}; re-download or re-extract the file"),
        )
    })?;
    Ok(out)
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
    let dim =
        |i: usize| u32::from_be_bytes(header[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize;
    let (n, h, w) = (dim(0), dim(1), dim(2));
    let truncated = |got: String| {
        err(path, None, format!("IDX header says {n} images of {h}x{w} ({} bytes) but {got}; the file is truncated or corrupt", n * h * w))
    };
    if !gz {
        let len = std::fs::metadata(path)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        if len != 16 + n * h * w {
            return Err(truncated(format!(
                "the file has {} bytes after the header",
                len.saturating_sub(16)
            )));
        }
    }
    check_shape(path, None, [1, h, w], opts)?;
    let labels = idx_labels(path, n)?;
    let n = effective(n, opts);
    if !emit(ShardEvent::Start { samples: n }) {
        return Ok(());
    }
    let mut buf = vec![0u8; batch_size * h * w];
    for start in (0..n).step_by(batch_size) {
        let k = (n - start).min(batch_size);
        r.read_exact(&mut buf[..k * h * w]).map_err(|e| {
            truncated(format!(
                "reading images {start}..{} failed ({e})",
                start + k
            ))
        })?;
        let batch = SampleBatch {
            start,
            n: k,
            x: buf[..k * h * w].iter().map(|&b| b as f32 / 255.0).collect(),
            labels: (start..start + k)
                .map(|i| labels.as_ref().map(|l| l[i]))
                .collect(),
            failed: Vec::new(),
        };
        if !emit(ShardEvent::Batch(batch)) {
            return Ok(());
        }
    }
    Ok(())
}

/// Finds and reads `*-labels-idx1-ubyte[.gz]` next to `*-images-idx3-ubyte[.gz]`.
fn idx_labels(images: &Path, n: usize) -> Result<Option<Vec<i64>>, DataError> {
    let name = images.file_name().unwrap_or_default().to_string_lossy();
    if !name.contains("-images-idx3-ubyte") {
        return Ok(None);
    }
    let base = name.replace("-images-idx3-ubyte", "-labels-idx1-ubyte");
    let base = base.strip_suffix(".gz").unwrap_or(&base).to_string();
    for candidate in [base.clone(), format!("{base}.gz")] {
        let p = images.with_file_name(&candidate);
        if p.is_file() {
            let bytes = read_all_maybe_gz(&p)?;
            if bytes.len() < 8 || bytes[0..4] != [0, 0, 8, 1] {
                return Err(err(
                    &p,
                    None,
                    "not an IDX label file (expected magic 0x00000801)",
                ));
            }
            let count = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
            if count != n || bytes.len() != 8 + n {
                return Err(err(
                    &p,
                    None,
                    format!("has {count} labels for {n} images in {}", images.display()),
                ));
            }
            return Ok(Some(bytes[8..].iter().map(|&b| b as i64).collect()));
        }
    }
    Ok(None)
}

fn read_npz_labels(
    archive: &mut npyz::npz::NpzArchive<std::io::BufReader<File>>,
    path: &Path,
    n: usize,
) -> Result<Option<Vec<i64>>, DataError> {
    let Some(y) = archive
        .by_name("y")
        .map_err(|e| err(path, None, format!("cannot read array `y`: {e}")))?
    else {
        return Ok(None);
    };
    let descr = y.dtype().descr().trim_matches('\'').to_string();
    fn widen<T: npyz::Deserialize + Into<i64>>(
        y: npyz::NpyFile<impl std::io::Read>,
    ) -> std::io::Result<Vec<i64>> {
        Ok(y.into_vec::<T>()?.into_iter().map(Into::into).collect())
    }
    let v: Vec<i64> = match &descr[1..] {
        "u1" => widen::<u8>(y),
        "i1" => widen::<i8>(y),
        "i2" => widen::<i16>(y),
        "u2" => widen::<u16>(y),
        "i4" => widen::<i32>(y),
        "u4" => widen::<u32>(y),
        "i8" => widen::<i64>(y),
        other => {
            return Err(err(
                path,
                None,
                format!("array `y` has dtype {other}; labels must be integers"),
            ))
        }
    }
    .map_err(|e| err(path, None, format!("cannot read array `y`: {e}")))?;
    if v.len() != n {
        return Err(err(
            path,
            None,
            format!("array `y` has {} labels for {n} samples", v.len()),
        ));
    }
    Ok(Some(v))
}

fn stream_npz(
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let mut archive = npyz::npz::NpzArchive::open(path)
        .map_err(|e| err(path, None, format!("not a readable .npz file: {e}")))?;
    // The shape first (header only), then the small label array, then `x` streamed.
    let (shape, descr) = {
        let x = archive
            .by_name("x")
            .map_err(|e| err(path, None, format!("cannot read array `x`: {e}")))?
            .ok_or_else(|| err(path, None, "has no array named `x`; save the images with np.savez(path, x=images, y=labels)"))?;
        if x.order() != npyz::Order::C {
            return Err(err(
                path,
                None,
                "array `x` is in Fortran order; save it C-contiguous (np.ascontiguousarray)",
            ));
        }
        let shape: Vec<usize> = x.shape().iter().map(|&d| d as usize).collect();
        (shape, x.dtype().descr().trim_matches('\'').to_string())
    };
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
    check_shape(path, None, chw, opts)?;
    let total = shape[0];
    let labels = read_npz_labels(&mut archive, path, total)?;
    let n = effective(total, opts);
    let len: usize = chw.iter().product();
    let x = archive
        .by_name("x")
        .map_err(|e| err(path, None, format!("cannot read array `x`: {e}")))?
        .expect("checked above");
    if !emit(ShardEvent::Start { samples: n }) {
        return Ok(());
    }
    let corrupt = |e: std::io::Error| {
        err(
            path,
            None,
            format!("cannot read array `x`: {e}; the file is truncated or corrupt"),
        )
    };
    macro_rules! stream {
        ($t:ty, $conv:expr) => {{
            let mut values = x
                .data::<$t>()
                .map_err(|e| err(path, None, format!("array `x`: {e}")))?;
            for start in (0..n).step_by(batch_size) {
                let k = (n - start).min(batch_size);
                let mut buf = Vec::with_capacity(k * len);
                for _ in 0..k * len {
                    let v = values
                        .next()
                        .ok_or_else(|| {
                            err(path, None, "array `x` ends early; the file is truncated")
                        })?
                        .map_err(corrupt)?;
                    buf.push($conv(v));
                }
                let batch = SampleBatch {
                    start,
                    n: k,
                    x: buf,
                    labels: (start..start + k)
                        .map(|i| labels.as_ref().map(|l| l[i]))
                        .collect(),
                    failed: Vec::new(),
                };
                if !emit(ShardEvent::Batch(batch)) {
                    return Ok(());
                }
            }
        }};
    }
    match descr.as_str() {
        "|u1" => stream!(u8, |b: u8| b as f32 / 255.0),
        "<f4" => stream!(f32, |v: f32| v),
        "<f8" => stream!(f64, |v: f64| v as f32),
        other => {
            return Err(err(
                path,
                None,
                format!("array `x` has dtype {other}; use uint8 or float32"),
            ))
        }
    }
    Ok(())
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

/// One row's image values, or why there are none.
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
            let bytes = images
                .as_struct()
                .column_by_name("bytes")
                .ok_or_else(|| format!("column `{}` is a struct without a `bytes` field", opts.image_column))?;
            decode_image(binary_at(bytes.as_ref(), row).ok_or("image bytes are null")?, opts, out)
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            decode_image(binary_at(images, row).expect("binary"), opts, out)
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let values = list_at(images, row);
            match values.data_type() {
                DataType::Float32 => out.extend(values.as_primitive::<Float32Type>().values().iter()),
                DataType::Float64 => out.extend(values.as_primitive::<Float64Type>().values().iter().map(|&v| v as f32)),
                t => return Err(format!("column `{}` is a list of {t}; use float32 or float64 values", opts.image_column)),
            }
            let got = out.len() - before;
            if got != opts.sample_len() {
                out.truncate(before);
                return Err(format!("has {got} values but the model's input_shape {} needs {}", opts.describe_shape(), opts.sample_len()));
            }
            Ok(())
        }
        t => Err(format!(
            "column `{}` has type {t}; expected an image struct {{bytes, path}}, binary image bytes, or a list of floats",
            opts.image_column
        )),
    }
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
    let label_idx = opts
        .label_column
        .as_ref()
        .and_then(|c| schema.index_of(c).ok());
    let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let roots: Vec<usize> = std::iter::once(image_idx).chain(label_idx).collect();
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
        let images = batch.column_by_name(&opts.image_column).expect("projected");
        let mut x = Vec::with_capacity(k * sample_len);
        let mut failed = Vec::new();
        for row in 0..k {
            let before = x.len();
            if let Err(e) = parquet_row(images.as_ref(), row, opts, &mut x) {
                x.truncate(before);
                x.resize(before + sample_len, 0.0);
                failed.push((start + row, e));
            }
        }
        let labels = match opts
            .label_column
            .as_ref()
            .and_then(|c| batch.column_by_name(c))
        {
            None => vec![None; k],
            Some(col) => {
                let as_i64 = arrow::compute::cast(col, &DataType::Int64).map_err(|e| {
                    err(
                        path,
                        None,
                        format!(
                            "label column `{}` is not an integer column: {e}",
                            opts.label_column.as_deref().unwrap_or("")
                        ),
                    )
                })?;
                let as_i64 = as_i64.as_primitive::<arrow::datatypes::Int64Type>();
                // A null label makes that sample unlabelled.
                (0..k)
                    .map(|r| as_i64.is_valid(r).then(|| as_i64.value(r)))
                    .collect()
            }
        };
        if !emit(ShardEvent::Batch(SampleBatch {
            start,
            n: k,
            x,
            labels,
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
        DataType::List(_) | DataType::ListView(_) => array.as_list::<i32>().value(row),
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
}
