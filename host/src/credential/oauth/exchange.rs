//! Token requests: the `oauth2` client over airlock's pooled HTTP client,
//! each request audited like a plugin's send, and the token response sealed
//! into the vault.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse,
    RedirectUrl, RequestTokenError, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::{
    AppCredentials, Endpoints, OAuthContext, REFRESH_MARGIN_SECS, sanitize, unix_now, unix_now_ms,
};
use crate::audit::{Decision, EgressOutcome, EgressRecord};
use crate::credential::field;
use crate::net::Target;
use crate::store::Tx;
use crate::vault::SecretOwner;

/// Token responses larger than this are refused.
const MAX_TOKEN_RESPONSE: usize = 256 << 10;

pub(crate) type Client =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The `oauth2` client for one connection.
pub(crate) fn client(
    app: &AppCredentials,
    endpoints: &Endpoints,
    redirect_uri: Option<&str>,
) -> Result<Client, String> {
    let mut client = BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(endpoints.authorize.clone()))
        .set_token_uri(TokenUrl::from_url(endpoints.token.clone()));
    if let Some(secret) = &app.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_string()));
    }
    if let Some(uri) = redirect_uri {
        client = client.set_redirect_uri(
            RedirectUrl::new(uri.to_string()).map_err(|e| format!("redirect URI: {e}"))?,
        );
    }
    Ok(client)
}

/// Who a token request is recorded for.
#[derive(Debug, Clone)]
pub(crate) struct AuditMeta {
    pub plugin_id: String,
    pub plugin_version: String,
    pub connection_id: String,
}

/// The `oauth2` crate's HTTP client: [`send_audited`] for one connection.
/// (A struct with a boxed `Send` future rather than a closure, so the
/// futures built on it stay `Send` for every lifetime.)
pub(crate) struct AuditedHttp<'a> {
    pub ctx: &'a OAuthContext,
    pub meta: AuditMeta,
}

impl<'c> oauth2::AsyncHttpClient<'c> for AuditedHttp<'_> {
    type Error = TokenHttpError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, TokenHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send_audited(self.ctx, &self.meta, request))
    }
}

/// Why the HTTP side of a token request failed (never carries a secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TokenHttpError(String);

/// Send one token request through the shared client: audited before it
/// leaves (nothing is sent if that fails), completed after, redirects never
/// followed, the answer capped.
pub(crate) async fn send_audited(
    ctx: &OAuthContext,
    meta: &AuditMeta,
    request: HttpRequest,
) -> Result<HttpResponse, TokenHttpError> {
    let (parts, body) = request.into_parts();
    let record = token_record(meta, &parts, &body)?;
    let id = ctx
        .audit
        .begin(&record)
        .await
        .map_err(|e| TokenHttpError(format!("{e}; the token request was not sent")))?;
    let started = Instant::now();
    let finish = |status: Option<u16>, bytes: u64, error: Option<&str>| {
        ctx.audit.finish(
            id,
            &EgressOutcome {
                status,
                response_bytes: bytes,
                duration: started.elapsed(),
                error: error.map(String::from),
            },
        );
    };
    let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let (parts, body) = match exchange_once(ctx, request).await {
        Ok(answer) => answer,
        Err((status, reason)) => {
            finish(status.map(|s| s.as_u16()), 0, Some(&reason));
            return Err(TokenHttpError(reason));
        }
    };
    let (status, bytes) = (parts.status, body.len() as u64);
    let refused = if status.is_redirection() {
        Some(format!(
            "the token endpoint answered {status} (a redirect); redirects are never followed"
        ))
    } else if status.is_server_error() || status.is_informational() {
        Some(format!("the token endpoint answered {status}"))
    } else {
        None
    };
    finish(Some(status.as_u16()), bytes, refused.as_deref());
    if let Some(reason) = refused {
        return Err(TokenHttpError(reason));
    }
    let mut out = http::Response::new(body.to_vec());
    *out.status_mut() = status;
    *out.headers_mut() = parts.headers;
    Ok(out)
}

