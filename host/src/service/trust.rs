//! The operator's trust policy for signed plugins (trusted publisher keys,
//! global or per plugin id, and the `require-signature` switch), and the
//! one judgement of a plugin file's signature against it that installs,
//! uploads and `plugin verify` share.
//!
//! The signature format itself (SSHSIG in the file's last section) is
//! [`crate::signing`]'s; this module decides what a verified signer is
//! worth for a given plugin id.

use serde::Serialize;

use super::{Airlock, ServiceError};
use crate::signing::{PublisherKey, Signature};
use crate::store::trust as repo;

pub use crate::store::trust::TrustedKey;

/// The trust policy of a data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TrustPolicy {
    /// Whether installs and uploads must carry a signature by a key trusted
    /// for their plugin id (off by default).
    pub require_signature: bool,
    /// The trusted publisher keys, by name.
    pub keys: Vec<TrustedKey>,
}

impl TrustPolicy {
    /// The trusted key that vouches for `fingerprint` signing plugin `id`:
    /// one trusted for that id or for every plugin.
    pub fn trusted_as(&self, fingerprint: &str, id: &str) -> Option<&TrustedKey> {
        self.keys
            .iter()
            .filter(|k| k.fingerprint == fingerprint && k.covers(id))
            // One trusted for exactly this id names it best.
            .max_by_key(|k| k.plugin.is_some())
    }

    /// Who signed plugin `id` (`None`: unsigned) and whether this policy
    /// trusts them for it; under `require-signature` an unsigned or
    /// untrusted file is refused.
    pub fn judge(
        &self,
        id: &str,
        signature: Option<&Signature>,
    ) -> Result<Option<Signer>, TrustError> {
        let Some(signature) = signature else {
            return match self.require_signature {
                true => Err(TrustError::Unsigned { id: id.to_string() }),
                false => Ok(None),
            };
        };
        let trusted_as = self
            .trusted_as(&signature.fingerprint, id)
            .map(|k| k.name.clone());
        if trusted_as.is_none() && self.require_signature {
            return Err(TrustError::Untrusted {
                id: id.to_string(),
                fingerprint: signature.fingerprint.clone(),
                public_key: signature.public_key.clone(),
                trusted_for: self
                    .keys
                    .iter()
                    .filter(|k| k.fingerprint == signature.fingerprint)
                    .filter_map(|k| k.plugin.clone())
                    .collect(),
            });
        }
        Ok(Some(Signer {
            fingerprint: signature.fingerprint.clone(),
            public_key: signature.public_key.clone(),
            algorithm: signature.algorithm.clone(),
            trusted_as,
        }))
    }
}

/// Who signed a plugin file (the signature verified over its bytes), and
/// whether the operator trusts that key for the plugin's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Signer {
    /// The signing key's SHA-256 fingerprint (`SHA256:...`, as
    /// `ssh-keygen -l` prints it).
    pub fingerprint: String,
    /// The signing key as one OpenSSH line (`ssh-ed25519 AAAA...`).
    pub public_key: String,
    /// The key algorithm (`ssh-ed25519`, ...).
    pub algorithm: String,
    /// The name of the trusted key that vouches for it for this plugin id;
    /// `null` when the trust policy does not trust it for this plugin.
    pub trusted_as: Option<String>,
}

/// Why the trust policy refused a plugin (only under `require-signature`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// No signature at all.
    #[error(
        "plugin `{id}` is not signed, and this host requires a signature by a trusted key \
         (require-signature is on): get a file signed by its publisher, or sign it with a key \
         you trust for `{id}`"
    )]
    Unsigned {
        /// The plugin's id.
        id: String,
    },
    /// Signed by a key not trusted for this plugin id.
    #[error(
        "plugin `{id}` is signed by {fingerprint}, a key this host does not trust for `{id}`{}; \
         require-signature is on: if that is its publisher's key (check the fingerprint with \
         them), trust it for `{id}`",
        others(.trusted_for)
    )]
    Untrusted {
        /// The plugin's id.
        id: String,
        /// The signing key's fingerprint.
        fingerprint: String,
        /// The signing key as one OpenSSH line, to trust it by.
        public_key: String,
        /// The other plugin ids that key is trusted for.
        trusted_for: Vec<String>,
    },
}

