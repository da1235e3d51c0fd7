//! Where `compute_from` splits a graph's weights into bands. Any splits give the same diagram;
//! good ones make the passes fast (docs/persistence.md).

use crate::topology::graph::WeightSample;

/// `compute_from` aims to sort and sweep this fraction of the edges (the heaviest) first.
/// Measured since the later passes skip what is lighter than their band (docs/performance.md,
/// "Fourth round"), against 0.13 before: trained CCFF (instructions over 128 demo inputs)
/// 0.04 -6%, 0.06 -3%, 0.08 -1%, 0.02 +2%; ResNet-18 CIFAR (time per input) 0.06 -3%, 0.08 -12%,
/// 0.10 -9%; AlexNet-CIFAR (with parts' bands from 5%) 0.05 and 0.08 alike, 0.03 worse.
const HEAVY_FRACTION: f64 = 0.08;

/// ... and each large part's heaviest this fraction of edges come in some pass before the last
/// (see `place_splits`). With random CCFF weights the conv edges all outweigh the dense ones: a
/// global quantile alone left the dense layer without heavy edges and made the passes 60% slower
/// than a stored edge list.
const PART_FRACTION: f64 = 0.02;

/// Splits closer than this ratio are merged (each pass enumerates the whole graph). Measured:
/// random-weight CCFF needs its dense layer's band (split ratio 2.9; without it 1.5 ms per input
/// instead of 1.1).
const BAND_RATIO: f32 = 2.0;

/// Parts with fewer than 1 / PART_SHARE of the sampled edges get no band of their own. (AlexNet-
/// CIFAR: its late layers, 12-15% of the edges each, on a lighter scale, left 20 M edges per
/// input unconnected in the last pass while they had none; with bands for parts from 5% (or 1%)
/// up, 0.7 M. With the later passes' floors and 8% first, 30% less time per input than before;
/// with bands from 10% up, 6% less. When the later passes weighed every edge such bands cost
/// 16%, and parts under 20% got none.)
const PART_SHARE: usize = 20;

/// `compute_from` places the splits from about one in this many edge weights ...
const SAMPLE_STRIDE: usize = 128;

/// ... but from no more than about this many: a big graph's quantiles need no more. (ResNet-18 at
/// CIFAR shape, 482 M edges at most: sampling one in 128 took 4.6% of its CPU time, when each
/// sampled conv weight still cost a few divisions.)
const MAX_SAMPLE: usize = 1 << 17;

/// The sampling stride for a graph of at most `max_edges` edges.
pub(super) fn sample_stride(max_edges: usize) -> usize {
    SAMPLE_STRIDE.max(max_edges / MAX_SAMPLE)
}

/// The split weights, heaviest first. The first has about `HEAVY_FRACTION` of all edges above
/// it. A large part of the graph (a big layer) whose weights are on a lighter scale would get
/// few edges above it, leave its units unconnected, and nearly all its edges would survive the
/// next pass: so each large part's `PART_FRACTION` quantile that lies well below the splits so
/// far is a split too, and its band a pass of its own. Parts with under 1 / `PART_SHARE` of the
/// sample are left out.
pub(super) fn place_splits(sample: &mut WeightSample, splits: &mut Vec<f32>) {
    let total = sample.weights.len();
    let mut start = 0;
    for &end in &sample.part_ends {
        let part = &mut sample.weights[start..end];
        if !part.is_empty() && part.len() * PART_SHARE >= total {
            splits.push(quantile(part, PART_FRACTION));
        }
        start = end;
    }
    let first = quantile(&mut sample.weights, HEAVY_FRACTION);
    splits.sort_by(|a, b| b.total_cmp(a));
    let mut last = first;
    splits.retain(|&s| {
        let keep = s < last / BAND_RATIO;
        if keep {
            last = s;
        }
        keep
    });
    splits.insert(0, first);
}

/// The weight with about `fraction` of a sample above it.
fn quantile(sample: &mut [f32], fraction: f64) -> f32 {
    if sample.is_empty() {
        return f32::INFINITY;
    }
    let k = ((sample.len() as f64 * fraction) as usize).min(sample.len() - 1);
    let (_, kth, _) = sample.select_nth_unstable_by(k, |a, b| b.total_cmp(a));
    *kth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_large_part_gets_heavy_edges_in_some_pass() {
        // Part 1: 1000 weights 1..=1000; part 2: 1000 weights a hundred times lighter; part 3:
        // 10 tiny weights (under 1 / PART_SHARE of the sample: ignored).
        let mut sample = WeightSample::default();
        sample.weights.extend((1..=1000).map(|i| i as f32));
        sample.end_part();
        sample.weights.extend((1..=1000).map(|i| i as f32 / 100.0));
        sample.end_part();
        sample.weights.extend((1..=10).map(|i| i as f32 * 1e-6));
        sample.end_part();
        let mut splits = Vec::new();
        place_splits(&mut sample, &mut splits);
        // The heaviest HEAVY_FRACTION of all lies inside part 1 (1000 - 0.08 * 2010, about 840);
        // part 2 would get no edge above it, so its top 2% (about 9.8) starts a band of its own;
        // part 1's top 2% is above the first split.
        let first = 1000.0 - (2010.0 * HEAVY_FRACTION) as f32;
        assert_eq!(splits.len(), 2, "{splits:?}");
        assert!(
            (splits[0] - first).abs() < 10.0,
            "{splits:?}, first {first}"
        );
        assert!(splits[1] > 9.0 && splits[1] < 10.0, "{splits:?}");
        // A part with a tenth of the sample, on a lighter scale, gets its band too.
        let mut small = WeightSample::default();
        small.weights.extend((1..=900).map(|i| i as f32));
        small.end_part();
        small.weights.extend((1..=100).map(|i| i as f32 / 100.0));
        small.end_part();
        splits.clear();
        place_splits(&mut small, &mut splits);
        assert_eq!(splits.len(), 2, "{splits:?}");
        assert!(splits[1] > 0.9 && splits[1] <= 1.0, "{splits:?}");
        // One part alone: its own HEAVY_FRACTION quantile.
        let mut one = WeightSample::default();
        one.weights.extend((1..=1000).map(|i| i as f32));
        one.end_part();
        splits.clear();
        place_splits(&mut one, &mut splits);
        let first = 1000.0 - (1000.0 * HEAVY_FRACTION) as f32;
        assert_eq!(splits.len(), 1, "{splits:?}");
        assert!(
            (splits[0] - first).abs() < 10.0,
            "{splits:?}, first {first}"
        );
    }
}
