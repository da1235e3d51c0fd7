//! Parquet shards: an image column of encoded bytes (PNG, JPEG), an image struct `{bytes, path}`
//! as Hugging Face datasets write it, or a list of floats; an optional label column.

use std::fs::File;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::{effective, err, labels, DataError, ReadOptions, SampleBatch, ShardEvent};

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
            float_list_row(images, row, opts, out)
        }
        _ => decode_image(
            binary_at(images, row).ok_or("image bytes are null")?,
            opts,
            out,
        ),
    }
}

/// A row of a list-of-floats image column: no nulls, exactly the input shape's number of values.
fn float_list_row(
    images: &dyn Array,
    row: usize,
    opts: &ReadOptions,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    let before = out.len();
    let values = list_at(images, row);
    if let Some(i) = (0..values.len()).find(|&i| values.is_null(i)) {
        return Err(format!(
            "value {i} of the image is null; fill or drop the sample"
        ));
    }
    match values.data_type() {
        DataType::Float32 => out.extend(values.as_primitive::<Float32Type>().values().iter()),
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

/// A Parquet shard opened for reading: its image and label columns checked, only they projected.
struct ParquetShard {
    reader: ParquetRecordBatchReader,
    /// The label column's name, when the shard has one.
    label: Option<String>,
    rows: usize,
}

/// The columns a shard is read with: the image column and, when the shard has one, the label
/// column (checked against `opts`); local and remote shards both open through here.
pub(super) struct ColumnPlan {
    /// Root column indices to project.
    pub(super) roots: Vec<usize>,
    /// The label column's name, when the shard has one.
    pub(super) label: Option<String>,
}

pub(super) fn plan_columns(
    schema: &arrow::datatypes::Schema,
    path: &Path,
    opts: &ReadOptions,
) -> Result<ColumnPlan, DataError> {
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
    let label = parquet_label_column(schema, opts).map_err(|e| err(path, None, e))?;
    let roots = std::iter::once(image_idx)
        .chain(label.as_ref().map(|(idx, _)| *idx))
        .collect();
    Ok(ColumnPlan {
        roots,
        label: label.map(|(_, name)| name),
    })
}

fn open_parquet(
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
) -> Result<ParquetShard, DataError> {
    let file = File::open(path).map_err(|e| err(path, None, format!("cannot open: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(path, None, format!("not a readable Parquet file: {e}")))?;
    let plan = plan_columns(builder.schema(), path, opts)?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let mask = ProjectionMask::roots(builder.parquet_schema(), plan.roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    Ok(ParquetShard {
        reader,
        label: plan.label,
        rows,
    })
}

pub(super) fn stream_parquet(
    path: &Path,
    opts: &ReadOptions,
    batch_size: usize,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let shard = open_parquet(path, opts, batch_size)?;
    let batches = shard.reader.map(|b| {
        b.map_err(|e| {
            Box::new(move |start: usize| format!("corrupt Parquet data at row {start}: {e}"))
                as BatchError
        })
    });
    emit_batches(
        path,
        batches,
        shard.rows,
        shard.label.as_deref(),
        opts,
        emit,
    )
}

/// Why a record batch could not be read, given the row it started at.
pub(super) type BatchError = Box<dyn FnOnce(usize) -> String + Send>;

/// Decodes a shard's record batches into samples and emits them (`Start` first), stopping at
/// `data.limit`; shared by local and remote shards.
pub(super) fn emit_batches(
    path: &Path,
    batches: impl Iterator<Item = Result<RecordBatch, BatchError>>,
    rows: usize,
    label: Option<&str>,
    opts: &ReadOptions,
    emit: &mut dyn FnMut(ShardEvent) -> bool,
) -> Result<(), DataError> {
    let n = effective(rows, opts);
    if !emit(ShardEvent::Start { samples: n }) {
        return Ok(());
    }
    let mut start = 0usize;
    for batch in batches {
        if start >= n {
            break;
        }
        let batch = batch.map_err(|describe| err(path, None, describe(start)))?;
        let k = batch.num_rows().min(n - start);
        let samples =
            parquet_batch(&batch, start, k, label, opts).map_err(|e| err(path, None, e))?;
        if !emit(ShardEvent::Batch(samples)) {
            return Ok(());
        }
        start += k;
    }
    if start < n {
        return Err(err(path, None, format!("metadata says {n} rows but only {start} could be read; the file is truncated or corrupt")));
    }
    Ok(())
}

/// The first `k` rows of a record batch as samples from `start` on. A row that cannot be read
/// fails that sample only (all zeros, recorded in `failed`); a column problem fails the shard.
fn parquet_batch(
    batch: &RecordBatch,
    start: usize,
    k: usize,
    label: Option<&str>,
    opts: &ReadOptions,
) -> Result<SampleBatch, String> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| format!("column `{name}` is missing from the data read"))
    };
    let images = column(&opts.image_column)?;
    let labels = match label {
        None => vec![Ok(None); k],
        Some(name) => labels::from_column(column(name)?.as_ref(), k, name)?,
    };
    let sample_len = opts.sample_len();
    let mut x = Vec::with_capacity(k * sample_len);
    let mut failed = Vec::new();
    let mut batch_labels = Vec::with_capacity(k);
    for (row, label) in labels.into_iter().enumerate() {
        let before = x.len();
        let label = parquet_row(images.as_ref(), row, opts, &mut x).and(label);
        if let Err(e) = &label {
            x.truncate(before);
            x.resize(before + sample_len, 0.0);
            failed.push((start + row, e.clone()));
        }
        batch_labels.push(label.unwrap_or(None));
    }
    Ok(SampleBatch {
        start,
        n: k,
        x,
        labels: batch_labels,
        failed,
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
