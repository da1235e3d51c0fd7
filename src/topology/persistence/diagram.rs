//! A graph's persistence diagram and the `[homology]` settings that shape it (docs/persistence.md).

/// The `[homology]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HomologyOptions {
    pub keep_zero_persistence: bool,
    pub h1_diagram: bool,
}

/// A finite H0 pair and the edge that killed it (the merge edge; `weight == death`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H0Pair {
    pub birth: f32,
    pub death: f32,
    pub src: u32,
    pub dst: u32,
}

impl H0Pair {
    pub(crate) fn persistence(&self) -> f32 {
        self.birth - self.death
    }
}

/// Persistence of one graph. Buffers are reused by `Persistence::compute`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagram {
    pub n_vertices: u64,
    pub n_edges: u64,
    /// Finite H0 pairs kept (zero-persistence ones only when asked), in order of death, heaviest first.
    pub h0: Vec<H0Pair>,
    /// Births of the essential H0 classes (one per connected component), largest first.
    pub h0_essential: Vec<f32>,
    /// Number of essential H1 classes: |E| - |V| + components.
    pub h1_count: u64,
    /// Births of the essential H1 classes, largest first; filled only when `h1_diagram` is set.
    pub h1: Vec<f32>,
}

impl Diagram {
    pub(super) fn clear(&mut self) {
        self.n_vertices = 0;
        self.n_edges = 0;
        self.h0.clear();
        self.h0_essential.clear();
        self.h1_count = 0;
        self.h1.clear();
    }
}
