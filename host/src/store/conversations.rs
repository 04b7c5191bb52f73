//! Chat conversations (`conversations`, `conversation_messages`) and
//! per-connection chat options (`chat_options`).
//!
//! Plugin state a plugin keeps for one conversation lives under keys
//! starting with `conversation/<conversation id>/` (the custom-rest
//! plugin's gateway session, for example); deleting the conversation
//! deletes those keys with it.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{StoreError, now};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationRecord {
    /// Random hex id.
    pub id: String,
    /// The AI provider connection it belongs to.
    pub connection_id: String,
    /// The first user message, shortened.
    pub title: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC of the last message.
    pub updated_at: String,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

fn conversation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationRecord> {
    Ok(ConversationRecord {
        id: r.get(0)?,
        connection_id: r.get(1)?,
        title: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

const COLUMNS: &str = "id, connection_id, title, created_at, updated_at";

pub fn insert_conversation(
    tx: &Transaction<'_>,
    record: &ConversationRecord,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO conversations (id, connection_id, title, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            record.id,
            record.connection_id,
            record.title,
            record.created_at,
            record.updated_at
        ],
    )?;
    Ok(())
}

pub fn get_conversation(conn: &Connection, id: &str) -> Result<ConversationRecord, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM conversations WHERE id = ?1"),
        [id],
        conversation_from_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("conversation `{id}`")))
}

/// Conversations, newest activity first; only one connection's when given.
pub fn list_conversations(
    conn: &Connection,
    connection_id: Option<&str>,
    limit: u32,
) -> Result<Vec<ConversationRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM conversations
         WHERE (?1 IS NULL OR connection_id = ?1)
         ORDER BY updated_at DESC, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![connection_id, limit], conversation_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A conversation's messages in order.
pub fn messages(
    conn: &Connection,
    conversation_id: &str,
) -> Result<Vec<MessageRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, role, content, model, created_at FROM conversation_messages
         WHERE conversation_id = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([conversation_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let role: String = r.get(1)?;
        out.push(MessageRecord {
            seq: r.get(0)?,
            role: MessageRole::parse(&role)?,
            content: r.get(2)?,
            model: r.get(3)?,
            created_at: r.get(4)?,
        });
    }
    Ok(out)
}

/// Append messages after the last one and touch the conversation.
pub fn append_messages(
    tx: &Transaction<'_>,
    conversation_id: &str,
    new: &[NewMessage],
) -> Result<(), StoreError> {
    get_conversation(tx, conversation_id)?;
    let last: u32 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM conversation_messages WHERE conversation_id = ?1",
        [conversation_id],
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

/// Delete a conversation, its messages, and the plugin state kept for it
/// (keys under `conversation/<id>/`).
pub fn delete_conversation(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    let record = get_conversation(tx, id)?;
    tx.execute(
        "DELETE FROM plugin_state WHERE connection_id = ?1 AND substr(key, 1, ?2) = ?3",
        params![
            record.connection_id,
            state_prefix(id).len() as i64,
            state_prefix(id)
        ],
    )?;
    tx.execute("DELETE FROM conversations WHERE id = ?1", [id])?;
    Ok(())
}

/// The plugin-state key prefix of a conversation.
pub fn state_prefix(conversation_id: &str) -> String {
    format!("conversation/{conversation_id}/")
}

pub fn chat_options(conn: &Connection, connection_id: &str) -> Result<ChatOptions, StoreError> {
    Ok(conn
        .query_row(
            "SELECT redaction, system_prompt FROM chat_options WHERE connection_id = ?1",
            [connection_id],
            |r| {
                Ok(ChatOptions {
                    redaction: r.get::<_, i64>(0)? != 0,
                    system_prompt: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

pub fn set_chat_options(
    tx: &Transaction<'_>,
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
    use crate::store::Store;

    fn store_with_connection() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
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
        (dir, store)
    }

    fn message(role: MessageRole, content: &str) -> NewMessage {
        NewMessage {
            role,
            content: content.into(),
            model: None,
        }
    }

    #[test]
    fn conversations_round_trip_and_delete_their_plugin_state() {
        let (_dir, store) = store_with_connection();
        let record = ConversationRecord {
            id: "k1".into(),
            connection_id: "c1".into(),
            title: "hi".into(),
            created_at: now(),
            updated_at: now(),
        };
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
                .read(|c| list_conversations(c, Some("c1"), 10))
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            store.write(|tx| append_messages(tx, "nope", &[message(MessageRole::User, "x")])),
            Err(StoreError::NotFound(_))
        ));

        store.write(|tx| delete_conversation(tx, "k1")).unwrap();
        assert!(matches!(
            store.read(|c| get_conversation(c, "k1")),
            Err(StoreError::NotFound(_))
        ));
        assert!(store.read(|c| messages(c, "k1")).unwrap().is_empty());
        // Only that conversation's keys went (not `k10`'s, not others).
        let keys: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT key FROM plugin_state ORDER BY key")?;
                let keys = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok(keys)
            })
            .unwrap();
        assert_eq!(keys, ["conversation/k10/session", "other"]);
    }

    #[test]
    fn options_round_trip() {
        let (_dir, store) = store_with_connection();
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

    #[test]
    fn options_default_to_redaction_on() {
        let (_dir, store) = store_with_connection();
        let options = store.read(|c| chat_options(c, "nope")).unwrap();
        assert!(options.redaction);
        assert_eq!(options.system_prompt, None);
    }
}