/// The audit record of a token request. The URL gets the same parse and
/// redaction a plugin's request gets: query values (codes, verifiers) never
/// reach the audit log.
fn token_record(
    meta: &AuditMeta,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<EgressRecord, TokenHttpError> {
    let url = Target::parse(&parts.uri.to_string())
        .map_err(|e| TokenHttpError(format!("the token endpoint URL is refused: {e}")))?
        .redacted();
    Ok(EgressRecord {
        time: SystemTime::now(),
        plugin_id: meta.plugin_id.clone(),
        plugin_version: meta.plugin_version.clone(),
        connection_id: meta.connection_id.clone(),
        project: None,
        method: parts.method.to_string(),
        url,
        request_bytes: body.len() as u64,
        request_sha256: hex::encode(Sha256::digest(body)),
        credential_used: true,
        decision: Decision::Allowed,
        detail: None,
    })
}

/// Send one token request and read its capped answer, each within the
/// first-byte timeout. A failure carries the status (if one arrived) and
/// why, for the audit record and the caller.
async fn exchange_once(
    ctx: &OAuthContext,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Bytes), (Option<http::StatusCode>, String)> {
    let deadline = ctx.limits.first_byte_timeout;
    let response = match tokio::time::timeout(deadline, ctx.client.request(request)).await {
        Err(_) => return Err((None, "timed out waiting for the token endpoint".into())),
        Ok(Err(e)) => {
            let mut reason = format!("the token endpoint could not be reached: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason.push_str(&format!(": {s}"));
                source = s.source();
            }
            return Err((None, reason));
        }
        Ok(Ok(r)) => r,
    };
    let (parts, incoming) = response.into_parts();
    match tokio::time::timeout(
        deadline,
        Limited::new(incoming, MAX_TOKEN_RESPONSE).collect(),
    )
    .await
    {
        Ok(Ok(b)) => Ok((parts, b.to_bytes())),
        Ok(Err(_)) | Err(_) => Err((
            Some(parts.status),
            format!(
                "the token endpoint's answer could not be read (over {MAX_TOKEN_RESPONSE} bytes, \
                 cut off, or too slow)"
            ),
        )),
    }
}

/// How a token request failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// The provider refused the grant (`invalid_grant`): re-authorise.
    InvalidGrant(String),
    Other(String),
}

impl ExchangeError {
    pub fn message(&self) -> &str {
        match self {
            ExchangeError::InvalidGrant(m) | ExchangeError::Other(m) => m,
        }
    }
}

/// Describe a failed token request without repeating the answer's body
/// (which may hold tokens).
pub(crate) fn describe(
    err: RequestTokenError<TokenHttpError, oauth2::basic::BasicErrorResponse>,
) -> ExchangeError {
    match err {
        RequestTokenError::ServerResponse(e) => {
            let desc = e
                .error_description()
                .map(|d| format!(": {}", sanitize(d)))
                .unwrap_or_default();
            let msg = format!(
                "the token endpoint refused the request ({}{desc})",
                e.error()
            );
            if *e.error() == BasicErrorResponseType::InvalidGrant {
                ExchangeError::InvalidGrant(msg)
            } else {
                ExchangeError::Other(msg)
            }
        }
        RequestTokenError::Request(e) => ExchangeError::Other(e.0),
        RequestTokenError::Parse(e, _body) => {
            let inner = e.inner();
            let what = if inner.is_syntax() || inner.is_eof() {
                "is not JSON".to_string()
            } else if inner.to_string().starts_with("missing field") {
                let text = inner.to_string();
                let field = text.split('`').nth(1).unwrap_or("?").to_string();
                format!("lacks `{field}`")
            } else {
                format!("has an unexpected value at `{}`", e.path())
            };
            ExchangeError::Other(format!("the token endpoint's answer {what}"))
        }
        RequestTokenError::Other(s) => {
            ExchangeError::Other(format!("the token endpoint's answer: {}", sanitize(&s)))
        }
    }
}

