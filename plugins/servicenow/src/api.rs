//! Talking to the Table API: URLs, the `{"result": ...}` envelope and
//! ServiceNow's error shape.

use airlock_sdk::http::{Request, Response, Url, join_url};
use airlock_sdk::types::{PluginError, RateLimit, UpstreamFailure};
use airlock_sdk::{host, setting_required};
use serde_json::Value;

use crate::encode::Query;
use crate::model::{self, Record, shorten};

/// The connection's instance and table.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `https://acme.service-now.com`, no trailing `/`.
    pub base: String,
    pub table: String,
}

impl Instance {
    /// From the connection's settings (`base-url`, `table`).
    pub fn from_settings() -> Result<Instance, PluginError> {
        let base = setting_required("base-url")?;
        let base = base_url(&base)?;
        let table = model::table(host::setting("table"))?;
        Ok(Instance { base, table })
    }

    /// `{base}/api/now/table/{table}[/{sys_id}]?{query}`.
    pub fn table_url(&self, sys_id: Option<&str>, query: &Query) -> String {
        let path = match sys_id {
            Some(id) => format!("/api/now/table/{}/{id}", self.table),
            None => format!("/api/now/table/{}", self.table),
        };
        self.url(&path, query)
    }

    /// `{base}{path}?{query}`.
    pub fn url(&self, path: &str, query: &Query) -> String {
        let url = join_url(&self.base, path);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }
}

/// Check and normalise the `base-url` setting.
pub fn base_url(setting: &str) -> Result<String, PluginError> {
    let base = setting.trim().trim_end_matches('/');
    let url = Url::parse(base).map_err(|e| match e {
        PluginError::InvalidInput(m) => {
            PluginError::InvalidInput(format!("setting `base-url`: {m}"))
        }
        other => other,
    })?;
    if url.path_and_query().contains(['?', '#']) || setting.contains('#') {
        return Err(PluginError::InvalidInput(format!(
            "setting `base-url` is `{}`: give the instance URL only, e.g. https://acme.service-now.com",
            shorten(setting, 200)
        )));
    }
    Ok(base.to_string())
}

/// Send a request and return the `result` of ServiceNow's JSON envelope.
pub fn result(request: Request) -> Result<Value, PluginError> {
    let response = request.header("accept", "application/json").send()?;
    let detail = if response.is_success() {
        None
    } else {
        service_message(&response.body)
    };
    let status = response.status;
    let response = response.error_for_status().map_err(|error| match detail {
        Some(detail) => with_message(error, format!("HTTP {status}: {detail}")),
        None => error,
    })?;
    let value: Value = response
        .json()
        .map_err(|error| malformed(error, &response))?;
    let Value::Object(mut envelope) = value else {
        return Err(unexpected(status, "the JSON body is not an object"));
    };
    if let Some(result) = envelope.remove("result") {
        return Ok(result);
    }
    // A failure reported with a 2xx status.
    if let Some(message) = service_message_of(&Value::Object(envelope)) {
        return Err(PluginError::Upstream(UpstreamFailure {
            status,
            message: format!("HTTP {status}: {message}"),
        }));
    }
    Err(unexpected(status, "no `result` in the JSON body"))
}

/// The `result` list of a query.
pub fn records(request: Request) -> Result<Vec<Record>, PluginError> {
    match result(request)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(record) => Ok(record),
                _ => Err(unexpected(200, "a `result` entry is not an object")),
            })
            .collect(),
        _ => Err(unexpected(200, "`result` is not a list")),
    }
}

/// The `result` object of a single-record call.
pub fn record(request: Request) -> Result<Record, PluginError> {
    match result(request)? {
        Value::Object(record) => Ok(record),
        _ => Err(unexpected(200, "`result` is not an object")),
    }
}

fn unexpected(status: u16, what: &str) -> PluginError {
    PluginError::Upstream(UpstreamFailure {
        status,
        message: format!("unexpected answer from ServiceNow: {what}"),
    })
}

fn malformed(error: PluginError, response: &Response) -> PluginError {
    let html = response
        .body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    if !html {
        return error;
    }
    PluginError::Upstream(UpstreamFailure {
        status: response.status,
        message: "malformed JSON from upstream: the instance answered with HTML (a login or \
                  maintenance page, a hibernating developer instance, or a base-url that is not \
                  the instance)"
            .to_string(),
    })
}

/// ServiceNow's own account of a failure: `error.message` and
/// `error.detail` of `{"error": {...}, "status": "failure"}`.
pub fn service_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    service_message_of(&value)
}

