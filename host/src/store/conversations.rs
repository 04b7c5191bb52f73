//! Chat conversations (`conversations`, `conversation_messages`) and
//! per-connection chat options (`chat_options`).
//!
//! A conversation belongs to (connection, project): the project it was
//! started for, or none. A global connection serves every project, so a
//! conversation is found, listed, continued and deleted only through a
//! [`ProjectFilter`] that admits its project; a caller acting for another
//! project (or for none) is told it is not found, as if it did not exist.
//!
//! Plugin state a plugin keeps for one conversation lives under keys
//! starting with `conversation/<conversation id>/` (the custom-rest
//! plugin's gateway session, for example), in the conversation's own state
//! scope; deleting the conversation deletes those keys with it.

use serde::Serialize;

use super::sql::{Db, DbExt, Row, Tx, params};
use super::{StoreError, now};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// Instructions to the model (a domain prompt, a turn's system text).
    System,
    /// The person chatting.
    User,
    /// The model.
    Assistant,
}

impl MessageRole {
    /// The stored (and serialized) form.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::System => "system",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "system" => Ok(MessageRole::System),
            "user" => Ok(MessageRole::User),
            "assistant" => Ok(MessageRole::Assistant),
            other => Err(StoreError::Corrupt(format!("message role {other:?}"))),
        }
    }
}

/// A conversation without its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConversationRecord {
    /// Random hex id.
    pub id: String,
    /// The AI provider connection it belongs to.
    pub connection_id: String,
    /// The project it was started for; `None` when started without one.
    /// Only calls for the same project (or, for `None`, without a project)
    /// may continue it.
    pub project: Option<String>,
    /// The first user message, shortened.
    pub title: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC of the last message.
    pub updated_at: String,
}

/// Which projects' conversations a lookup, list or delete may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectFilter {
    /// Every project's, and those started without one: the operator's
    /// view (the CLI, an embedder acting for nobody in particular).
    Any,
    /// Only those of this project; `None`: only those started without a
    /// project. What a caller acting for a project gets.
    Only(Option<String>),
}

impl ProjectFilter {
    /// The filter of a call made for `project` (`None`: no project).
    pub fn of(project: Option<&str>) -> Self {
        ProjectFilter::Only(project.map(String::from))
    }

    /// The parameters of [`PROJECT_MATCHES`]: whether every project
    /// matches, and otherwise which one.
    fn params(&self) -> (bool, Option<&str>) {
        match self {
            ProjectFilter::Any => (true, None),
            ProjectFilter::Only(project) => (false, project.as_deref()),
        }
    }

    /// Not found, in words that say where it was looked for and, since it
    /// may exist for another project, what to do. The same whether or not
    /// it exists elsewhere, so nothing leaks across projects.
    fn not_found(&self, id: &str) -> StoreError {
        let scope = match self {
            ProjectFilter::Any => return StoreError::NotFound(format!("conversation `{id}`")),
            ProjectFilter::Only(Some(project)) => format!("for project `{project}`"),
            ProjectFilter::Only(None) => "for calls without a project".to_string(),
        };
        StoreError::NoMatch(format!(
            "conversation `{id}` not found {scope}; conversations are kept per connection and \
             project: continue it for the project it was started for, or start a new one"
        ))
    }
}

/// SQL true when a row's `project` passes the filter whose
/// [`ProjectFilter::params`] are bound to `?2` and `?3`. `IS NOT DISTINCT
/// FROM` matches NULL (no project) to NULL only.
const PROJECT_MATCHES: &str = "(?2 = 1 OR project IS NOT DISTINCT FROM ?3)";

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MessageRecord {
    /// Position in the conversation.
    pub seq: u32,
    /// Who wrote it.
    pub role: MessageRole,
    /// The text as stored (not redacted).
    pub content: String,
    /// The model that wrote an assistant message, when known.
    pub model: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub role: MessageRole,
    pub content: String,
    pub model: Option<String>,
}

/// How a connection's chats are prepared on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatOptions {
    /// Replace PII with placeholders before anything reaches the plugin.
    /// On unless switched off for the connection.
    pub redaction: bool,
    /// The first system message of every new conversation.
    pub system_prompt: Option<String>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        Self {
            redaction: true,
            system_prompt: None,
        }
    }
}

/// Longest title kept, in characters.
const TITLE_CHARS: usize = 80;

/// A title from the first user message: one line, at most 80 characters.
pub fn title_of(message: &str) -> String {
    let line: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= TITLE_CHARS {
        line
    } else {
        let mut t: String = line.chars().take(TITLE_CHARS - 1).collect();
        t.push('…');
        t
    }
}

