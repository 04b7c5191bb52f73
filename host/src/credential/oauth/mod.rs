//! The OAuth2 token life-cycle of a connection: app credentials, endpoints,
//! token requests (exchange and refresh), token storage in the vault, and the
//! credential source that refreshes single-flight. The operator's side of
//! the flow (start, callback, listener) is `impl Airlock` in
//! `service::oauth`, built on this.
//!
//! Built on the `oauth2` crate, whose HTTP client here is airlock's own
//! filtering client ([`crate::net::HttpClient`]): it never follows redirects
//! and applies the address filter. Every token exchange and refresh is
//! written to the audit log before it leaves, exactly like a plugin's send.
//!
//! The endpoints come from the manifest, replaced field by field by the
//! operator's overrides on the plugin's organisation app or the connection
//! ([`overrides`]). Every endpoint, whatever its source, must be https, or
//! http to loopback or an origin the operator allows in clear text.
//!
//! Storage (vault fields of the connection, named in
//! [`crate::credential::field`]): `access-token`, `refresh-token`,
//! `access-token-expires-at` (Unix seconds), and the token endpoint that
//! issued them (a refresh token is never sent to another). The
//! connection's `auth_config` keeps only the connection's own client id.

pub(crate) mod exchange;
pub mod overrides;
mod refresh;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use secrecy::SecretString;

pub(crate) use refresh::OAuthCredential;

use super::field;
use crate::audit::AuditSink;
use crate::limits::Limits;
use crate::manifest::OAuth2Spec;
use crate::net::{HttpClient, Origin, Target, may_carry_credential};
use crate::store::connections::ConnectionRecord;
use crate::store::{Store, StoreError};
use crate::vault::{SecretOwner, Vault, VaultError};
use overrides::{EffectiveEndpoints, EndpointSource, Layered, Templates};
pub use overrides::{EndpointOverrides, OverrideError};
use percent_encoding::utf8_percent_encode;

