//! The Betti-0 curve: how many H0 classes are alive in the graph of the edges of weight >= t, at
//! each grid point t.
//!
//! A finite pair is alive for death < t <= birth (it appears when the threshold reaches its birth
//! and is merged away once the threshold reaches its death); an essential class for t <= birth.

use super::grid::Grid;
use super::Pair;

/// The Betti-0 number at each point of `grid` (ascending t), counting the finite `pairs` and the
/// essential classes born at `essential`.
pub fn betti_curve(pairs: &[Pair], essential: &[f64], grid: &Grid) -> Vec<f64> {
    grid.points()
        .into_iter()
        .map(|t| {
            let finite = pairs.iter().filter(|p| p.death < t && t <= p.birth).count();
            let endless = essential.iter().filter(|&&b| t <= b).count();
            (finite + endless) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: a sweep over the sorted events, as GUDHI's `BettiCurve` does, with the
    /// thresholds visited from the largest down (a class enters at its birth, leaves at its death).
    fn sweep(pairs: &[Pair], essential: &[f64], grid: &Grid) -> Vec<f64> {
        let mut events: Vec<(f64, i64)> = pairs
            .iter()
            .flat_map(|p| [(p.birth, 1), (p.death, -1)])
            .chain(essential.iter().map(|&b| (b, 1)))
            .collect();
        events.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut out = vec![0.0; grid.n_bins];
        let (mut alive, mut next) = (0i64, 0usize);
        for (i, t) in grid.points().into_iter().enumerate().rev() {
            // entering at t (birth >= t) counts; leaving at t (death >= t) counts too
            while next < events.len() && events[next].0 >= t {
                alive += events[next].1;
                next += 1;
            }
            out[i] = alive as f64;
        }
        out
    }

    fn pair(birth: f64, death: f64) -> Pair {
        Pair { birth, death }
    }

    #[test]
    fn counts_at_the_endpoints_follow_the_superlevel_convention() {
        let grid = Grid {
            min: 1.0,
            max: 4.0,
            n_bins: 4,
        };
        // alive for 1 < t <= 3; the essential class for t <= 4
        let curve = betti_curve(&[pair(3.0, 1.0)], &[4.0], &grid);
        assert_eq!(curve, vec![1.0, 2.0, 2.0, 1.0]);
    }

    proptest! {
        #[test]
        fn equals_an_event_sweep(
            raw in prop::collection::vec((0u8..20, 0u8..20), 0..30),
            essential in prop::collection::vec(0u8..25, 0..3),
            n_bins in 1usize..40,
        ) {
            // small integers make grid points land on births and deaths
            let pairs: Vec<Pair> = raw.iter()
                .map(|&(a, b)| pair(f64::from(a.max(b)), f64::from(a.min(b))))
                .collect();
            let essential: Vec<f64> = essential.into_iter().map(f64::from).collect();
            let grid = Grid { min: 0.0, max: 20.0, n_bins };
            prop_assert_eq!(betti_curve(&pairs, &essential, &grid), sweep(&pairs, &essential, &grid));
        }
    }
}
