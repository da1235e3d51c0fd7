//! A dense layer's heaviest weights, column by column, so that the first pass finds the edges
//! above its split without weighing the whole layer (docs/persistence.md).
//!
//! An input j's edges weigh |W[i, j]| x |a[j]| for every output i. Rounding is monotone, so the
//! edges above a split are those with the largest |W[i, j]|: a prefix of column j sorted by |w|.
//! Only the largest few hundred of each column are kept sorted (`kept_per_column`); a column
//! whose next |w| could still make a heavy edge is weighed whole instead.

use std::ops::Range;

use super::super::sink::{Blocks, EdgeSink};

/// Weights kept per column: all of a column of up to `TOP` rows, else a quarter of it, from `TOP`
/// up to `MOST`. (The demo's CCFF: its 256-output dense layer has 2,000 to 5,000 edges above the
/// first split, about 7 per nonzero input, but inputs with large activations have more than 64:
/// with 64 kept, weighing those columns whole (strided) took a quarter of the pass. AlexNet-CIFAR's
/// 4096 x 4096 layer, in the pass of its own band: with 256 kept, 268 of its 2,021 nonzero inputs
/// needed their column weighed whole (26 ms per input), with 512 172 (20 ms), with 1,024 39 (8 ms).
/// An entry takes 8 bytes for a 4-byte weight: for layers of over 1,024 rows at most half the
/// weights' memory, for those of up to 256 rows twice.)
const TOP: usize = 256;
const MOST: usize = 1024;

/// The entries kept per column for `n_out` rows.
fn kept_per_column(n_out: usize) -> usize {
    (n_out / 4).clamp(TOP, MOST).min(n_out)
}

/// The largest |w| of each column (`kept_per_column` of them) of a dense layer's weight matrix
/// (outputs x inputs, row-major), with their rows, and what the light edges' count needs.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::topology::graph) struct DenseColumns {
    /// Entries per column: `kept_per_column(outputs)`.
    top: usize,
    /// Column j's entries (|w|, row) are `[j * top..(j + 1) * top]`, largest |w| first.
    entries: Vec<(f32, u32)>,
    /// The largest |w| of each column: most columns have no heavy edge, and this tells without
    /// reading their entries.
    max_abs: Vec<f32>,
    /// The largest |w| of column j outside its entries (0 when there is none).
    rest_max: Vec<f32>,
    /// The smallest nonzero |w| of column j (infinity for none), and how many are nonzero.
    min_nonzero: Vec<f32>,
    nonzero: Vec<u32>,
}

/// Columns gathered together: read a block at a time, row by row, each row's weights are read
/// contiguously (gathering one column at a time strides across the whole matrix). AlexNet-CIFAR's
/// 4096 x 4096 layer: 256 columns (1 KiB of each row) took a sixth less time than 64 (256 bytes),
/// whose reads waited on memory at every row.
const BLOCK_COLUMNS: usize = 256;
/// ... but a block holds at most this many bytes of entries (a tall matrix gets fewer columns).
const BLOCK_BYTES: usize = 8 << 20;
/// Threads share the columns only when each gets at least this many.
const COLUMNS_PER_THREAD: usize = 256;

