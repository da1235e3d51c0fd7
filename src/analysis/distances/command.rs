//! `actopo distances OUTPUT_DIR`: the distances of each perturbed variant's diagram to the same
//! sample's clean diagram, and of each clean diagram to its class's mean diagram, written to
//! `OUTPUT_DIR/analysis/distances.parquet` and summarised per variant.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::{all_distances, mean, Distances, Pair};
use crate::analysis::diagram_set::{key_columns, key_fields, DiagramSet, SampleDiagram};
use crate::analysis::{f64_col, write_analysis};

/// The Wasserstein order p.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    #[value(name = "1")]
    One,
    #[value(name = "2")]
    Two,
}

impl Order {
    pub fn value(self) -> f64 {
        match self {
            Order::One => 1.0,
            Order::Two => 2.0,
        }
    }

    /// The name of the table's Wasserstein column.
    pub fn column(self) -> &'static str {
        match self {
            Order::One => "wasserstein_1",
            Order::Two => "wasserstein_2",
        }
    }
}

/// What `actopo distances` computes.
#[derive(Debug, Clone)]
pub struct Options {
    pub p: Order,
    /// The scopes whose diagrams are compared (`network`, or layers with `graph.scopes` =
    /// layers); each diagram is compared within its own scope.
    pub scopes: Vec<String>,
    /// Only this variant's rows (`clean`: only the class-mean rows); every variant without it.
    pub variant: Option<String>,
    /// Sliced Wasserstein directions (>= 1).
    pub directions: usize,
    /// Worker threads (the result does not depend on it).
    pub threads: usize,
}

/// What a row's diagram is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// The same sample's clean diagram (rows of perturbed variants).
    Clean,
    /// The rank-wise mean diagram of the class (rows of the clean variant).
    ClassMean,
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Reference::Clean => "clean",
            Reference::ClassMean => "class_mean",
        }
    }
}

/// One row of `analysis/distances.parquet`: the sample's diagram (its key columns) and its
/// distances.
#[derive(Debug, Clone)]
pub struct DistanceRow<'a> {
    pub sample: &'a SampleDiagram,
    pub reference: Reference,
    /// The class whose mean a clean row is compared with: its label, or its prediction when
    /// unlabelled.
    pub reference_class: Option<i64>,
    /// None when the reference is missing: no clean diagram for the sample, or no correctly
    /// classified clean sample of the class.
    pub distances: Option<Distances>,
}

/// A class's mean diagram: finite pairs, essential births, and how many diagrams it averages.
struct ClassMean {
    pairs: Vec<Pair>,
    essential: Vec<f64>,
    support: usize,
}

/// A class's mean diagram in one scope: (scope, class).
type MeanKey = (String, i64);

/// The rank-wise means of the correctly classified clean diagrams, per scope and class.
fn class_means(set: &DiagramSet, scopes: &[String]) -> BTreeMap<MeanKey, ClassMean> {
    let mut groups: BTreeMap<MeanKey, Vec<&SampleDiagram>> = BTreeMap::new();
    for s in &set.samples {
        if scopes.contains(&s.scope) && s.variant == "clean" && s.label == Some(s.pred) {
            groups.entry((s.scope.clone(), s.pred)).or_default().push(s);
        }
    }
    groups
        .into_iter()
        .map(|(key, members)| {
            let pairs: Vec<&[Pair]> = members.iter().map(|s| &s.diagram.pairs[..]).collect();
            let essential: Vec<&[f64]> = members.iter().map(|s| &s.diagram.essential[..]).collect();
            let mean = ClassMean {
                pairs: mean::rank_mean(&pairs),
                essential: mean::rank_mean_values(&essential),
                support: members.len(),
            };
            (key, mean)
        })
        .collect()
}

/// One comparison to compute: the row's diagram and its reference (None: no reference).
struct Job<'a> {
    sample: &'a SampleDiagram,
    reference: Reference,
    reference_class: Option<i64>,
    against: Option<(&'a [Pair], &'a [f64])>,
}