fn conversation_from_row(r: &Row) -> Result<ConversationRecord, StoreError> {
    Ok(ConversationRecord {
        id: r.get(0)?,
        connection_id: r.get(1)?,
        project: r.get(2)?,
        title: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const COLUMNS: &str = "id, connection_id, project, title, created_at, updated_at";

pub fn insert_conversation(tx: &Tx<'_>, record: &ConversationRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO conversations (id, connection_id, project, title, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            record.id,
            record.connection_id,
            record.project,
            record.title,
            record.created_at,
            record.updated_at
        ],
    )?;
    Ok(())
}

/// The conversation `id`, if `projects` admits its project; not found
/// otherwise, exactly as if it did not exist.
pub fn get_conversation(
    conn: &dyn Db,
    id: &str,
    projects: &ProjectFilter,
) -> Result<ConversationRecord, StoreError> {
    let (any, project) = projects.params();
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM conversations WHERE id = ?1 AND {PROJECT_MATCHES}"),
        params![id, any, project],
        conversation_from_row,
    )?
    .ok_or_else(|| projects.not_found(id))
}

/// Conversations `projects` admits, newest activity first; only one
/// connection's when given.
pub fn list_conversations(
    conn: &dyn Db,
    connection_id: Option<&str>,
    projects: &ProjectFilter,
    limit: u32,
) -> Result<Vec<ConversationRecord>, StoreError> {
    let (any, project) = projects.params();
    conn.query_map(
        &format!(
            "SELECT {COLUMNS} FROM conversations
             WHERE (CAST(?1 AS TEXT) IS NULL OR connection_id = ?1) AND {PROJECT_MATCHES}
             ORDER BY updated_at DESC, id LIMIT ?4"
        ),
        params![connection_id, any, project, limit],
        conversation_from_row,
    )
}

/// A conversation's messages in order.
pub fn messages(conn: &dyn Db, conversation_id: &str) -> Result<Vec<MessageRecord>, StoreError> {
    conn.query_map(
        "SELECT seq, role, content, model, created_at FROM conversation_messages
         WHERE conversation_id = ?1 ORDER BY seq",
        params![conversation_id],
        |r| {
            Ok(MessageRecord {
                seq: r.get(0)?,
                role: MessageRole::parse(&r.get::<String>(1)?)?,
                content: r.get(2)?,
                model: r.get(3)?,
                created_at: r.get(4)?,
            })
        },
    )
}

/// Append messages after the last one and touch the conversation.
pub fn append_messages(
    tx: &Tx<'_>,
    conversation_id: &str,
    new: &[NewMessage],
) -> Result<(), StoreError> {
    // The caller looked the conversation up in its scope already.
    get_conversation(&**tx, conversation_id, &ProjectFilter::Any)?;
    let last: u32 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM conversation_messages WHERE conversation_id = ?1",
        params![conversation_id],
        |r| r.get(0),
    )?;
    let at = now();
    for (i, m) in new.iter().enumerate() {
        tx.execute(
            "INSERT INTO conversation_messages (conversation_id, seq, role, content, model, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                conversation_id,
                last + 1 + i as u32,
                m.role.as_str(),
                m.content,
                m.model,
                at
            ],
        )?;
    }
    tx.execute(
        "UPDATE conversations SET updated_at = ?2 WHERE id = ?1",
        params![conversation_id, at],
    )?;
    Ok(())
}

/// Delete a conversation `projects` admits, its messages, and the plugin
/// state kept for it (keys under `conversation/<id>/` in the conversation's
/// own scope: its connection and project).
pub fn delete_conversation(
    tx: &Tx<'_>,
    id: &str,
    projects: &ProjectFilter,
) -> Result<(), StoreError> {
    let record = get_conversation(&**tx, id, projects)?;
    tx.execute(
        "DELETE FROM plugin_state
         WHERE connection_id = ?1 AND project IS NOT DISTINCT FROM ?2
           AND substr(key, 1, ?3) = ?4",
        params![
            record.connection_id,
            record.project,
            state_prefix(id).len(),
            state_prefix(id)
        ],
    )?;
    tx.execute("DELETE FROM conversations WHERE id = ?1", params![id])?;
    Ok(())
}

/// The plugin-state key prefix of a conversation.
pub fn state_prefix(conversation_id: &str) -> String {
    format!("conversation/{conversation_id}/")
}

