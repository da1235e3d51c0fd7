//! How a table's columns are declared once. `table_columns!` turns a list of
//! `name: required|nullable ArrowType` into the row type (one field per column), the Arrow
//! schema, the column builders (arrow's own), `push` and `finish` (the arrays of one batch), so
//! they cannot drift apart. The tables themselves are declared in `tables.rs`;
//! `docs/output-schema.md` documents them, and a test keeps the two in step.

use arrow::array::ArrayRef;
use arrow::datatypes::{Field, Schema, SchemaRef};
use std::sync::Arc;

use super::tables::Table;

/// The column builders of one table, filled row by row and emptied by `finish`.
pub(crate) trait ColumnBuilders: Default {
    /// The table these columns make up.
    const TABLE: Table;
    /// The declared columns, in order.
    fn fields() -> Vec<Field>;
    /// Rows pushed since the last `finish`.
    fn rows(&self) -> usize;
    /// The pushed rows as Arrow arrays, in column order; the builders start empty again.
    fn finish(&mut self) -> Vec<ArrayRef>;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(Self::fields()))
    }
}

/// Declares a table's columns once:
///
/// ```text
/// table_columns! {
///     /// One row per ...
///     table Table::Foo, row FooRow<'a>, builders FooColumns {
///         /// The shard's file name.
///         shard: required Utf8,
///         label: nullable Int64,
///     }
/// }
/// ```
///
/// gives `FooRow<'a> { shard: &'a str, label: Option<i64> }`, and `FooColumns` with
/// `push(FooRow)` and `ColumnBuilders` (fields, rows, finish). `ArrowType` is the name of an
/// `arrow::datatypes::DataType` variant among those `column_type!` knows.
macro_rules! table_columns {
    (
        $(#[$row_doc:meta])*
        table $table:path, row $Row:ident<$lt:lifetime>, builders $Builders:ident {
            $( $(#[$col_doc:meta])* $col:ident : $null:ident $ty:ident ),+ $(,)?
        }
    ) => {
        $(#[$row_doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub(crate) struct $Row<$lt> {
            $( $(#[$col_doc])* pub(crate) $col: $crate::output::columns::column_type!($null $ty $lt value), )+
        }

        /// Column builders of the table, one per declared column.
        #[derive(Default)]
        pub(crate) struct $Builders {
            $( $col: $crate::output::columns::column_type!($null $ty $lt builder), )+
            rows: usize,
        }

        impl $Builders {
            /// Appends one row.
            pub(crate) fn push(&mut self, row: $Row<'_>) {
                $( $crate::output::columns::column_type!($null append self.$col, row.$col); )+
                self.rows += 1;
            }
        }

        impl $crate::output::columns::ColumnBuilders for $Builders {
            const TABLE: $crate::output::tables::Table = $table;

            fn fields() -> Vec<arrow::datatypes::Field> {
                vec![$(
                    arrow::datatypes::Field::new(
                        stringify!($col),
                        arrow::datatypes::DataType::$ty,
                        $crate::output::columns::column_type!($null nullable),
                    ),
                )+]
            }

            fn rows(&self) -> usize {
                self.rows
            }

            fn finish(&mut self) -> Vec<arrow::array::ArrayRef> {
                self.rows = 0;
                vec![$( arrow::array::ArrayBuilder::finish(&mut self.$col), )+]
            }
        }
    };
}

/// What a declared `required|nullable ArrowType` column means in Rust: its row value type, its
/// builder, how a value is appended, and its nullability.
macro_rules! column_type {
    (required $ty:ident $lt:lifetime value) => { $crate::output::columns::column_type!(@value $ty $lt) };
    (nullable $ty:ident $lt:lifetime value) => { Option<$crate::output::columns::column_type!(@value $ty $lt)> };
    ($null:ident $ty:ident $lt:lifetime builder) => { $crate::output::columns::column_type!(@builder $ty) };
    (required append $b:expr, $v:expr) => { $b.append_value($v) };
    (nullable append $b:expr, $v:expr) => { $b.append_option($v) };
    (required nullable) => { false };
    (nullable nullable) => { true };
    (@value Utf8 $lt:lifetime) => { &$lt str };
    (@value Boolean $lt:lifetime) => { bool };
    (@value UInt8 $lt:lifetime) => { u8 };
    (@value UInt32 $lt:lifetime) => { u32 };
    (@value UInt64 $lt:lifetime) => { u64 };
    (@value Int64 $lt:lifetime) => { i64 };
    (@value Float32 $lt:lifetime) => { f32 };
    (@value Float64 $lt:lifetime) => { f64 };
    (@builder Utf8) => { arrow::array::StringBuilder };
    (@builder Boolean) => { arrow::array::BooleanBuilder };
    (@builder UInt8) => { arrow::array::UInt8Builder };
    (@builder UInt32) => { arrow::array::UInt32Builder };
    (@builder UInt64) => { arrow::array::UInt64Builder };
    (@builder Int64) => { arrow::array::Int64Builder };
    (@builder Float32) => { arrow::array::Float32Builder };
    (@builder Float64) => { arrow::array::Float64Builder };
}

pub(crate) use {column_type, table_columns};