fn jobs<'a>(
    set: &'a DiagramSet,
    options: &Options,
    means: &'a BTreeMap<MeanKey, ClassMean>,
) -> Vec<Job<'a>> {
    let wanted = |s: &SampleDiagram| {
        options.scopes.contains(&s.scope)
            && options.variant.as_ref().is_none_or(|v| *v == s.variant)
    };
    set.samples
        .iter()
        .filter(|s| wanted(s))
        .map(|s| {
            if s.variant == "clean" {
                let class = s.label.unwrap_or(s.pred);
                Job {
                    sample: s,
                    reference: Reference::ClassMean,
                    reference_class: Some(class),
                    against: means
                        .get(&(s.scope.clone(), class))
                        .map(|m| (&m.pairs[..], &m.essential[..])),
                }
            } else {
                let clean = set.find(&s.shard, s.index, "clean", &s.scope);
                Job {
                    sample: s,
                    reference: Reference::Clean,
                    reference_class: None,
                    against: clean.map(|c| (&c.diagram.pairs[..], &c.diagram.essential[..])),
                }
            }
        })
        .collect()
}

/// Computes every job on `threads` threads taking jobs in turn; results in job order.
fn compute(jobs: &[Job], options: &Options) -> Vec<Option<Distances>> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break done };
            let d = &job.sample.diagram;
            let result = job.against.map(|against| {
                all_distances(
                    (&d.pairs, &d.essential),
                    against,
                    options.p,
                    options.directions,
                )
            });
            done.push((i, result));
        }
    };
    let mut results = vec![None; jobs.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..options.threads.max(1))
            .map(|_| scope.spawn(work))
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("a distance worker panicked") {
                results[i] = r;
            }
        }
    });
    results
}

fn rows<'a>(jobs: &[Job<'a>], results: Vec<Option<Distances>>) -> Vec<DistanceRow<'a>> {
    jobs.iter()
        .zip(results)
        .map(|(job, distances)| DistanceRow {
            sample: job.sample,
            reference: job.reference,
            reference_class: job.reference_class,
            distances,
        })
        .collect()
}

fn table(rows: &[DistanceRow], p: Order) -> anyhow::Result<RecordBatch> {
    let strs = |f: fn(&DistanceRow) -> &'static str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let i64s = |f: fn(&DistanceRow) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let f64s = |f: fn(&Distances) -> f64| {
        f64_col(
            &rows
                .iter()
                .map(|r| r.distances.as_ref().map(f))
                .collect::<Vec<_>>(),
        )
    };
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    let mut fields = key_fields();
    fields.extend([
        Field::new("reference", DataType::Utf8, false),
        Field::new("reference_class", DataType::Int64, true),
        float("bottleneck"),
        float(p.column()),
        float("sliced_wasserstein"),
        float("essential_bottleneck"),
    ]);
    let schema = Schema::new(fields);
    let keys: Vec<_> = rows.iter().map(|r| r.sample.key()).collect();
    let mut columns = key_columns(&keys);
    columns.extend([
        strs(|r| r.reference.name()),
        i64s(|r| r.reference_class),
        f64s(|d| d.bottleneck),
        f64s(|d| d.wasserstein),
        f64s(|d| d.sliced_wasserstein),
        f64s(|d| d.essential),
    ]);
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Warnings about class means fitted on few samples, or missing, for the classes scored.
fn mean_warnings(means: &BTreeMap<MeanKey, ClassMean>, rows: &[DistanceRow]) -> Vec<String> {
    let scored: std::collections::BTreeSet<MeanKey> = rows
        .iter()
        .filter_map(|r| r.reference_class.map(|c| (r.sample.scope.clone(), c)))
        .collect();
    scored
        .into_iter()
        .filter_map(|key| {
            let n = means.get(&key).map_or(0, |m| m.support);
            let (scope, c) = key;
            (n < crate::analysis::fit::MIN_FIT_SAMPLES).then(|| {
                format!(
                    "scope {scope}, class {c}: mean diagram fitted on {n} correctly classified clean sample(s), fewer than {}{}; fix: run more samples (data.limit)",
                    crate::analysis::fit::MIN_FIT_SAMPLES,
                    if n == 0 { " (its clean rows have null distances)" } else { "" }
                )
            })
        })
        .collect()
}