/// Refresh this long before the access token expires, in seconds.
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// Why an OAuth operation failed. Messages never carry a token or secret.
/// The management API answers `400 oauth_error`, except [`OAuthError::Store`]
/// and [`OAuthError::Vault`], which are `500 internal`.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// An OAuth flow was started for a connection (named here) whose auth
    /// kind is not `oauth2`.
    #[error("connection `{0}` does not use OAuth2")]
    NotOAuth(String),
    /// The plugin (id here) has no `[auth.oauth2]` section in its manifest,
    /// so there is nowhere to authorise; the plugin cannot do OAuth2.
    #[error("plugin `{0}` declares no [auth.oauth2] endpoints")]
    NoEndpoints(String),
    /// No client id was found for the connection: neither on the
    /// connection, nor as the plugin's app, nor in the environment variables
    /// the manifest names. Set one in any of those places.
    #[error(
        "no OAuth app credentials for connection `{connection}` (plugin `{plugin}`): give the \
         connection its own client id and secret, register an OAuth app for plugin `{plugin}`, \
         or set the environment variables {env}"
    )]
    MissingApp {
        /// The connection's name.
        connection: String,
        /// The plugin's id.
        plugin: String,
        /// The environment variables that were looked at (`$NAME, ...`), or
        /// a note that the manifest names none.
        env: String,
    },
    /// An authorize or token URL or issuer (the manifest's or an override)
    /// is unusable for this connection: a `{setting}` placeholder whose
    /// setting is not set (set it on the connection), not a URL, or not
    /// `https` (plain `http` only to loopback or an origin allowed in
    /// `AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS`). The reason names the source.
    #[error("OAuth endpoint of plugin `{plugin}`: {reason}")]
    Endpoint {
        /// The plugin's id.
        plugin: String,
        /// Which URL and what is wrong with it.
        reason: String,
    },
    /// A callback cannot finish an authorisation: no, unknown, already used
    /// or expired `state`, no `code`, or a corrupt stored verifier. The
    /// message says what; start the authorisation again.
    #[error("OAuth callback refused: {0}")]
    Callback(String),
    /// The provider sent the user back with an `error` (e.g. the user
    /// declined consent). Start again if that was a mistake.
    #[error("the provider refused the authorisation: {error}{}", .description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        /// The provider's `error` code (e.g. `access_denied`), sanitised.
        error: String,
        /// The provider's `error_description`, sanitised, if it sent one.
        description: Option<String>,
    },
    /// Exchanging the authorisation code for tokens failed (network, or the
    /// provider refused the code, client credentials or verifier).
    #[error("token request for connection `{connection}` failed: {reason}")]
    Token {
        /// The connection's name.
        connection: String,
        /// What the token endpoint answered or why it could not be reached.
        reason: String,
    },
    /// An endpoint override given by the operator was refused; the message
    /// names the field and what to change.
    #[error("OAuth endpoint override refused: {0}")]
    Override(#[from] OverrideError),
    /// The loopback callback listener could not start or serve: usually
    /// the port is taken (another `airlock oauth connect` running); pick
    /// another port.
    #[error("OAuth callback listener: {0}")]
    Listener(String),
    /// Reading the app or writing the tokens failed in the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Opening or sealing a secret failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// App (client) credentials for one connection.
pub(crate) struct AppCredentials {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

/// Shared by the flow, the callback and every [`OAuthCredential`]: storage,
/// the filtering client and the audit sink token requests go through, and
/// the per-connection refresh locks.
pub(crate) struct OAuthContext {
    pub store: Arc<Store>,
    pub vault: Arc<Vault>,
    pub client: HttpClient,
    pub audit: Arc<dyn AuditSink>,
    pub limits: Limits,
    /// Origins the operator allows to receive credentials over plain http.
    pub cleartext: Vec<Origin>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Who this host is when it holds a refresh lease: unique to this
    /// `Airlock`, so two embedded in one process are two holders.
    pub lease_holder: String,
}

impl std::fmt::Debug for OAuthContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthContext").finish_non_exhaustive()
    }
}

impl OAuthContext {
    pub fn new(
        store: Arc<Store>,
        vault: Arc<Vault>,
        client: HttpClient,
        audit: Arc<dyn AuditSink>,
        limits: Limits,
        cleartext: Vec<Origin>,
    ) -> Self {
        Self {
            store,
            vault,
            client,
            audit,
            limits,
            cleartext,
            locks: Mutex::new(HashMap::new()),
            lease_holder: crate::store::leases::new_holder(),
        }
    }

    /// The refresh lock of one connection.
    fn lock_for(&self, connection_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(connection_id.to_string())
            .or_default()
            .clone()
    }

    /// The endpoints of `record` in force now: the manifest's `spec`
    /// under the plugin app's and the connection's overrides, placeholders
    /// filled from its settings and checked.
    pub fn endpoints_for(
        &self,
        record: &ConnectionRecord,
        spec: &OAuth2Spec,
    ) -> Result<Endpoints, OAuthError> {
        let (app, own) = self.store.read(|c| {
            let app = crate::store::oauth::get_oauth_app(c, &record.plugin_id)?
                .map(|a| a.endpoints)
                .unwrap_or_default();
            let own = crate::store::oauth::connection_endpoints(c, &record.id)?;
            Ok::<_, StoreError>((app, own))
        })?;
        let templates = Templates::resolve(spec, &app, &own);
        endpoints(
            &record.plugin_id,
            &templates,
            &record.settings,
            &self.cleartext,
        )
    }

