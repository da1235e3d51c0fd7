//! Subcommands of the `actopo` binary.

pub(crate) mod diagrams;
pub(crate) mod figures;
pub(crate) mod inspect;
pub(crate) mod run;

use std::process::ExitCode;

/// How a command that did not fail outright ended; an error is exit code 2.
pub(crate) enum CommandOutcome {
    /// Everything done: exit code 0.
    Ok,
    /// Some sample or shard failed (see failures/): exit code 1.
    Failures,
    /// Stopped by SIGINT/SIGTERM: exit code 130.
    Interrupted,
}

impl CommandOutcome {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CommandOutcome::Ok => ExitCode::SUCCESS,
            CommandOutcome::Failures => ExitCode::from(1),
            CommandOutcome::Interrupted => ExitCode::from(130),
        }
    }
}
