//! TEMPORARY stub of the lead's shared types (replaced by the lead's file on merge).
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub birth: f64,
    pub death: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagram {
    pub pairs: Vec<Pair>,
    pub essential: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleDiagram {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub scope: String,
    pub label: Option<i64>,
    pub pred: i64,
    pub diagram: Diagram,
}

#[derive(Debug, Clone)]
pub struct DiagramSet {
    pub dir: PathBuf,
    pub samples: Vec<SampleDiagram>,
    pub variants: Vec<String>,
    pub scopes: Vec<String>,
}

impl DiagramSet {
    pub fn load(dir: &Path) -> anyhow::Result<DiagramSet> {
        anyhow::bail!("stub: {}", dir.display())
    }
    pub fn check_scope(&self, _scope: &str) -> anyhow::Result<()> {
        Ok(())
    }
    pub fn check_variant(&self, _variant: &str) -> anyhow::Result<()> {
        Ok(())
    }
    pub fn find(&self, shard: &str, index: u32, variant: &str, scope: &str) -> Option<&SampleDiagram> {
        self.samples.iter().find(|s| s.shard == shard && s.index == index && s.variant == variant && s.scope == scope)
    }
}