    /// App credentials, in order: the connection's own, the plugin's
    /// organisation-level app, the environment variables the manifest names.
    pub fn app_credentials(
        &self,
        record: &ConnectionRecord,
        spec: &OAuth2Spec,
    ) -> Result<AppCredentials, OAuthError> {
        if let Some(client_id) = record
            .auth_config
            .username
            .clone()
            .filter(|s| !s.is_empty())
        {
            let client_secret = self.vault.open_secret(
                &SecretOwner::Connection(record.id.clone()),
                field::CLIENT_SECRET,
            )?;
            return Ok(AppCredentials {
                client_id,
                client_secret,
            });
        }
        let app = self
            .store
            .read(|c| crate::store::oauth::get_oauth_app(c, &record.plugin_id))?;
        if let Some(app) = app {
            let client_secret = self
                .vault
                .open_secret(&SecretOwner::OAuthApp(app.id.clone()), field::CLIENT_SECRET)?;
            return Ok(AppCredentials {
                client_id: app.client_id,
                client_secret,
            });
        }
        let env = |name: &Option<String>| {
            name.as_deref()
                .and_then(|n| std::env::var(n).ok())
                .filter(|v| !v.is_empty())
        };
        if let Some(client_id) = env(&spec.client_id_env) {
            return Ok(AppCredentials {
                client_id,
                client_secret: env(&spec.client_secret_env).map(SecretString::from),
            });
        }
        let names: Vec<String> = [&spec.client_id_env, &spec.client_secret_env]
            .into_iter()
            .flatten()
            .map(|n| format!("${n}"))
            .collect();
        Err(OAuthError::MissingApp {
            connection: record.name.clone(),
            plugin: record.plugin_id.clone(),
            env: if names.is_empty() {
                "the plugin's manifest names no client-id-env".into()
            } else {
                names.join(", ")
            },
        })
    }
}

/// The OAuth endpoints of a connection, placeholders substituted.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub authorize: url::Url,
    pub token: url::Url,
    /// The declared issuer identifier, placeholders filled.
    pub issuer: Option<String>,
    /// Where each came from.
    pub sources: (EndpointSource, EndpointSource, Option<EndpointSource>),
}

impl Endpoints {
    /// What the operator is shown.
    pub fn effective(&self) -> EffectiveEndpoints {
        EffectiveEndpoints {
            authorize_url: self.authorize.to_string(),
            authorize_url_from: self.sources.0,
            token_url: self.token.to_string(),
            token_url_from: self.sources.1,
            issuer: self.issuer.clone(),
            issuer_from: self.sources.2,
        }
    }

    /// Check a callback's `iss` (RFC 9207): the declared issuer exactly, or
    /// without one, the authorisation endpoint's origin. A mismatch means the
    /// answer may come from another identity provider (a mix-up attack).
    pub fn check_issuer(&self, plugin: &str, iss: &str) -> Result<(), OAuthError> {
        let given = iss.trim_end_matches('/');
        let matches = match &self.issuer {
            Some(expected) => given == expected.trim_end_matches('/'),
            None => {
                let origin = |u: &str| Target::parse(u).map(|t| t.origin);
                origin(given).is_ok_and(|o| Ok(o) == origin(self.authorize.as_str()))
            }
        };
        if matches {
            return Ok(());
        }
        let expected = match &self.issuer {
            Some(issuer) => issuer.clone(),
            None => format!(
                "an issuer at {}",
                self.authorize.origin().ascii_serialization()
            ),
        };
        Err(OAuthError::Callback(format!(
            "the callback names issuer {:?}, but plugin `{plugin}`'s provider is {expected}; \
             the answer may come from another identity provider, so nothing was exchanged; \
             start the OAuth flow again",
            sanitize(iss)
        )))
    }
}

