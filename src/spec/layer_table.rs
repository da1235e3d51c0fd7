//! Reading one `[[layers]]` table: its `name`, its `op`, and the keys that op takes, each checked
//! on its own so that every problem of the table is found, not only serde's first.

use figment::value::{Dict, Value};

use super::ops::OpKeys;
use crate::tagged::{plain_type_words, shown, Kind, Tagged};

/// One `[[layers]]` table as read: where it is (for messages), its name, and its op with the
/// keys written for it when they all fit.
pub(super) struct LayerTable {
    /// "layer 3 (conv, op = \"conv2d\")": how messages name the table.
    pub at: String,
    /// The `name` key, or the layer's position.
    pub name: String,
    /// The `inputs` key: names of the layers (or `input`) it reads; None when not written.
    pub inputs: Option<Vec<String>>,
    /// None when the table has a problem (listed in `problems`).
    pub op: Option<OpKeys>,
    pub problems: Vec<String>,
}

impl LayerTable {
    /// Reads the table at position `index`.
    pub fn read(index: usize, table: &Dict) -> LayerTable {
        let mut problems = Vec::new();
        let name = match table.get("name") {
            None => index.to_string(),
            Some(Value::String(_, name)) => name.clone(),
            Some(other) => {
                problems.push(format!("`name` = {}: expected a string", shown(other)));
                index.to_string()
            }
        };
        let inputs = match table.get("inputs") {
            None => None,
            Some(value) => {
                let names = string_list(value);
                if names.is_none() {
                    problems.push(format!(
                        "`inputs` = {}: expected a list of layer names, e.g. inputs = [\"conv1\", \"input\"]",
                        shown(value)
                    ));
                }
                names
            }
        };
        let at = match table.get(OpKeys::TAG) {
            Some(op) => format!("layer {index} ({name}, op = {})", shown(op)),
            None => format!("layer {index} ({name})"),
        };
        let op = match op_kind(table) {
            Ok(kind) => {
                problems.extend(key_problems(table, kind));
                Some(kind)
            }
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let op = match op {
            Some(kind) if problems.is_empty() => op_keys(table, kind, &mut problems),
            _ => None,
        };
        let problems = problems.into_iter().map(|p| format!("{at}: {p}")).collect();
        LayerTable {
            at,
            name,
            inputs,
            op,
            problems,
        }
    }
}

/// A non-empty list of strings.
fn string_list(value: &Value) -> Option<Vec<String>> {
    let Value::Array(_, items) = value else {
        return None;
    };
    let names: Option<Vec<String>> = items
        .iter()
        .map(|v| match v {
            Value::String(_, s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    names.filter(|n| !n.is_empty())
}

/// Keys every layer takes, whatever its op.
const COMMON_KEYS: [&str; 3] = ["name", "inputs", OpKeys::TAG];

/// The op the table names.
fn op_kind(table: &Dict) -> Result<Kind, String> {
    let ops = OpKeys::names();
    match table.get(OpKeys::TAG) {
        None => Err(format!("missing key `op`; set it to one of {ops}")),
        Some(Value::String(_, op)) => {
            OpKeys::kind(op).ok_or_else(|| format!("unknown op `{op}`; expected one of {ops}"))
        }
        Some(other) => Err(format!("`op` = {}: expected one of {ops}", shown(other))),
    }
}

/// Keys the op does not take, and keys whose values do not have the type the op wants.
fn key_problems(table: &Dict, kind: Kind) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in table {
        if COMMON_KEYS.contains(&key.as_str()) {
            continue;
        }
        if !kind.keys.contains(&key.as_str()) {
            let accepted = match kind.keys {
                [] => "none".to_string(),
                keys => keys.join(", "),
            };
            problems.push(format!(
                "key `{key}` does not apply to {}; remove it (accepted: {accepted})",
                kind.name
            ));
        } else if let Err(e) = deserialize(kind, [(key, value)]) {
            problems.push(format!(
                "`{key}` = {}: {}; fix: see docs/model-spec.md for the values {} takes",
                shown(value),
                e,
                kind.name
            ));
        }
    }
    problems
}

/// The op with its keys, from a table whose keys have each been checked.
fn op_keys(table: &Dict, kind: Kind, problems: &mut Vec<String>) -> Option<OpKeys> {
    let keys = table
        .iter()
        .filter(|(key, _)| !COMMON_KEYS.contains(&key.as_str()));
    deserialize(kind, keys).map_err(|e| problems.push(e)).ok()
}

fn deserialize<'a>(
    kind: Kind,
    keys: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Result<OpKeys, String> {
    let mut table: Dict = keys
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    table.insert(OpKeys::TAG.into(), kind.name.into());
    // The error's kind alone: its other parts name figment's own paths.
    Value::from(table)
        .deserialize()
        .map_err(|e| plain_type_words(&e.kind.to_string()))
}
