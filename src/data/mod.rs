//! Input shards: Parquet (encoded image bytes, an image struct, or float
//! lists), IDX files as distributed for MNIST / Fashion-MNIST (optionally gzipped), and `.npz`.
//!
//! `list_shards` expands the globs in sorted order; `stream_shard` decodes one shard batch by batch
//! into raw sample values (8-bit images scaled to [0, 1]) checked against the model's input shape.
//! Normalisation with mean/std happens in the model (`forward`), so attacks can work in raw units.
//!
//! One file per format: `idx`, `npz`, `parquet`; `listing` turns globs into shards; `labels`
//! checks class labels whatever column type holds them; `remote` reads shards behind URLs (S3, GCS,
//! Azure, http(s), Hugging Face). What is checked in each: `docs/inputs.md`.

use std::path::{Path, PathBuf};

use crate::config::DataFormat;

mod idx;
mod labels;
mod listing;
mod npz;
mod parquet;
pub(crate) mod remote;
#[cfg(test)]
mod tests;

pub(crate) use listing::{companion_files, list_shards, stem_of};
pub(crate) use remote::looks_remote;

/// Where a shard's data is: a local file, or an object behind a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardLocation {
    Local(PathBuf),
    Remote(remote::RemoteUrl),
}

impl ShardLocation {
    /// What error messages and the manifest's `path` name: the file's path, or the URL.
    pub fn as_path(&self) -> PathBuf {
        match self {
            ShardLocation::Local(path) => path.clone(),
            ShardLocation::Remote(url) => PathBuf::from(url.to_string()),
        }
    }

    /// The local file, when the shard is one.
    pub fn local(&self) -> Option<&Path> {
        match self {
            ShardLocation::Local(path) => Some(path),
            ShardLocation::Remote(_) => None,
        }
    }
}

impl std::fmt::Display for ShardLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardLocation::Local(path) => write!(f, "{}", path.display()),
            ShardLocation::Remote(url) => write!(f, "{url}"),
        }
    }
}

/// One input file, with the names used for its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSource {
    pub location: ShardLocation,
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

pub(crate) fn err(path: &Path, sample: Option<usize>, message: impl Into<String>) -> DataError {
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
    pub(crate) fn without_path(&self) -> String {
        match self.sample {
            Some(s) => format!("sample {s}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl ReadOptions {
    pub(crate) fn sample_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    pub(crate) fn describe_shape(&self) -> String {
        format!("{:?}", self.input_shape)
    }
}

/// What a shard reader emits: the sample count first, then batches in index order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ShardEvent {
    Start { samples: usize },
    Batch(SampleBatch),
}

/// Consecutive samples of a shard.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SampleBatch {
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
pub(crate) fn stream_shard(
    src: &ShardSource,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let batch_size = batch_size.max(1);
    match (&src.location, src.format) {
        (ShardLocation::Remote(url), DataFormat::Parquet) => {
            remote::stream_parquet(url, opts, batch_size, emit)
        }
        (ShardLocation::Remote(url), format) => stream_fetched(url, format, opts, batch_size, emit),
        (ShardLocation::Local(path), format) => stream_file(path, format, opts, batch_size, emit),
    }
}

fn stream_file(
    path: &Path,
    format: DataFormat,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    match format {
        DataFormat::Idx => idx::stream_idx(path, opts, batch_size, emit),
        DataFormat::Npz => npz::stream_npz(path, opts, batch_size, emit),
        DataFormat::Parquet => parquet::stream_parquet(path, opts, batch_size, emit),
        DataFormat::Auto => unreachable!("list_shards resolves the format"),
    }
}

/// An IDX or npz shard behind a URL: small, so fetched whole into a temporary folder (with an
/// IDX image file's labels, when the store has them next to it) and read as a local file.
fn stream_fetched(
    url: &remote::RemoteUrl,
    format: DataFormat,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let at = PathBuf::from(url.to_string());
    let dir = tempfile::tempdir().map_err(|e| {
        err(
            &at,
            None,
            format!("cannot make a temporary folder: {e}; check TMPDIR"),
        )
    })?;
    let path = remote::fetch_whole(url, dir.path(), false)
        .map_err(|e| err(&at, None, e))?
        .unwrap_or_default();
    if format == DataFormat::Idx {
        for name in listing::idx_label_names(url.file_name()) {
            let found = remote::fetch_whole(&url.sibling(&name), dir.path(), true)
                .map_err(|e| err(&at, None, e))?;
            if found.is_some() {
                break;
            }
        }
    }
    stream_file(&path, format, opts, batch_size, emit).map_err(|e| DataError { path: at, ..e })
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
                failure = Some(err(&src.location.as_path(), Some(*i), e.clone()));
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

/// How many of a shard's `n` samples the run reads (`data.limit`).
pub(crate) fn effective(n: usize, opts: &ReadOptions) -> usize {
    if opts.limit > 0 {
        n.min(opts.limit)
    } else {
        n
    }
}

/// Checks an image's [C, H, W] against the model's input shape.
pub(crate) fn check_shape(
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

/// One mean and one std per input channel: a single value applies to every channel.
pub(crate) fn channel_stats(
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
