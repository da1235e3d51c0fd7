//! The features table: key columns, then one fixed-size list column per vector feature and one
//! Float64 column per scalar (`docs/features.md`).

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::Features;
use crate::analysis::diagram_set::{key_columns, key_fields, SampleDiagram};

/// The lengths of the vector columns (equal for every scope: the sizes are shared).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct VectorLengths {
    pub n_bins: usize,
    pub landscape: usize,
    pub image: usize,
}

const VECTORS: [&str; 4] = [
    "betti_curve",
    "landscape",
    "silhouette",
    "persistence_image",
];
const SCALARS: [&str; 4] = [
    "entropy",
    "total_persistence_1",
    "total_persistence_2",
    "total_persistence_inf",
];

fn list_type(len: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float64, false)),
        len as i32,
    )
}

pub(super) fn schema(lengths: VectorLengths) -> SchemaRef {
    let sizes = [
        lengths.n_bins,
        lengths.landscape,
        lengths.n_bins,
        lengths.image,
    ];
    let mut fields = key_fields();
    fields.extend(
        VECTORS
            .iter()
            .zip(sizes)
            .map(|(name, len)| Field::new(*name, list_type(len), false)),
    );
    fields.extend(
        SCALARS
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, false)),
    );
    Arc::new(Schema::new(fields))
}

/// One fixed-size list column from each row's vector (all of length `len`).
fn list_column<'a>(rows: impl Iterator<Item = &'a [f64]>, len: usize) -> anyhow::Result<ArrayRef> {
    let values: Vec<f64> = rows.flat_map(|r| r.iter().copied()).collect();
    let item = Arc::new(Field::new("item", DataType::Float64, false));
    let array =
        FixedSizeListArray::try_new(item, len as i32, Arc::new(Float64Array::from(values)), None)?;
    Ok(Arc::new(array))
}

fn scalar_column(features: &[Features], get: impl Fn(&Features) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(features.iter().map(get)))
}

/// The columns of one batch: `samples[i]`'s keys with `features[i]`.
pub(super) fn columns(
    samples: &[&SampleDiagram],
    features: &[Features],
    lengths: VectorLengths,
) -> anyhow::Result<Vec<ArrayRef>> {
    let keys: Vec<_> = samples.iter().map(|s| s.key()).collect();
    let mut columns = key_columns(&keys);
    let f = features;
    columns.push(list_column(
        f.iter().map(|x| x.betti_curve.as_slice()),
        lengths.n_bins,
    )?);
    columns.push(list_column(
        f.iter().map(|x| x.landscape.as_slice()),
        lengths.landscape,
    )?);
    columns.push(list_column(
        f.iter().map(|x| x.silhouette.as_slice()),
        lengths.n_bins,
    )?);
    columns.push(list_column(
        f.iter().map(|x| x.persistence_image.as_slice()),
        lengths.image,
    )?);
    columns.push(scalar_column(f, |x| x.entropy));
    for p in 0..3 {
        columns.push(scalar_column(f, |x| x.total_persistence[p]));
    }
    Ok(columns)
}
