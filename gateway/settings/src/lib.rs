//! Reading settings from the environment: figment fills each crate's settings struct from the
//! variables it owns, and the [`Secret`] type keeps keys and tokens out of every log line.
//!
//! Each crate of the gateway owns its settings (Heleket's, Fragment's, the bot's, the HTTP
//! server's) as a serde struct whose fields are its variables, and reads it with
//! [`Env::extract`]; the `starledger` binary only gathers them. figment does the generic part
//! (presence, defaults, numbers, which variable a bad value belongs to); what is left in the
//! crates is the domain's judgement (URLs, modes that must not mix, key formats, ranges). A
//! missing or malformed value is a [`ConfigError`] that names the variable; the binary turns
//! it into exit code 2.
//!
//! Depends on nothing else in the workspace.

pub mod secret;
mod values;

use std::collections::BTreeMap;

use figment::error::{Actual, Kind};
use figment::providers::Serialized;
use figment::value::Value;
use figment::Figment;
use serde::de::DeserializeOwned;

pub use secret::Secret;
pub use values::{variables_of, within, Entries, Flag};

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

pub fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// Where variables come from: a function from a name to its value, so tests hand in a map
/// and never touch the process environment ([`process_env`] is the real one).
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// A variable's value; empty or whitespace-only counts as unset (an `API_KEY=` line in
    /// an env file means "not set", not "the empty key").
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    /// A figment holding exactly `variables` (those that are set), each as the text it was
    /// given: nothing outside the list is read, so a crate sees only what it owns.
    pub fn figment(&self, variables: &[&'static str]) -> Figment {
        let set: BTreeMap<&str, Value> = variables
            .iter()
            .filter_map(|name| Some((*name, Value::from(self.get(name)?))))
            .collect();
        Figment::from(Serialized::defaults(set))
    }

    /// The settings struct `T`, its fields named (`SCREAMING_SNAKE_CASE`) after the
    /// variables it owns. Lossy extraction reads a number from a variable's text; every
    /// other field sees the text as given.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let variables = variables_of::<T>();
        self.figment(variables)
            .extract_lossy()
            .map_err(|error| config_error(error, variables))
    }
}

/// The process environment, asked for one variable at a time by its exact name. The text
/// goes to figment as it is (see [`Env::figment`]): figment's own environment provider would
/// unquote `"…"`, read `[…]` as a list and turn digits into numbers, which would change (or,
/// in an error, print) a secret. A value that is not UTF-8 counts as unset.
pub fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env(|name: &str| std::env::var(name).ok())
}

