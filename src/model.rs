//! Loading a model description: spec TOML + safetensors weights, checked against each other
//! before any data is read. tch-free; the forward pass lives elsewhere.

use std::path::{Path, PathBuf};

use crate::spec::{ModelSpec, Network};
use crate::weights::Weights;

/// A spec, resolved, with weights that fit it.
#[derive(Debug, Clone)]
pub struct Model {
    pub spec: ModelSpec,
    pub network: Network,
    pub weights: Weights,
    pub weights_path: PathBuf,
}

impl Model {
    /// Loads `spec_path`, then the weights from `weights_path` or, when that is None, from the file
    /// the spec names.
    pub fn load(spec_path: &Path, weights_path: Option<&Path>) -> anyhow::Result<Model> {
        let spec = ModelSpec::load(spec_path)?;
        let network = Network::resolve(&spec)?;
        let weights_path = match weights_path {
            Some(p) => p.to_path_buf(),
            None => spec.weights_path().ok_or_else(|| {
                anyhow::anyhow!(
                    "model spec {} names no weights file\n  fix: add `weights = \"FILE.safetensors\"` to the spec or set model.weights",
                    spec_path.display()
                )
            })?,
        };
        let weights = Weights::load(&weights_path, &network, spec_path)?;
        Ok(Model {
            spec,
            network,
            weights,
            weights_path,
        })
    }
}
