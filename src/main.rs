//! The `actopo` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "actopo",
    version,
    about = "Persistent homology of neural-network activation graphs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job a config file describes: shards -> forward pass -> graphs -> persistence -> Parquet.
    Run {
        /// Config TOML (see config/fashion-mnist.toml).
        config: PathBuf,
        /// Override a config key, e.g. --set pipeline.batch_size=64 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Check a config, its model spec and weights, and the first sample of every shard, without running.
    Validate {
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Show a model spec's layers, output shapes, units and edge bounds.
    Inspect {
        /// Model spec TOML.
        spec: PathBuf,
    },
    /// Compute diagrams of activations given in a safetensors file and write them as JSON
    /// (a tool for cross-checking the topology core).
    Diagrams(cli::diagrams::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run { config, sets } => cli::run::run(config, sets),
        Command::Validate { config, sets } => cli::run::validate(config, sets),
        Command::Inspect { spec } => cli::inspect::run(spec).map(|_| cli::run::Outcome::Ok),
        Command::Diagrams(args) => cli::diagrams::run(args).map(|_| cli::run::Outcome::Ok),
    };
    match result {
        Ok(cli::run::Outcome::Ok) => ExitCode::SUCCESS,
        Ok(cli::run::Outcome::ShardsFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
