//! Plugin manifests: the TOML document a plugin carries in the `airlock-manifest`
//! custom section of its `.wasm`, read without instantiating anything.
//!
//! Parsing is strict (unknown fields are refused) and happens once; everything
//! downstream works with the validated [`Manifest`]. Its egress entries carry
//! their parsed [`EgressRule`]s, so no later stage parses a URL again.
//!
//! [`settings`] checks a connection's settings against the manifest's
//! settings schema; [`embed`] writes a manifest into a component's bytes
//! (`plugin pack`).

pub mod embed;
pub mod settings;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::net::{EgressRule, RuleError, Scheme};

/// Name of the custom section the SDK's `export!` macro writes the manifest to.
pub const MANIFEST_SECTION: &str = "airlock-manifest";

/// The plugin API versions (`major.minor`) a manifest's `api-version` may
/// name: the series of [`crate::runtime::API_VERSION`], the WIT package the
/// host implements (a unit test holds the two together; the manifest does
/// not depend on the runtime for it).
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1"];

/// Largest manifest accepted: generous for a settings schema, small enough that
/// a hostile file cannot make the host parse megabytes of TOML.
const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// A plugin's validated self-description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Stable identifier connections and installs refer to: 1-64 characters
    /// of `a-z`, `0-9` and `-`, starting with a letter.
    pub id: String,
    /// Display name; must not be blank.
    pub name: String,
    /// The plugin's own semantic version (`1.2.3`, optionally with a
    /// pre-release or build suffix).
    pub version: String,
    /// The plugin API series it was built against (`major.minor`); must be
    /// one of [`SUPPORTED_API_VERSIONS`].
    pub api_version: String,
    /// What kind of connector it is, for listings.
    pub category: Category,
    /// One-line summary shown by `inspect`; may be empty.
    #[serde(default)]
    pub description: String,
    /// Which credentials a connection may carry (`[auth]`); absent means
    /// none.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Destinations beyond the connection's `base-url` origin
    /// (`[[egress]]`), approved by the operator at install.
    #[serde(default)]
    pub egress: Vec<EgressSpec>,
    /// The connection settings schema (`[[settings]]`).
    #[serde(default)]
    pub settings: Vec<SettingSpec>,
}

/// What kind of connector a plugin is, for listings. Informational: what a
/// plugin can do is decided by the interfaces its component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A general-purpose connector.
    Connector,
    /// A document store (Confluence and the like).
    Documents,
    /// A ticket system (ServiceNow incidents, Azure DevOps work items).
    Tickets,
    /// An AI model provider (chat).
    AiProvider,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Category::Connector => "connector",
            Category::Documents => "documents",
            Category::Tickets => "tickets",
            Category::AiProvider => "ai-provider",
        })
    }
}

/// The manifest's `[auth]` table: which credentials a connection of the
/// plugin may carry and how the host obtains or sends them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthSpec {
    /// Credential kinds a connection may use. A connection without a
    /// credential ([`AuthKind::None`]) is always allowed.
    #[serde(default)]
    pub kinds: Vec<AuthKind>,
    /// The OAuth endpoints; required when `kinds` lists `oauth2`.
    pub oauth2: Option<OAuth2Spec>,
    /// Which settings name the API-key header and prefix, for plugins whose
    /// upstream takes the key in a configurable header (`Authorization:
    /// Bearer`, Azure's `api-key`, a gateway's `x-...-api-key`).
    pub api_key: Option<ApiKeySpec>,
}

/// Settings that say how the host sends an API key. The host reads them
/// when the connection is saved; the plugin never sees the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApiKeySpec {
    /// The setting holding the header name.
    pub header_setting: String,
    /// The setting holding the text sent before the key (may be empty).
    pub prefix_setting: Option<String>,
}

