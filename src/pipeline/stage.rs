//! The pipeline's stages by name, and how a stage that panics fails the run.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::ScopedJoinHandle;

use anyhow::anyhow;

/// A stage of the run, as named in its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Reader,
    Model,
    Worker,
    Writer,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Reader => "reader",
            Stage::Model => "model",
            Stage::Worker => "worker",
            Stage::Writer => "writer",
        })
    }
}

/// Runs a stage's body, turning a panic into an error that names the stage. Unwinding drops the
/// stage's channel ends, so the other stages end as they do after a normal finish: the stages
/// before it stop when their sends fail, the ones after it drain what was sent.
pub(super) fn guarded<T>(
    stage: Stage,
    body: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    // The stage's state is dropped while unwinding and never used again.
    catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(panicked(stage, payload.as_ref())))
}

/// The error of a stage that panicked, with the panic's message (the panic hook has already
/// printed where it happened).
pub(super) fn panicked(stage: Stage, payload: &(dyn Any + Send)) -> anyhow::Error {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    match message {
        Some(message) => anyhow!("the {stage} stage panicked: {message}"),
        None => anyhow!("the {stage} stage panicked"),
    }
}

/// Waits for a stage's thread; its panic (already caught by `guarded` unless it came from a
/// drop after it) becomes the stage's error.
pub(super) fn join<T>(
    stage: Stage,
    handle: ScopedJoinHandle<'_, anyhow::Result<T>>,
) -> anyhow::Result<T> {
    handle
        .join()
        .unwrap_or_else(|payload| Err(panicked(stage, payload.as_ref())))
}
