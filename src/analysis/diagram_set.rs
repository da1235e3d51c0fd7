//! A finished run's H0 persistence diagrams in memory, one per (shard, index, variant, scope), with
//! each sample's label and prediction: the input of `actopo features`, `distances`, `plot` and
//! `report`.
//!
//! Values are edge weights |w * a| >= 0 and the filtration is superlevel (edges enter by decreasing
//! weight), so every finite pair has birth >= death. H1 rows (`homology.h1_diagram`) are not read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{bail, Context};
use arrow::array::{ArrayRef, Int64Array, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field};

use super::{for_each_batch, read_predictions, variants_in_order, Columns, Prediction};

/// One finite H0 point: born at `birth`, dies at `death` <= `birth`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub birth: f64,
    pub death: f64,
}

impl Pair {
    /// birth - death, >= 0.
    pub fn persistence(&self) -> f64 {
        self.birth - self.death
    }
}

/// One H0 diagram: its finite pairs and the births of its essential classes (components).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagram {
    pub pairs: Vec<Pair>,
    pub essential: Vec<f64>,
}

/// The diagram of one (shard, index, variant, scope), with the sample's label and prediction.
#[derive(Debug, Clone)]
pub struct SampleDiagram {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub scope: String,
    pub label: Option<i64>,
    pub pred: i64,
    pub diagram: Diagram,
}

/// What names one diagram in a table written from a `DiagramSet`, with the sample's label and
/// prediction.
#[derive(Debug, Clone, Copy)]
pub struct DiagramKey<'a> {
    pub shard: &'a str,
    pub index: u32,
    pub variant: &'a str,
    pub scope: &'a str,
    pub label: Option<i64>,
    pub pred: i64,
}

impl SampleDiagram {
    pub fn key(&self) -> DiagramKey<'_> {
        DiagramKey {
            shard: &self.shard,
            index: self.index,
            variant: &self.variant,
            scope: &self.scope,
            label: self.label,
            pred: self.pred,
        }
    }
}

/// The leading columns of every per-diagram table (`features`, `distances`): shard, index,
/// variant, scope, label, pred.
pub(crate) fn key_fields() -> Vec<Field> {
    vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("label", DataType::Int64, true),
        Field::new("pred", DataType::Int64, false),
    ]
}

/// The arrays of `key_fields` for `keys`, in order.
pub(crate) fn key_columns(keys: &[DiagramKey]) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(keys.iter().map(|k| k.shard))),
        Arc::new(UInt32Array::from_iter_values(keys.iter().map(|k| k.index))),
        Arc::new(StringArray::from_iter_values(
            keys.iter().map(|k| k.variant),
        )),
        Arc::new(StringArray::from_iter_values(keys.iter().map(|k| k.scope))),
        Arc::new(Int64Array::from(
            keys.iter().map(|k| k.label).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| k.pred))),
    ]
}

/// Every H0 diagram of a run, in the run's row order (files sorted by name).
#[derive(Debug)]
pub struct DiagramSet {
    pub dir: PathBuf,
    pub samples: Vec<SampleDiagram>,
    /// The variants in run order: `clean` first, then the attacks.
    pub variants: Vec<String>,
    /// The scopes in run order: `network` first, then the layers.
    pub scopes: Vec<String>,
    at: HashMap<(String, u32, String, String), usize>,
}

impl DiagramSet {
    /// Reads `dir/diagrams/*.parquet` and the labels and predictions of `dir/summary/`.
    pub fn load(dir: &Path) -> anyhow::Result<DiagramSet> {
        let predictions = read_predictions(dir)?;
        let mut set = DiagramSet {
            dir: dir.to_path_buf(),
            samples: Vec::new(),
            variants: Vec::new(),
            scopes: Vec::new(),
            at: HashMap::new(),
        };
        for_each_batch(dir, "diagrams", |batch| {
            let columns = Columns::new(&batch, "diagrams");
            set.add_rows(&columns, batch.num_rows(), &predictions)
        })?;
        if set.samples.is_empty() {
            bail!(
                "{} holds no diagrams: the run processed no sample (every sample failed, or data.limit / the shards gave none)\n  fix: check the run's failures/ table and its data.shards, then rerun it",
                dir.display()
            );
        }
        set.variants = variants_in_order(set.samples.iter().map(|s| s.variant.as_str()))
            .into_iter()
            .map(String::from)
            .collect();
        set.scopes = variants_in_order(set.samples.iter().map(|s| s.scope.as_str()))
            .into_iter()
            .map(String::from)
            .collect();
        Ok(set)
    }

