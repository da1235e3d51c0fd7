//! The `[[attacks]]` of a config: the keys each kind takes as written (`AttackKeys`, one struct per
//! kind), and the checked attacks with every default filled in (`Attack`, `AttackKind`).
//! docs/configuration.md describes every kind and key for users.

use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Serialize, Serializer};

use crate::tagged::{tagged_settings, Kind, Tagged};

/// Keys of `fgsm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FgsmKeys {
    eps: Option<f32>,
}

/// Keys of `pgd`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PgdKeys {
    eps: Option<f32>,
    /// "linf" or "l2", checked when the attack is resolved (its message lists both).
    norm: Option<String>,
    steps: Option<usize>,
    step_size: Option<f32>,
    random_start: Option<bool>,
}

/// Keys of `cw_l2`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CwL2Keys {
    confidence: Option<f32>,
    steps: Option<usize>,
    lr: Option<f32>,
    binary_search_steps: Option<usize>,
    initial_const: Option<f32>,
}

/// Keys of `deepfool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeepfoolKeys {
    steps: Option<usize>,
    overshoot: Option<f32>,
}

/// Keys of `gaussian_noise` and `gaussian_blur`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SigmaKeys {
    sigma: Option<f32>,
}

/// Keys of `matched_noise`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MatchedNoiseKeys {
    /// The name of an earlier attack.
    of: Option<String>,
}

tagged_settings! {
    /// The kind of one `[[attacks]]` table with the keys written for it: one variant per kind,
    /// the struct listing the keys that kind takes.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) enum AttackKeys tag "kind" {
        "fgsm" => Fgsm(FgsmKeys),
        "pgd" => Pgd(PgdKeys),
        "cw_l2" => CwL2(CwL2Keys),
        "deepfool" => Deepfool(DeepfoolKeys),
        "gaussian_noise" => GaussianNoise(SigmaKeys),
        "gaussian_blur" => GaussianBlur(SigmaKeys),
        "matched_noise" => MatchedNoise(MatchedNoiseKeys),
    }
}

/// One `[[attacks]]` table as written: its name, if set, and its kind with its keys.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttackTable {
    pub(crate) name: Option<String>,
    pub(crate) keys: AttackKeys,
}

/// Written into the manifest (and so into the run identity) as `name`, `kind` and then every key
/// any kind takes, null where unset: the form manifests have always had, so that a rerun of an
/// older run keeps its identity. Values keep their types (an f32 stays an f32).
impl Serialize for AttackTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let written = figment::value::Value::serialize(&self.keys).map_err(S::Error::custom)?;
        let written = written.into_dict().unwrap_or_default();
        let keys = AttackKeys::all_keys();
        let mut map = serializer.serialize_map(Some(2 + keys.len()))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry(AttackKeys::TAG, self.keys.name())?;
        for key in keys {
            map.serialize_entry(key, &written.get(key))?;
        }
        map.end()
    }
}

/// An `[[attacks]]` table as the config reader found it: typed when its kind is known (keys whose
/// values have the wrong type left out, and reported by the reader), with the problems of its
/// keys (an unknown kind, keys the kind does not take).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadAttack {
    pub(crate) table: Option<AttackTable>,
    pub(crate) problems: Vec<String>,
}

/// How messages name an attack table.
fn at(index: usize, kind: &str) -> String {
    format!("attacks[{index}] (kind = \"{kind}\")")
}

/// The kind an `[[attacks]]` table at `index` names (`""` when it names none), and a problem for
/// each of the `written` keys that another kind takes but this one does not. Keys no kind takes
/// are not named here: the config reports them as unknown keys.
pub(crate) fn attack_kind(
    index: usize,
    kind: &str,
    written: &[&str],
) -> (Option<Kind>, Vec<String>) {
    let at = at(index, kind);
    let Some(found) = AttackKeys::kind(kind) else {
        let names = AttackKeys::names();
        return (
            None,
            vec![format!("{at}: unknown kind; use one of {names}")],
        );
    };
    let problems = AttackKeys::all_keys()
        .into_iter()
        .filter(|key| written.contains(key) && !found.keys.contains(key))
        .map(|key| {
            let takes = found.keys.join(", ");
            format!("{at}: key `{key}` does not apply to {kind}; it takes {takes}")
        })
        .collect();
    (Some(found), problems)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    Linf,
    L2,
}

