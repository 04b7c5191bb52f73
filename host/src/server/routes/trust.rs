//! `/api/v1/trust`: the trust policy for signed plugins. An operator reads
//! it; an admin trusts and removes publisher keys and turns
//! `require-signature` on or off. The policy is host-wide: every route here
//! needs a token without a project restriction.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiJson, ApiPath};
use crate::server::openapi::{Created, NoContent, Operation, Routes};
use crate::service::{TrustPolicy, TrustedKey};
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    let op = |method, path, id, summary, role, returns, errors| Operation {
        method,
        path,
        id,
        tag: "trust",
        summary,
        access: Access::Role(role),
        returns,
        errors,
    };
    r.add(
        op(
            Method::GET,
            "/api/v1/trust",
            "getTrustPolicy",
            "The trust policy for signed plugins: require-signature and the trusted publisher keys",
            Role::Operator,
            "The policy",
            &[],
        ),
        get,
    )
    .add(
        op(
            Method::POST,
            "/api/v1/trust/keys",
            "trustKey",
            "Trust a publisher's OpenSSH public key, for every plugin or for one plugin id",
            Role::Admin,
            "The trusted key, with its fingerprint",
            &[
                (
                    400,
                    "the name, the key (not one OpenSSH public key line of an Ed25519 or ECDSA \
                     key) or the plugin id is invalid (`invalid_request`)",
                ),
                (
                    409,
                    "the name is taken, or the key is already trusted for that scope \
                     (`conflict`)",
                ),
            ],
        ),
        add,
    )
    .add(
        op(
            Method::DELETE,
            "/api/v1/trust/keys/{name}",
            "distrustKey",
            "Stop trusting a publisher key (installed plugins it signed stay installed)",
            Role::Admin,
            "Removed",
            &[(404, "no trusted key has that name (`not_found`)")],
        ),
        remove,
    )
    .add(
        op(
            Method::PUT,
            "/api/v1/trust/require-signature",
            "setRequireSignature",
            "Require (or stop requiring) a trusted signature on every plugin installed or uploaded",
            Role::Admin,
            "The policy now",
            &[],
        ),
        require,
    )
}

/// A publisher key to trust.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewTrustedKey")]
struct NewKey {
    /// A unique name to remove it by: 1-64 printable characters.
    name: String,
    /// The publisher's public key: one line of their `.pub` file
    /// (`ssh-ed25519 AAAA... comment`).
    key: String,
    /// Trust it only for this plugin id; absent or `null` for every plugin.
    #[serde(default)]
    plugin: Option<String>,
}

/// The `require-signature` switch.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RequireSignature")]
struct Require {
    /// `true`: refuse installs and uploads that are unsigned or signed by a
    /// key not trusted for their plugin id.
    require_signature: bool,
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TrustPolicy>, ApiError> {
    principal.require_unrestricted("reading the trust policy")?;
    Ok(Json(state.airlock().trust_policy()?))
}

async fn add(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<Created<TrustedKey>, ApiError> {
    principal.require_unrestricted("changing the trust policy")?;
    let key = state
        .airlock()
        .trust_key(&body.name, &body.key, body.plugin.as_deref())?;
    tracing::info!(key = %key.name, by = %principal.token.name, "publisher key trusted over the API");
    Ok(Created(key))
}

async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<NoContent, ApiError> {
    principal.require_unrestricted("changing the trust policy")?;
    state.airlock().distrust_key(&name)?;
    Ok(NoContent)
}

async fn require(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<Require>,
) -> Result<Json<TrustPolicy>, ApiError> {
    principal.require_unrestricted("changing the trust policy")?;
    let policy = state
        .airlock()
        .set_require_signature(body.require_signature)?;
    tracing::info!(require_signature = policy.require_signature, by = %principal.token.name, "trust policy changed over the API");
    Ok(Json(policy))
}
