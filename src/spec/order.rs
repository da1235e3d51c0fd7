//! The layers of a spec as a graph: what each layer reads (its `inputs`, or the layer before it),
//! and a topological order of the layers, with every unknown name, wrong operand count, cycle and
//! unused layer reported.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::layer_table::LayerTable;

/// What a table reads, before the layers are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Input,
    /// Index of another `[[layers]]` table.
    Table(usize),
}

/// Each table's sources, in the order its `inputs` names them.
pub(super) struct LayerGraph {
    pub inputs: Vec<Vec<Source>>,
}

impl LayerGraph {
    /// Reads every table's inputs; names that match no layer, `inputs` in a format 1 spec and
    /// operand counts the op does not take go into `problems`.
    pub fn new(tables: &[LayerTable], format_version: u32, problems: &mut Vec<String>) -> Self {
        let by_name: HashMap<&str, usize> = (tables.iter().enumerate())
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let mut inputs = Vec::with_capacity(tables.len());
        for (i, table) in tables.iter().enumerate() {
            let at = &table.at;
            let Some(names) = &table.inputs else {
                inputs.push(vec![match i {
                    0 => Source::Input,
                    _ => Source::Table(i - 1),
                }]);
                continue;
            };
            if format_version < 2 {
                problems.push(format!(
                    "{at}: `inputs` needs format_version = 2; set format_version = 2 at the top of the spec"
                ));
            }
            let mut sources = Vec::new();
            for name in names {
                match by_name.get(name.as_str()) {
                    _ if name == "input" => sources.push(Source::Input),
                    Some(&j) if j == i => problems.push(format!(
                        "{at}: the layer reads itself (`{name}` in inputs); name the layer it reads"
                    )),
                    Some(&j) => sources.push(Source::Table(j)),
                    None => problems.push(format!(
                        "{at}: input `{name}` is no layer's name; use a layer's `name` or \"input\" for the model input"
                    )),
                }
            }
            if let Some(op) = &table.op {
                let (fewest, most) = op.arity();
                if names.len() < fewest || names.len() > most {
                    let want = match (fewest, most) {
                        (1, 1) => "exactly one input".to_string(),
                        (n, usize::MAX) => format!("at least {n} inputs"),
                        (a, b) => format!("{a} to {b} inputs"),
                    };
                    problems.push(format!(
                        "{at}: {} takes {want} but `inputs` names {}",
                        crate::tagged::Tagged::name(op),
                        names.len()
                    ));
                }
            }
            inputs.push(sources);
        }
        LayerGraph { inputs }
    }

    /// The tables in a topological order, the spec's own order where it allows (of the tables
    /// ready, the first written comes first). Tables on a cycle, and tables whose output nothing
    /// reads (other than the last, the model's output), go into `problems`.
    pub fn topological_order(
        &self,
        tables: &[LayerTable],
        problems: &mut Vec<String>,
    ) -> Vec<usize> {
        let n = self.inputs.len();
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut waiting: Vec<usize> = vec![0; n];
        for (i, sources) in self.inputs.iter().enumerate() {
            for source in sources {
                if let Source::Table(j) = *source {
                    readers[j].push(i);
                    waiting[i] += 1;
                }
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &r in &readers[i] {
                waiting[r] -= 1;
                if waiting[r] == 0 {
                    ready.push(Reverse(r));
                }
            }
        }
        if order.len() < n {
            let on_cycles: Vec<&str> = on_cycles(&readers, &waiting)
                .map(|i| tables[i].name.as_str())
                .collect();
            problems.push(format!(
                "layers {} read each other in a cycle; a model graph must have no cycles: check their `inputs`",
                on_cycles.join(", ")
            ));
        }
        for (i, table) in tables.iter().enumerate().take(n.saturating_sub(1)) {
            if readers[i].is_empty() {
                problems.push(format!(
                    "{}: no layer reads its output, and only the last layer is the model's output; remove the layer, or move the output layer last",
                    table.at
                ));
            }
        }
        order
    }
}

/// Of the layers left waiting by a topological sort (on a cycle, or reading one), those on a cycle:
/// what is left once layers that no waiting layer reads are taken away, again and again.
fn on_cycles<'a>(readers: &'a [Vec<usize>], waiting: &[usize]) -> impl Iterator<Item = usize> + 'a {
    let mut left: Vec<bool> = waiting.iter().map(|&w| w > 0).collect();
    loop {
        let sinks: Vec<usize> = (0..left.len())
            .filter(|&i| left[i] && !readers[i].iter().any(|&r| left[r]))
            .collect();
        if sinks.is_empty() {
            break;
        }
        for i in sinks {
            left[i] = false;
        }
    }
    (0..left.len()).filter(move |&i| left[i])
}
