//! STAND-IN until the lead's `diagram_set` lands on main (replaced by theirs at the merge).

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{read_predictions, read_table, Columns};

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

#[derive(Debug, Clone)]
pub struct SampleDiagram {
    pub shard: String,
    pub index: u32,
    pub variant: String,
    pub scope: String,
    pub label: Option<i64>,
    pub pred: i64,
    pub diagram: Diagram,
}

pub struct DiagramSet {
    pub dir: PathBuf,
    pub samples: Vec<SampleDiagram>,
    pub variants: Vec<String>,
    pub scopes: Vec<String>,
}

impl DiagramSet {
    pub fn load(dir: &Path) -> anyhow::Result<DiagramSet> {
        let predictions = read_predictions(dir)?;
        let mut samples: Vec<SampleDiagram> = Vec::new();
        let (mut variants, mut scopes): (Vec<String>, Vec<String>) = (vec![], vec![]);
        for b in read_table(dir, "diagrams")? {
            let c = Columns::new(&b, "diagrams");
            let (shard, index, variant, scope) = (
                c.str("shard")?,
                c.u32("index")?,
                c.str("variant")?,
                c.str("scope")?,
            );
            let (dim, birth, death) = (c.u8("dim")?, c.opt_f32("birth")?, c.opt_f32("death")?);
            for i in 0..b.num_rows() {
                if dim[i] != 0 {
                    continue;
                }
                let same = samples.last().is_some_and(|s| {
                    s.shard == shard[i]
                        && s.index == index[i]
                        && s.variant == variant[i]
                        && s.scope == scope[i]
                });
                if !same {
                    let p = predictions
                        .get(&(shard[i].to_string(), index[i], variant[i].to_string()))
                        .copied();
                    let Some(p) = p else { bail!("no summary row") };
                    samples.push(SampleDiagram {
                        shard: shard[i].to_string(),
                        index: index[i],
                        variant: variant[i].to_string(),
                        scope: scope[i].to_string(),
                        label: p.label,
                        pred: p.pred,
                        diagram: Diagram::default(),
                    });
                    if !variants.iter().any(|v| v == variant[i]) {
                        variants.push(variant[i].to_string());
                    }
                    if !scopes.iter().any(|v| v == scope[i]) {
                        scopes.push(scope[i].to_string());
                    }
                }
                let d = &mut samples.last_mut().expect("pushed").diagram;
                let b = f64::from(birth[i].unwrap_or(0.0));
                match death[i] {
                    Some(x) => d.pairs.push(Pair {
                        birth: b,
                        death: f64::from(x),
                    }),
                    None => d.essential.push(b),
                }
            }
        }
        if samples.is_empty() {
            bail!("{}: empty run", dir.display());
        }
        Ok(DiagramSet {
            dir: dir.to_path_buf(),
            samples,
            variants,
            scopes,
        })
    }

    pub fn check_scope(&self, scope: &str) -> anyhow::Result<()> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            bail!("no scope {scope}: {:?}; graph.scopes", self.scopes)
        }
    }
}