/// Substitute `{setting-name}` placeholders in the endpoint templates from
/// the connection's settings (e.g. `{tenant}` for Microsoft Entra), then
/// check the result: an absolute `https` URL, or `http` to a loopback host
/// or an origin in `cleartext`.
pub(crate) fn endpoints(
    plugin: &str,
    templates: &Templates,
    settings: &BTreeMap<String, String>,
    cleartext: &[Origin],
) -> Result<Endpoints, OAuthError> {
    let one = |layer: &Layered, what: &str| -> Result<url::Url, OAuthError> {
        let template = &layer.template;
        let err = |reason: String| OAuthError::Endpoint {
            plugin: plugin.to_string(),
            reason: format!("{reason} (from the {})", layer.source),
        };
        let text = substitute(template, settings).map_err(|why| match why {
            Placeholder::Unset(name) => err(format!(
                "{what} `{template}` needs the connection setting `{name}`, which is not set"
            )),
            Placeholder::Invalid { name, reason } => err(format!(
                "{what} `{template}`: the connection setting `{name}` cannot be used there: \
                 {reason}; correct the setting"
            )),
        })?;
        let url = url::Url::parse(&text)
            .map_err(|e| err(format!("{what} `{text}` is not a valid URL: {e}")))?;
        let target =
            Target::parse(&text).map_err(|e| err(format!("{what} `{text}` is refused: {e}")))?;
        if !may_carry_credential(&target.origin, cleartext) {
            return Err(err(format!(
                "{what} `{text}` must use https (http only for loopback or an origin allowed \
                 in AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS)"
            )));
        }
        Ok(url)
    };
    let issuer = templates
        .issuer
        .as_ref()
        .map(|i| one(i, "issuer").map(|u| u.to_string()))
        .transpose()?;
    Ok(Endpoints {
        authorize: one(&templates.authorize, "authorize-url")?,
        token: one(&templates.token, "token-url")?,
        issuer,
        sources: (
            templates.authorize.source,
            templates.token.source,
            templates.issuer.as_ref().map(|i| i.source),
        ),
    })
}

/// Why a placeholder could not be filled.
#[derive(Debug, PartialEq, Eq)]
enum Placeholder {
    /// The setting is not set.
    Unset(String),
    /// The value cannot stand where the placeholder is.
    Invalid { name: String, reason: String },
}

/// Where in an endpoint URL a placeholder stands, which decides how its
/// value is checked and encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// At the very start: the value is a base URL (`{base-url}/oauth/token`).
    Base,
    /// Inside the host: not supported, a value could move the request to
    /// another host.
    Authority,
    /// Inside the path: the value is one path segment.
    Path,
    /// Inside the query: the value is one query component.
    Query,
}

fn position(before: &str) -> Position {
    if before.is_empty() {
        return Position::Base;
    }
    if before.contains('?') {
        return Position::Query;
    }
    match before.split_once("://") {
        Some((_, after_scheme)) if after_scheme.contains('/') => Position::Path,
        _ => Position::Authority,
    }
}

