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
    /// SHA-256 (hex) of the weights file's bytes as loaded (the spec's is `spec.sha256`).
    pub weights_sha256: String,
}

impl Model {
    /// Loads `spec_path`, then the weights from `weights_path` or, when that is None, from the file
    /// the spec names.
    pub fn load(spec_path: &Path, weights_path: Option<&Path>) -> anyhow::Result<Model> {
        let spec = ModelSpec::load(spec_path)?;
        let network = Network::resolve(&spec)?;
        let weights_path = match weights_path {
            Some(p) => p.to_path_buf(),
            None => {
                let path = spec.weights_path().ok_or_else(|| {
                    anyhow::anyhow!(
                        "model spec {} names no weights file\n  fix: add `weights = \"FILE.safetensors\"` to the spec or set model.weights",
                        spec_path.display()
                    )
                })?;
                check_spec_weights(&spec, &path)?;
                path
            }
        };
        let (weights, weights_sha256) = Weights::load(&weights_path, &network, spec_path)?;
        Ok(Model {
            spec,
            network,
            weights,
            weights_path,
            weights_sha256,
        })
    }
}

/// The spec's `weights` key names a file that is there; the message says that a spec's relative
/// paths are resolved against the spec's folder (not the config's, not the current one).
fn check_spec_weights(spec: &ModelSpec, path: &Path) -> anyhow::Result<()> {
    if path.is_file() {
        return Ok(());
    }
    let folder = match spec.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    anyhow::bail!(
        "model spec {}: `weights` = \"{}\": {} {}{}\n  fix: correct `weights` in the spec, or set model.weights in the config (relative to the config file)",
        spec.path.display(),
        spec.weights.as_deref().unwrap_or(path).display(),
        path.display(),
        if path.exists() { "is not a file" } else { "does not exist" },
        if spec.weights.as_deref().is_some_and(Path::is_relative) {
            format!(" (a spec's relative paths are resolved against the spec file's folder {})", folder.display())
        } else {
            String::new()
        }
    )
}
