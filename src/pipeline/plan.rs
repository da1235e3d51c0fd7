//! Everything decided before the first sample is read: the model and shards checked
//! (`prepare`), this worker's share of the shards, the output folder checked, locked and cleaned,
//! what an earlier run already completed (the resume plan), and the run's manifest.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde_json::Value;

use super::RunOptions;
use crate::config::Settings;
use crate::data::{self, ReadOptions, ShardSource};
use crate::model::Model;
use crate::output::lock::{self, RunLock};
use crate::output::manifest::{self, Manifest, ModelInfo, ShardRecord};
use crate::output::{folder, identity, resume, OutputLayout, Table};
use crate::perturb::{Attack, AttackKind};
use crate::spec::{Network, Op};
use crate::topology::{BatchNormFolding, EdgeThreshold, GraphPlan};

/// Everything checked before any sample is processed.
pub struct Prepared {
    pub model: Model,
    pub shards: Vec<ShardSource>,
    pub plan: GraphPlan,
    /// Per-channel mean and std.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub read_options: ReadOptions,
}

/// Loads and checks the model and lists the shards; no data is read.
pub fn prepare(settings: &Settings) -> anyhow::Result<Prepared> {
    let model = Model::load(&settings.spec, settings.weights.as_deref())?;
    let shards = data::list_shards(&settings.config.data.shards, settings.format).map_err(|p| {
        anyhow!(
            "data shards in {}:\n  {}",
            settings.config_path.display(),
            p.join("\n  ")
        )
    })?;
    let plan = GraphPlan::new(&model.network, &model.weights, settings.graph)?;
    let shape = &model.network.input_shape;
    let channels = if shape.len() == 3 { shape[0] } else { 1 };
    let (mean, std) = data::channel_stats(
        &settings.config.data.mean,
        &settings.config.data.std,
        channels,
    )
    .map_err(|e| anyhow!("configuration {}: {e}", settings.config_path.display()))?;
    check_attacks_fit(settings, &model)?;
    let read_options = ReadOptions {
        input_shape: shape.clone(),
        image_column: settings.config.data.image_column.clone(),
        label_column: settings.config.data.label_column.clone(),
        limit: settings.config.data.limit as usize,
    };
    Ok(Prepared {
        model,
        shards,
        plan,
        mean,
        std,
        read_options,
    })
}

/// Attacks that need image inputs are refused for a model that takes flat ones.
fn check_attacks_fit(settings: &Settings, model: &Model) -> anyhow::Result<()> {
    let shape = &model.network.input_shape;
    for attack in &settings.attacks {
        if matches!(attack.kind, AttackKind::GaussianBlur { .. }) && shape.len() != 3 {
            anyhow::bail!(
                "configuration {}: attack `{}` (gaussian_blur) needs image inputs but model {} takes {:?}; remove the attack",
                settings.config_path.display(),
                attack.name,
                model.spec.path.display(),
                shape
            );
        }
    }
    Ok(())
}

/// This worker's share of the run, after its output folder was checked, locked and cleaned of
/// unfinished outputs. Holds the run lock until dropped.
pub(super) struct RunPlan {
    /// This worker's shards; the stages refer to them by position.
    pub(super) shards: Vec<ShardSource>,
    /// Positions in `shards` of those to process (not complete from an earlier run).
    pub(super) todo: Vec<usize>,
    pub(super) out_dir: PathBuf,
    pub(super) manifest_file: String,
    /// This worker's index and the number of workers sharing the folder.
    worker: [usize; 2],
    /// What the output folder held: shards complete, and former entries to keep.
    previous: resume::Plan,
    identity: Value,
    _lock: RunLock,
}

impl RunPlan {
    /// Splits the shards among workers and readies the output folder; nothing is processed yet.
    pub(super) fn new(
        settings: &Settings,
        options: &RunOptions,
        prepared: &Prepared,
    ) -> anyhow::Result<RunPlan> {
        anyhow::ensure!(
            options.num_shards >= 1 && options.shard_index < options.num_shards,
            "--shard-index {} must be below --num-shards {}",
            options.shard_index,
            options.num_shards
        );
        let shards = resume::split(&prepared.shards, options.shard_index, options.num_shards);
        let out_dir = settings.config.output.dir.clone();
        let manifest_file = manifest::manifest_name(options.shard_index, options.num_shards);
        let inputs = run_inputs(settings, &prepared.model, &prepared.shards);
        inputs.check_output(&out_dir.join(&manifest_file))?;
        for src in &shards {
            for table in Table::ALL {
                inputs.check_output(&table.path(&out_dir, &src.stem))?;
            }
        }
        let lock = open_folder(&out_dir, &manifest_file, options)?;
        let model = &prepared.model;
        let identity =
            identity::identity(&settings.config, &model.spec.sha256, &model.weights_sha256);
        let previous = resume::check_output_dir(
            &out_dir,
            &identity,
            &manifest_file,
            &shards,
            options.overwrite,
            &result_tables(settings),
        )?;
        for note in &previous.notes {
            eprintln!("actopo: {note}");
        }
        resume::clear_unfinished(&out_dir, &shards, &previous)?;
        resume::remove_stale_manifest_temps(&out_dir, &manifest_file);
        let todo = (0..shards.len())
            .filter(|&i| !previous.is_complete(&shards[i].name))
            .collect();
        Ok(RunPlan {
            shards,
            todo,
            out_dir,
            manifest_file,
            worker: [options.shard_index, options.num_shards],
            previous,
            identity,
            _lock: lock,
        })
    }

