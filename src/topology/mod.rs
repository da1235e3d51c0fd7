//! The topology core: activation graphs and their persistence, in pure Rust (no tch: checked by
//! the test below). The definitions it implements: docs/graph.md and docs/persistence.md.
//!
//! - `graph`: unit numbering (through value and shape ops of a model graph) and sparse edge
//!   enumeration for linear, conv, pool and add layers, into sinks that may keep only some edges
//!   (`EdgeSink`, `EdgeSource`);
//! - `persistence`: radix sort + union-find superlevel persistence (H0 pairs with their killing
//!   edges, essential H0, H1), filtering cycle edges before sorting;
//! - `summary`: the per-diagram statistics written to the summary table;
//! - `workspace`: one sample's scopes (`network`, `layers`) computed with reused buffers.
//!
//! `Workspace` ties them together for one sample and owns the large buffers, so a worker thread
//! that keeps one `Workspace` allocates only a few small vectors per sample once warmed up.

pub(crate) mod graph;
pub(crate) mod persistence;
mod summary;
mod workspace;

pub use graph::{
    percentile_cut, BatchNormFolding, Cuts, Edge, EdgeSink, EdgeSource, EdgeThreshold, GraphBounds,
    GraphError, GraphOp, GraphOptions, GraphPlan, MaxPoolEdges, OpCuts, PlanError, SampleGraph,
    VertexBirth, VertexLayer, WeightSample,
};
pub use persistence::{sort_heaviest_first, Diagram, H0Pair, HomologyOptions, Persistence};
pub use summary::Summary;
pub use workspace::{ScopeDiagram, ScopeKind, Scopes, Workspace};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The names of the Rust files under `dir`, recursively.
    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// A line's code: without its `//` comment and with string literals emptied.
    fn code_of(line: &str) -> String {
        let (mut code, mut in_string, mut escaped) = (String::new(), false, false);
        for (i, c) in line.char_indices() {
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
            } else if line[i..].starts_with("//") {
                break;
            } else if c == '"' && !line[..i].ends_with('\'') {
                in_string = true;
            } else {
                code.push(c);
            }
        }
        code
    }

    /// The lines (numbered from 1) whose code names tch or the forward module (the only one that
    /// uses it), in a path, a `use` or an `extern crate`.
    fn lines_naming_tch(text: &str) -> Vec<usize> {
        let names_tch = |code: &str| {
            let mut words = code.split(|c: char| !(c.is_alphanumeric() || c == '_'));
            words.any(|w| w == "tch") || code.contains("crate::forward")
        };
        let lines = text.lines().enumerate();
        lines
            .filter(|(_, line)| names_tch(&code_of(line)))
            .map(|(n, _)| n + 1)
            .collect()
    }

    /// The topology core must build without libtorch.
    #[test]
    fn topology_is_free_of_tch() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/topology");
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        assert!(files.len() > 10, "{files:?}");
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let found = lines_naming_tch(&text);
            assert!(
                found.is_empty(),
                "{}: lines {found:?} use tch; the topology core must stay free of it",
                file.display()
            );
        }
    }

    #[test]
    fn uses_of_tch_are_found_but_not_mentions() {
        let text = [
            "use tch::Tensor;",
            "extern crate tch;",
            "let t = tch::no_grad(|| 1);",
            "use crate::forward::TchModel;",
            "let x = 1; // tch::Tensor in a comment",
            "let s = \"tch::Tensor in a string\";",
            "use crate::batch::tch_free;",
        ]
        .join("\n");
        assert_eq!(lines_naming_tch(&text), vec![1, 2, 3, 4]);
    }
}
