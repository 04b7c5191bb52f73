//! Where requests go: the connection's API root, endpoint paths and the
//! optional `api-version` query, all from the connection's settings.

use airlock_sdk::http::{Url, encode_component, join_url};
use airlock_sdk::types::PluginError;
use airlock_sdk::{host, setting_required};

/// The connection's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `base-url` without a trailing `/`.
    pub base: String,
    pub chat_path: String,
    pub models_path: String,
    pub api_version: Option<String>,
    /// The connection's default model.
    pub model: Option<String>,
}

impl Endpoint {
    pub fn from_settings() -> Result<Endpoint, PluginError> {
        let base = setting_required("base-url")?;
        let non_empty = |name: &str| host::setting(name).filter(|v| !v.trim().is_empty());
        Endpoint::new(
            &base,
            host::setting("endpoint-path").as_deref(),
            host::setting("models-path").as_deref(),
            non_empty("api-version"),
            non_empty("model"),
        )
    }

    pub fn new(
        base: &str,
        chat_path: Option<&str>,
        models_path: Option<&str>,
        api_version: Option<String>,
        model: Option<String>,
    ) -> Result<Endpoint, PluginError> {
        let base = base.trim().trim_end_matches('/');
        let url = Url::parse(base)
            .map_err(|e| PluginError::InvalidInput(format!("setting `base-url`: {e:?}")))?;
        if url.path_and_query().contains('?') {
            return Err(PluginError::InvalidInput(
                "setting `base-url` must not carry a query; use the `api-version` setting for \
                 Azure's api-version"
                    .into(),
            ));
        }
        for (name, path) in [("endpoint-path", chat_path), ("models-path", models_path)] {
            if let Some(path) = path
                && (path.contains("://") || path.chars().any(|c| c.is_whitespace()))
            {
                return Err(PluginError::InvalidInput(format!(
                    "setting `{name}` = {path:?} must be a path below base-url"
                )));
            }
        }
        Ok(Endpoint {
            base: base.to_string(),
            chat_path: chat_path.unwrap_or("/chat/completions").trim().to_string(),
            models_path: models_path.unwrap_or("/models").trim().to_string(),
            api_version: api_version.map(|v| v.trim().to_string()),
            model: model.map(|m| m.trim().to_string()),
        })
    }

    fn url(&self, path: &str) -> String {
        let url = join_url(&self.base, path);
        match &self.api_version {
            Some(version) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}api-version={}", encode_component(version))
            }
            None => url,
        }
    }

    /// The chat completions URL.
    pub fn chat_url(&self) -> String {
        self.url(&self.chat_path)
    }

    /// The model list URL.
    pub fn models_url(&self) -> String {
        self.url(&self.models_path)
    }

    /// The model a request uses: its own, else the connection's. Azure
    /// OpenAI (an `api-version` is set) picks the model by the deployment in
    /// the URL, so there it may be absent; everywhere else it is required.
    pub fn model_for(&self, requested: Option<&str>) -> Result<Option<String>, PluginError> {
        let model = requested
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .or_else(|| self.model.clone());
        if model.is_none() && self.api_version.is_none() {
            return Err(PluginError::InvalidInput(
                "no model: name one in the request or set the connection's `model` setting".into(),
            ));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls() {
        let openai = Endpoint::new("https://api.openai.com/v1/", None, None, None, None).unwrap();
        assert_eq!(
            openai.chat_url(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(openai.models_url(), "https://api.openai.com/v1/models");

        let azure = Endpoint::new(
            "https://acme.openai.azure.com/openai/deployments/gpt4o",
            None,
            None,
            Some("2024-10-21".into()),
            None,
        )
        .unwrap();
        assert_eq!(
            azure.chat_url(),
            "https://acme.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );

        let whole =
            Endpoint::new("http://127.0.0.1:8080/v2/chat", Some(""), None, None, None).unwrap();
        assert_eq!(whole.chat_url(), "http://127.0.0.1:8080/v2/chat");

        let query =
            Endpoint::new("http://h", Some("/c?x=1"), None, Some("a b".into()), None).unwrap();
        assert_eq!(query.chat_url(), "http://h/c?x=1&api-version=a%20b");
    }

    #[test]
    fn refuses_bad_settings() {
        assert!(Endpoint::new("ftp://h", None, None, None, None).is_err());
        assert!(Endpoint::new("https://h/v1?api-version=1", None, None, None, None).is_err());
        assert!(Endpoint::new("https://h", Some("https://evil/x"), None, None, None).is_err());
    }

    #[test]
    fn picks_the_model() {
        let e = Endpoint::new("https://h", None, None, None, Some("gpt-4o".into())).unwrap();
        assert_eq!(e.model_for(None).unwrap().as_deref(), Some("gpt-4o"));
        assert_eq!(e.model_for(Some(" o3 ")).unwrap().as_deref(), Some("o3"));
        assert_eq!(e.model_for(Some("")).unwrap().as_deref(), Some("gpt-4o"));
        let azure =
            Endpoint::new("https://h", None, None, Some("2024-10-21".into()), None).unwrap();
        assert_eq!(azure.model_for(None).unwrap(), None);
        let none = Endpoint::new("https://h", None, None, None, None).unwrap();
        assert!(matches!(
            none.model_for(None),
            Err(PluginError::InvalidInput(_))
        ));
    }
}
