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

fn stem_of(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rsplit_once('.') {
        Some((stem, ext)) if matches!(ext, "parquet" | "npz") => stem.to_string(),
        _ => name.to_string(),
    }
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

/// Reads and decodes a whole shard.
pub fn read_shard(src: &ShardSource, opts: &ReadOptions) -> Result<Samples, DataError> {
    let mut samples = match src.format {
        DataFormat::Idx => read_idx(&src.path, opts)?,
        DataFormat::Npz => read_npz(&src.path, opts)?,
        DataFormat::Parquet => read_parquet(&src.path, opts)?,
        DataFormat::Auto => unreachable!("list_shards resolves the format"),
    };
    if opts.limit > 0 && samples.n > opts.limit {
        samples.n = opts.limit;
        samples.x.truncate(opts.limit * samples.sample_len);
        if let Some(l) = samples.labels.as_mut() {
            l.truncate(opts.limit);
        }
    }
    Ok(samples)
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                err(
                    path,
                    None,
                    format!("corrupt gzip data: {e}; re-download or re-extract the file"),
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
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

fn read_idx(path: &Path, opts: &ReadOptions) -> Result<Samples, DataError> {
    let bytes = read_maybe_gz(path)?;
    if bytes.len() < 16 || bytes[0..3] != [0, 0, 8] || bytes[3] != 3 {
        return Err(err(
            path,
            None,
            "not an IDX image file (expected magic 0x00000803: unsigned bytes, 3 dimensions)",
        ));
    }
    let dim =
        |i: usize| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize;
    let (n, h, w) = (dim(0), dim(1), dim(2));
    if bytes.len() != 16 + n * h * w {
        return Err(err(
            path,
            None,
            format!("IDX header says {n} images of {h}x{w} ({} bytes) but the file has {} bytes after the header; the file is truncated or corrupt", n * h * w, bytes.len() - 16),
        ));
    }
    check_shape(path, None, [1, h, w], opts)?;
    let x = bytes[16..].iter().map(|&b| b as f32 / 255.0).collect();
    let labels = idx_labels(path, n)?;
    Ok(Samples {
        n,
        sample_len: h * w,
        x,
        labels,
    })
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
            let bytes = read_maybe_gz(&p)?;
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

fn read_npz(path: &Path, opts: &ReadOptions) -> Result<Samples, DataError> {
    let mut archive = npyz::npz::NpzArchive::open(path)
        .map_err(|e| err(path, None, format!("not a readable .npz file: {e}")))?;
    let x = archive
        .by_name("x")
        .map_err(|e| err(path, None, format!("cannot read array `x`: {e}")))?
        .ok_or_else(|| {
            err(
                path,
                None,
                "has no array named `x`; save the images with np.savez(path, x=images, y=labels)",
            )
        })?;
    let shape: Vec<usize> = x.shape().iter().map(|&d| d as usize).collect();
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
    let n = shape[0];
    check_shape(path, None, chw, opts)?;
    if x.order() != npyz::Order::C {
        return Err(err(
            path,
            None,
            "array `x` is in Fortran order; save it C-contiguous (np.ascontiguousarray)",
        ));
    }
    let descr = x.dtype().descr().trim_matches('\'').to_string();
    let values: Vec<f32> = match descr.as_str() {
        "|u1" => x
            .into_vec::<u8>()
            .map(|v| v.into_iter().map(|b| b as f32 / 255.0).collect()),
        "<f4" => x.into_vec::<f32>(),
        "<f8" => x
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|f| f as f32).collect()),
        other => {
            return Err(err(
                path,
                None,
                format!("array `x` has dtype {other}; use uint8 or float32"),
            ))
        }
    }
    .map_err(|e| err(path, None, format!("cannot read array `x`: {e}")))?;
    let labels = match archive
        .by_name("y")
        .map_err(|e| err(path, None, format!("cannot read array `y`: {e}")))?
    {
        None => None,
        Some(y) => {
            let descr = y.dtype().descr().trim_matches('\'').to_string();
            let v: Vec<i64> = match &descr[1..] {
                "u1" => y
                    .into_vec::<u8>()
                    .map(|v| v.into_iter().map(i64::from).collect()),
                "i1" => y
                    .into_vec::<i8>()
                    .map(|v| v.into_iter().map(i64::from).collect()),
                "i2" => y
                    .into_vec::<i16>()
                    .map(|v| v.into_iter().map(i64::from).collect()),
                "u2" => y
                    .into_vec::<u16>()
                    .map(|v| v.into_iter().map(i64::from).collect()),
                "i4" => y
                    .into_vec::<i32>()
                    .map(|v| v.into_iter().map(i64::from).collect()),
                "u4" => y
                    .into_vec::<u32>()
                    .map(|v| v.into_iter().map(i64::from).collect()),
                "i8" => y.into_vec::<i64>(),
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
            Some(v)
        }
    };
    Ok(Samples {
        n,
        sample_len: chw.iter().product(),
        x: values,
        labels,
    })
}

/// Decodes one encoded image (PNG, JPEG) into [0, 1] values in C, H, W order.
fn decode_image(
    path: &Path,
    sample: usize,
    bytes: &[u8],
    opts: &ReadOptions,
    out: &mut Vec<f32>,
) -> Result<(), DataError> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| err(path, Some(sample), format!("cannot decode image: {e}")))?;
    let channels = if opts.input_shape.len() == 3 {
        opts.input_shape[0]
    } else {
        1
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    check_shape(path, Some(sample), [channels, h, w], opts).or_else(|e| {
        // Report the image's own channel count when that is what differs.
        let own = img.color().channel_count() as usize;
        if channels != own && opts.input_shape.len() == 3 && opts.input_shape[1..] == [h, w] {
            Ok(())
        } else {
            Err(e)
        }
    })?;
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
            return Err(err(
                path,
                Some(sample),
                format!(
                    "the model expects {c} channels; encoded images can give 1 (grey) or 3 (RGB)"
                ),
            ))
        }
    }
    Ok(())
}