/// Seal a token response as the connection's credential, in the caller's
/// transaction. A refresh token in the response replaces the stored one
/// (rotation); `keep_refresh` keeps the stored one when the response has
/// none (a refresh), otherwise it is removed (a new authorisation). The
/// `token_endpoint` that issued them is stored with them.
pub(crate) fn store_tokens(
    ctx: &OAuthContext,
    tx: &Tx<'_>,
    connection_id: &str,
    tokens: &BasicTokenResponse,
    keep_refresh: bool,
    token_endpoint: &url::Url,
) -> Result<(), crate::vault::VaultError> {
    let owner = SecretOwner::Connection(connection_id.to_string());
    let vault = &ctx.vault;
    vault.seal_secret(
        tx,
        &owner,
        field::TOKEN_ENDPOINT,
        &SecretString::from(token_endpoint.as_str()),
    )?;
    vault.seal_secret(
        tx,
        &owner,
        field::ACCESS_TOKEN,
        &SecretString::from(tokens.access_token().secret().as_str()),
    )?;
    match tokens.refresh_token() {
        Some(r) => vault.seal_secret(
            tx,
            &owner,
            field::REFRESH_TOKEN,
            &SecretString::from(r.secret().as_str()),
        )?,
        None if !keep_refresh => {
            vault.delete_secret(tx, &owner, field::REFRESH_TOKEN)?;
        }
        None => {}
    }
    match tokens.expires_in() {
        Some(d) => {
            vault.seal_secret(
                tx,
                &owner,
                field::EXPIRES_AT,
                &SecretString::from(expires_at(d).to_string()),
            )?;
            vault.seal_secret(
                tx,
                &owner,
                field::REFRESH_AT,
                &SecretString::from(refresh_at_ms(d).to_string()),
            )?;
        }
        None => {
            vault.delete_secret(tx, &owner, field::EXPIRES_AT)?;
            vault.delete_secret(tx, &owner, field::REFRESH_AT)?;
        }
    }
    Ok(())
}

/// When a token living `lifetime` from now is due for a refresh (Unix ms):
/// [`REFRESH_MARGIN_SECS`] before it expires, or halfway through when it
/// lives shorter than twice that.
fn refresh_at_ms(lifetime: Duration) -> i64 {
    let lifetime = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 4);
    let margin = (REFRESH_MARGIN_SECS * 1000).min(lifetime / 2);
    unix_now_ms().saturating_add(lifetime - margin)
}

fn expires_at(d: Duration) -> i64 {
    unix_now().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::audit::MemoryAudit;
    use crate::limits::Limits;
    use crate::net::{AddressPolicy, build_client};
    use crate::store::Store;
    use crate::vault::{KeySource, Vault};

    /// A one-shot HTTP server on loopback counting the requests it gets.
    async fn counting_server() -> (String, Arc<AtomicU32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = vec![0u8; 8192];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (format!("http://{addr}/token"), hits)
    }

    fn context(audit: Arc<MemoryAudit>) -> (tempfile::TempDir, OAuthContext) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let vault =
            Arc::new(Vault::open(store.clone(), &KeySource::File(dir.path().join("key"))).unwrap());
        let policy = Arc::new(AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap());
        let limits = Limits::default();
        let client = build_client(policy, limits.connect_timeout);
        (
            dir,
            OAuthContext::new(store, vault, client, audit, limits, Vec::new()),
        )
    }

    fn meta() -> AuditMeta {
        AuditMeta {
            plugin_id: "p".into(),
            plugin_version: "1".into(),
            connection_id: "c".into(),
        }
    }

    #[tokio::test]
    async fn nothing_is_sent_when_the_audit_write_fails() {
        let (url, hits) = counting_server().await;
        let audit = Arc::new(MemoryAudit::new());
        audit.fail_writes(true);
        let (_dir, ctx) = context(audit.clone());
        let request = http::Request::post(&url)
            .body(b"grant_type=refresh_token".to_vec())
            .unwrap();
        let err = send_audited(&ctx, &meta(), request).await.unwrap_err();
        assert!(err.to_string().contains("not sent"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        assert!(audit.records().is_empty());

        // With the audit log working, the request goes out and is recorded
        // before and after.
        audit.fail_writes(false);
        let request = http::Request::post(&url)
            .body(b"grant_type=refresh_token".to_vec())
            .unwrap();
        let err = send_audited(&ctx, &meta(), request).await.unwrap_err();
        assert!(err.to_string().contains("500"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let records = audit.records();
        assert_eq!(records.len(), 1);
        let (record, outcome) = &records[0];
        assert!(record.credential_used);
        assert_eq!(record.method, "POST");
        assert!(record.url.ends_with("/token"), "{}", record.url);
        assert_eq!(outcome.as_ref().unwrap().status, Some(500));
    }
}