fn service_message_of(value: &Value) -> Option<String> {
    let error = value.get("error")?;
    let field = |name: &str| {
        error
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| shorten(s, 500))
    };
    match (field("message"), field("detail")) {
        (Some(message), Some(detail)) if message != detail => Some(format!("{message} ({detail})")),
        (Some(message), _) => Some(message),
        (None, Some(detail)) => Some(detail),
        (None, None) => None,
    }
}

/// The same error with its message replaced.
pub fn with_message(error: PluginError, message: String) -> PluginError {
    match error {
        PluginError::InvalidInput(_) => PluginError::InvalidInput(message),
        PluginError::Unauthorized(_) => PluginError::Unauthorized(message),
        PluginError::Forbidden(_) => PluginError::Forbidden(message),
        PluginError::NotFound(_) => PluginError::NotFound(message),
        PluginError::Conflict(_) => PluginError::Conflict(message),
        PluginError::RateLimited(limit) => PluginError::RateLimited(RateLimit { message, ..limit }),
        PluginError::Upstream(failure) => {
            PluginError::Upstream(UpstreamFailure { message, ..failure })
        }
        PluginError::EgressDenied(_) => PluginError::EgressDenied(message),
        PluginError::Timeout(_) => PluginError::Timeout(message),
        PluginError::Unsupported(_) => PluginError::Unsupported(message),
        PluginError::Internal(_) => PluginError::Internal(message),
    }
}

/// A `NotFound` answer for `what` (e.g. `incident INC0010001`), keeping the
/// service's words.
pub fn name_not_found(error: PluginError, what: &str) -> PluginError {
    match error {
        PluginError::NotFound(detail) => PluginError::NotFound(format!(
            "{what} does not exist or the account cannot read it ({detail})"
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_servicenow_errors() {
        let body = br#"{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}"#;
        assert_eq!(
            service_message(body).as_deref(),
            Some("No Record found (Record doesn't exist or ACL restricts the record retrieval)")
        );
        assert_eq!(
            service_message(
                br#"{"error":{"message":"Invalid table xyz","detail":null},"status":"failure"}"#
            )
            .as_deref(),
            Some("Invalid table xyz")
        );
        assert_eq!(
            service_message(br#"{"error":{"message":"","detail":"only detail"}}"#).as_deref(),
            Some("only detail")
        );
        assert_eq!(
            service_message(br#"{"error":{"message":"same","detail":"same"}}"#).as_deref(),
            Some("same")
        );
        assert_eq!(service_message(br#"{"message":"other"}"#), None);
        assert_eq!(service_message(b"<html>"), None);
    }

    #[test]
    fn replaces_messages_keeping_the_kind() {
        let limited = PluginError::RateLimited(RateLimit {
            retry_after_secs: Some(7),
            message: "old".into(),
        });
        assert_eq!(
            with_message(limited, "new".into()),
            PluginError::RateLimited(RateLimit {
                retry_after_secs: Some(7),
                message: "new".into()
            })
        );
        let upstream = PluginError::Upstream(UpstreamFailure {
            status: 503,
            message: "old".into(),
        });
        assert_eq!(
            with_message(upstream, "new".into()),
            PluginError::Upstream(UpstreamFailure {
                status: 503,
                message: "new".into()
            })
        );
        assert_eq!(
            name_not_found(PluginError::NotFound("HTTP 404".into()), "incident INC1"),
            PluginError::NotFound(
                "incident INC1 does not exist or the account cannot read it (HTTP 404)".into()
            )
        );
        assert_eq!(
            name_not_found(PluginError::Forbidden("x".into()), "incident INC1"),
            PluginError::Forbidden("x".into())
        );
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url(" https://acme.service-now.com/ ").unwrap(),
            "https://acme.service-now.com"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "acme.service-now.com",
            "ftp://acme.service-now.com",
            "https://acme.service-now.com/?x=1",
            "https://acme.service-now.com/#x",
        ] {
            assert!(
                matches!(base_url(bad), Err(PluginError::InvalidInput(m)) if m.contains("base-url")),
                "{bad}"
            );
        }
    }

    #[test]
    fn builds_table_urls() {
        let instance = Instance {
            base: "https://acme.service-now.com".into(),
            table: "incident".into(),
        };
        assert_eq!(
            instance.table_url(None, &Query::new().set("sysparm_limit", "1")),
            "https://acme.service-now.com/api/now/table/incident?sysparm_limit=1"
        );
        assert_eq!(
            instance.table_url(Some("abc"), &Query::new()),
            "https://acme.service-now.com/api/now/table/incident/abc"
        );
    }
}
