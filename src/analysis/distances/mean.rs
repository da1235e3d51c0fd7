//! The class mean diagram that clean samples are compared with: the rank-wise mean.
//!
//! Each diagram's finite pairs are ranked by persistence (birth - death), largest first (ties by
//! birth, then death, both decreasing, so the order is total). The mean diagram has
//! `K = round(mean number of pairs)` points (halves rounded up); its k-th point is the coordinate-wise mean of the
//! k-th ranked pairs of the diagrams that have at least k + 1 pairs. It is a diagram, so distances
//! to it are true diagram distances, and it is cheap (one sort per diagram), deterministic and
//! independent of the order of the diagrams up to rounding (sums are taken in the given order). It
//! is not the Wasserstein barycenter (Frechet mean): it matches points by rank rather than by an
//! optimal matching, in the way Topological Uncertainty's class means match sorted death values.

use super::Pair;

/// The rank-wise mean of `diagrams` (empty for no diagrams).
pub fn rank_mean(diagrams: &[&[Pair]]) -> Vec<Pair> {
    if diagrams.is_empty() {
        return Vec::new();
    }
    let total: usize = diagrams.iter().map(|d| d.len()).sum();
    // round(total / n), halves up, in integers
    let k = (2 * total + diagrams.len()) / (2 * diagrams.len());
    let mut sums = vec![(0.0, 0.0, 0usize); k];
    for d in diagrams {
        for (slot, pair) in sums.iter_mut().zip(ranked(d)) {
            slot.0 += pair.birth;
            slot.1 += pair.death;
            slot.2 += 1;
        }
    }
    sums.into_iter()
        .filter(|s| s.2 > 0)
        .map(|(b, d, n)| Pair {
            birth: b / n as f64,
            death: d / n as f64,
        })
        .collect()
}

/// The pairs by decreasing persistence, then birth, then death.
fn ranked(d: &[Pair]) -> Vec<Pair> {
    let mut v = d.to_vec();
    v.sort_by(|x, y| {
        let persistence = |p: &Pair| (p.birth - p.death).abs();
        persistence(y)
            .total_cmp(&persistence(x))
            .then(y.birth.total_cmp(&x.birth))
            .then(y.death.total_cmp(&x.death))
    });
    v
}

/// The rank-wise mean of lists of values ranked in decreasing order (essential births): the
/// k-th value of the mean is the mean of the k-th largest values, for `K = round(mean length)`.
pub fn rank_mean_values(lists: &[&[f64]]) -> Vec<f64> {
    let as_pairs: Vec<Vec<Pair>> = lists
        .iter()
        .map(|l| {
            l.iter()
                .map(|&b| Pair {
                    birth: b,
                    death: 0.0,
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[Pair]> = as_pairs.iter().map(|v| &v[..]).collect();
    rank_mean(&refs).into_iter().map(|p| p.birth).collect()
}
