//! The `actopo` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cli;

use cli::CommandOutcome;

/// Where the full documentation is, shown after every command's help.
const DOCS: &str = concat!(
    "Documentation: README.md (configuration keys, model spec, outputs, analyses) and docs/ in the ",
    "actopo source folder (",
    env!("CARGO_MANIFEST_DIR"),
    "); docs/messages.md lists common mistakes and their fixes."
);

#[derive(Parser)]
#[command(
    name = "actopo",
    version,
    about = "Persistent homology of neural-network activation graphs",
    after_help = DOCS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job a config file describes: shards -> forward pass -> graphs -> persistence -> Parquet.
    #[command(after_help = DOCS)]
    Run {
        /// Config TOML (see config/fashion-mnist.toml).
        config: PathBuf,
        /// Override a config key, e.g. --set pipeline.batch_size=64 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        shard: cli::run::ShardArgs,
    },
    /// Check a config, its model spec and weights, the spec's reference outputs and the first
    /// sample of every shard, without running; or a model spec alone (a TOML file with
    /// `format_version`): its weights and reference outputs.
    #[command(after_help = DOCS)]
    Validate {
        /// Config TOML (see config/fashion-mnist.toml), or a model spec TOML.
        #[arg(value_name = "CONFIG_OR_SPEC")]
        config: PathBuf,
        /// Override a config key, e.g. --set pipeline.batch_size=64 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Analyses over a finished run's output folder.
    #[command(subcommand, after_help = DOCS)]
    Analyze(AnalyzeCommand),
    /// Vectorised H0 diagrams for learning (Betti curve, landscape, silhouette, persistence image,
    /// entropy, total persistence): OUTPUT_DIR/features/<stem>.parquet.
    #[command(after_help = DOCS)]
    Features(actopo::analysis::features::FeaturesArgs),
    /// Show a model spec's layers, output shapes, units and edge bounds.
    #[command(after_help = DOCS)]
    Inspect {
        /// Model spec TOML.
        spec: PathBuf,
    },
    /// Figures of a finished run (persistence diagram and barcode of one sample, mean Betti-0
    /// curves per class, total persistence, subgraph analyses) as SVG and PNG in OUTPUT_DIR/plots/.
    #[command(after_help = DOCS)]
    Plot {
        /// The run's output.dir.
        output_dir: PathBuf,
        #[command(flatten)]
        figures: FigureArgs,
        /// Which files to write per figure.
        #[arg(long, value_enum, default_value = "both")]
        format: actopo::plot::Format,
    },
    /// One self-contained HTML page on a finished run (what ran, accuracy and attack success,
    /// failures, figures, analysis tables): OUTPUT_DIR/report.html.
    #[command(after_help = DOCS)]
    Report {
        /// The run's output.dir.
        output_dir: PathBuf,
        #[command(flatten)]
        figures: FigureArgs,
    },
    /// Compute diagrams of activations given in a safetensors file and write them as JSON
    /// (a tool for cross-checking the topology core).
    #[command(after_help = DOCS)]
    Diagrams(cli::diagrams::Args),
    /// Distances between H0 diagrams: each perturbed variant to the same sample's clean diagram,
    /// each clean sample to its class's mean diagram (bottleneck, Wasserstein, sliced
    /// Wasserstein) -> OUTPUT_DIR/analysis/distances.parquet.
    #[command(after_help = DOCS)]
    Distances(DistancesArgs),
}

#[derive(clap::Args)]
struct DistancesArgs {
    /// The run's output.dir (needs output.diagrams = true).
    output_dir: PathBuf,
    /// Wasserstein order p (exact, L-infinity ground metric).
    #[arg(long, value_enum, default_value = "1")]
    p: actopo::analysis::distances::Order,
    /// Which scope's diagrams to compare (repeatable: --scope network --scope 0).
    #[arg(long = "scope", value_name = "SCOPE", default_value = "network")]
    scopes: Vec<String>,
    /// Only this variant's rows (`clean`: only the distances to the class means).
    #[arg(long)]
    variant: Option<String>,
    /// Number of sliced Wasserstein directions.
    #[arg(long, default_value_t = actopo::analysis::distances::DEFAULT_DIRECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    directions: u32,
    /// Worker threads (default: the machine's cores; the results do not depend on it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
}