fn metadata(options: &Options, warnings: &[String]) -> Vec<(String, String)> {
    let key = |k: &str| format!("actopo.distances.{k}");
    vec![
        (key("scopes"), options.scopes.join(",")),
        (key("p"), format!("{}", options.p.value())),
        (key("ground_metric"), "linf".into()),
        (
            key("wasserstein"),
            "exact (sparse min-cost perfect matching)".into(),
        ),
        (key("bottleneck"), "exact".into()),
        (key("sliced_directions"), options.directions.to_string()),
        (
            key("class_mean"),
            "rank-wise mean of the class's correctly classified clean diagrams (in-sample)".into(),
        ),
        (
            "actopo.warnings".into(),
            serde_json::to_string(warnings).unwrap_or_default(),
        ),
    ]
}

/// `actopo distances`: computes, writes `analysis/distances.parquet` and prints a summary.
pub fn run(dir: &Path, options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.directions >= 1, "--directions must be at least 1");
    let set = DiagramSet::load(dir)?;
    anyhow::ensure!(
        !options.scopes.is_empty(),
        "no scope to compare: pass --scope"
    );
    for scope in &options.scopes {
        set.check_scope(scope)?;
    }
    if let Some(v) = &options.variant {
        set.check_variant(v)?;
    }
    let means = class_means(&set, &options.scopes);
    let jobs = jobs(&set, options, &means);
    let start = std::time::Instant::now();
    let rows = rows(&jobs, compute(&jobs, options));
    let seconds = start.elapsed().as_secs_f64();
    let warnings = mean_warnings(&means, &rows);
    let path = write_analysis(
        dir,
        "distances",
        table(&rows, options.p)?,
        &metadata(options, &warnings),
    )?;
    print_summary(&set, &rows, options);
    println!(
        "{} comparisons in {seconds:.1} s on {} thread(s) -> {}",
        rows.len(),
        options.threads,
        path.display()
    );
    if set.variants.len() == 1 {
        println!("note: the run has no perturbed variants, so only the clean rows' distances to their class mean were computed; add [[attacks]] to the run's config for distances to clean");
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    Ok(())
}

fn print_summary(set: &DiagramSet, rows: &[DistanceRow], options: &Options) {
    println!(
        "mean (median) distance of each variant's diagram to the same sample's clean diagram; clean: to its class's mean diagram"
    );
    println!(
        "{:<12} {:<20} {:>7} {:>8} {:>22} {:>22} {:>22}",
        "scope",
        "variant",
        "n",
        "missing",
        "bottleneck",
        options.p.column(),
        "sliced_wasserstein"
    );
    for scope in &options.scopes {
        for v in &set.variants {
            let of = || {
                rows.iter()
                    .filter(|r| &r.sample.scope == scope && &r.sample.variant == v)
            };
            let ds: Vec<&Distances> = of().filter_map(|r| r.distances.as_ref()).collect();
            let missing = of().filter(|r| r.distances.is_none()).count();
            if ds.is_empty() && missing == 0 {
                continue;
            }
            let stat = |f: fn(&Distances) -> f64| {
                let mut x: Vec<f64> = ds.iter().map(|d| f(d)).collect();
                x.sort_by(f64::total_cmp);
                match x.get(x.len() / 2) {
                    Some(median) => {
                        let mean = x.iter().sum::<f64>() / x.len() as f64;
                        format!("{mean:.5} ({median:.5})")
                    }
                    None => "-".into(),
                }
            };
            println!(
                "{:<12} {:<20} {:>7} {:>8} {:>22} {:>22} {:>22}",
                scope,
                v,
                ds.len(),
                missing,
                stat(|d| d.bottleneck),
                stat(|d| d.wasserstein),
                stat(|d| d.sliced_wasserstein)
            );
        }
    }
}
