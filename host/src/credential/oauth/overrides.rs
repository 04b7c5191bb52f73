//! The operator's overrides of a plugin's OAuth endpoints: another identity
//! provider than the manifest's (Azure DevOps Server, Confluence Data
//! Center's own OAuth 2.0 provider, a local test provider), set on the
//! plugin's organisation app or on one connection.
//!
//! An override is checked once, when the operator sets it, into
//! [`EndpointOverrides`]: an absolute http(s) URL parsed like an egress rule
//! (no user info, query or fragment), over https unless the origin is
//! loopback or one the operator allows in clear text
//! (`AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS`): the token endpoint receives the
//! client secret, the code and the refresh token. `{setting}` placeholders
//! are allowed as in the manifest and are filled and checked again (with
//! the scheme rule) each time the endpoints are used.
//!
//! Resolution is per field: the connection's override, else the app's, else
//! the manifest's ([`EndpointSource`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::net::{EgressRule, Origin, may_carry_credential};
use crate::store::oauth::EndpointTexts;

/// Which endpoint a value is for, named as the manifest and the CLI name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointField {
    /// `authorize-url`: where the user is sent to authorise.
    Authorize,
    /// `token-url`: code exchange and refresh; receives the secrets.
    Token,
    /// `issuer`: the identifier a callback's `iss` must name (RFC 9207).
    Issuer,
}

impl fmt::Display for EndpointField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointField::Authorize => "authorize-url",
            EndpointField::Token => "token-url",
            EndpointField::Issuer => "issuer",
        })
    }
}

/// Why an override was refused. The message names the field and value and
/// says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// Not an absolute http(s) URL usable as an endpoint (user info, query,
    /// fragment, a placeholder in the host, an empty value).
    #[error("{field} {value:?} is refused: {reason}")]
    Invalid {
        /// The field.
        field: EndpointField,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Plain http to an origin that is neither loopback nor allowed in
    /// clear text: OAuth secrets would travel unencrypted.
    #[error(
        "{field} {value:?} would send OAuth secrets (client secret, code, tokens) over plain \
         http to {origin}: use https, or, if {origin} is trusted to receive them in clear text, \
         allow it with AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS={origin}"
    )]
    Cleartext {
        /// The field.
        field: EndpointField,
        /// The value as given.
        value: String,
        /// The refused origin.
        origin: Origin,
    },
}

/// Checked replacement endpoints; `None` leaves a field to the next layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides {
    texts: EndpointTexts,
}

impl EndpointOverrides {
    /// Check each given value (see the module docs). `cleartext` is the
    /// operator's list of origins allowed to receive credentials over http.
    pub fn parse(
        authorize_url: Option<&str>,
        token_url: Option<&str>,
        issuer: Option<&str>,
        cleartext: &[Origin],
    ) -> Result<Self, OverrideError> {
        let one = |field, value: Option<&str>| {
            value.map(|v| check(field, v.trim(), cleartext)).transpose()
        };
        Ok(Self {
            texts: EndpointTexts {
                authorize_url: one(EndpointField::Authorize, authorize_url)?,
                token_url: one(EndpointField::Token, token_url)?,
                issuer: one(EndpointField::Issuer, issuer)?,
            },
        })
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The values as stored.
    pub fn texts(&self) -> &EndpointTexts {
        &self.texts
    }
}

/// One value: placeholders filled with a sample for the structural check
/// (their real values are checked where they are used), then parsed as an
/// egress rule and held to the clear-text rule unless the scheme itself
/// comes from a setting.
fn check(field: EndpointField, value: &str, cleartext: &[Origin]) -> Result<String, OverrideError> {
    let invalid = |reason: String| OverrideError::Invalid {
        field,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid(
            "it is empty; leave the option out to keep the plugin's".into(),
        ));
    }
    let sample: BTreeMap<String, String> = placeholder_names(value)
        .into_iter()
        .map(|name| (name, "https://placeholder.invalid".to_string()))
        .collect();
    let filled = super::substitute(value, &sample).map_err(|why| match why {
        super::Placeholder::Invalid { name, reason } => {
            invalid(format!("placeholder `{{{name}}}`: {reason}"))
        }
        super::Placeholder::Unset(name) => invalid(format!("placeholder `{{{name}}}` is unclosed")),
    })?;
    let rule = EgressRule::parse(&filled, &[]).map_err(|e| invalid(e.to_string()))?;
    let scheme_from_setting = value.starts_with('{');
    if !scheme_from_setting && !may_carry_credential(&rule.origin, cleartext) {
        return Err(OverrideError::Cleartext {
            field,
            value: value.to_string(),
            origin: rule.origin,
        });
    }
    Ok(value.to_string())
}

/// The `{name}` placeholders of a template.
fn placeholder_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        names.push(after[..close].to_string());
        rest = &after[close + 1..];
    }
    names
}

/// Where an effective endpoint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointSource {
    /// The plugin's manifest (`[auth.oauth2]`).
    Manifest,
    /// The plugin's organisation app (`airlock oauth app set`).
    App,
    /// The connection's own override (`airlock oauth endpoints`).
    Connection,
}

impl fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointSource::Manifest => "manifest",
            EndpointSource::App => "organisation app",
            EndpointSource::Connection => "connection override",
        })
    }
}

/// A template and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layered {
    pub template: String,
    pub source: EndpointSource,
}

/// The templates in force for one connection, before placeholders are
/// filled: per field the connection's, else the app's, else the manifest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Templates {
    pub authorize: Layered,
    pub token: Layered,
    pub issuer: Option<Layered>,
}