#[derive(Subcommand)]
enum AnalyzeCommand {
    /// Class representatives of persistent subgraphs, overlaps, subgraph predictions, recovery and
    /// retention per variant (needs output.subgraphs = true).
    #[command(after_help = DOCS)]
    Subgraphs {
        /// The run's output.dir.
        output_dir: PathBuf,
        /// An edge joins a class representative when it is in at least this fraction of the class's
        /// correctly classified clean subgraphs.
        #[arg(long, default_value_t = 0.5)]
        min_fraction: f64,
        /// Which scope's subgraphs to use.
        #[arg(long, default_value = "network")]
        scope: String,
        #[command(flatten)]
        fit: FitArg,
    },
    /// Topological Uncertainty per sample from the `layers` scope diagrams.
    #[command(after_help = DOCS)]
    Uncertainty {
        /// The run's output.dir.
        output_dir: PathBuf,
        #[command(flatten)]
        fit: FitArg,
    },
}

#[derive(clap::Args)]
struct FigureArgs {
    /// The scope every figure reads: `network`, or a layer scope (graph.scopes = ["network", "layers"]).
    #[arg(long, default_value = "network")]
    scope: String,
    /// Shard of the sample whose diagram is drawn, as in the tables' `shard` column (default: the
    /// run's first shard).
    #[arg(long)]
    shard: Option<String>,
    /// Row of that sample in its shard.
    #[arg(long, default_value_t = 0)]
    index: u32,
    /// Class names for labels 0, 1, ..., comma-separated (e.g. "T-shirt,Trouser,..."); without
    /// them classes show as numbers.
    #[arg(long, value_delimiter = ',')]
    class_names: Vec<String>,
    /// Bars per variant in the barcode (the most persistent ones).
    #[arg(long, default_value_t = 40)]
    bars: usize,
}

impl FigureArgs {
    fn options(&self) -> actopo::plot::PlotOptions {
        actopo::plot::PlotOptions {
            scope: self.scope.clone(),
            shard: self.shard.clone(),
            index: self.index,
            class_names: self
                .class_names
                .iter()
                .map(|s| s.trim().to_string())
                .collect(),
            bars: self.bars,
            ..Default::default()
        }
    }
}

#[derive(clap::Args)]
struct FitArg {
    /// Fit the class references on this run's output.dir (e.g. the training split, same model
    /// and settings) and score OUTPUT_DIR; without it they are fitted on OUTPUT_DIR itself
    /// (in-sample).
    #[arg(long = "fit", value_name = "FIT_DIR")]
    dir: Option<PathBuf>,
}

fn distances(args: &DistancesArgs) -> anyhow::Result<()> {
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        |t| t as usize,
    );
    let options = actopo::analysis::distances::Options {
        p: args.p,
        scopes: args.scopes.clone(),
        variant: args.variant.clone(),
        directions: args.directions as usize,
        threads,
    };
    actopo::analysis::distances::run(&args.output_dir, &options)
}

fn main() {
    // `--help`, `--version` and usage errors end here too, without the teardown.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        exit_now(u8::try_from(e.exit_code()).unwrap_or(2))
    });
    let result = match &cli.command {
        Command::Run {
            config,
            sets,
            shard,
        } => cli::run::run(config, sets, shard),
        Command::Validate { config, sets } => cli::run::validate(config, sets),
        Command::Analyze(AnalyzeCommand::Subgraphs {
            output_dir,
            min_fraction,
            scope,
            fit,
        }) => {
            actopo::analysis::subgraphs::run(output_dir, *min_fraction, scope, fit.dir.as_deref())
                .map(|_| CommandOutcome::Ok)
        }
        Command::Analyze(AnalyzeCommand::Uncertainty { output_dir, fit }) => {
            actopo::analysis::uncertainty::run(output_dir, fit.dir.as_deref())
                .map(|_| CommandOutcome::Ok)
        }
        Command::Plot {
            output_dir,
            figures,
            format,
        } => cli::figures::plot(output_dir, &figures.options(), *format),
        Command::Report {
            output_dir,
            figures,
        } => cli::figures::report(output_dir, &figures.options()),
        Command::Features(args) => {
            actopo::analysis::features::run(args).map(|_| CommandOutcome::Ok)
        }
        Command::Inspect { spec } => cli::inspect::run(spec).map(|_| CommandOutcome::Ok),
        Command::Diagrams(args) => cli::diagrams::run(args).map(|_| CommandOutcome::Ok),
        Command::Distances(args) => distances(args).map(|_| CommandOutcome::Ok),
    };
    let code = match result {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    exit_now(code)
}

/// Ends the process without the C++ static destructors that `exit` would run. libtorch's
/// deregister its thousands of operators and free their tables: 0.2-0.3 s of every run,
/// one thread, after the work is done (perf, the demo; docs/performance.md). By now every
/// command has written, synced and closed its files and joined its threads; only stdout is
/// still buffered.
fn exit_now(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; nothing of ours is left to run or flush.
    unsafe { libc::_exit(i32::from(code)) }
}
