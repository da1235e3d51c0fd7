//! The weights on a conv's or linear layer's edges, with the batch norm after it folded in
//! (`graph.batch_norm = "fold"`, docs/graph.md): W'[o, ...] = W[o, ...] * scale[o], where
//! scale[o] = gamma[o] / sqrt(running_var[o] + eps), all in f32. The forward pass is unchanged:
//! only the weights that edges carry are the normalised ones.

use super::errors::PlanError;
use super::options::BatchNormFolding;
use crate::spec::{Network, Op};
use crate::weights::Weights;

/// The weights graph op `layer_index` (a conv or linear layer) puts on its edges: its weight
/// tensor, times the scale of the batch norm folded into it when `rule` folds.
pub(super) fn edge_weights(
    net: &Network,
    layer_index: usize,
    weights: &Weights,
    rule: BatchNormFolding,
) -> Result<Vec<f32>, PlanError> {
    let name = &net.layers[layer_index].name;
    let layer_weights = weights
        .layer(name)
        .ok_or_else(|| PlanError::MissingWeights(name.clone()))?;
    let mut w = layer_weights.weight.data.clone();
    let folded = match rule {
        BatchNormFolding::Fold => folded_batch_norm(net, layer_index),
        BatchNormFolding::Values => None,
    };
    if let Some(bn) = folded {
        let scale = batch_norm_scale(net, bn, weights)?;
        let per_output = w.len() / scale.len().max(1);
        for (chunk, s) in w.chunks_mut(per_output.max(1)).zip(&scale) {
            chunk.iter_mut().for_each(|x| *x *= s);
        }
    }
    Ok(w)
}

/// The batch norm that folds into layer `j`, if any.
fn folded_batch_norm(net: &Network, j: usize) -> Option<usize> {
    net.consumers(j).find(|&i| net.fold_target(i) == Some(j))
}

/// gamma / sqrt(running_var + eps) per channel of batch norm `i`, in f32.
fn batch_norm_scale(net: &Network, i: usize, weights: &Weights) -> Result<Vec<f32>, PlanError> {
    let layer = &net.layers[i];
    let (Op::BatchNorm2d(bn) | Op::BatchNorm1d(bn)) = &layer.op else {
        unreachable!("fold_target names batch norms only");
    };
    let missing = || PlanError::MissingWeights(layer.name.clone());
    let bn_weights = weights.layer(&layer.name).ok_or_else(missing)?;
    let running = bn_weights.running.as_ref().ok_or_else(missing)?;
    let eps = bn.eps as f32;
    let gamma = &bn_weights.weight.data;
    Ok((gamma.iter().zip(&running.var.data))
        .map(|(&g, &var)| g / (var + eps).sqrt())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Tensor;
    use std::collections::BTreeMap;

    #[test]
    fn folding_scales_each_output_row() {
        let text = "format_version = 2\nname = \"m\"\ninput_shape = [3]\n\
            [[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 2\nbias = false\n\
            [[layers]]\nname = \"bn\"\nop = \"batch_norm1d\"\neps = 0.5\n";
        let net = crate::spec::resolve_toml(text).unwrap();
        let tensor = |shape: Vec<usize>, data: Vec<f32>| Tensor { shape, data };
        let mut t = BTreeMap::new();
        t.insert(
            "fc.weight".into(),
            tensor(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
        );
        t.insert("bn.weight".into(), tensor(vec![2], vec![2.0, -1.0]));
        t.insert("bn.bias".into(), tensor(vec![2], vec![9.0, 9.0]));
        t.insert("bn.running_mean".into(), tensor(vec![2], vec![7.0, 7.0]));
        t.insert("bn.running_var".into(), tensor(vec![2], vec![3.5, 1.5]));
        let weights = Weights::from_tensors(t, &net).unwrap();
        // scale = 2 / sqrt(4) = 1 and -1 / sqrt(2)
        let w = edge_weights(&net, 0, &weights, BatchNormFolding::Fold).unwrap();
        let s = -1.0f32 / 2.0f32.sqrt();
        assert_eq!(w, [1., 2., 3., 4. * s, 5. * s, 6. * s]);
        let raw = edge_weights(&net, 0, &weights, BatchNormFolding::Values).unwrap();
        assert_eq!(raw, [1., 2., 3., 4., 5., 6.]);
    }
}