    /// Shards skipped because an earlier run completed them.
    pub(super) fn skipped(&self) -> usize {
        self.previous.complete.len()
    }

    /// The manifest as the run starts: shards complete from before keep their entries, the
    /// others are pending.
    pub(super) fn manifest(
        &self,
        settings: &Settings,
        prepared: &Prepared,
        device: &str,
    ) -> Manifest {
        let model = &prepared.model;
        Manifest {
            tool: "actopo",
            version: env!("CARGO_PKG_VERSION"),
            identity: self.identity.clone(),
            worker: self.worker,
            config_file: settings.config_path.clone(),
            config: settings.config.clone(),
            device: device.to_string(),
            model: ModelInfo {
                name: model.network.name.clone(),
                spec: model.spec.path.clone(),
                spec_sha256: model.spec.sha256.clone(),
                weights: model.weights_path.clone(),
                weights_sha256: model.weights_sha256.clone(),
                input_shape: model.network.input_shape.clone(),
                vertex_layers: prepared
                    .plan
                    .vertex_layers
                    .iter()
                    .map(|l| (l.name.clone(), l.offset, l.len))
                    .collect(),
            },
            conventions: conventions(settings, model).into_iter().collect(),
            variants: variant_names(&settings.attacks),
            attacks: settings.attacks.clone(),
            shards: self.shard_entries(),
        }
    }

    /// Per shard of this worker, its manifest entry; then the former entries kept.
    fn shard_entries(&self) -> Vec<ShardRecord> {
        let entry = |s: &ShardSource| match self.previous.complete.iter().find(|e| e.name == s.name)
        {
            Some(done) => ShardRecord {
                path: s.location.as_path(),
                ..done.clone()
            },
            None => ShardRecord::pending(&s.name, &s.stem, &s.location.as_path()),
        };
        self.shards
            .iter()
            .map(entry)
            .chain(self.previous.former.iter().cloned())
            .collect()
    }

    /// What the writer writes for every shard.
    pub(super) fn layout(&self, settings: &Settings, prepared: &Prepared) -> OutputLayout {
        let out = &settings.config.output;
        OutputLayout {
            dir: self.out_dir.clone(),
            summary: out.summary,
            diagrams: out.diagrams,
            subgraph_top_k: out.subgraphs.then_some(settings.config.subgraph.top_k),
            variants: variant_names(&settings.attacks),
            vertex_layers: prepared.plan.vertex_layers.clone(),
            metadata: conventions(settings, &prepared.model),
            run_identity: identity::identity_sha256(&self.identity),
        }
    }
}

/// Creates the output folder, refuses files actopo did not write (unless `--overwrite`), and
/// takes the run lock: a second run into the same folder (or worker) is refused until it is
/// dropped.
fn open_folder(
    out_dir: &std::path::Path,
    manifest_file: &str,
    options: &RunOptions,
) -> anyhow::Result<RunLock> {
    std::fs::create_dir_all(out_dir).with_context(|| {
        format!(
            "cannot create output.dir {}; fix: check the path and its permissions",
            out_dir.display()
        )
    })?;
    if !options.overwrite {
        resume::refuse_unknown_files(out_dir)?;
    }
    let lock = lock::lock(out_dir, manifest_file, options.num_shards > 1)?;
    folder::check_table_dirs(out_dir, &Table::ALL)?;
    Ok(lock)
}

/// The `variant` names: `clean`, then the attacks in config order.
fn variant_names(attacks: &[Attack]) -> Vec<String> {
    std::iter::once("clean".to_string())
        .chain(attacks.iter().map(|a| a.name.clone()))
        .collect()
}

