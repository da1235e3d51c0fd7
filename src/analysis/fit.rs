//! Where an analysis fits its class references (subgraph representatives, class means of death
//! values): on the run it scores (in-sample, the default) or on another, comparable run given with
//! `--fit FIT_DIR` (e.g. the training split), and the warnings about classes fitted on too little.
//!
//! Two runs are comparable when their run identities (manifest.json `identity`) agree on every key
//! that changes a clean sample's graph: the actopo version, the spec's and the weights' SHA-256,
//! `data.mean`/`data.std`, `graph.*`, `homology.keep_zero_persistence` and, for subgraphs,
//! `subgraph.top_k`. Keys that only choose which samples are read or what else is written may
//! differ: the `data` keys other than mean and std (which samples; `data.clip` only bounds
//! perturbed inputs), `pipeline.seed` and `attacks` (perturbed variants; fits use clean samples
//! only), `output.*` (which tables are written; a missing table is reported when read) and
//! `homology.h1_diagram` (adds H1 rows; the analyses read H0).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::output::identity::differences;
use crate::output::manifest::{read_manifests, FoundManifest, ManifestView};

/// A class fitted on fewer correctly classified clean samples than this gets a warning.
pub(crate) const MIN_FIT_SAMPLES: usize = 10;

/// Parquet metadata key naming where an analysis was fitted: `in-sample` or the fit folder.
pub(crate) const FIT_KEY: &str = "actopo.fit";
/// Parquet metadata key holding the analysis's warnings, as a JSON list of strings.
pub(crate) const WARNINGS_KEY: &str = "actopo.warnings";

/// Which analysis is fitted: they depend on different settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnalysisKind {
    Subgraphs,
    Uncertainty,
}

/// Identity keys (dotted paths under `config`) that do not change a clean sample's graph.
const IRRELEVANT: [&str; 9] = [
    "data.format",
    "data.image_column",
    "data.label_column",
    "data.limit",
    "data.clip",
    "pipeline.seed",
    "output",
    "attacks",
    "homology.h1_diagram",
];

/// Where the class references come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Fitted on the samples it scores.
    InSample,
    /// Fitted on another run's output folder (absolute path).
    Other(PathBuf),
}

impl Fit {
    /// The value of the `actopo.fit` metadata key.
    pub(crate) fn metadata_value(&self) -> String {
        match self {
            Fit::InSample => "in-sample".into(),
            Fit::Other(dir) => dir.display().to_string(),
        }
    }

    /// One line for the printout: where the fit came from.
    pub fn describe(&self, what: &str) -> String {
        match self {
            Fit::InSample => format!(
                "fit: in-sample ({what} fitted on the same samples they score; \
                 use --fit FIT_DIR to fit on another run, e.g. the training split)"
            ),
            Fit::Other(dir) => format!("fit: {what} fitted on {}", dir.display()),
        }
    }

    /// The fix to name when a class was fitted on too little.
    fn more_samples_fix(&self) -> &'static str {
        match self {
            Fit::InSample => {
                "fit on more samples (--fit FIT_DIR with a larger run, e.g. the training split)"
            }
            Fit::Other(_) => {
                "fit on more samples (a --fit run with a larger data.limit or more shards)"
            }
        }
    }
}