impl Templates {
    /// Layer `connection` over `app` over the manifest's values.
    pub fn resolve(
        manifest: &crate::manifest::OAuth2Spec,
        app: &EndpointTexts,
        connection: &EndpointTexts,
    ) -> Self {
        let pick = |get: fn(&EndpointTexts) -> &Option<String>, base: Option<&String>| {
            let layers = [
                (get(connection), EndpointSource::Connection),
                (get(app), EndpointSource::App),
            ];
            layers
                .into_iter()
                .find_map(|(v, source)| v.clone().map(|template| Layered { template, source }))
                .or_else(|| {
                    base.map(|b| Layered {
                        template: b.clone(),
                        source: EndpointSource::Manifest,
                    })
                })
        };
        let required = |get, base: &String| pick(get, Some(base)).expect("the manifest's value");
        Self {
            authorize: required(|t| &t.authorize_url, &manifest.authorize_url),
            token: required(|t| &t.token_url, &manifest.token_url),
            issuer: pick(|t| &t.issuer, manifest.issuer.as_ref()),
        }
    }
}

/// A connection's effective OAuth endpoints, as shown to the operator (CLI
/// and API): placeholders filled, each with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveEndpoints {
    /// Where the user is sent to authorise (receives the client id).
    pub authorize_url: String,
    /// Where `authorize_url` comes from.
    pub authorize_url_from: EndpointSource,
    /// Where the code is exchanged and tokens refreshed (receives the client
    /// secret, the code, the PKCE verifier and the refresh token).
    pub token_url: String,
    /// Where `token_url` comes from.
    pub token_url_from: EndpointSource,
    /// The issuer a callback's `iss` must name; `None`: an issuer at the
    /// authorisation endpoint's origin.
    pub issuer: Option<String>,
    /// Where `issuer` comes from.
    pub issuer_from: Option<EndpointSource>,
}

impl fmt::Display for EffectiveEndpoints {
    /// Three indented lines: authorize, token, issuer, each with its source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  authorize: {} ({})",
            self.authorize_url, self.authorize_url_from
        )?;
        writeln!(
            f,
            "  token:     {} ({}; receives the client secret, code and refresh token)",
            self.token_url, self.token_url_from
        )?;
        match (&self.issuer, self.issuer_from) {
            (Some(i), Some(from)) => write!(f, "  issuer:    {i} ({from})"),
            _ => write!(
                f,
                "  issuer:    any at the authorize origin (none declared)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        a: Option<&str>,
        t: Option<&str>,
        i: Option<&str>,
    ) -> Result<EndpointOverrides, OverrideError> {
        EndpointOverrides::parse(a, t, i, &[])
    }

    #[test]
    fn overrides_are_checked_like_egress_rules_with_the_cleartext_rule() {
        let ok = parse(
            Some("https://ado.acme.example/_oauth/authorize"),
            Some("{base-url}/rest/oauth2/latest/token"),
            Some("http://localhost:8080"),
        )
        .unwrap();
        assert_eq!(
            ok.texts().token_url.as_deref(),
            Some("{base-url}/rest/oauth2/latest/token")
        );
        assert!(parse(None, None, None).unwrap().is_empty());
        for (bad, needle) in [
            ("http://idp.acme.example/token", "plain http"),
            ("https://user@idp.acme.example/token", "credentials"),
            ("https://idp.acme.example/token?x=1", "query"),
            ("https://idp.acme.example/token#f", "fragment"),
            ("ftp://idp.acme.example/token", "scheme"),
            ("/token", "absolute"),
            ("https://{tenant}.acme.example/token", "host"),
            ("", "empty"),
        ] {
            let err = parse(None, Some(bad), None).unwrap_err();
            assert!(err.to_string().contains(needle), "{bad}: {err}");
            assert!(err.to_string().contains("token-url"), "{bad}: {err}");
        }
        let intranet = Origin::parse("http://idp.intranet.example:8080").unwrap();
        let allowed = EndpointOverrides::parse(
            None,
            Some("http://idp.intranet.example:8080/token"),
            None,
            &[intranet],
        );
        assert!(allowed.is_ok(), "{allowed:?}");
    }

    #[test]
    fn the_connection_wins_over_the_app_over_the_manifest_per_field() {
        let manifest = crate::manifest::OAuth2Spec {
            authorize_url: "https://m.example/authorize".into(),
            token_url: "https://m.example/token".into(),
            scopes: vec![],
            extra_params: BTreeMap::new(),
            client_id_env: None,
            client_secret_env: None,
            issuer: None,
        };
        let app = EndpointTexts {
            authorize_url: Some("https://app.example/authorize".into()),
            token_url: Some("https://app.example/token".into()),
            issuer: None,
        };
        let connection = EndpointTexts {
            token_url: Some("https://c.example/token".into()),
            issuer: Some("https://c.example".into()),
            ..EndpointTexts::default()
        };
        let t = Templates::resolve(&manifest, &app, &connection);
        assert_eq!(t.authorize.template, "https://app.example/authorize");
        assert_eq!(t.authorize.source, EndpointSource::App);
        assert_eq!(t.token.template, "https://c.example/token");
        assert_eq!(t.token.source, EndpointSource::Connection);
        assert_eq!(t.issuer.unwrap().source, EndpointSource::Connection);
        let plain = Templates::resolve(
            &manifest,
            &EndpointTexts::default(),
            &EndpointTexts::default(),
        );
        assert_eq!(plain.token.source, EndpointSource::Manifest);
        assert!(plain.issuer.is_none());
    }
}
