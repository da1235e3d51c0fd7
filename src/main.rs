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
        Command::Inspect { spec } => cli::inspect::run(spec),
        Command::Diagrams(args) => cli::diagrams::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