    fn add_rows(
        &mut self,
        c: &Columns,
        rows: usize,
        predictions: &HashMap<(String, u32, String), Prediction>,
    ) -> anyhow::Result<()> {
        let (shard, index, variant) = (c.str("shard")?, c.u32("index")?, c.str("variant")?);
        let (scope, dim) = (c.str("scope")?, c.u8("dim")?);
        let (birth, death) = (c.opt_f32("birth")?, c.opt_f32("death")?);
        for i in 0..rows {
            if dim[i] != 0 {
                continue;
            }
            let slot = self.slot(shard[i], index[i], variant[i], scope[i], predictions)?;
            let b = f64::from(birth[i].context("diagrams: null birth")?);
            let diagram = &mut self.samples[slot].diagram;
            match death[i] {
                Some(d) => diagram.pairs.push(Pair {
                    birth: b,
                    death: f64::from(d),
                }),
                None => diagram.essential.push(b),
            }
        }
        Ok(())
    }

    /// The position of (shard, index, variant, scope) in `samples`, added on first sight.
    fn slot(
        &mut self,
        shard: &str,
        index: u32,
        variant: &str,
        scope: &str,
        predictions: &HashMap<(String, u32, String), Prediction>,
    ) -> anyhow::Result<usize> {
        // Rows come grouped by sample: most rows belong to the last sample seen.
        if let Some(last) = self.samples.last() {
            if last.index == index
                && last.shard == shard
                && last.variant == variant
                && last.scope == scope
            {
                return Ok(self.samples.len() - 1);
            }
        }
        let key = (
            shard.to_string(),
            index,
            variant.to_string(),
            scope.to_string(),
        );
        if let Some(&slot) = self.at.get(&key) {
            return Ok(slot);
        }
        let p = predictions
            .get(&(key.0.clone(), index, key.2.clone()))
            .with_context(|| {
                format!(
                    "{}: diagrams/ has shard {shard} index {index} variant {variant} but summary/ has no row for it\n  fix: the folder mixes tables of different runs; rerun into an empty output.dir",
                    self.dir.display()
                )
            })?;
        self.samples.push(SampleDiagram {
            shard: key.0.clone(),
            index,
            variant: key.2.clone(),
            scope: key.3.clone(),
            label: p.label,
            pred: p.pred,
            diagram: Diagram::default(),
        });
        self.at.insert(key, self.samples.len() - 1);
        Ok(self.samples.len() - 1)
    }

    /// Fails, listing the run's scopes, unless `scope` is one of them.
    pub fn check_scope(&self, scope: &str) -> anyhow::Result<()> {
        if self.scopes.iter().any(|s| s == scope) {
            return Ok(());
        }
        bail!(
            "{} has no scope `{scope}`; its scopes are: {}\n  fix: pick one of those, or rerun with graph.scopes = [\"network\", \"layers\"] to get a scope per graph layer",
            self.dir.display(),
            self.scopes.join(", ")
        )
    }

    /// Fails, listing the run's variants, unless `variant` is one of them.
    pub fn check_variant(&self, variant: &str) -> anyhow::Result<()> {
        if self.variants.iter().any(|v| v == variant) {
            return Ok(());
        }
        let fix = if self.variants.len() == 1 {
            "the run had no attacks: add an [[attacks]] table to its config and rerun it"
        } else {
            "pick one of those (each [[attacks]] entry of the run's config gives a variant)"
        };
        bail!(
            "{} has no variant `{variant}`; its variants are: {}\n  fix: {fix}",
            self.dir.display(),
            self.variants.join(", ")
        )
    }

    /// The diagram of (shard, index, variant, scope), if the run has it.
    pub fn find(
        &self,
        shard: &str,
        index: u32,
        variant: &str,
        scope: &str,
    ) -> Option<&SampleDiagram> {
        let key = (
            shard.to_string(),
            index,
            variant.to_string(),
            scope.to_string(),
        );
        self.at.get(&key).map(|&slot| &self.samples[slot])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_named() {
        let err = DiagramSet::load(Path::new("/nonexistent/run")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/run"), "{err}");
    }
}
