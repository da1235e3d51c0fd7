//! Summary statistics of a diagram (the `summary` table, `docs/output-schema.md`).

use super::persistence::Diagram;

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Summary {
    pub n_vertices: u64,
    pub n_edges: u64,
    /// Finite H0 pairs kept.
    pub h0_pairs: u64,
    pub h0_essential: u64,
    /// Sum of birth - death over finite pairs.
    pub h0_total_persistence: f64,
    /// Largest birth - death, 0 when there is no finite pair.
    pub h0_max_persistence: f64,
    /// -sum p ln p with p = lifetime / total lifetime, 0 when there is no positive lifetime.
    pub h0_entropy: f64,
    pub h1_count: u64,
}

impl Summary {
    pub fn of(d: &Diagram) -> Summary {
        // Lifetimes in f64 from the f32 values, summed in the diagram's (deterministic) order.
        let lifetimes = || d.h0.iter().map(|p| p.birth as f64 - p.death as f64);
        let total: f64 = lifetimes().sum();
        let max = lifetimes().fold(0.0, f64::max);
        let entropy = if total > 0.0 {
            -lifetimes()
                .filter(|&l| l > 0.0)
                .map(|l| {
                    let p = l / total;
                    p * p.ln()
                })
                .sum::<f64>()
        } else {
            0.0
        };
        Summary {
            n_vertices: d.n_vertices,
            n_edges: d.n_edges,
            h0_pairs: d.h0.len() as u64,
            h0_essential: d.h0_essential.len() as u64,
            h0_total_persistence: total,
            h0_max_persistence: max,
            h0_entropy: entropy,
            h1_count: d.h1_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::persistence::H0Pair;

    #[test]
    fn entropy_of_two_equal_lifetimes_is_ln2() {
        let pair = |b: f32, d: f32| H0Pair {
            birth: b,
            death: d,
            src: 0,
            dst: 0,
        };
        let d = Diagram {
            h0: vec![pair(3.0, 1.0), pair(5.0, 3.0), pair(2.0, 2.0)],
            h0_essential: vec![5.0],
            ..Default::default()
        };
        let s = Summary::of(&d);
        assert_eq!(s.h0_pairs, 3);
        assert_eq!(s.h0_total_persistence, 4.0);
        assert_eq!(s.h0_max_persistence, 2.0);
        assert!((s.h0_entropy - std::f64::consts::LN_2).abs() < 1e-15);
        let empty = Summary::of(&Diagram::default());
        assert_eq!((empty.h0_max_persistence, empty.h0_entropy), (0.0, 0.0));
    }
}