/// How a connection authenticates; spelled kebab-case in manifests
/// (`api-key`). The host attaches the credential; the plugin never sees it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// No credential: requests go out as the plugin wrote them.
    None,
    /// A username and password, sent as `Authorization: Basic`.
    Basic,
    /// A key sent in a header the connection names (see [`ApiKeySpec`]),
    /// after an optional prefix.
    ApiKey,
    /// A token sent as `Authorization: Bearer` (personal access tokens and
    /// the like).
    Bearer,
    /// An access token the host obtains and refreshes with the flow of
    /// [`OAuth2Spec`], sent as `Authorization: Bearer`.
    Oauth2,
}

impl AuthKind {
    /// The manifest's (kebab-case) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Basic => "basic",
            AuthKind::ApiKey => "api-key",
            AuthKind::Bearer => "bearer",
            AuthKind::Oauth2 => "oauth2",
        }
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OAuth endpoints a plugin declares; the host runs the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OAuth2Spec {
    /// The authorisation endpoint the user is sent to; `{setting-name}`
    /// placeholders are filled from the connection's settings.
    pub authorize_url: String,
    /// The token endpoint (code exchange and refresh); placeholders as in
    /// `authorize_url`.
    pub token_url: String,
    /// Scopes requested at authorisation.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Extra query parameters added to the authorisation URL.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// Environment variable holding the OAuth client id, used when neither
    /// the connection nor the plugin has an OAuth app registered.
    pub client_id_env: Option<String>,
    /// Environment variable holding the matching client secret; unset for a
    /// public client.
    pub client_secret_env: Option<String>,
    /// The authorisation server's issuer identifier (RFC 9207), with
    /// placeholders as in `authorize_url`. A callback that carries `iss` must
    /// name exactly this issuer; when the manifest declares none, `iss` must
    /// have the authorisation endpoint's origin.
    #[serde(default)]
    pub issuer: Option<String>,
}

/// One outbound destination the plugin asks for, beyond its connection's own
/// `base-url` origin. The operator approves these at install.
///
/// The URL and methods are parsed into an [`EgressRule`] when the entry is
/// read (from the manifest or from the stored approval), so an entry that
/// exists is one that parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "RawEgressSpec", into = "RawEgressSpec")]
pub struct EgressSpec {
    /// The URL as the plugin wrote it (shown to the operator).
    pub url: String,
    /// Methods the plugin may use there; empty means any.
    pub methods: Vec<String>,
    /// Why the plugin needs it, shown at approval.
    pub reason: String,
    /// Auth kinds whose credential the host also injects into requests to
    /// this origin (e.g. `["oauth2"]` for an API gateway that takes the
    /// OAuth token). Empty: the origin never receives a credential.
    pub credential: Vec<AuthKind>,
    rule: EgressRule,
}

/// An egress entry as written, before its URL is parsed.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawEgressSpec {
    url: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    credential: Vec<AuthKind>,
}

impl TryFrom<RawEgressSpec> for EgressSpec {
    type Error = EgressEntryError;

    fn try_from(raw: RawEgressSpec) -> Result<Self, Self::Error> {
        let rule =
            EgressRule::parse(&raw.url, &raw.methods).map_err(|source| EgressEntryError {
                url: raw.url.clone(),
                source,
            })?;
        Ok(Self {
            url: raw.url,
            methods: raw.methods,
            reason: raw.reason,
            credential: raw.credential,
            rule,
        })
    }
}

impl From<EgressSpec> for RawEgressSpec {
    fn from(spec: EgressSpec) -> Self {
        Self {
            url: spec.url,
            methods: spec.methods,
            reason: spec.reason,
            credential: spec.credential,
        }
    }
}

/// An egress entry whose URL or methods do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid egress entry `{url}` in the manifest: {source}")]
pub struct EgressEntryError {
    /// The entry's URL as written.
    pub url: String,
    /// Why it was refused.
    #[source]
    pub source: RuleError,
}