/// `template` with each `{name}` replaced by its setting, checked and
/// percent-encoded for its position: a base URL is parsed like any
/// destination (http(s), no credentials, query or fragment; dot segments
/// resolved), a path value stays one segment (`/`, `?`, `#`, `%` encoded;
/// `.` and `..` refused), a query value one component.
fn substitute(template: &str, settings: &BTreeMap<String, String>) -> Result<String, Placeholder> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let name = &after[..close];
        let value = settings
            .get(name)
            .ok_or_else(|| Placeholder::Unset(name.to_string()))?;
        let invalid = |reason: &str| Placeholder::Invalid {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        match position(&out) {
            Position::Base => {
                let target = Target::parse(value).map_err(|e| invalid(&e.to_string()))?;
                if value.contains(['?', '#']) {
                    return Err(invalid("a base URL may not carry a query or fragment"));
                }
                out.push_str(target.uri().trim_end_matches('/'));
            }
            Position::Authority => {
                return Err(invalid(
                    "a placeholder may not stand in the host of an endpoint",
                ));
            }
            Position::Path => {
                if value.is_empty() || value == "." || value == ".." {
                    return Err(invalid("a path segment may not be empty, `.` or `..`"));
                }
                out.extend(utf8_percent_encode(value, SEGMENT));
            }
            Position::Query => {
                out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Everything but RFC 3986's unreserved characters is encoded in a path
/// segment, so a value can never end its segment or start a query.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Current Unix time in milliseconds.
pub(crate) fn unix_now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// Current Unix time in seconds.
pub(crate) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Provider text made safe to show: control characters dropped, bounded.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_come_from_settings() {
        let settings = BTreeMap::from([("tenant".to_string(), "contoso".to_string())]);
        let spec = OAuth2Spec {
            authorize_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
                .into(),
            token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token".into(),
            scopes: vec![],
            extra_params: BTreeMap::new(),
            client_id_env: None,
            client_secret_env: None,
            issuer: None,
        };
        let t =
            |spec: &OAuth2Spec| Templates::resolve(spec, &Default::default(), &Default::default());
        let e = endpoints("ado", &t(&spec), &settings, &[]).unwrap();
        assert_eq!(
            e.authorize.as_str(),
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize"
        );
        let err = endpoints("ado", &t(&spec), &BTreeMap::new(), &[]).unwrap_err();
        assert!(err.to_string().contains("`tenant`"), "{err}");
    }

    #[test]
    fn placeholder_values_are_checked_and_encoded_for_their_position() {
        let settings = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let fill = |template: &str, pairs: &[(&str, &str)]| substitute(template, &settings(pairs));
        let t = "https://login.example.com/{tenant}/oauth2/token?x={q}";
        assert_eq!(
            fill(t, &[("tenant", "x/../../evil"), ("q", "a&b=c")]).unwrap(),
            "https://login.example.com/x%2F..%2F..%2Fevil/oauth2/token?x=a%26b%3Dc"
        );
        assert_eq!(
            fill(t, &[("tenant", "contoso.onmicrosoft.com"), ("q", "1")]).unwrap(),
            "https://login.example.com/contoso.onmicrosoft.com/oauth2/token?x=1"
        );
        for bad in ["..", ".", ""] {
            let err = fill(t, &[("tenant", bad), ("q", "1")]).unwrap_err();
            assert!(
                matches!(err, Placeholder::Invalid { .. }),
                "{bad:?}: {err:?}"
            );
        }
        let base = "{base-url}/oauth/token";
        assert_eq!(
            fill(base, &[("base-url", "HTTPS://Acme.Example/")]).unwrap(),
            "https://acme.example/oauth/token"
        );
        for bad in [
            "https://acme.example/?next=evil",
            "ftp://acme.example",
            "https://u@acme.example",
        ] {
            assert!(fill(base, &[("base-url", bad)]).is_err(), "{bad}");
        }
        assert!(matches!(
            fill("https://{org}.example.com/token", &[("org", "evil.com/x")]),
            Err(Placeholder::Invalid { .. })
        ));
        assert_eq!(
            fill(base, &[]).unwrap_err(),
            Placeholder::Unset("base-url".into())
        );
    }

    #[test]
    fn plain_http_only_for_loopback() {
        let mk = |u: &str| OAuth2Spec {
            authorize_url: u.into(),
            token_url: u.into(),
            scopes: vec![],
            extra_params: BTreeMap::new(),
            client_id_env: None,
            client_secret_env: None,
            issuer: None,
        };
        let none = BTreeMap::new();
        let t = |u: &str| Templates::resolve(&mk(u), &Default::default(), &Default::default());
        assert!(endpoints("p", &t("http://127.0.0.1:9/a"), &none, &[]).is_ok());
        assert!(endpoints("p", &t("http://example.com/a"), &none, &[]).is_err());
        assert!(endpoints("p", &t("ftp://example.com/a"), &none, &[]).is_err());
        let intranet = Origin::parse("http://example.com").unwrap();
        assert!(endpoints("p", &t("http://example.com/a"), &none, &[intranet]).is_ok());
    }
}