fn read_parquet(path: &Path, opts: &ReadOptions) -> Result<Samples, DataError> {
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
    let roots: Vec<usize> = std::iter::once(image_idx).chain(label_idx).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    let sample_len = opts.sample_len();
    let mut x: Vec<f32> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    let mut n = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| err(path, None, format!("corrupt Parquet data: {e}")))?;
        let images = batch.column_by_name(&opts.image_column).expect("projected");
        for row in 0..batch.num_rows() {
            let sample = n + row;
            if images.is_null(row) {
                return Err(err(path, Some(sample), "image is null"));
            }
            let before = x.len();
            match images.data_type() {
                DataType::Struct(_) => {
                    let s = images.as_struct();
                    let bytes = s.column_by_name("bytes").ok_or_else(|| {
                        err(path, None, format!("column `{}` is a struct without a `bytes` field", opts.image_column))
                    })?;
                    decode_image(path, sample, binary_at(bytes, row).ok_or_else(|| err(path, Some(sample), "image bytes are null"))?, opts, &mut x)?;
                }
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                    decode_image(path, sample, binary_at(images, row).expect("binary"), opts, &mut x)?;
                }
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
                    let values = list_at(images, row);
                    match values.data_type() {
                        DataType::Float32 => x.extend(values.as_primitive::<Float32Type>().values().iter()),
                        DataType::Float64 => x.extend(values.as_primitive::<Float64Type>().values().iter().map(|&v| v as f32)),
                        t => return Err(err(path, None, format!("column `{}` is a list of {t}; use float32 or float64 values", opts.image_column))),
                    }
                    if x.len() - before != sample_len {
                        return Err(err(
                            path,
                            Some(sample),
                            format!("has {} values but the model's input_shape {} needs {sample_len}", x.len() - before, opts.describe_shape()),
                        ));
                    }
                }
                t => {
                    return Err(err(
                        path,
                        None,
                        format!("column `{}` has type {t}; expected an image struct {{bytes, path}}, binary image bytes, or a list of floats", opts.image_column),
                    ))
                }
            }
        }
        if let Some(col) = opts
            .label_column
            .as_ref()
            .and_then(|c| batch.column_by_name(c))
        {
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
            for row in 0..batch.num_rows() {
                if as_i64.is_null(row) {
                    return Err(err(path, Some(n + row), "label is null"));
                }
                labels.push(as_i64.value(row));
            }
        }
        n += batch.num_rows();
        if opts.limit > 0 && n >= opts.limit {
            break; // read_shard truncates to the limit
        }
    }
    Ok(Samples {
        n,
        sample_len,
        x,
        labels: label_idx.map(|_| labels),
    })
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
}