/// Resolves `--fit`: in-sample without it (or when it names `scored` itself), else checks that the
/// two runs are comparable and returns the fit folder; the second value lists warnings (input
/// files both runs read).
pub(crate) fn resolve(
    scored: &Path,
    fit: Option<&Path>,
    kind: AnalysisKind,
) -> anyhow::Result<(Fit, Vec<String>)> {
    let Some(fit) = fit else {
        return Ok((Fit::InSample, Vec::new()));
    };
    let canonical = |dir: &Path, what: &str| {
        std::fs::canonicalize(dir).with_context(|| {
            format!(
                "{what} {} cannot be opened; fix: name an actopo output folder",
                dir.display()
            )
        })
    };
    let (scored_abs, fit_abs) = (canonical(scored, "OUTPUT_DIR")?, canonical(fit, "--fit")?);
    if scored_abs == fit_abs {
        return Ok((Fit::InSample, Vec::new()));
    }
    let (fit_view, scored_view) = (
        run_manifest(&fit_abs, "--fit")?,
        run_manifest(&scored_abs, "OUTPUT_DIR")?,
    );
    let (a, b) = (
        comparable(&fit_view.identity, kind),
        comparable(&scored_view.identity, kind),
    );
    if a != b {
        bail!(
            "--fit {} and OUTPUT_DIR {} are not comparable runs (key: fit run's value -> scored run's value):\n  {}\n  \
             fix: redo one of the runs with the other's values for these keys (same model, weights and graph settings; \
             only the data, attacks and output tables may differ)",
            fit.display(),
            scored.display(),
            differences(&a, &b).join("\n  ")
        );
    }
    let warnings = shared_inputs(&fit_view, &scored_view)
        .into_iter()
        .map(|name| {
            format!(
                "--fit {} and OUTPUT_DIR {} both read input {name} (same SHA-256): samples in both are scored by a fit that saw them; \
                 fix: fit on a run over other data (e.g. the training split)",
                fit.display(),
                scored.display()
            )
        })
        .collect();
    Ok((Fit::Other(fit_abs), warnings))
}

/// The identity and shards of the run in `dir`, from its manifest(s) (one per worker; all share
/// the identity).
fn run_manifest(dir: &Path, what: &str) -> anyhow::Result<ManifestView> {
    let mut views = read_manifests(dir)?
        .into_iter()
        .filter_map(|(_, m)| match m {
            FoundManifest::Intact(v) => Some(v),
            FoundManifest::Damaged => None,
        });
    let Some(mut first) = views.next() else {
        bail!(
            "{what} {} has no readable actopo manifest (manifest.json), so it cannot be checked against the other run; \
             fix: name the output.dir of an `actopo run` (rerun it there to rebuild a damaged manifest)",
            dir.display()
        );
    };
    for v in views {
        first.shards.extend(v.shards);
    }
    Ok(first)
}

/// The run identity without the keys that do not change a clean sample's graph (see the module
/// docs); `subgraph.top_k` matters to subgraphs only.
pub(crate) fn comparable(identity: &Value, kind: AnalysisKind) -> Value {
    let mut v = identity.clone();
    let mut drop: Vec<&str> = IRRELEVANT.to_vec();
    if kind == AnalysisKind::Uncertainty {
        drop.push("subgraph");
    }
    if let Some(config) = v.get_mut("config") {
        for path in drop {
            remove_path(config, path);
        }
    }
    v
}

fn remove_path(v: &mut Value, dotted: &str) {
    let (parent, key) = match dotted.rsplit_once('.') {
        Some((p, k)) => (v.pointer_mut(&format!("/{}", p.replace('.', "/"))), k),
        None => (Some(v), dotted),
    };
    if let Some(obj) = parent.and_then(Value::as_object_mut) {
        obj.remove(key);
    }
}

