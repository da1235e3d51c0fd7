//! Fault injection for the crash tests (`tests/integration/safety.rs`, `scripts/crash_check.sh`):
//! named points in the writing path where a test can kill or panic the process.

/// The places a test can stop a run (`docs/data-safety.md`, "Testing crashes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    /// After each file of a shard's commit is renamed into place.
    ShardFileRenamed,
    /// After the manifest's temporary file is written, before its rename.
    ManifestWritten,
    /// The reader starting a shard.
    ReaderShard,
    /// The model stage taking a batch.
    ModelBatch,
    /// A worker taking a sample.
    WorkerJob,
    /// The writer adding a sample's rows.
    WriterSample,
}

impl FaultPoint {
    /// The name the environment variables use.
    fn name(self) -> &'static str {
        match self {
            FaultPoint::ShardFileRenamed => "shard-file-renamed",
            FaultPoint::ManifestWritten => "manifest-written",
            FaultPoint::ReaderShard => "reader-shard",
            FaultPoint::ModelBatch => "model-batch",
            FaultPoint::WorkerJob => "worker-job",
            FaultPoint::WriterSample => "writer-sample",
        }
    }
}

/// Fault injection for the crash tests: `ACTOPOTEST_CRASH_AT=<point>` (or `<point>:<n>`, the n-th
/// time it is reached) aborts the process there, as a kill -9 or a power cut would;
/// `ACTOPOTEST_PANIC_AT` panics the thread that reaches it instead (a stage's bug).
pub(crate) fn fault_point(point: FaultPoint) {
    let point = point.name();
    if reached("ACTOPOTEST_CRASH_AT", point) {
        std::process::abort();
    }
    if reached("ACTOPOTEST_PANIC_AT", point) {
        panic!("fault injected at {point} (ACTOPOTEST_PANIC_AT)");
    }
}

/// Whether `point` is reached for the n-th time the variable `var` asks for.
fn reached(var: &str, point: &str) -> bool {
    static REACHED: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());
    let Some(wanted) = std::env::var_os(var) else {
        return false;
    };
    let wanted = wanted.to_string_lossy();
    let (name, nth) = match wanted.rsplit_once(':') {
        Some((name, n)) if n.parse::<usize>().is_ok() => (name, n.parse().unwrap_or(1)),
        _ => (wanted.as_ref(), 1),
    };
    if name != point {
        return false;
    }
    let mut counts = REACHED.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{var}/{point}");
    let count = match counts.iter_mut().find(|(p, _)| *p == key) {
        Some((_, c)) => {
            *c += 1;
            *c
        }
        None => {
            counts.push((key, 1));
            1
        }
    };
    count == nth
}