impl DenseColumns {
    /// The index of a weight matrix, its columns split among the CPU's threads. (AlexNet-CIFAR's
    /// 4096 x 4096 layer took 0.25 s on one thread, a fifth of the start-up before its first
    /// input.)
    pub(in crate::topology::graph) fn new(weight: &[f32], n_out: usize, n_in: usize) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = threads.min(n_in / COLUMNS_PER_THREAD).max(1);
        if threads == 1 {
            return Self::of_columns(weight, n_out, n_in, 0..n_in);
        }
        let per_thread = n_in.div_ceil(threads);
        let parts: Vec<DenseColumns> = std::thread::scope(|scope| {
            let spawned: Vec<_> = (0..n_in)
                .step_by(per_thread)
                .map(|first| first..(first + per_thread).min(n_in))
                .map(|range| scope.spawn(move || Self::of_columns(weight, n_out, n_in, range)))
                .collect();
            let joined = spawned.into_iter().map(|thread| thread.join());
            joined
                .map(|part| part.expect("a column index thread panicked"))
                .collect()
        });
        let mut columns = Self::empty(n_out, n_in);
        for part in parts {
            columns.entries.extend_from_slice(&part.entries);
            columns.max_abs.extend_from_slice(&part.max_abs);
            columns.rest_max.extend_from_slice(&part.rest_max);
            columns.min_nonzero.extend_from_slice(&part.min_nonzero);
            columns.nonzero.extend_from_slice(&part.nonzero);
        }
        columns
    }

    fn empty(n_out: usize, n_columns: usize) -> Self {
        let top = kept_per_column(n_out);
        DenseColumns {
            top,
            entries: Vec::with_capacity(n_columns * top),
            max_abs: Vec::with_capacity(n_columns),
            rest_max: Vec::with_capacity(n_columns),
            min_nonzero: Vec::with_capacity(n_columns),
            nonzero: Vec::with_capacity(n_columns),
        }
    }

    /// The index of the columns `columns` only.
    fn of_columns(weight: &[f32], n_out: usize, n_in: usize, columns: Range<usize>) -> Self {
        let mut index = Self::empty(n_out, columns.len());
        // Columns a cache line further apart than their length: at a power-of-two length every
        // column of the block fell in one cache set.
        let stride = n_out + 8;
        let block_columns = (BLOCK_BYTES / (8 * stride)).clamp(1, BLOCK_COLUMNS);
        let mut block = vec![0u64; block_columns * stride];
        for first in columns.clone().step_by(block_columns) {
            let width = block_columns.min(columns.end - first);
            for i in 0..n_out {
                let row = &weight[i * n_in + first..][..width];
                for (c, &w) in row.iter().enumerate() {
                    block[c * stride + i] = entry_key(w, i as u32);
                }
            }
            for c in 0..width {
                index.add(&mut block[c * stride..][..n_out]);
            }
        }
        index
    }

    /// Adds a column given as `entry_key`s for every row (reordered).
    fn add(&mut self, column: &mut [u64]) {
        let top = self.top;
        // One pass for both (|w| >= 0, so a zero is never the smallest nonzero).
        let (mut nonzero, mut min_nonzero) = (0u32, f32::INFINITY);
        for &key in column.iter() {
            let w = entry_of(key).0;
            nonzero += (w != 0.0) as u32;
            min_nonzero = if w != 0.0 {
                min_nonzero.min(w)
            } else {
                min_nonzero
            };
        }
        self.nonzero.push(nonzero);
        self.min_nonzero.push(min_nonzero);
        if top < column.len() {
            column.select_nth_unstable(top);
        }
        self.rest_max
            .push(column.get(top).map_or(0.0, |&k| entry_of(k).0));
        column[..top].sort_unstable();
        self.max_abs
            .push(column.first().map_or(0.0, |&k| entry_of(k).0));
        self.entries
            .extend(column[..top].iter().map(|&k| entry_of(k)));
    }

    /// The first pass over a dense layer: hands over, row by row and inputs ascending (the
    /// enumeration order), every edge heavier than `split` from the nonzero inputs `inputs`, and
    /// returns how many nonzero edges it left out as lighter. `put(weight, j, i)` hands over
    /// input j's edge to output i.
    pub(in crate::topology::graph) fn heavy_edges<S: EdgeSink>(
        &self,
        weight: &[f32],
        a: &[f32],
        inputs: &[u32],
        split: f32,
        out: &mut Blocks<S>,
        put: impl Fn(&mut Blocks<S>, f32, u32, u32),
    ) -> usize {
        let n_in = a.len();
        let n_out = weight.len() / n_in.max(1);
        let mut heavy: Vec<(u32, u32, f32)> = Vec::new();
        let mut light = 0;
        for &j in inputs {
            let (col, abs_a) = (j as usize, a[j as usize].abs());
            let entries = col * self.top..(col + 1) * self.top;
            let found_before = heavy.len();
            if self.max_abs[col] * abs_a <= split {
                // No heavy edge.
            } else if self.rest_max[col] * abs_a > split {
                // Heavy edges beyond the entries: weigh the whole column.
                for i in 0..n_out {
                    let w = (weight[i * n_in + col] * a[col]).abs();
                    if w > split {
                        heavy.push((i as u32, j, w));
                    }
                }
            } else {
                for &(w, i) in &self.entries[entries] {
                    let w = w * abs_a;
                    if w <= split {
                        break;
                    }
                    heavy.push((i, j, w));
                }
            }
            let found = heavy.len() - found_before;
            light += if self.min_nonzero[col] * abs_a != 0.0 {
                self.nonzero[col] as usize - found
            } else {
                // Some products round to 0 and are no edges: count the others.
                let column = (0..n_out).map(|i| (weight[i * n_in + col] * a[col]).abs());
                column.filter(|&w| w != 0.0 && w <= split).count()
            };
        }
        // Back to the enumeration order: by row, inputs ascending within one.
        let (_, in_order) = group_by_row(n_out, &heavy, |&(i, _, _)| i);
        for (i, j, w) in in_order {
            put(out, w, j, i);
        }
        light
    }

    /// Whether the edges heavier than `split` from the inputs `inputs` lie mostly among the
    /// entries: at most a quarter of the inputs' columns would be weighed whole by
    /// `heavy_edges`. (AlexNet-CIFAR's second dense layer in its own band: with none allowed, all
    /// 16.8 M edges were weighed, 32 ms per input; with a quarter, 8 ms.)
    pub(in crate::topology::graph) fn mostly_within_entries(
        &self,
        a: &[f32],
        inputs: &[u32],
        split: f32,
    ) -> bool {
        let beyond = |&&j: &&u32| self.rest_max[j as usize] * a[j as usize].abs() > split;
        inputs.iter().filter(beyond).count() * 4 <= inputs.len()
    }

    /// The output holding input j's heaviest edge among the outputs that `wanted` accepts: the
    /// first of equal weights in enumeration order (the smallest row); None when every such
    /// edge weighs 0.
    pub(in crate::topology::graph) fn heaviest_row(
        &self,
        weight: &[f32],
        a: &[f32],
        j: usize,
        wanted: impl Fn(usize) -> bool,
    ) -> Option<u32> {
        let abs_a = a[j].abs();
        let entries = j * self.top..(j + 1) * self.top;
        let mut best: Option<(f32, u32)> = None;
        for &(w, i) in &self.entries[entries] {
            let w = w * abs_a;
            match best {
                // Entries come heaviest first: once lighter than the best, none can beat it.
                Some((b, _)) if w < b => return best.map(|(_, i)| i),
                Some((b, row)) if w == b && wanted(i as usize) => best = Some((b, row.min(i))),
                None if w != 0.0 && wanted(i as usize) => best = Some((w, i)),
                _ => {}
            }
        }
        // Every entry searched: the rest of the column may still hold the best or a tie with it.
        let rest = self.rest_max[j] * abs_a;
        match best {
            Some((b, _)) if rest < b => best.map(|(_, i)| i),
            _ if self.rest_max[j] == 0.0 && best.is_none() => None,
            _ => heaviest_in_column(weight, a, j, wanted),
        }
    }
}

