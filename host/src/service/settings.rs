//! Connection settings checked against the plugin's settings schema: unknown
//! names refused, required ones present, values of the declared type,
//! defaults filled in.

use std::collections::BTreeMap;

use crate::egress::Origin;
use crate::manifest::{Manifest, SettingKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("plugin `{plugin}` has no setting `{name}`; its settings are: {known}")]
    Unknown {
        plugin: String,
        name: String,
        known: String,
    },
    #[error("setting `{name}` is required by plugin `{plugin}`")]
    Missing { plugin: String, name: String },
    #[error("setting `{name}` = {value:?} is not {expected}")]
    Invalid {
        name: String,
        value: String,
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
        }
        out.insert(spec.name.clone(), value);
    }
    Ok(out)
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
