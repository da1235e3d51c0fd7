//! Scalar summaries of the finite pairs: persistence entropy and total persistence p-norms.

use super::Pair;

/// -sum q ln q over the positive lifetimes, q = lifetime / their sum (GUDHI's `Entropy` in scalar
/// mode, natural log; the summary table's `h0_entropy`); 0 when no lifetime is positive.
pub fn persistence_entropy(pairs: &[Pair]) -> f64 {
    let lifetimes: Vec<f64> = positive_lifetimes(pairs).collect();
    let total: f64 = lifetimes.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    -lifetimes
        .iter()
        .map(|l| {
            let q = l / total;
            q * q.ln()
        })
        .sum::<f64>()
}

/// The lifetimes' 1-norm, 2-norm and max-norm: (sum l, sqrt(sum l^2), max l); 0 for no pairs.
pub fn total_persistence(pairs: &[Pair]) -> [f64; 3] {
    let (mut p1, mut p2, mut pinf) = (0.0, 0.0, 0.0f64);
    for l in positive_lifetimes(pairs) {
        p1 += l;
        p2 += l * l;
        pinf = pinf.max(l);
    }
    [p1, p2.sqrt(), pinf]
}

fn positive_lifetimes(pairs: &[Pair]) -> impl Iterator<Item = f64> + '_ {
    pairs.iter().map(|p| p.birth - p.death).filter(|&l| l > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs_of(lifetimes: &[f64]) -> Vec<Pair> {
        lifetimes
            .iter()
            .enumerate()
            .map(|(i, l)| Pair {
                birth: i as f64 + l,
                death: i as f64,
            })
            .collect()
    }

    #[test]
    fn known_values() {
        assert_eq!(persistence_entropy(&[]), 0.0);
        assert_eq!(total_persistence(&[]), [0.0; 3]);
        let e = persistence_entropy(&pairs_of(&[1.0, 1.0, 1.0, 1.0, 0.0]));
        assert!((e - 4f64.ln()).abs() < 1e-15);
        let [p1, p2, pinf] = total_persistence(&pairs_of(&[3.0, 4.0]));
        assert_eq!((p1, p2, pinf), (7.0, 5.0, 4.0));
    }

    proptest! {
        #[test]
        fn entropy_is_scale_free_and_bounded_by_ln_n(
            lifetimes in prop::collection::vec(0.001f64..10.0, 1..40),
            scale in 0.1f64..100.0,
        ) {
            let e = persistence_entropy(&pairs_of(&lifetimes));
            let scaled: Vec<f64> = lifetimes.iter().map(|l| l * scale).collect();
            prop_assert!((e - persistence_entropy(&pairs_of(&scaled))).abs() < 1e-9);
            prop_assert!(e >= -1e-12 && e <= (lifetimes.len() as f64).ln() + 1e-12);
        }

        #[test]
        fn norms_are_ordered(lifetimes in prop::collection::vec(0.0f64..10.0, 0..40)) {
            let [p1, p2, pinf] = total_persistence(&pairs_of(&lifetimes));
            prop_assert!(pinf <= p2 + 1e-12 && p2 <= p1 + 1e-12);
            let max = lifetimes.iter().fold(0.0f64, |m, l| m.max(*l));
            prop_assert!((pinf - max).abs() < 1e-12);
        }
    }
}
