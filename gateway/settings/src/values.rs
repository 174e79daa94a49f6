//! The shapes environment variables take that serde has no word for: a comma-separated list,
//! a yes/no flag as operators have always written it, a range, and a struct's variable names.

use std::fmt;
use std::ops::RangeInclusive;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::{problem, ConfigError};

/// `true`/`false` (also `1`/`0`, `yes`/`no`), any case, spaces around ignored. figment's own
/// lossy reading would also take `on`/`off` and refuse spaces; a flag accepts what it always
/// accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Words;
        impl Visitor<'_> for Words {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Flag, E> {
                Ok(Flag(value))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Flag, E> {
                match text.trim().to_lowercase().as_str() {
                    "true" | "1" | "yes" => Ok(Flag(true)),
                    "false" | "0" | "no" => Ok(Flag(false)),
                    other => Err(E::custom(format!("{other:?} is not true or false"))),
                }
            }
        }
        // As text, not as a bool: a lossy figment would read `on` as true before we see it.
        deserializer.deserialize_str(Words)
    }
}

/// The entries of a comma-separated setting, trimmed, empty ones left out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entries(pub Vec<String>);

impl fmt::Debug for Entries {
    /// Entries can be URLs with a password (`REDIS_CLUSTER_NODES`): counted, not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Entries(<{} entries>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl Visitor<'_> for List {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comma-separated list")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Entries, E> {
                Ok(Entries(
                    text.split(',')
                        .map(str::trim)
                        .filter(|entry| !entry.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ))
            }
        }
        deserializer.deserialize_str(List)
    }
}

/// `value` if within `range`: the part of a number's check serde cannot express.
pub fn within<T>(
    variable: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display + Copy,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(problem(
            variable,
            format!(
                "{value} is not a number from {} to {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// The variables a settings struct owns: the field names serde's derive hands to
/// `deserialize_struct` (after `rename_all`). Read from the struct itself, so the list of
/// variables asked for can never drift from the fields that are filled.
pub fn variables_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // Always an error: the deserializer stops as soon as it has the names.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("only the field names are read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}