/// How the operator sees the entry when approving it.
impl fmt::Display for EgressSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)?;
        if !self.methods.is_empty() {
            write!(f, " [{}]", self.methods.join(", "))?;
        }
        if !self.credential.is_empty() {
            let kinds: Vec<&str> = self.credential.iter().map(|k| k.as_str()).collect();
            write!(
                f,
                " (receives the connection's credential: {})",
                kinds.join(", ")
            )?;
        }
        Ok(())
    }
}

impl EgressSpec {
    /// Parse an entry (what the manifest's `[[egress]]` table holds).
    pub fn new(
        url: impl Into<String>,
        methods: Vec<String>,
        reason: impl Into<String>,
        credential: Vec<AuthKind>,
    ) -> Result<Self, EgressEntryError> {
        RawEgressSpec {
            url: url.into(),
            methods,
            reason: reason.into(),
            credential,
        }
        .try_into()
    }

    /// The parsed rule: origin, optional path prefix and methods.
    pub fn rule(&self) -> &EgressRule {
        &self.rule
    }

    /// Whether a connection authenticating with `kind` sends its credential
    /// to this entry's origin.
    pub fn carries_credential(&self, kind: AuthKind) -> bool {
        kind != AuthKind::None && self.credential.contains(&kind)
    }
}

/// One connection setting the plugin declares (`[[settings]]`). Settings
/// are non-secret: the plugin reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SettingSpec {
    /// The setting's name: kebab-case, unique in the manifest (`base-url`).
    pub name: String,
    /// The type values are checked against (`type` in TOML).
    #[serde(rename = "type")]
    pub kind: SettingKind,
    /// Whether a connection must have a value (given or defaulted).
    #[serde(default)]
    pub required: bool,
    /// Help text shown by `inspect`; may be empty.
    #[serde(default)]
    pub description: String,
    /// The value used when a connection gives none; checked like a given
    /// value.
    pub default: Option<String>,
    /// Allowed values of an `enum`; allowed entries of `json-pointers`.
    #[serde(default)]
    pub values: Vec<String>,
    /// Entries a `json-pointers` value must have.
    #[serde(default)]
    pub required_keys: Vec<String>,
}

/// The type of a setting's value (values are stored as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SettingKind {
    /// Any text.
    String,
    /// An absolute http(s) URL without user info.
    Url,
    /// A decimal integer that fits an `i64`.
    Integer,
    /// Exactly `true` or `false`.
    Boolean,
    /// One of the setting's `values`.
    Enum,
    /// A JSON object mapping entry names (from `values`) to JSON pointers
    /// (RFC 6901), e.g. where a gateway's request and answer fields are.
    JsonPointers,
}

