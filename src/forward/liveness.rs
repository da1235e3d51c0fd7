//! When a model graph's tensors may be dropped: each layer's output (and the model input) is
//! needed until its last reader has run. The forward pass drops them then, so that a ResNet or
//! DenseNet holds a few activations at a time, not all of them; the memory estimate
//! (`limits`) walks the same schedule. Free of tch.

use crate::spec::{LayerInput, Network};

/// Per layer, in `Network::layers` order: the operands it is the last reader of (each once).
/// The last layer (the model output) is read by no layer, so it is never released.
pub(crate) fn releases(net: &Network) -> Vec<Vec<LayerInput>> {
    let mut input_last = None;
    let mut layer_last: Vec<Option<usize>> = vec![None; net.layers.len()];
    for (i, layer) in net.layers.iter().enumerate() {
        for source in &layer.inputs {
            match source {
                LayerInput::Input => input_last = Some(i),
                LayerInput::Layer(j) => layer_last[*j] = Some(i),
            }
        }
    }
    let last_reader = |source: &LayerInput| match source {
        LayerInput::Input => input_last,
        LayerInput::Layer(j) => layer_last[*j],
    };
    (net.layers.iter().enumerate())
        .map(|(i, layer)| {
            let mut freed: Vec<LayerInput> = Vec::new();
            for source in &layer.inputs {
                if last_reader(source) == Some(i) && !freed.contains(source) {
                    freed.push(*source);
                }
            }
            freed
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tensor_is_released_by_its_last_reader_only() {
        let text = r#"
format_version = 2
name = "x"
input_shape = [2, 4, 4]
[[layers]]
name = "a"
op = "relu"
[[layers]]
name = "b"
op = "sigmoid"
[[layers]]
name = "sum"
op = "add"
inputs = ["a", "b", "input"]
[[layers]]
name = "both"
op = "cat"
inputs = ["sum", "sum"]
"#;
        let net = crate::spec::resolve_toml(text).unwrap();
        let r = releases(&net);
        assert_eq!(r[0], []); // a is read again by sum
        assert_eq!(r[1], []);
        assert_eq!(
            r[2],
            [
                LayerInput::Layer(0),
                LayerInput::Layer(1),
                LayerInput::Input
            ]
        );
        assert_eq!(r[3], [LayerInput::Layer(2)]); // read twice, released once
    }
}