/// Names of the fit run's shards whose input files (by SHA-256) the scored run read too.
fn shared_inputs(fit: &ManifestView, scored: &ManifestView) -> Vec<String> {
    let scored_hashes: BTreeSet<&str> = scored
        .shards
        .iter()
        .filter_map(|s| s.source.as_ref().map(|f| f.sha256.as_str()))
        .collect();
    fit.shards
        .iter()
        .filter(|s| {
            s.source
                .as_ref()
                .is_some_and(|f| scored_hashes.contains(f.sha256.as_str()))
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Warnings for classes fitted on fewer than [`MIN_FIT_SAMPLES`] correctly classified clean samples
/// (`fitted`: class -> count), including classes the scored run has that the fit lacks.
pub(crate) fn few_samples_warnings(
    fitted: &BTreeMap<i64, usize>,
    scored_classes: &BTreeSet<i64>,
    fit: &Fit,
    what: &str,
) -> Vec<String> {
    let classes: BTreeSet<i64> = fitted.keys().chain(scored_classes).copied().collect();
    classes
        .into_iter()
        .filter_map(|c| {
            let n = fitted.get(&c).copied().unwrap_or(0);
            (n < MIN_FIT_SAMPLES).then(|| {
                format!(
                    "class {c}: {what} fitted on {n} correctly classified clean sample(s), fewer than {MIN_FIT_SAMPLES}; fix: {}",
                    fit.more_samples_fix()
                )
            })
        })
        .collect()
}

/// Warnings for class representatives with no edge (`reps`: class -> (samples, edges)).
pub(crate) fn empty_representative_warnings(
    reps: &BTreeMap<i64, (usize, usize)>,
    min_fraction: f64,
    fit: &Fit,
) -> Vec<String> {
    reps.iter()
        .filter(|(_, &(_, edges))| edges == 0)
        .map(|(c, &(n, _))| {
            format!(
                "class {c}: representative is empty (0 edges from {n} samples: no edge is in >= {min_fraction} of them), \
                 so it cannot match any subgraph; fix: lower --min-fraction, or {}",
                fit.more_samples_fix()
            )
        })
        .collect()
}

/// Prints warnings to stderr and returns the printout's warning section (empty when none).
pub fn report(warnings: &[String]) -> String {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if warnings.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n\nwarnings:");
    for w in warnings {
        s.push_str("\n  ");
        s.push_str(w);
    }
    s
}

/// The metadata every analysis table carries about its fit.
pub fn metadata(fit: &Fit, warnings: &[String]) -> Vec<(String, String)> {
    vec![
        (FIT_KEY.to_string(), fit.metadata_value()),
        (
            WARNINGS_KEY.to_string(),
            serde_json::to_string(warnings).unwrap_or_else(|_| "[]".into()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(limit: u64, top_k: u64, weights: &str) -> Value {
        json!({
            "version": "0.1.0",
            "spec_sha256": "s",
            "weights_sha256": weights,
            "config": {
                "data": {"limit": limit, "mean": [0.0], "std": [1.0], "clip": [0.0, 1.0]},
                "pipeline": {"seed": 3},
                "graph": {"scopes": ["network"]},
                "homology": {"keep_zero_persistence": false, "h1_diagram": false},
                "output": {"subgraphs": true},
                "subgraph": {"top_k": top_k},
                "attacks": [{"kind": "fgsm"}],
            }
        })
    }

    #[test]
    fn data_and_attack_keys_do_not_matter_model_and_top_k_do() {
        let a = identity(100, 10, "w");
        let mut b = identity(5000, 10, "w");
        b["config"]["attacks"] = json!([]);
        b["config"]["data"]["clip"] = json!([-1.0, 1.0]);
        assert_eq!(
            comparable(&a, AnalysisKind::Subgraphs),
            comparable(&b, AnalysisKind::Subgraphs)
        );
        let c = identity(100, 20, "w");
        assert_ne!(
            comparable(&a, AnalysisKind::Subgraphs),
            comparable(&c, AnalysisKind::Subgraphs)
        );
        assert_eq!(
            comparable(&a, AnalysisKind::Uncertainty),
            comparable(&c, AnalysisKind::Uncertainty)
        );
        let d = identity(100, 10, "w2");
        assert_ne!(
            comparable(&a, AnalysisKind::Uncertainty),
            comparable(&d, AnalysisKind::Uncertainty)
        );
        let mut e = a.clone();
        e["config"]["data"]["std"] = json!([0.5]);
        assert_ne!(
            comparable(&a, AnalysisKind::Uncertainty),
            comparable(&e, AnalysisKind::Uncertainty)
        );
    }

    #[test]
    fn classes_without_enough_samples_are_named_with_the_fix() {
        let fitted = BTreeMap::from([(0, 12), (1, 9)]);
        let w = few_samples_warnings(&fitted, &BTreeSet::from([0, 2]), &Fit::InSample, "mean");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("class 1: mean fitted on 9 "), "{w:?}");
        assert!(w[1].starts_with("class 2: mean fitted on 0 "), "{w:?}");
        assert!(w[0].contains("--fit"), "{w:?}");
    }
}
