//! What a call runs against: a connection's identity, its non-secret settings,
//! its parsed `base-url` origin, the origins its credential is bound to, and
//! where the credential comes from ([`crate::credential`]).
//!
//! The credential itself never reaches this type: [`AuthBinding`] holds only
//! the header it goes in, the origins that receive it and its source.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;

use crate::credential::CredentialSource;
use crate::net::{Origin, RuleError};

/// The setting every HTTP plugin reads for its upstream; its origin is granted
/// and the credential is bound to it.
pub const BASE_URL_SETTING: &str = "base-url";

/// A connection as the runtime sees it for one call.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The connection's stable id (what plugin state and audit rows key on).
    pub id: String,
    /// The operator's name for it, used in messages.
    pub name: String,
    /// The project the call was resolved for, if any.
    pub project: Option<String>,
    /// Non-secret settings the plugin can read.
    settings: BTreeMap<String, String>,
    /// The `base-url` setting parsed when it was set (the one parse): its
    /// origin, or why it is not a usable URL (reported when a call starts).
    base: Option<Result<Origin, RuleError>>,
    /// How the credential is attached, if the connection has one.
    pub auth: AuthBinding,
    /// A JSON object written to the audit record of every outbound request
    /// made with this view of the connection (e.g. the redaction counts of
    /// a chat call). Never a secret or a redacted value.
    pub audit_detail: Option<String>,
}

/// How a connection authenticates, without the secret.
#[derive(Debug, Clone, Default)]
pub enum AuthBinding {
    /// No credential: nothing is ever added to the plugin's requests.
    #[default]
    None,
    /// Credentials come from `source`, are added only for requests to one of
    /// `origins`, in `header` (which the plugin may therefore not set).
    Header {
        /// The header the credential is sent in.
        header: HeaderName,
        /// The only origins that receive it.
        origins: Vec<Origin>,
        /// Where it comes from, asked once per request that receives it.
        source: Arc<dyn CredentialSource>,
    },
}

impl Connection {
    /// A connection with no settings and no credential.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            project: None,
            settings: BTreeMap::new(),
            base: None,
            auth: AuthBinding::None,
            audit_detail: None,
        }
    }

    /// Set one setting. `base-url` is parsed here, once; a value that is
    /// not an http(s) URL fails every call of the connection, naming it.
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if name == BASE_URL_SETTING {
            self.base = Some(Origin::parse(&value));
        }
        self.settings.insert(name, value);
        self
    }

    /// Set every setting at once (what a stored connection carries).
    pub fn with_settings(self, settings: BTreeMap<String, String>) -> Self {
        settings
            .into_iter()
            .fold(self, |conn, (name, value)| conn.with_setting(name, value))
    }

    /// The project the call is made for.
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Bind a credential to the origin of the `base-url` setting, which must
    /// already be set.
    pub fn with_credential(
        self,
        header: HeaderName,
        source: Arc<dyn CredentialSource>,
    ) -> Result<Self, RuleError> {
        let origin = self.base_origin()?.cloned().ok_or(RuleError::NoHost)?;
        Ok(self.with_credential_for(header, vec![origin], source))
    }

    /// Bind a credential to explicit origins.
    pub fn with_credential_for(
        mut self,
        header: HeaderName,
        origins: Vec<Origin>,
        source: Arc<dyn CredentialSource>,
    ) -> Self {
        self.auth = AuthBinding::Header {
            header,
            origins,
            source,
        };
        self
    }

    /// The non-secret settings, as the plugin reads them.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// Origin of the `base-url` setting, when the connection has one.
    pub fn base_origin(&self) -> Result<Option<&Origin>, RuleError> {
        match &self.base {
            None => Ok(None),
            Some(Ok(origin)) => Ok(Some(origin)),
            Some(Err(e)) => Err(e.clone()),
        }
    }

    /// The header carrying the credential, which the guest may not set.
    pub fn auth_header(&self) -> Option<&HeaderName> {
        match &self.auth {
            AuthBinding::None => None,
            AuthBinding::Header { header, .. } => Some(header),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_parsed_once_when_set() {
        let conn =
            Connection::new("c1", "wiki").with_setting("base-url", "HTTPS://Acme.Example.:443/x");
        let origin = conn.base_origin().unwrap().unwrap();
        assert_eq!(origin.to_string(), "https://acme.example:443");
        assert_eq!(conn.settings()["base-url"], "HTTPS://Acme.Example.:443/x");

        let bad = Connection::new("c2", "wiki").with_setting("base-url", "ftp://x");
        assert!(matches!(bad.base_origin(), Err(RuleError::Scheme(_))));
        assert!(
            Connection::new("c3", "none")
                .base_origin()
                .unwrap()
                .is_none()
        );
    }
}
