//! Settings tables tagged by a kind key: `op = "conv2d"` in a model spec's `[[layers]]`,
//! `kind = "pgd"` in a config's `[[attacks]]`.
//!
//! Each kind is declared once, with `tagged_settings!`: its name, and a struct whose fields are
//! the keys it takes (all `Option`, so that any subset deserializes). From that one declaration
//! come the kind's key list (in declaration order), the list of kinds for messages and docs, and
//! the serde enum. Readers check a written table against its kind's keys key by key before they
//! deserialize it, so that every problem of every table is reported at once.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// One kind of a tagged settings enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The value of the tag key (`"conv2d"`).
    pub name: &'static str,
    /// The keys this kind takes besides the tag and `name`, in declaration order.
    pub keys: &'static [&'static str],
}

/// A settings enum tagged by one key, each variant holding the struct of its kind's keys.
pub trait Tagged {
    /// The key naming the kind (`op`, `kind`).
    const TAG: &'static str;

    /// Every kind, in declaration order.
    fn kinds() -> Vec<Kind>;

    /// This value's kind name.
    fn name(&self) -> &'static str;

    /// The kind called `name`, if there is one.
    fn kind(name: &str) -> Option<Kind> {
        Self::kinds().into_iter().find(|k| k.name == name)
    }

    /// "a, b, c": every kind's name, for messages.
    fn names() -> String {
        let names: Vec<&str> = Self::kinds().iter().map(|k| k.name).collect();
        names.join(", ")
    }

    /// Every key any kind takes, each once, in order of first appearance.
    fn all_keys() -> Vec<&'static str> {
        let mut all: Vec<&'static str> = Vec::new();
        for key in Self::kinds().iter().flat_map(|k| k.keys) {
            if !all.contains(key) {
                all.push(key);
            }
        }
        all
    }
}

/// Declares a tagged settings enum and its `Tagged` impl from one list of
/// `"name" => Variant(KeysStruct)` lines. The attributes given (derives, docs) go on the enum;
/// the macro adds the serde tag and each variant's name.
macro_rules! tagged_settings {
    (
        $(#[$meta:meta])*
        $vis:vis enum $enum:ident tag $tag:literal {
            $( $(#[$vmeta:meta])* $name:literal => $variant:ident($keys:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[serde(tag = $tag)]
        $vis enum $enum {
            $( $(#[$vmeta])* #[serde(rename = $name)] $variant($keys), )+
        }

        impl $crate::tagged::Tagged for $enum {
            const TAG: &'static str = $tag;

            fn kinds() -> Vec<$crate::tagged::Kind> {
                vec![$( $crate::tagged::Kind {
                    name: $name,
                    keys: $crate::tagged::fields_of::<$keys>(),
                } ),+]
            }

            fn name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )+
                }
            }
        }
    };
}
pub(crate) use tagged_settings;

/// The field names serde reads for a struct, in declaration order: the derive hands them to
/// `deserialize_struct`, where this probe keeps them.
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut probe = FieldsProbe { fields: &[] };
    let _ = T::deserialize(&mut probe);
    probe.fields
}

struct FieldsProbe {
    fields: &'static [&'static str],
}

impl<'de> Deserializer<'de> for &mut FieldsProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct's fields are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.fields = fields;
        Err(de::Error::custom("fields probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A setting's value as written in TOML (near enough: JSON's syntax for strings, numbers and
/// arrays), for messages.
pub(crate) fn shown(value: &figment::value::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("{value:?}"))
}

/// A serde message in the words of a TOML file: serde names Rust types, users write numbers.
pub fn plain_type_words(message: &str) -> String {
    let mut why = message.to_string();
    for (rust, toml) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected f32", "expected a number"),
    ] {
        why = why.replace(rust, toml);
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        b: Option<u8>,
        a: Option<bool>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct NoKeys {}

    tagged_settings! {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Sample tag "what" {
            "two" => Two(Two),
            "none" => NoKeys(NoKeys),
            "again" => Again(Two),
        }
    }

    #[test]
    fn kinds_list_names_and_keys_in_declaration_order() {
        assert_eq!(fields_of::<Two>(), ["b", "a"]);
        assert_eq!(fields_of::<NoKeys>(), [] as [&str; 0]);
        assert_eq!(Sample::names(), "two, none, again");
        assert_eq!(Sample::all_keys(), ["b", "a"]);
        assert_eq!(Sample::kind("none").map(|k| k.keys.len()), Some(0));
        assert!(Sample::kind("three").is_none());
        let table: toml::Table = toml::from_str("what = \"again\"\nb = 3").unwrap();
        let parsed = Sample::deserialize(toml::Value::Table(table)).unwrap();
        assert_eq!(parsed.name(), "again");
    }
}