fn others(ids: &[String]) -> String {
    match ids {
        [] => String::new(),
        ids => format!(" (only for {})", ids.join(", ")),
    }
}

fn validate_key_name(name: &str) -> Result<(), ServiceError> {
    if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "trusted key name {name:?} must be 1-64 printable characters"
        )));
    }
    Ok(())
}

impl Airlock {
    /// The trust policy: `require-signature` and the trusted keys.
    pub fn trust_policy(&self) -> Result<TrustPolicy, ServiceError> {
        Ok(self.store.read(|c| {
            Ok(TrustPolicy {
                require_signature: repo::require_signature(c)?,
                keys: repo::list_keys(c)?,
            })
        })?)
    }

    /// Trust the OpenSSH public key `key` (one `.pub` line) under `name`,
    /// for plugin `plugin` only or (`None`) for every plugin.
    pub fn trust_key(
        &self,
        name: &str,
        key: &str,
        plugin: Option<&str>,
    ) -> Result<TrustedKey, ServiceError> {
        validate_key_name(name)?;
        if let Some(id) = plugin.filter(|id| !crate::manifest::is_identifier(id)) {
            return Err(ServiceError::Invalid(format!(
                "{id:?} is not a plugin id (1-64 characters of a-z, 0-9 and '-', starting with a \
                 letter)"
            )));
        }
        let key = PublisherKey::parse(key).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let record = self
            .store
            .write(|tx| repo::add_key(tx, name, &key, plugin))?;
        tracing::info!(key = %record.name, fingerprint = %record.fingerprint, plugin = ?record.plugin, "publisher key trusted");
        Ok(record)
    }

    /// Stop trusting the key named `name`; returns what it was. Installed
    /// plugins it signed stay installed.
    pub fn distrust_key(&self, name: &str) -> Result<TrustedKey, ServiceError> {
        let record = self.store.write(|tx| repo::remove_key(tx, name))?;
        tracing::info!(key = %record.name, fingerprint = %record.fingerprint, "publisher key no longer trusted");
        Ok(record)
    }

    /// Turn `require-signature` on or off; returns the policy now.
    pub fn set_require_signature(&self, on: bool) -> Result<TrustPolicy, ServiceError> {
        self.store.write(|tx| repo::set_require_signature(tx, on))?;
        tracing::info!(require_signature = on, "trust policy changed");
        self.trust_policy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, fingerprint: &str, plugin: Option<&str>) -> TrustedKey {
        TrustedKey {
            name: name.into(),
            public_key: String::new(),
            fingerprint: fingerprint.into(),
            plugin: plugin.map(String::from),
            added_at: String::new(),
        }
    }

    #[test]
    fn a_key_trusted_for_the_id_names_itself_before_a_global_one() {
        let policy = TrustPolicy {
            require_signature: true,
            keys: vec![
                key("everything", "SHA256:a", None),
                key("for-jira", "SHA256:a", Some("jira")),
                key("other", "SHA256:b", Some("wiki")),
            ],
        };
        assert_eq!(
            policy.trusted_as("SHA256:a", "jira").unwrap().name,
            "for-jira"
        );
        assert_eq!(
            policy.trusted_as("SHA256:a", "wiki").unwrap().name,
            "everything"
        );
        assert!(policy.trusted_as("SHA256:b", "jira").is_none());
        assert_eq!(policy.trusted_as("SHA256:b", "wiki").unwrap().name, "other");
        assert!(policy.trusted_as("SHA256:c", "wiki").is_none());
    }

    #[test]
    fn untrusted_names_the_ids_the_key_is_trusted_for() {
        let err = TrustError::Untrusted {
            id: "jira".into(),
            fingerprint: "SHA256:b".into(),
            public_key: String::new(),
            trusted_for: vec!["wiki".into()],
        };
        let text = err.to_string();
        assert!(
            text.contains("does not trust for `jira` (only for wiki)"),
            "{text}"
        );
        assert!(
            TrustError::Unsigned { id: "jira".into() }
                .to_string()
                .contains("plugin `jira` is not signed")
        );
    }
}
