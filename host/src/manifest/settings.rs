//! Connection settings checked against the plugin's settings schema: unknown
//! names refused, required ones present, values of the declared type,
//! defaults filled in.

use std::collections::BTreeMap;

use super::{Manifest, SettingKind, SettingSpec};
use crate::net::Origin;

/// Why a connection's settings do not fit the plugin's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A setting the manifest does not declare was given.
    #[error("plugin `{plugin}` has no setting `{name}`; its settings are: {known}")]
    Unknown {
        /// The plugin's id.
        plugin: String,
        /// The undeclared name.
        name: String,
        /// The declared names, comma-separated (`(none)` when there are
        /// none).
        known: String,
    },
    /// A required setting has neither a value nor a default.
    #[error("setting `{name}` is required by plugin `{plugin}`")]
    Missing {
        /// The plugin's id.
        plugin: String,
        /// The missing setting.
        name: String,
    },
    /// A value (given or the default) is not of the setting's type.
    #[error("setting `{name}` = {value:?} is not {expected}")]
    Invalid {
        /// The setting.
        name: String,
        /// The offending value.
        value: String,
        /// What was expected (`an integer`, `one of cloud, server`, ...).
        expected: String,
    },
}

/// Validate `given` against the manifest's schema and return the settings
/// with defaults applied.
pub fn validate(
    manifest: &Manifest,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, SettingsError> {
    let known: Vec<&str> = manifest.settings.iter().map(|s| s.name.as_str()).collect();
    for name in given.keys() {
        if !known.contains(&name.as_str()) {
            return Err(SettingsError::Unknown {
                plugin: manifest.id.clone(),
                name: name.clone(),
                known: if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    let mut out = BTreeMap::new();
    for spec in &manifest.settings {
        let value = match given.get(&spec.name).or(spec.default.as_ref()) {
            Some(v) => v.clone(),
            None if spec.required => {
                return Err(SettingsError::Missing {
                    plugin: manifest.id.clone(),
                    name: spec.name.clone(),
                });
            }
            None => continue,
        };
        let invalid = |expected: String| SettingsError::Invalid {
            name: spec.name.clone(),
            value: value.clone(),
            expected,
        };
        match spec.kind {
            SettingKind::String => {}
            SettingKind::Url => {
                Origin::parse(&value).map_err(|e| invalid(format!("an http(s) URL ({e})")))?;
            }
            SettingKind::Integer => {
                value
                    .parse::<i64>()
                    .map_err(|_| invalid("an integer".into()))?;
            }
            SettingKind::Boolean => {
                if value != "true" && value != "false" {
                    return Err(invalid("`true` or `false`".into()));
                }
            }
            SettingKind::Enum => {
                if !spec.values.contains(&value) {
                    return Err(invalid(format!("one of {}", spec.values.join(", "))));
                }
            }
            SettingKind::JsonPointers => {
                check_json_pointers(spec, &value).map_err(invalid)?;
            }
        }
        out.insert(spec.name.clone(), value);
    }
    Ok(out)
}

/// Check a `json-pointers` value: a JSON object whose entries are among
/// the setting's `values`, with every `required-keys` entry, each a JSON
/// pointer (RFC 6901: empty is the whole document and is refused, otherwise
/// `/`-separated tokens where `~` only escapes as `~0` or `~1`), and no
/// pointer equal to or inside another (they address one document).
pub fn check_json_pointers(spec: &SettingSpec, value: &str) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_str(value).map_err(|e| format!("a JSON object of JSON pointers ({e})"))?;
    let Some(object) = doc.as_object() else {
        return Err("a JSON object of entry names to JSON pointers".into());
    };
    let mut pointers: Vec<(&str, Vec<&str>)> = Vec::new();
    for (key, pointer) in object {
        if !spec.values.contains(key) {
            return Err(format!(
                "a mapping with known entries: `{key}` is not one of {}",
                spec.values.join(", ")
            ));
        }
        let Some(pointer) = pointer.as_str() else {
            return Err(format!(
                "a mapping whose entry `{key}` is a JSON pointer string"
            ));
        };
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(format!(
                "a mapping of JSON pointers: `{key}` = {pointer:?} must start with `/`"
            ));
        };
        let tokens: Vec<&str> = rest.split('/').collect();
        for token in &tokens {
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err(format!(
                        "a mapping of JSON pointers: in `{key}` = {pointer:?}, `~` must be \
                         followed by 0 or 1"
                    ));
                }
            }
        }
        pointers.push((key.as_str(), tokens));
    }
    if let Some(missing) = spec.required_keys.iter().find(|k| !object.contains_key(*k)) {
        return Err(format!("a mapping with the required entry `{missing}`"));
    }
    for (a, pa) in &pointers {
        for (b, pb) in &pointers {
            if a != b && pb.len() >= pa.len() && pb.starts_with(pa) {
                return Err(format!(
                    "a mapping whose pointers do not overlap: `{a}` and `{b}` address the same place"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
id = "t"
name = "T"
version = "1.0.0"
api-version = "0.1"
category = "tickets"
[[settings]]
name = "base-url"
type = "url"
required = true
[[settings]]
name = "limit"
type = "integer"
default = "10"
[[settings]]
name = "mode"
type = "enum"
values = ["cloud", "server"]
"#,
        )
        .unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn applies_defaults_and_accepts_valid_values() {
        let out = validate(
            &manifest(),
            &map(&[("base-url", "https://x.example"), ("mode", "cloud")]),
        )
        .unwrap();
        assert_eq!(out["limit"], "10");
        assert_eq!(out["mode"], "cloud");
    }

    #[test]
    fn json_pointer_mappings_are_checked() {
        let m = Manifest::parse(
            r#"
id = "t"
name = "T"
version = "1.0.0"
api-version = "0.1"
category = "ai-provider"
[[settings]]
name = "map"
type = "json-pointers"
values = ["prompt", "system", "model"]
required-keys = ["prompt"]
"#,
        )
        .unwrap();
        let check = |v: &str| validate(&m, &map(&[("map", v)]));
        check(r#"{"prompt": "/input/text", "system": "/input/sys", "model": "/a~1b~0"}"#).unwrap();
        for (value, needle) in [
            ("not json", "JSON object"),
            ("[]", "JSON object"),
            (r#"{"system": "/s"}"#, "required entry `prompt`"),
            (
                r#"{"prompt": "/p", "colour": "/c"}"#,
                "`colour` is not one of",
            ),
            (r#"{"prompt": 1}"#, "pointer string"),
            (r#"{"prompt": "p"}"#, "must start with `/`"),
            (r#"{"prompt": ""}"#, "must start with `/`"),
            (r#"{"prompt": "/a~2"}"#, "`~` must be"),
            (r#"{"prompt": "/p", "system": "/p"}"#, "overlap"),
            (r#"{"prompt": "/p", "system": "/p/q"}"#, "overlap"),
        ] {
            let err = check(value).unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
        }
    }

    #[test]
    fn refuses_bad_settings_naming_the_problem() {
        let m = manifest();
        let err = validate(&m, &map(&[])).unwrap_err();
        assert!(err.to_string().contains("`base-url` is required"), "{err}");
        let err = validate(&m, &map(&[("base-url", "ftp://x")])).unwrap_err();
        assert!(err.to_string().contains("http(s) URL"), "{err}");
        let err = validate(&m, &map(&[("base-url", "https://x"), ("limit", "ten")])).unwrap_err();
        assert!(err.to_string().contains("integer"), "{err}");
        let err = validate(&m, &map(&[("base-url", "https://x"), ("mode", "moon")])).unwrap_err();
        assert!(err.to_string().contains("cloud, server"), "{err}");
        let err = validate(&m, &map(&[("base-url", "https://x"), ("colour", "red")])).unwrap_err();
        assert!(err.to_string().contains("base-url, limit, mode"), "{err}");
    }
}