/// An entry (|w|, row) as one integer whose ascending order is |w| descending, then row
/// ascending: |w| >= 0, so its bits order as the float does. (AlexNet-CIFAR's index took a third
/// more CPU time when it selected and sorted (f32, u32) pairs with a comparator; ties then came
/// in no set order. docs/performance.md, "Tenth round".)
fn entry_key(w: f32, row: u32) -> u64 {
    (u64::from(!w.abs().to_bits()) << 32) | u64::from(row)
}

/// The (|w|, row) of an `entry_key`.
fn entry_of(key: u64) -> (f32, u32) {
    (f32::from_bits(!((key >> 32) as u32)), key as u32)
}

/// `items` grouped by row (`row_of`, below `n_rows`), stable: the start of each row's group
/// (`n_rows + 1` of them) and the items in that order. A counting sort.
pub(in crate::topology::graph) fn group_by_row<T: Copy>(
    n_rows: usize,
    items: &[T],
    row_of: impl Fn(&T) -> u32,
) -> (Vec<u32>, Vec<T>) {
    let mut starts = vec![0u32; n_rows + 1];
    for item in items {
        starts[row_of(item) as usize + 1] += 1;
    }
    for i in 0..n_rows {
        starts[i + 1] += starts[i];
    }
    let mut next = starts.clone();
    let mut grouped = items.to_vec();
    for item in items {
        let slot = &mut next[row_of(item) as usize];
        grouped[*slot as usize] = *item;
        *slot += 1;
    }
    (starts, grouped)
}