/// figment's error, said as `VARIABLE: problem`. A secret's field cannot fail (see
/// [`Secret`]), so the values quoted here are only ever numbers' and flags' texts.
fn config_error(error: figment::Error, variables: &[&'static str]) -> ConfigError {
    let named = |key: &str| variables.iter().copied().find(|variable| *variable == key);
    let variable = match &error.kind {
        Kind::MissingField(field) => named(field),
        _ => error.path.iter().find_map(|key| named(key)),
    }
    // Every field is a variable; a path outside them would be a bug in a settings struct.
    .unwrap_or("settings");
    let problem = match &error.kind {
        Kind::InvalidType(actual, expected) if is_integer(expected) => {
            format!("{} is not a whole number", shown(actual))
        }
        Kind::InvalidValue(actual, expected) if is_integer(expected) => {
            format!(
                "{} is not a whole number from 0 to {}",
                shown(actual),
                integer_max(expected)
            )
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("{} is not {expected}", shown(actual))
        }
        Kind::MissingField(_) => "is required".to_owned(),
        Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    ConfigError { variable, problem }
}

fn is_integer(expected: &str) -> bool {
    integer_max(expected) != 0
}

/// The largest value of the unsigned integer type serde names (0 for any other type).
fn integer_max(expected: &str) -> u128 {
    match expected {
        "u8" => u8::MAX.into(),
        "u16" => u16::MAX.into(),
        "u32" => u32::MAX.into(),
        "u64" => u64::MAX.into(),
        "usize" => usize::MAX as u128,
        _ => 0,
    }
}

/// A value as the operator typed it: text quoted, numbers bare.
fn shown(actual: &Actual) -> String {
    match actual {
        Actual::Str(text) => format!("{text:?}"),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
    struct Sample {
        sample_port: u16,
        sample_seconds: u64,
        sample_flag: Flag,
        sample_list: Entries,
        sample_text: Option<String>,
        sample_key: Option<Secret>,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                sample_port: 8001,
                sample_seconds: 30,
                sample_flag: Flag(false),
                sample_list: Entries::default(),
                sample_text: None,
                sample_key: None,
            }
        }
    }

    fn sample(vars: &[(&str, &str)]) -> Result<Sample, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env(move |name| vars.get(name).cloned()).extract()
    }

    #[test]
    fn the_variables_are_the_fields() {
        assert_eq!(
            variables_of::<Sample>(),
            [
                "SAMPLE_PORT",
                "SAMPLE_SECONDS",
                "SAMPLE_FLAG",
                "SAMPLE_LIST",
                "SAMPLE_TEXT",
                "SAMPLE_KEY"
            ]
        );
    }

    #[test]
    fn unset_empty_and_blank_values_take_the_default() {
        for vars in [
            vec![],
            vec![("SAMPLE_PORT", ""), ("SAMPLE_TEXT", "   ")],
            vec![("SAMPLE_FLAG", " "), ("SAMPLE_KEY", "\t")],
        ] {
            let read = sample(&vars).unwrap();
            assert_eq!(read.sample_port, 8001);
            assert_eq!(read.sample_seconds, 30);
            assert_eq!(read.sample_flag, Flag(false));
            assert!(read.sample_list.0.is_empty());
            assert_eq!(read.sample_text, None);
            assert!(read.sample_key.is_none());
        }
    }

    #[test]
    fn values_are_read_as_their_types() {
        let read = sample(&[
            ("SAMPLE_PORT", " 9000 "),
            ("SAMPLE_SECONDS", "5"),
            ("SAMPLE_FLAG", " Yes "),
            ("SAMPLE_LIST", " a, ,b ,"),
            ("SAMPLE_TEXT", " kept as given "),
            ("SAMPLE_KEY", "12345678901234567890"),
        ])
        .unwrap();
        assert_eq!(read.sample_port, 9000);
        assert_eq!(
            Duration::from_secs(read.sample_seconds),
            Duration::from_secs(5)
        );
        assert_eq!(read.sample_flag, Flag(true));
        assert_eq!(read.sample_list.0, ["a", "b"]);
        assert_eq!(read.sample_text.as_deref(), Some(" kept as given "));
        assert_eq!(
            read.sample_key
                .map(|key| key.expose().to_owned())
                .as_deref(),
            Some("12345678901234567890")
        );
    }

    #[test]
    fn a_malformed_number_names_its_variable() {
        for (value, said) in [
            ("5s", "\"5s\" is not a whole number"),
            ("70000", "70000 is not a whole number from 0 to 65535"),
            ("-1", "-1 is not a whole number from 0 to 65535"),
            ("1.5", "1.5 is not a whole number"),
        ] {
            let error = sample(&[("SAMPLE_PORT", value)]).unwrap_err();
            assert_eq!(error.variable, "SAMPLE_PORT", "{value}");
            assert_eq!(error.to_string(), format!("SAMPLE_PORT: {said}"));
        }
    }

    #[test]
    fn a_flag_is_true_or_false_as_before() {
        for (text, value) in [("true", true), ("1", true), ("NO", false), ("0", false)] {
            let read = sample(&[("SAMPLE_FLAG", text)]).unwrap();
            assert_eq!(read.sample_flag, Flag(value), "{text}");
        }
        // figment's own lossy reading would take `on`; the gateway never did.
        for text in ["maybe", "on", "off"] {
            let error = sample(&[("SAMPLE_FLAG", text)]).unwrap_err();
            assert_eq!(error.variable, "SAMPLE_FLAG");
            assert!(error.problem.contains("is not true or false"), "{error}");
        }
    }

    #[test]
    fn a_secret_never_appears_in_an_error_even_when_read_as_a_number() {
        // A provider that reads numbers (figment's own `Env` would) must not make a secret
        // of digits fail with the digits in the message.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Keyed {
            key: Secret,
        }
        let numeric = Figment::from(Serialized::defaults(BTreeMap::from([(
            "key",
            Value::from(9_876_543_210_u64),
        )])));
        let error = numeric.extract::<Keyed>().unwrap_err();
        assert!(!error.to_string().contains("9876543210"), "{error}");
    }

    #[test]
    fn the_process_environment_is_read_by_exact_name() {
        // PATH is set wherever tests run; its lower-case spelling is another variable.
        let env = process_env();
        assert_eq!(env.get("PATH"), std::env::var("PATH").ok());
        assert_eq!(env.get("path"), std::env::var("path").ok());
    }
}
