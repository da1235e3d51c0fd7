//! Subcommands of the `actopo` binary.

pub mod diagrams;
pub mod inspect;
pub mod run;