/// `heaviest_row` by weighing the whole column, rows ascending.
fn heaviest_in_column(
    weight: &[f32],
    a: &[f32],
    j: usize,
    wanted: impl Fn(usize) -> bool,
) -> Option<u32> {
    let n_in = a.len();
    let mut best = (0.0f32, None);
    for i in (0..weight.len() / n_in).filter(|&i| wanted(i)) {
        let w = (weight[i * n_in + j] * a[j]).abs();
        if w > best.0 {
            best = (w, Some(i as u32));
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::graph::sink::{Edge, BLOCK, NO_EDGE};

    struct Collect(Vec<Edge>);

    impl EdgeSink for Collect {
        fn extend(&mut self, edges: &[Edge]) {
            self.0.extend_from_slice(edges);
        }
    }

    /// More outputs than `TOP`, so that whole columns are weighed too. Small integer weights (many
    /// ties, some zeros) and a few tiny ones whose products round to 0.
    fn layer(seed: u64) -> (Vec<f32>, Vec<f32>, usize, usize) {
        let (n_out, n_in) = (TOP + 120, 40);
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut value = |tiny: bool| match next() % 11 {
            0 if tiny => 1e-30,
            k => (k as f32 - 5.0) * 0.5,
        };
        let weight = (0..n_out * n_in).map(|_| value(true)).collect();
        let a = (0..n_in)
            .map(|j| if j % 5 == 3 { 1e-20 } else { value(false) })
            .collect();
        (weight, a, n_out, n_in)
    }

    /// `len` weights from -11 to 11 in a scrambled order: many ties, some zeros.
    fn small_integer_weights(len: usize) -> Vec<f32> {
        (0..len).map(|k| ((k * 7919) % 23) as f32 - 11.0).collect()
    }

    #[test]
    fn an_index_built_on_several_threads_equals_one_built_on_one() {
        // Wide enough for two threads or more, and not a multiple of a block: the last thread's
        // range ends inside one.
        let (n_out, n_in) = (TOP + 3, 4 * COLUMNS_PER_THREAD + 37);
        let weight = small_integer_weights(n_out * n_in);
        let whole = DenseColumns::of_columns(&weight, n_out, n_in, 0..n_in);
        assert_eq!(whole.max_abs.len(), n_in);
        assert_eq!(DenseColumns::new(&weight, n_out, n_in), whole);
    }

    #[test]
    fn the_index_holds_each_columns_heaviest_weights() {
        // Tall enough that a block holds fewer than `BLOCK_COLUMNS` columns; small integer
        // weights, so ties cross the end of the kept entries.
        let (n_out, n_in) = (4200, 300);
        let weight = small_integer_weights(n_out * n_in);
        assert!(BLOCK_BYTES / (8 * (n_out + 8)) < BLOCK_COLUMNS);
        let index = DenseColumns::new(&weight, n_out, n_in);
        let top = kept_per_column(n_out);
        for j in 0..n_in {
            // The oracle: the whole column sorted by |w| descending, then row ascending.
            let mut column: Vec<(f32, u32)> = (0..n_out)
                .map(|i| (weight[i * n_in + j].abs(), i as u32))
                .collect();
            column.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            assert_eq!(
                index.entries[j * top..(j + 1) * top],
                column[..top],
                "column {j}"
            );
            assert_eq!(index.max_abs[j], column[0].0);
            assert_eq!(index.rest_max[j], column[top].0);
            let nonzero: Vec<f32> = column.iter().map(|c| c.0).filter(|&w| w != 0.0).collect();
            assert_eq!(index.nonzero[j] as usize, nonzero.len());
            assert_eq!(index.min_nonzero[j], nonzero[nonzero.len() - 1]);
        }
    }

    #[test]
    fn heavy_edges_match_weighing_every_edge() {
        for seed in 1..20 {
            let (weight, a, n_out, n_in) = layer(seed);
            let columns = DenseColumns::new(&weight, n_out, n_in);
            let inputs: Vec<u32> = (0..n_in as u32).filter(|&j| a[j as usize] != 0.0).collect();
            for split in [0.0, 0.5, 2.0, 6.0, 100.0] {
                let mut sink = Collect(Vec::new());
                let mut block = [NO_EDGE; BLOCK];
                let mut out = Blocks::new(&mut sink, &mut block);
                let put = |out: &mut Blocks<Collect>, w, j, i| out.put(w, j, i);
                let light = columns.heavy_edges(&weight, &a, &inputs, split, &mut out, put);
                out.finish();
                let all = (0..n_out).flat_map(|i| (0..n_in).map(move |j| (i, j)));
                let weighed = all.map(|(i, j)| (weight[i * n_in + j] * a[j]).abs());
                let every: Vec<Edge> = (0..n_out)
                    .flat_map(|i| (0..n_in).map(move |j| (i, j)))
                    .zip(weighed)
                    .filter(|&(_, w)| w != 0.0)
                    .map(|((i, j), weight)| Edge {
                        weight,
                        src: j as u32,
                        dst: i as u32,
                    })
                    .collect();
                let heavy: Vec<Edge> = every.iter().filter(|e| e.weight > split).copied().collect();
                assert_eq!(sink.0, heavy, "seed {seed}, split {split}");
                assert_eq!(
                    light,
                    every.len() - heavy.len(),
                    "seed {seed}, split {split}"
                );
            }
        }
    }

    #[test]
    fn heaviest_row_is_the_first_heaviest_wanted_edge() {
        for seed in 1..20 {
            let (weight, a, n_out, n_in) = layer(seed);
            let columns = DenseColumns::new(&weight, n_out, n_in);
            // Wanted outputs: all, every third, some beyond the first TOP, and those of the
            // lightest weights in the column (whose heaviest lies beyond the sorted entries or
            // ties across their end).
            for j in 0..n_in {
                let light = |i: usize| weight[i * n_in + j].abs() <= 0.5;
                let choices: [&dyn Fn(usize) -> bool; 4] =
                    [&|_| true, &|i| i % 3 == 1, &|i| i >= TOP + 20, &light];
                for wanted in choices {
                    let mut best = (0.0f32, None);
                    for i in (0..n_out).filter(|&i| wanted(i)) {
                        let w = (weight[i * n_in + j] * a[j]).abs();
                        if w > best.0 {
                            best = (w, Some(i as u32));
                        }
                    }
                    let found = columns.heaviest_row(&weight, &a, j, wanted);
                    assert_eq!(found, best.1, "seed {seed}, input {j}");
                }
            }
        }
    }
}
