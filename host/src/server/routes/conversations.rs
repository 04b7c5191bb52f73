//! `/api/v1/conversations`: list, show (with messages) and delete the chat
//! conversations stored by the chat route.
//!
//! A conversation belongs to the project it was started for (or to none).
//! A project-restricted token sees and deletes only its project's; another
//! project's is not found (404, as the chat route answers), so a token
//! cannot learn that it exists. An unrestricted token sees every project's
//! unless it narrows to one (`project`) or to those without (`no_project`),
//! as the CLI's `airlock conversation` does.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::connections::usable;
use crate::server::AppState;
use crate::server::auth::{Access, Principal};
use crate::server::error::{ApiError, ApiPath, ApiQuery};
use crate::server::openapi::{Failure, NoContent, Operation, Routes};
use crate::service::ProjectFilter;
use crate::store::conversations::{ConversationRecord, MessageRecord};
use crate::store::tokens::Role;

/// Most conversations one listing returns.
const MAX_LIST: u32 = 1000;

const NOT_FOUND: &[Failure] = &[(
    404,
    "no such conversation among those the token and filter admit (`not_found`)",
)];

pub fn routes(r: Routes) -> Routes {
    let op = |method, path, id, summary, returns, errors| Operation {
        method,
        path,
        id,
        tag: "conversations",
        summary,
        access: Access::Role(Role::User),
        returns,
        errors,
    };
    r.add(
        op(
            Method::GET,
            "/api/v1/conversations",
            "listConversations",
            "Chat conversations, most recently active first",
            "Conversations, without their messages",
            &[(404, "no such connection (`not_found`)")],
        ),
        list,
    )
    .add(
        op(
            Method::GET,
            "/api/v1/conversations/{id}",
            "getConversation",
            "A conversation with its messages as stored (not redacted)",
            "The conversation and its messages",
            NOT_FOUND,
        ),
        get,
    )
    .add(
        op(
            Method::DELETE,
            "/api/v1/conversations/{id}",
            "deleteConversation",
            "Delete a conversation, its messages and the plugin state kept for it",
            "Deleted",
            NOT_FOUND,
        ),
        delete,
    )
}

/// Which projects' conversations a request touches.
#[derive(Debug, Deserialize, JsonSchema)]
struct ProjectQuery {
    /// Only conversations started for this project (a restricted token's
    /// own project always).
    project: Option<String>,
    /// `true`: only conversations started without a project.
    #[serde(default)]
    no_project: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ListQuery {
    /// Only this connection's (id or name).
    connection: Option<String>,
    /// Only conversations started for this project (a restricted token's
    /// own project always).
    project: Option<String>,
    /// `true`: only conversations started without a project.
    #[serde(default)]
    no_project: bool,
    /// At most this many (default 50, max 1000).
    limit: Option<u32>,
}

/// A conversation and its messages.
#[derive(Debug, Serialize, JsonSchema)]
struct Conversation {
    /// The conversation.
    conversation: ConversationRecord,
    /// Its messages in order.
    messages: Vec<MessageRecord>,
}

/// The conversations `principal` may touch, narrowed as asked.
fn projects(
    principal: &Principal,
    project: Option<String>,
    no_project: bool,
) -> Result<ProjectFilter, ApiError> {
    if project.is_some() && no_project {
        return Err(ApiError::bad_request(
            "`project` and `no_project` exclude each other",
        ));
    }
    match principal.project() {
        // A restricted token acts for its own project only.
        Some(_) if no_project => Err(ApiError::forbidden(format!(
            "token `{}` is restricted to project `{}`: it cannot see conversations without a \
             project",
            principal.token.name,
            principal.project().unwrap_or_default()
        ))),
        Some(_) => Ok(ProjectFilter::Only(principal.project_for(project)?)),
        None if no_project => Ok(ProjectFilter::Only(None)),
        None => Ok(project.map_or(ProjectFilter::Any, |p| ProjectFilter::Only(Some(p)))),
    }
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<ConversationRecord>>, ApiError> {
    let projects = projects(&principal, q.project, q.no_project)?;
    let connection = match q.connection {
        Some(c) => Some(usable(&state, &principal, &c)?.id),
        None => None,
    };
    let limit = q.limit.unwrap_or(50).min(MAX_LIST);
    Ok(Json(state.airlock().conversations(
        connection.as_deref(),
        projects,
        limit,
    )?))
}

async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Json<Conversation>, ApiError> {
    let projects = projects(&principal, q.project, q.no_project)?;
    let (conversation, messages) = state.airlock().conversation(&id, projects)?;
    Ok(Json(Conversation {
        conversation,
        messages,
    }))
}

async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<NoContent, ApiError> {
    let projects = projects(&principal, q.project, q.no_project)?;
    state.airlock().delete_conversation(&id, projects)?;
    tracing::info!(conversation = %id, by = %principal.token.name, "conversation deleted");
    Ok(NoContent)
}
