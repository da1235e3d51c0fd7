//! Class labels from Parquet columns and npz arrays. Integers are taken as they are, integral
//! floats (3.0) as the integer they hold; anything else (NaN, 2.7, 1e30, 2^64-1) fails its
//! sample with an error that names the value and the fix, instead of turning into a null or
//! being truncated. A column whose type cannot hold labels at all (strings, lists) fails the
//! whole shard, checked once when the shard is opened.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};

/// One sample's label: None when the sample is unlabelled (a null in Parquet), Err when the
/// value is not a class label.
pub(super) type Label = Result<Option<i64>, String>;

const FIX: &str =
    "store labels as integers (e.g. int64; in Parquet, a null marks an unlabelled sample)";

fn not_a_label(value: impl std::fmt::Display, source: &str) -> String {
    format!("{source} holds {value}, which is not an integer class label; {FIX}")
}

/// A label stored as an unsigned 64-bit integer: values above i64::MAX do not fit.
pub(super) fn from_u64(value: u64, source: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| not_a_label(value, source))
}

/// A label stored as a float: only finite integral values within i64 range are labels.
pub(super) fn from_f64(value: f64, source: &str) -> Result<i64, String> {
    // 2^63 is exact in f64; every integral float in [-2^63, 2^63) converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if value.is_finite() && value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value) {
        Ok(value as i64)
    } else {
        Err(not_a_label(value, source))
    }
}

/// Whether a Parquet label column of this type can hold labels; the error says what to do.
pub(super) fn check_column_type(data_type: &DataType, column: &str) -> Result<(), String> {
    if label_type_ok(data_type) {
        Ok(())
    } else {
        Err(format!(
            "label column `{column}` has type {data_type}; labels must be integers or integral floats: {FIX}, or set data.label_column to the right column"
        ))
    }
}

fn label_type_ok(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => label_type_ok(values),
        t => t.is_integer() || t.is_floating() || matches!(t, DataType::Boolean | DataType::Null),
    }
}

/// The first `k` labels of a Parquet label column whose type passed `check_column_type`.
pub(super) fn from_column(column: &dyn Array, k: usize, name: &str) -> Result<Vec<Label>, String> {
    let source = format!("label column `{name}`");
    let cast = |to: &DataType| {
        arrow::compute::cast(column, to).map_err(|e| {
            format!(
                "{source}: cannot read its {} values: {e}",
                column.data_type()
            )
        })
    };
    let per_row = |f: &dyn Fn(usize) -> Result<i64, String>| -> Vec<Label> {
        (0..k)
            .map(|r| {
                if column.is_valid(r) {
                    f(r).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect()
    };
    Ok(match column.data_type() {
        DataType::Null => vec![Ok(None); k],
        DataType::Dictionary(_, values) => return from_column(cast(values)?.as_ref(), k, name),
        DataType::UInt64 => {
            let values = column.as_primitive::<UInt64Type>();
            per_row(&|r| from_u64(values.value(r), &source))
        }
        t if t.is_floating() => {
            // Widening to f64 is exact for every float type.
            let values = cast(&DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            per_row(&|r| from_f64(values.value(r), &source))
        }
        _ => {
            // The other integer types and booleans widen to i64 exactly.
            let values = cast(&DataType::Int64)?;
            let values = values.as_primitive::<Int64Type>();
            per_row(&|r| Ok(values.value(r)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Float64Array, Int32Array, StringArray, UInt64Array};

    #[test]
    fn integral_floats_are_labels_and_other_floats_are_not() {
        assert_eq!(from_f64(3.0, "y"), Ok(3));
        assert_eq!(from_f64(-2.0, "y"), Ok(-2));
        for bad in [
            2.7,
            f64::NAN,
            f64::INFINITY,
            1e30,
            -1e30,
            9_223_372_036_854_775_808.0,
        ] {
            let e = from_f64(bad, "array `y`").unwrap_err();
            assert!(e.contains("array `y`") && e.contains("int64"), "{e}");
        }
    }

    #[test]
    fn u64_above_i64_max_is_not_a_label() {
        assert_eq!(from_u64(9, "y"), Ok(9));
        assert_eq!(from_u64(i64::MAX as u64, "y"), Ok(i64::MAX));
        let e = from_u64(u64::MAX, "y").unwrap_err();
        assert!(e.contains("18446744073709551615"), "{e}");
    }

    #[test]
    fn columns_keep_nulls_as_unlabelled_and_fail_bad_values_per_row() {
        let ints = Int32Array::from(vec![Some(1), None, Some(7)]);
        assert_eq!(
            from_column(&ints, 3, "label").unwrap(),
            vec![Ok(Some(1)), Ok(None), Ok(Some(7))]
        );
        let floats = Float64Array::from(vec![Some(3.0), Some(2.7), None, Some(f64::NAN)]);
        let got = from_column(&floats, 4, "label").unwrap();
        assert_eq!(got[0], Ok(Some(3)));
        assert!(got[1].as_ref().unwrap_err().contains("2.7"));
        assert_eq!(got[2], Ok(None));
        assert!(got[3].as_ref().unwrap_err().contains("NaN"));
        let f32s = Float32Array::from(vec![1e30f32]);
        assert!(from_column(&f32s, 1, "label").unwrap()[0].is_err());
        let big = UInt64Array::from(vec![u64::MAX, 4]);
        let got = from_column(&big, 2, "label").unwrap();
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(Some(4)));
    }

    #[test]
    fn string_columns_are_refused_by_type() {
        let e = check_column_type(&DataType::Utf8, "label").unwrap_err();
        assert!(
            e.contains("label column `label`") && e.contains("Utf8"),
            "{e}"
        );
        assert!(check_column_type(&DataType::Int64, "label").is_ok());
        assert!(check_column_type(&DataType::Float32, "label").is_ok());
        assert!(check_column_type(
            &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Int64)),
            "label"
        )
        .is_ok());
        let strings = StringArray::from(vec!["3"]);
        assert!(check_column_type(strings.data_type(), "label").is_err());
    }
}