/// Why a manifest was refused. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The component has no [`MANIFEST_SECTION`] custom section: it was not
    /// built with the SDK's `export!` and a manifest.
    #[error(
        "the component carries no `{MANIFEST_SECTION}` custom section: build the plugin with \
         `airlock_sdk::export!(.., manifest = \"airlock.toml\")`, or pack a component from \
         any toolchain with its airlock.toml"
    )]
    Missing,
    /// The component carries this many manifest sections (in it and its
    /// nested modules); exactly one is allowed.
    #[error("the component carries {0} `{MANIFEST_SECTION}` sections; exactly one is allowed")]
    Duplicate(usize),
    /// The manifest is this many bytes, over the 64 KiB limit.
    #[error("the manifest is {0} bytes; at most {MAX_MANIFEST_BYTES} are allowed")]
    TooLarge(usize),
    /// The manifest section is not UTF-8.
    #[error("the manifest is not UTF-8 text")]
    NotUtf8,
    /// The text is not TOML or does not fit the schema (unknown field,
    /// wrong type, missing field); the parser's message.
    #[error("invalid manifest: {0}")]
    Syntax(String),
    /// `api-version` is not one of [`SUPPORTED_API_VERSIONS`]: the plugin
    /// must be rebuilt against a supported SDK.
    #[error(
        "the plugin targets airlock plugin API {found}, but this host implements {}; \
         rebuild the plugin against a supported airlock-sdk",
        SUPPORTED_API_VERSIONS.join(", ")
    )]
    UnsupportedApi {
        /// The `api-version` the manifest names.
        found: String,
    },
    /// A field parses but fails validation (an id, version or setting name
    /// of the wrong form, a credential on a plain-http or foreign-kind
    /// egress entry, an `[auth.api-key]` naming an undeclared setting, ...).
    #[error("invalid manifest field `{field}`: {reason}")]
    Field {
        /// The field, as a TOML path (`id`, `settings.name`,
        /// `egress.credential`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `[[egress]]` entry's URL or methods do not parse.
    #[error(transparent)]
    Egress(#[from] EgressEntryError),
}

impl Manifest {
    /// Parse and validate manifest text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(text.len()));
        }
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Find, parse and validate the manifest embedded in `wasm`.
    pub fn from_wasm(wasm: &[u8]) -> Result<Self, ManifestError> {
        let sections = custom_sections(wasm, MANIFEST_SECTION);
        match sections.len() {
            0 => Err(ManifestError::Missing),
            1 => {
                let bytes = &sections[0];
                if bytes.len() > MAX_MANIFEST_BYTES {
                    return Err(ManifestError::TooLarge(bytes.len()));
                }
                let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
                Self::parse(text)
            }
            n => Err(ManifestError::Duplicate(n)),
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        self.validate_identity()?;
        self.validate_egress()?;
        self.validate_settings()?;
        self.validate_api_key()
    }

    /// Id, name, version, API version and the OAuth endpoints' presence.
    fn validate_identity(&self) -> Result<(), ManifestError> {
        if !is_identifier(&self.id) {
            return Err(field_error(
                "id",
                format!(
                    "{:?} must be 1-64 characters of a-z, 0-9 and '-', starting with a letter",
                    self.id
                ),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(field_error("name", "must not be empty".into()));
        }
        if !is_semver(&self.version) {
            return Err(field_error(
                "version",
                format!("{:?} is not a semantic version like 1.2.3", self.version),
            ));
        }
        if !SUPPORTED_API_VERSIONS.contains(&self.api_version.as_str()) {
            return Err(ManifestError::UnsupportedApi {
                found: self.api_version.clone(),
            });
        }
        if self.auth.kinds.contains(&AuthKind::Oauth2) && self.auth.oauth2.is_none() {
            return Err(field_error(
                "auth.oauth2",
                "auth kind `oauth2` is listed but no [auth.oauth2] endpoints are declared".into(),
            ));
        }
        Ok(())
    }

    /// Egress entries that receive a credential: only for the plugin's own
    /// auth kinds, and only over https.
    fn validate_egress(&self) -> Result<(), ManifestError> {
        for rule in &self.egress {
            for kind in &rule.credential {
                if *kind == AuthKind::None || !self.auth.kinds.contains(kind) {
                    return Err(field_error(
                        "egress.credential",
                        format!(
                            "`{}` lists auth kind `{kind}`, which is not one of the plugin's \
                             [auth] kinds",
                            rule.url
                        ),
                    ));
                }
            }
            if !rule.credential.is_empty() && rule.rule.origin.scheme() != Scheme::Https {
                return Err(field_error(
                    "egress.credential",
                    format!(
                        "`{}` would receive a credential, so it must be an https URL",
                        rule.url
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Setting names, enum values, required keys and json-pointer defaults.
    fn validate_settings(&self) -> Result<(), ManifestError> {
        let mut seen = std::collections::BTreeSet::new();
        for setting in &self.settings {
            if !is_identifier(&setting.name) {
                return Err(field_error(
                    "settings.name",
                    format!("{:?} must be kebab-case (a-z, 0-9, '-')", setting.name),
                ));
            }
            if !seen.insert(setting.name.as_str()) {
                return Err(field_error(
                    "settings.name",
                    format!("{:?} is declared twice", setting.name),
                ));
            }
            if matches!(setting.kind, SettingKind::Enum | SettingKind::JsonPointers)
                && setting.values.is_empty()
            {
                return Err(field_error(
                    "settings.values",
                    format!(
                        "{:?} setting {:?} lists no values",
                        setting.kind, setting.name
                    ),
                ));
            }
            if let Some(bad) = setting
                .required_keys
                .iter()
                .find(|k| !setting.values.contains(k))
            {
                return Err(field_error(
                    "settings.required-keys",
                    format!(
                        "{bad:?} of setting {:?} is not one of its values",
                        setting.name
                    ),
                ));
            }
            if let Some(default) = &setting.default
                && setting.kind == SettingKind::JsonPointers
            {
                settings::check_json_pointers(setting, default).map_err(|why| {
                    field_error(
                        "settings.default",
                        format!("default of setting {:?}: {why}", setting.name),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The settings `[auth.api-key]` names exist.
    fn validate_api_key(&self) -> Result<(), ManifestError> {
        if let Some(api_key) = &self.auth.api_key {
            for name in std::iter::once(&api_key.header_setting).chain(&api_key.prefix_setting) {
                if !self.settings.iter().any(|s| &s.name == name) {
                    return Err(field_error(
                        "auth.api-key",
                        format!("names setting {name:?}, which the manifest does not declare"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The manifest's egress requests as parsed rules.
    pub fn egress_rules(&self) -> Vec<EgressRule> {
        self.egress.iter().map(|e| e.rule.clone()).collect()
    }
}

fn field_error(field: &str, reason: String) -> ManifestError {
    ManifestError::Field {
        field: field.to_string(),
        reason,
    }
}

/// Whether `s` is a valid plugin id: 1-64 characters of a-z, 0-9 and `-`,
/// starting with a letter.
pub(crate) fn is_identifier(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Contents of every custom section called `name`, in the component and in
/// every core module nested in it. Parse errors end the scan: validation of
/// the binary as a whole happens when it is compiled.
pub(crate) fn custom_sections(wasm: &[u8], name: &str) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(reader)) if reader.name() == name => {
                found.push(reader.data().to_vec());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "servicenow"
name = "ServiceNow"
version = "0.1.0"
api-version = "0.1"
category = "tickets"
description = "Incidents"
[auth]
kinds = ["basic", "oauth2"]
[auth.oauth2]
authorize-url = "https://example.service-now.com/oauth_auth.do"
token-url = "https://example.service-now.com/oauth_token.do"
scopes = ["useraccount"]
[[egress]]
url = "https://api.example.com/v1"
methods = ["GET"]
reason = "lookups"
[[settings]]
name = "base-url"
type = "url"
required = true
"#;

    #[test]
    fn parses_a_complete_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.id, "servicenow");
        assert_eq!(m.category, Category::Tickets);
        assert_eq!(m.auth.kinds, vec![AuthKind::Basic, AuthKind::Oauth2]);
        assert_eq!(m.egress_rules().len(), 1);
        assert!(m.settings[0].required);
    }

    #[test]
    fn refuses_unknown_fields_naming_them() {
        let err = Manifest::parse(&format!("{GOOD}\ncolour = \"red\"")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn refuses_unsupported_api_versions() {
        let text = GOOD.replace("api-version = \"0.1\"", "api-version = \"9.0\"");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(matches!(err, ManifestError::UnsupportedApi { .. }));
        assert!(err.to_string().contains("9.0"), "{err}");
    }

    #[test]
    fn refuses_bad_ids_versions_and_egress() {
        for (from, to, needle) in [
            ("id = \"servicenow\"", "id = \"Service Now\"", "id"),
            ("version = \"0.1.0\"", "version = \"one\"", "version"),
            (
                "url = \"https://api.example.com/v1\"",
                "url = \"ftp://api.example.com\"",
                "ftp",
            ),
            (
                "url = \"https://api.example.com/v1\"",
                "url = \"https://user@api.example.com\"",
                "user",
            ),
        ] {
            let err = Manifest::parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(err.to_string().contains(needle), "{to}: {err}");
        }
    }

    #[test]
    fn credential_origins_are_declared_per_auth_kind_and_https_only() {
        let with = |line: &str| GOOD.replace("reason = \"lookups\"", line);
        let m = Manifest::parse(&with("credential = [\"oauth2\"]")).unwrap();
        let entry = &m.egress[0];
        assert!(entry.carries_credential(AuthKind::Oauth2));
        assert!(!entry.carries_credential(AuthKind::Basic));
        assert_eq!(
            entry.to_string(),
            "https://api.example.com/v1 [GET] (receives the connection's credential: oauth2)"
        );
        // Not offered by the plugin, `none`, or over plain http: refused.
        for (line, needle) in [
            ("credential = [\"bearer\"]", "`bearer`"),
            ("credential = [\"none\"]", "`none`"),
        ] {
            let err = Manifest::parse(&with(line)).unwrap_err();
            assert!(err.to_string().contains(needle), "{line}: {err}");
        }
        let http = with("credential = [\"basic\"]")
            .replace("https://api.example.com/v1", "http://api.example.com/v1");
        let err = Manifest::parse(&http).unwrap_err();
        assert!(err.to_string().contains("must be an https URL"), "{err}");
        // Entries without the field never carry one.
        let plain = Manifest::parse(GOOD).unwrap();
        assert!(!plain.egress[0].carries_credential(AuthKind::Oauth2));
    }

    #[test]
    fn oauth_kind_requires_endpoints() {
        let text = GOOD.split("[auth.oauth2]").next().unwrap().to_string()
            + "[[settings]]\nname = \"base-url\"\ntype = \"url\"\n";
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.to_string().contains("auth.oauth2"), "{err}");
    }

    #[test]
    fn api_key_settings_and_json_pointers_are_checked() {
        let base = r#"
id = "gw"
name = "Gateway"
version = "0.1.0"
api-version = "0.1"
category = "ai-provider"
[auth]
kinds = ["api-key"]
[auth.api-key]
header-setting = "auth-header"
prefix-setting = "auth-prefix"
[[settings]]
name = "auth-header"
type = "string"
default = "Authorization"
[[settings]]
name = "auth-prefix"
type = "string"
default = "Bearer "
[[settings]]
name = "map"
type = "json-pointers"
values = ["prompt", "model"]
required-keys = ["prompt"]
default = '{"prompt": "/prompt"}'
"#;
        let m = Manifest::parse(base).unwrap();
        let spec = m.auth.api_key.as_ref().unwrap();
        assert_eq!(spec.header_setting, "auth-header");
        assert_eq!(m.settings[2].kind, SettingKind::JsonPointers);

        for (from, to, needle) in [
            (
                "header-setting = \"auth-header\"",
                "header-setting = \"nope\"",
                "nope",
            ),
            (
                "required-keys = [\"prompt\"]",
                "required-keys = [\"answer\"]",
                "answer",
            ),
            (
                "'{\"prompt\": \"/prompt\"}'",
                "'{\"prompt\": \"prompt\"}'",
                "default",
            ),
            (
                "'{\"prompt\": \"/prompt\"}'",
                "'{\"model\": \"/m\"}'",
                "prompt",
            ),
        ] {
            let err = Manifest::parse(&base.replace(from, to)).unwrap_err();
            assert!(err.to_string().contains(needle), "{to}: {err}");
        }
    }

    #[test]
    fn missing_section_is_reported() {
        // The smallest valid core module: magic and version only.
        let err = Manifest::from_wasm(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(matches!(err, ManifestError::Missing));
    }
}