/// Key-value metadata of every output file: how to read its numbers.
fn conventions(settings: &Settings, model: &Model) -> Vec<(String, String)> {
    let g = &settings.graph;
    let h = &settings.homology;
    let mut conventions = vec![
        ("actopo.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("actopo.model".into(), model.network.name.clone()),
        (
            "actopo.filtration".into(),
            "superlevel: simplices enter by decreasing value; birth >= death".into(),
        ),
        (
            "actopo.edge_weight".into(),
            edge_weight_rule(&model.network),
        ),
        ("actopo.include_input".into(), g.include_input.to_string()),
        ("actopo.maxpool_edges".into(), g.maxpool_edges.to_string()),
        ("actopo.vertex_birth".into(), g.vertex_birth.to_string()),
    ];
    // Recorded where it is a choice: a model with a batch norm that can fold, or a run that
    // set it (files of other models stay as they were).
    if folds_batch_norm(&model.network) || g.batch_norm != BatchNormFolding::default() {
        conventions.push(("actopo.batch_norm".into(), g.batch_norm.to_string()));
    }
    // Recorded only when set, so files of runs without it stay as they were.
    if g.threshold != EdgeThreshold::None {
        conventions.push(("actopo.threshold".into(), threshold_rule(g.threshold)));
    }
    conventions.extend([
        (
            "actopo.keep_zero_persistence".into(),
            h.keep_zero_persistence.to_string(),
        ),
        ("actopo.h1_diagram".into(), h.h1_diagram.to_string()),
        (
            "actopo.scopes".into(),
            settings.config.graph.scopes.join(","),
        ),
        (
            "actopo.subgraph_top_k".into(),
            settings.config.subgraph.top_k.to_string(),
        ),
        (
            "actopo.unit_ids".into(),
            "vertex layer offset + flat C,H,W index; layers listed in manifest.json".into(),
        ),
    ]);
    conventions
}

/// `actopo.threshold`: the cut and how it is taken (docs/graph.md).
fn threshold_rule(threshold: EdgeThreshold) -> String {
    let how = match threshold {
        EdgeThreshold::Percentile(_) => {
            "per graph op and input: the nearest-rank percentile of the op's nonzero edge weights (rank ceil(P * n / 100)); edges at or above it kept, in every scope"
        }
        EdgeThreshold::ReferencePercentile(_) => {
            "per graph op and input, the reference code's cut (pt_activation compute_dynamic_filtration2): conv op l: (1 / (l + 1)) * numpy percentile of |its output|; linear op: numpy percentile of |W * a| over all products; edges strictly above it kept, in every scope"
        }
        _ => "edges of weight at or above it kept, in every scope",
    };
    format!("{threshold}; {how}")
}

/// Whether some batch norm of `net` directly follows a conv or linear layer it can fold into.
fn folds_batch_norm(net: &Network) -> bool {
    (0..net.layers.len()).any(|i| net.fold_target(i).is_some())
}

/// How edge weights are defined, naming the rules of the ops `net` has beyond the sequential ones
/// (docs/graph.md).
fn edge_weight_rule(net: &Network) -> String {
    let has = |op: fn(&Op) -> bool| net.layers.iter().any(|l| op(&l.op));
    let mut more = String::new();
    if has(|op| matches!(op, Op::AdaptiveAvgPool2d { .. })) {
        more.push_str(", adaptive avg pool: |a| / window area");
    }
    if has(|op| matches!(op, Op::Add)) {
        more.push_str(", add: |operand value|");
    }
    if folds_batch_norm(net) {
        more.push_str(", w of a conv or linear with a batch norm folded in per actopo.batch_norm");
    }
    format!(
        "|w * a| in f32 (pool: |a|, avg pool: |a| / (kh * kw){more}); zero-weight edges left out"
    )
}

/// Every file the run reads, which it must never write over.
fn run_inputs(settings: &Settings, model: &Model, shards: &[ShardSource]) -> folder::Inputs {
    let mut inputs = folder::Inputs::default();
    inputs.add(&settings.config_path, "the config file");
    inputs.add(&model.spec.path, "the model spec");
    inputs.add(&model.weights_path, "the weights file");
    for src in shards {
        if let Some(path) = src.location.local() {
            inputs.add(path, "the input shard");
        }
        for companion in data::companion_files(src) {
            inputs.add(&companion, "the label file");
        }
    }
    inputs
}

/// The result tables this run writes for every shard (`failures` only when something fails).
fn result_tables(settings: &Settings) -> Vec<Table> {
    let out = &settings.config.output;
    [
        (out.summary, Table::Summary),
        (out.diagrams, Table::Diagrams),
        (out.subgraphs, Table::Subgraphs),
    ]
    .into_iter()
    .filter_map(|(on, table)| on.then_some(table))
    .collect()
}
