//! Why a graph could not be planned for a model, or built for one sample.

/// Per-sample failures while building a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("layer `{layer}`: expected {expected} input values, got {got}")]
    InputLength {
        layer: String,
        expected: usize,
        got: usize,
    },
    #[error("layer `{layer}`: input value at flat index {index} is {value} (NaN or infinite activations cannot be ordered)")]
    NonFinite {
        layer: String,
        index: usize,
        value: f32,
    },
    #[error("layer `{layer}`: an edge weight overflowed to infinity (|w * a| beyond f32 range)")]
    Overflow { layer: String },
    #[error("expected activations for {expected} graph ops, got {got}")]
    OpCount { expected: usize, got: usize },
}

/// Failures while numbering a model's units or planning its graph ops.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("layer `{0}` has no weights loaded")]
    MissingWeights(String),
    #[error("the network has more than the 2^32 - 1 units that unit ids can number (at layer `{0}`); use a smaller model or input")]
    TooManyUnits(String),
    #[error(
        "layer `{0}` has more possible edges than 64-bit arithmetic can count; use a smaller layer"
    )]
    TooManyEdges(String),
    #[error("layer `{layer}` ({op}): its input channel {channel} holds values of {sources}, but edges need each input channel of a conv, pool or add to be consecutive units of one vertex layer; concatenate along channels (cat dim = 1) rather than along height or width, and reshape only in ways that keep channels whole")]
    UnitLayout {
        layer: String,
        op: &'static str,
        channel: usize,
        sources: String,
    },
    #[error("layer `{layer}` {why}: graph.threshold = {{ reference_percentile = P }} is the reference code's cut, defined for a chain of conv and linear layers ending in a linear one (docs/graph.md); fix: use graph.threshold = {{ percentile = P }} for this model")]
    ReferenceThreshold { layer: String, why: String },
}