pub fn chat_options(conn: &dyn Db, connection_id: &str) -> Result<ChatOptions, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT redaction, system_prompt FROM chat_options WHERE connection_id = ?1",
            params![connection_id],
            |r| {
                Ok(ChatOptions {
                    redaction: r.get::<i64>(0)? != 0,
                    system_prompt: r.get(1)?,
                })
            },
        )?
        .unwrap_or_default())
}

pub fn set_chat_options(
    tx: &Tx<'_>,
    connection_id: &str,
    options: &ChatOptions,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO chat_options (connection_id, redaction, system_prompt, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (connection_id) DO UPDATE SET
            redaction = excluded.redaction,
            system_prompt = excluded.system_prompt,
            updated_at = excluded.updated_at",
        params![
            connection_id,
            i64::from(options.redaction),
            options.system_prompt,
            now()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestStore;

    crate::store::testing::on_both_backends!(
        conversations_round_trip_and_delete_their_plugin_state,
        a_conversation_is_seen_only_through_its_own_project,
        deleting_takes_only_the_conversations_own_scope_of_state,
        options_round_trip,
        options_default_to_redaction_on
    );

    /// Plugin `p`, global connection `c1` and three plugin-state keys
    /// without a project in `store`.
    fn with_connection(store: &TestStore) {
        store
            .write(|tx| {
                tx.execute_batch(
                    "INSERT INTO plugins (id, version, sha256, manifest, approved_grant, installed_at, updated_at)
                     VALUES ('p', '1.0.0', 'x', '{}', '[]', 't', 't');
                     INSERT INTO connections (id, name, plugin_id, settings, auth_kind, is_global, status, created_at, updated_at)
                     VALUES ('c1', 'one', 'p', '{}', 'none', 1, 'active', 't', 't');
                     INSERT INTO plugin_state (connection_id, key, value, updated_at) VALUES
                        ('c1', 'conversation/k1/session', 's', 't'),
                        ('c1', 'conversation/k10/session', 's', 't'),
                        ('c1', 'other', 'o', 't');",
                )?;
                Ok(())
            })
            .unwrap();
    }

    fn message(role: MessageRole, content: &str) -> NewMessage {
        NewMessage {
            role,
            content: content.into(),
            model: None,
        }
    }

    fn conversations_round_trip_and_delete_their_plugin_state(store: &TestStore) {
        with_connection(store);
        let record = conversation("k1", None);
        store
            .write(|tx| {
                insert_conversation(tx, &record)?;
                append_messages(
                    tx,
                    "k1",
                    &[
                        message(MessageRole::System, "sys"),
                        message(MessageRole::User, "hi"),
                    ],
                )?;
                append_messages(tx, "k1", &[message(MessageRole::Assistant, "hello")])
            })
            .unwrap();
        let stored = store.read(|c| messages(c, "k1")).unwrap();
        let any = ProjectFilter::Any;
        let seqs: Vec<(u32, MessageRole)> = stored.iter().map(|m| (m.seq, m.role)).collect();
        assert_eq!(
            seqs,
            [
                (1, MessageRole::System),
                (2, MessageRole::User),
                (3, MessageRole::Assistant)
            ]
        );
        assert_eq!(
            store
                .read(|c| list_conversations(c, Some("c1"), &any, 10))
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            store.write(|tx| append_messages(tx, "nope", &[message(MessageRole::User, "x")])),
            Err(StoreError::NotFound(_))
        ));

        store
            .write(|tx| delete_conversation(tx, "k1", &any))
            .unwrap();
        assert!(matches!(
            store.read(|c| get_conversation(c, "k1", &any)),
            Err(StoreError::NotFound(_))
        ));
        assert!(store.read(|c| messages(c, "k1")).unwrap().is_empty());
        // Only that conversation's keys went (not `k10`'s, not others).
        let keys: Vec<String> = store
            .read(|c| {
                c.query_map(
                    "SELECT key FROM plugin_state ORDER BY key",
                    params![],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(keys, ["conversation/k10/session", "other"]);
    }

    fn conversation(id: &str, project: Option<&str>) -> ConversationRecord {
        ConversationRecord {
            id: id.into(),
            connection_id: "c1".into(),
            project: project.map(String::from),
            title: id.into(),
            created_at: now(),
            updated_at: now(),
        }
    }

    fn ids(list: Vec<ConversationRecord>) -> Vec<String> {
        let mut ids: Vec<String> = list.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    }

    fn a_conversation_is_seen_only_through_its_own_project(store: &TestStore) {
        with_connection(store);
        store
            .write(|tx| {
                insert_conversation(tx, &conversation("cx", Some("x")))?;
                insert_conversation(tx, &conversation("cy", Some("y")))?;
                insert_conversation(tx, &conversation("ce", Some("")))?;
                insert_conversation(tx, &conversation("cn", None))
            })
            .unwrap();
        let x = ProjectFilter::of(Some("x"));
        let get = |id: &str, f: &ProjectFilter| store.read(|c| get_conversation(c, id, f));
        assert_eq!(get("cx", &x).unwrap().project.as_deref(), Some("x"));
        assert_eq!(get("cx", &ProjectFilter::Any).unwrap().id, "cx");
        for (id, filter) in [
            ("cx", ProjectFilter::of(Some("y"))),
            ("cx", ProjectFilter::of(None)),
            ("cx", ProjectFilter::of(Some(""))),
            ("cn", ProjectFilter::of(Some(""))),
            ("ce", ProjectFilter::of(None)),
            ("cy", x.clone()),
        ] {
            let err = get(id, &filter).unwrap_err();
            assert!(matches!(err, StoreError::NoMatch(_)), "{id} {filter:?}");
            // The same words as for an id that exists nowhere.
            let missing = get("nowhere", &filter).unwrap_err().to_string();
            assert_eq!(err.to_string(), missing.replace("nowhere", id));
        }
        assert_eq!(
            get("cx", &ProjectFilter::of(None)).unwrap_err().to_string(),
            "conversation `cx` not found for calls without a project; conversations are kept \
             per connection and project: continue it for the project it was started for, or \
             start a new one"
        );
        let list =
            |f: &ProjectFilter| ids(store.read(|c| list_conversations(c, None, f, 10)).unwrap());
        assert_eq!(list(&x), ["cx"]);
        assert_eq!(list(&ProjectFilter::of(None)), ["cn"]);
        assert_eq!(list(&ProjectFilter::of(Some(""))), ["ce"]);
        assert_eq!(list(&ProjectFilter::Any), ["ce", "cn", "cx", "cy"]);
        let of_c1 = store
            .read(|c| list_conversations(c, Some("c1"), &x, 10))
            .unwrap();
        assert_eq!(ids(of_c1), ["cx"]);
    }

    fn deleting_takes_only_the_conversations_own_scope_of_state(store: &TestStore) {
        with_connection(store);
        store
            .write(|tx| {
                insert_conversation(tx, &conversation("k1", Some("x")))?;
                // The same key in the no-project scope (the fixture's) and
                // in y's: not this conversation's.
                tx.execute_batch(
                    "INSERT INTO plugin_state (connection_id, project, key, value, updated_at) VALUES
                        ('c1', 'x', 'conversation/k1/session', 's', 't'),
                        ('c1', 'y', 'conversation/k1/session', 's', 't');",
                )?;
                Ok(())
            })
            .unwrap();
        let err = store
            .write(|tx| delete_conversation(tx, "k1", &ProjectFilter::of(Some("y"))))
            .unwrap_err();
        assert!(matches!(err, StoreError::NoMatch(_)), "{err}");
        store
            .write(|tx| delete_conversation(tx, "k1", &ProjectFilter::of(Some("x"))))
            .unwrap();
        let left: Vec<(Option<String>, String)> = store
            .read(|c| {
                c.query_map(
                    "SELECT project, key FROM plugin_state ORDER BY project IS NOT NULL, project, key",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        let expected: Vec<(Option<String>, String)> = [
            (None, "conversation/k1/session"),
            (None, "conversation/k10/session"),
            (None, "other"),
            (Some("y"), "conversation/k1/session"),
        ]
        .into_iter()
        .map(|(p, k)| (p.map(String::from), k.to_string()))
        .collect();
        assert_eq!(left, expected);
    }

    fn options_round_trip(store: &TestStore) {
        with_connection(store);
        let options = ChatOptions {
            redaction: false,
            system_prompt: Some("You are an SRE.".into()),
        };
        store
            .write(|tx| set_chat_options(tx, "c1", &options))
            .unwrap();
        assert_eq!(store.read(|c| chat_options(c, "c1")).unwrap(), options);
    }

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(title_of("  hello\n  world "), "hello world");
        let long = "é".repeat(200);
        let t = title_of(&long);
        assert_eq!(t.chars().count(), 80);
        assert!(t.ends_with('…'));
    }

    fn options_default_to_redaction_on(store: &TestStore) {
        with_connection(store);
        let options = store.read(|c| chat_options(c, "nope")).unwrap();
        assert!(options.redaction);
        assert_eq!(options.system_prompt, None);
    }
}
