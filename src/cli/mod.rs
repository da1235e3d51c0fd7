//! Subcommands of the `actopo` binary.

pub(crate) mod diagrams;
pub(crate) mod figures;
pub(crate) mod inspect;
pub(crate) mod run;

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
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CommandOutcome::Ok => 0,
            CommandOutcome::Failures => 1,
            CommandOutcome::Interrupted => 130,
        }
    }
}
