//! OAuth over the API: start an authorisation (answers the provider's URL
//! and the `state`), and the callback the provider sends the browser back
//! to. The callback is the one route without a token: it is protected by
//! the single-use, expiring `state` that only the start handed out.

use axum::Json;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{Html, IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use super::NO_CONNECTION;
use super::connections::managed;
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiPath};
use crate::server::openapi::describe::{Described, Schemas};
use crate::server::openapi::{DocArg, DocResponse, Operation, Routes};
use crate::store::connections::ConnectionRecord;
use crate::store::tokens::Role;

pub fn routes(r: Routes) -> Routes {
    r.add(
        Operation {
            method: Method::POST,
            path: "/api/v1/connections/{id}/oauth/start",
            id: "startOAuth",
            tag: "oauth",
            summary: "Start authorising an OAuth2 connection: send the user to authorization_url",
            access: Access::Role(Role::Operator),
            returns: "Where to send the user, and until when the authorisation may complete",
            errors: &[
                NO_CONNECTION,
                (
                    400,
                    "the connection is not an OAuth2 one, or has no OAuth app (`oauth_error`)",
                ),
            ],
        },
        start,
    )
    .add(
        Operation {
            method: Method::GET,
            path: "/api/v1/oauth/callback",
            id: "oauthCallback",
            tag: "oauth",
            summary: "The provider's redirect back (no token: protected by the single-use state)",
            access: Access::Public,
            returns: "An HTML page for the browser, or JSON when Accept asks for it",
            errors: &[(
                400,
                "unknown, used or expired state, the provider's refusal, or a failed code \
                 exchange (`oauth_error`; an HTML page unless Accept asks for JSON)",
            )],
        },
        callback,
    )
}

/// A started authorisation.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OAuthStart")]
struct Started {
    /// The connection's name.
    connection: String,
    /// The provider's authorize URL with client id, scopes, PKCE challenge
    /// and `state`: open it in the user's browser.
    authorization_url: String,
    /// The `state` value (also in the URL).
    state: String,
    /// This server's callback, where the provider sends the browser back.
    redirect_uri: String,
    /// RFC 3339; the callback is refused after this.
    #[schemars(extend("format" = "date-time"))]
    expires_at: String,
}

async fn start(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Started>, ApiError> {
    let record = managed(&state, &principal, &id)?;
    let started = state
        .airlock()
        .oauth_start_redirect(&record.id, &state.oauth_redirect_uri())?;
    Ok(Json(Started {
        connection: started.connection,
        authorization_url: started.authorization_url,
        state: started.state,
        redirect_uri: started.redirect_uri,
        expires_at: started.expires_at,
    }))
}

/// The callback's query string, handed to the library as it came (the
/// token request must repeat exactly what the provider sent).
struct CallbackQuery(Option<String>);

/// What the provider puts in the callback's query string.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CallbackParams {
    /// The authorization code.
    code: Option<String>,
    /// The state handed out by start.
    state: Option<String>,
    /// The provider's refusal (RFC 6749 error code).
    error: Option<String>,
    /// The provider's words about the refusal.
    error_description: Option<String>,
    /// The issuer (RFC 9207), which must be the expected one when present.
    iss: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CallbackQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state).await?;
        Ok(Self(query))
    }
}

impl DocArg for CallbackQuery {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        doc.query.extend(schemas.query::<CallbackParams>());
    }
}

/// The callback's JSON answer.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "OAuthAuthorised")]
struct Authorised {
    /// The authorised connection as stored now.
    connection: ConnectionRecord,
}

/// The callback's answer: an HTML page, or JSON when Accept asks for it.
struct CallbackAnswer(Response);

impl IntoResponse for CallbackAnswer {
    fn into_response(self) -> Response {
        self.0
    }
}

impl DocResponse for CallbackAnswer {
    fn describe(schemas: &mut Schemas, doc: &mut Described) {
        let json = schemas.output::<Authorised>();
        doc.success.entry(200).or_default().extend([
            ("text/html", serde_json::json!({ "type": "string" })),
            ("application/json", json),
        ]);
    }
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    CallbackQuery(query): CallbackQuery,
) -> CallbackAnswer {
    let result = state
        .airlock()
        .oauth_callback(
            query.as_deref().unwrap_or_default(),
            &state.oauth_redirect_uri(),
        )
        .await;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return CallbackAnswer(match result {
            Ok(outcome) => Json(Authorised {
                connection: outcome.connection,
            })
            .into_response(),
            Err(e) => ApiError::from(e).into_response(),
        });
    }
    let (status, page) = crate::service::oauth::callback_page(&result);
    CallbackAnswer((status, Html(page)).into_response())
}