impl Norm {
    fn name(self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }
}

/// A checked attack.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttackKind {
    Fgsm {
        eps: f32,
    },
    Pgd {
        eps: f32,
        norm: Norm,
        steps: usize,
        step_size: f32,
        random_start: bool,
    },
    CwL2 {
        confidence: f32,
        steps: usize,
        lr: f32,
        binary_search_steps: usize,
        initial_const: f32,
    },
    Deepfool {
        steps: usize,
        overshoot: f32,
    },
    GaussianNoise {
        sigma: f32,
    },
    GaussianBlur {
        sigma: f32,
    },
    /// Gaussian noise rescaled per sample to the L2 size of attack number `of`'s perturbation.
    MatchedNoise {
        of: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attack {
    /// The `variant` value in the output tables.
    pub name: String,
    #[serde(flatten)]
    pub kind: AttackKind,
}

/// Checks the attacks as read; every problem is returned, each naming the attack and key.
pub(crate) fn resolve_attacks(read: &[ReadAttack]) -> Result<Vec<Attack>, Vec<String>> {
    let mut problems = Vec::new();
    // One entry per table, None where it has a problem, so that `of` finds earlier ones by position.
    let mut attacks: Vec<Option<Attack>> = Vec::new();
    for (i, read) in read.iter().enumerate() {
        problems.extend(read.problems.iter().cloned());
        let Some(table) = &read.table else {
            attacks.push(None);
            continue;
        };
        let mut check = Check {
            at: at(i, table.keys.name()),
            problems: Vec::new(),
        };
        let (kind, default_name) = table.keys.resolve(&attacks, &mut check);
        let name = table.name.clone().unwrap_or(default_name);
        let taken = name == "clean" || attacks.iter().flatten().any(|a| a.name == name);
        if taken {
            check.push(format!(
                "name \"{name}\" is taken (\"clean\" is reserved); set a distinct `name`"
            ));
        }
        let ok = read.problems.is_empty() && check.problems.is_empty();
        problems.extend(check.problems);
        attacks.push(ok.then_some(Attack { name, kind }));
    }
    if problems.is_empty() {
        Ok(attacks.into_iter().flatten().collect())
    } else {
        Err(problems)
    }
}

/// The problems of one attack table, each prefixed with where the table is.
struct Check {
    at: String,
    problems: Vec<String>,
}

impl Check {
    fn push(&mut self, problem: String) {
        self.problems.push(format!("{}: {problem}", self.at));
    }

    /// A required positive size; 0 stands in for a missing or bad one (reported).
    fn positive(&mut self, value: Option<f32>, key: &str) -> f32 {
        match value {
            Some(v) if v.is_finite() && v > 0.0 => v,
            Some(v) => {
                self.push(format!("`{key}` = {v} must be positive"));
                0.0
            }
            None => {
                self.push(format!("`{key}` is required"));
                0.0
            }
        }
    }
}

impl AttackKeys {
    /// The attack with every default filled in, and its default name (`variant` value).
    fn resolve(&self, earlier: &[Option<Attack>], check: &mut Check) -> (AttackKind, String) {
        match self {
            AttackKeys::Fgsm(k) => {
                let eps = check.positive(k.eps, "eps");
                (AttackKind::Fgsm { eps }, format!("fgsm-{eps}"))
            }
            AttackKeys::Pgd(k) => pgd(k, check),
            AttackKeys::CwL2(k) => (
                AttackKind::CwL2 {
                    confidence: k.confidence.unwrap_or(0.0),
                    steps: k.steps.unwrap_or(100).max(1),
                    lr: k.lr.unwrap_or(0.01),
                    binary_search_steps: k.binary_search_steps.unwrap_or(5).max(1),
                    initial_const: k.initial_const.unwrap_or(0.1),
                },
                "cw_l2".to_string(),
            ),
            AttackKeys::Deepfool(k) => (
                AttackKind::Deepfool {
                    steps: k.steps.unwrap_or(50).max(1),
                    overshoot: k.overshoot.unwrap_or(0.02),
                },
                "deepfool".to_string(),
            ),
            AttackKeys::GaussianNoise(k) => {
                let sigma = check.positive(k.sigma, "sigma");
                (
                    AttackKind::GaussianNoise { sigma },
                    format!("gaussian_noise-{sigma}"),
                )
            }
            AttackKeys::GaussianBlur(k) => {
                let sigma = check.positive(k.sigma, "sigma");
                (
                    AttackKind::GaussianBlur { sigma },
                    format!("gaussian_blur-{sigma}"),
                )
            }
            AttackKeys::MatchedNoise(k) => matched_noise(k, earlier, check),
        }
    }
}

fn pgd(k: &PgdKeys, check: &mut Check) -> (AttackKind, String) {
    let eps = check.positive(k.eps, "eps");
    let norm = match k.norm.as_deref().unwrap_or("linf") {
        "linf" => Norm::Linf,
        "l2" => Norm::L2,
        other => {
            check.push(format!("`norm` = \"{other}\"; use \"linf\" or \"l2\""));
            Norm::Linf
        }
    };
    let steps = k.steps.unwrap_or(40).max(1);
    let kind = AttackKind::Pgd {
        eps,
        norm,
        steps,
        step_size: k.step_size.unwrap_or(2.5 * eps / steps as f32),
        random_start: k.random_start.unwrap_or(true),
    };
    (kind, format!("pgd-{}-{eps}", norm.name()))
}

/// `of` must name an earlier attack that is not itself matched noise.
fn matched_noise(
    k: &MatchedNoiseKeys,
    earlier: &[Option<Attack>],
    check: &mut Check,
) -> (AttackKind, String) {
    let of = k.of.clone().unwrap_or_default();
    let found = earlier
        .iter()
        .position(|a| a.as_ref().is_some_and(|a| a.name == of));
    match found {
        Some(j)
            if !matches!(
                earlier[j],
                Some(Attack {
                    kind: AttackKind::MatchedNoise { .. },
                    ..
                })
            ) =>
        {
            (
                AttackKind::MatchedNoise { of: j },
                format!("matched_noise-{of}"),
            )
        }
        _ => {
            let names: Vec<&str> = earlier.iter().flatten().map(|a| a.name.as_str()).collect();
            check.push(format!(
                "`of` = \"{of}\" must name an attack listed before it (not another matched_noise); names so far: {}",
                names.join(", ")
            ));
            (AttackKind::MatchedNoise { of: 0 }, String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table at `index` as the config reader would give it: `also` lists written keys besides
    /// those in `keys`.
    fn read(index: usize, kind: &str, also: &[&str], keys: AttackKeys, name: &str) -> ReadAttack {
        let (found, problems) = attack_kind(index, kind, also);
        let name = (!name.is_empty()).then(|| name.to_string());
        ReadAttack {
            table: found.map(|_| AttackTable { name, keys }),
            problems,
        }
    }

    fn fgsm(eps: Option<f32>) -> AttackKeys {
        AttackKeys::Fgsm(FgsmKeys { eps })
    }

    #[test]
    fn names_and_defaults() {
        let pgd = PgdKeys {
            eps: Some(0.5),
            norm: Some("l2".into()),
            ..Default::default()
        };
        let of = |of: &str| {
            AttackKeys::MatchedNoise(MatchedNoiseKeys {
                of: Some(of.into()),
            })
        };
        let attacks = resolve_attacks(&[
            read(0, "fgsm", &[], fgsm(Some(0.1)), ""),
            read(1, "pgd", &[], AttackKeys::Pgd(pgd), ""),
            read(2, "matched_noise", &[], of("fgsm-0.1"), ""),
        ])
        .unwrap();
        let names: Vec<_> = attacks.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["fgsm-0.1", "pgd-l2-0.5", "matched_noise-fgsm-0.1"]);
        assert_eq!(attacks[2].kind, AttackKind::MatchedNoise { of: 0 });
        match attacks[1].kind {
            AttackKind::Pgd {
                steps,
                step_size,
                random_start,
                ..
            } => {
                assert_eq!((steps, random_start), (40, true));
                assert!((step_size - 2.5 * 0.5 / 40.0).abs() < 1e-7);
            }
            _ => panic!(),
        }
    }

    #[test]
    fn every_problem_is_named_with_its_table() {
        let of = |of: &str| {
            AttackKeys::MatchedNoise(MatchedNoiseKeys {
                of: Some(of.into()),
            })
        };
        let sigma = |s| SigmaKeys { sigma: Some(s) };
        let problems = resolve_attacks(&[
            read(0, "fgsm", &[], fgsm(None), ""),
            read(
                1,
                "gaussian_blur",
                &["eps"],
                AttackKeys::GaussianBlur(sigma(1.0)),
                "",
            ),
            read(2, "sparkle", &[], fgsm(None), ""),
            read(3, "matched_noise", &[], of("nothing"), ""),
            read(
                4,
                "gaussian_noise",
                &[],
                AttackKeys::GaussianNoise(sigma(0.1)),
                "clean",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "attacks[0] (kind = \"fgsm\"): `eps` is required",
                "attacks[1] (kind = \"gaussian_blur\"): key `eps` does not apply to gaussian_blur; it takes sigma",
                "attacks[2] (kind = \"sparkle\"): unknown kind; use one of fgsm, pgd, cw_l2, deepfool, gaussian_noise, gaussian_blur, matched_noise",
                "attacks[3] (kind = \"matched_noise\"): `of` = \"nothing\" must name an attack listed before it (not another matched_noise); names so far: ",
                "attacks[4] (kind = \"gaussian_noise\"): name \"clean\" is taken (\"clean\" is reserved); set a distinct `name`",
            ]
        );
    }

    /// Manifests (and run identities) record each table with every key of every kind, in this
    /// order, null where unset, and f32 values as written.
    #[test]
    fn tables_are_recorded_in_the_manifest_form() {
        let table = AttackTable {
            name: None,
            keys: AttackKeys::CwL2(CwL2Keys {
                confidence: Some(0.1),
                steps: Some(20),
                ..Default::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&table).unwrap(),
            "{\"name\":null,\"kind\":\"cw_l2\",\"eps\":null,\"norm\":null,\"steps\":20,\
             \"step_size\":null,\"random_start\":null,\"confidence\":0.1,\"lr\":null,\
             \"binary_search_steps\":null,\"initial_const\":null,\"overshoot\":null,\
             \"sigma\":null,\"of\":null}"
        );
        let value = serde_json::to_value(&table).unwrap();
        assert_eq!(value["confidence"], serde_json::json!(0.1f32));
    }

    /// docs/configuration.md names every attack kind and, in its row, every key it takes.
    #[test]
    fn the_docs_list_every_kind_and_its_keys() {
        let docs = include_str!("../../docs/configuration.md");
        for kind in AttackKeys::kinds() {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", kind.name)))
                .unwrap_or_else(|| panic!("docs/configuration.md has no row for `{}`", kind.name));
            for key in kind.keys {
                assert!(
                    row.contains(&format!("`{key}`")),
                    "docs/configuration.md: the row of `{}` does not name key `{key}`",
                    kind.name
                );
            }
        }
    }
}
