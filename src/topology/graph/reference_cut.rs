//! The reference code's edge cuts (`graph.threshold = { reference_percentile = P }`,
//! docs/graph.md): tgebhart/pt_activation's `CCFF.compute_dynamic_filtration2`. Graph op l
//! (0-based, in model order) that is a conv cuts at (1 / (l + 1)) times the P-th percentile of
//! |its output as the next op reads it|; a linear op at the P-th percentile of |W[i, j] * a[j]|
//! over every product, zeros included. Percentiles are numpy's default (linear interpolation),
//! taken as numpy >= 2 takes them for a float32 array.

use super::errors::PlanError;
use super::geometry::Geometry;
use super::plan::GraphPlan;
use crate::spec::{LayerInput, Network};

/// numpy's `np.percentile(values, p)` (method "linear") for a float32 array and a Python
/// number `p`: with the values sorted, the virtual index is h = (n - 1) * p / 100 (f64); between
/// the values a = v[floor h] and b = v[floor h + 1], with g = h - floor h, the result is
/// a + (b - a) * g, or b - (b - a) * (1 - g) when g >= 0.5, every step in f32 as numpy does.
/// 0 for no values. `values` is reordered.
pub(super) fn numpy_percentile(values: &mut [f32], p: f64) -> f32 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let virtual_index = (n - 1) as f64 * (p / 100.0);
    let below = virtual_index.floor();
    // numpy reads the last value twice at or past the end.
    let (lo, hi) = if virtual_index >= (n - 1) as f64 {
        (n - 1, n - 1)
    } else {
        (below as usize, below as usize + 1)
    };
    let gamma = virtual_index - below;
    let a = *values.select_nth_unstable_by(lo, f32::total_cmp).1;
    // After the selection, everything past `lo` is at least `a`: `hi`'s value is their least.
    let b = if hi == lo {
        a
    } else {
        values[hi..]
            .iter()
            .copied()
            .min_by(f32::total_cmp)
            .unwrap_or(a)
    };
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * ((1.0 - gamma) as f32)
    } else {
        a + diff * (gamma as f32)
    }
}

/// Graph op `op`'s reference cut for one sample (`inputs[i]`: graph op i's input). The plan was
/// checked by `check_reference_plan`, so a conv has a next op whose input is its output.
/// `buffer` is reused.
pub(super) fn reference_cut(
    plan: &GraphPlan,
    op: usize,
    inputs: &[&[f32]],
    p: f64,
    buffer: &mut Vec<f32>,
) -> f32 {
    let g = &plan.ops[op];
    buffer.clear();
    match &g.geometry {
        Geometry::Linear => {
            let n_in = g.input_len();
            for row in g.weight.chunks_exact(n_in) {
                buffer.extend(row.iter().zip(inputs[op]).map(|(w, x)| (w * x).abs()));
            }
            numpy_percentile(buffer, p)
        }
        _ => {
            let output = inputs.get(op + 1).copied().unwrap_or_default();
            buffer.extend(output.iter().map(|x| x.abs()));
            // numpy multiplies a float32 by a Python float in float32.
            numpy_percentile(buffer, p) * ((1.0 / (op as f64 + 1.0)) as f32)
        }
    }
}

/// The models the reference cut is defined for: a chain of layers (each reads the one before)
/// whose graph ops are convs and linear layers, the last of them linear (a conv's cut reads its
/// output as the next graph op's input).
pub(super) fn check_reference_plan(net: &Network) -> Result<(), PlanError> {
    let refuse = |layer: &str, why: &str| {
        Err(PlanError::ReferenceThreshold {
            layer: layer.to_string(),
            why: why.to_string(),
        })
    };
    let mut last_graph_op = None;
    for (i, layer) in net.layers.iter().enumerate() {
        let previous = if i == 0 {
            LayerInput::Input
        } else {
            LayerInput::Layer(i - 1)
        };
        if layer.inputs != [previous] {
            return refuse(&layer.name, "does not read just the layer before it");
        }
        match Geometry::of(&layer.op) {
            Some(Geometry::Conv(_)) => last_graph_op = Some((layer.name.as_str(), true)),
            Some(Geometry::Linear) => last_graph_op = Some((layer.name.as_str(), false)),
            Some(_) => return refuse(&layer.name, "is a pool or add"),
            None => {}
        }
    }
    match last_graph_op {
        Some((name, true)) => refuse(
            name,
            "is a conv with no graph op after it to read its output",
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in f64: v[lo] + (v[lo + 1] - v[lo]) * frac((n - 1) * p / 100).
    fn brute_force(values: &[f32], p: f64) -> f64 {
        let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        v.sort_by(f64::total_cmp);
        let h = (v.len() - 1) as f64 * p / 100.0;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(v.len() - 1);
        v[lo] + (v[hi] - v[lo]) * (h - lo as f64)
    }

    #[test]
    fn matches_the_linear_interpolation_definition() {
        // Small arrays with ties and zeros, every P in steps of 0.5.
        let mut state = 12345u64;
        for n in 1..40 {
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) % 17) as f32 * 0.37
                })
                .collect();
            for step in 0..=200 {
                let p = step as f64 * 0.5;
                let got = numpy_percentile(&mut values.clone(), p) as f64;
                let want = brute_force(&values, p);
                // f32 steps: a few ulps of the largest value (at most 16 * 0.37).
                assert!(
                    (got - want).abs() <= 4e-6,
                    "n = {n}, P = {p}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn matches_numpy_values() {
        // np.percentile(np.array(v, dtype=np.float32), p) with numpy 2.4.6.
        let v = [0.0f32, 0.1, 0.7, 0.2, 0.3];
        let mut w = v;
        assert_eq!(numpy_percentile(&mut w, 90.0), 0.539_999_96);
        assert_eq!(numpy_percentile(&mut v.clone(), 33.3), 0.1332);
        assert_eq!(numpy_percentile(&mut v.clone(), 0.0), 0.0);
        assert_eq!(numpy_percentile(&mut v.clone(), 100.0), 0.7);
        assert_eq!(numpy_percentile(&mut v.clone(), 50.0), 0.2);
        assert_eq!(numpy_percentile(&mut [], 90.0), 0.0);
        assert_eq!(numpy_percentile(&mut [3.0], 90.0), 3.0);
    }
}
