//! {{name}}: an airlock tickets plugin. The host runs it in a sandbox, adds
//! the connection's credential to its requests and records each one; the
//! plugin only ever sees its settings and the answers.
//!
//! The service it talks to here is a plain REST shape; replace the paths
//! and the mapping in `ticket` with your service's:
//!
//! | operation        | request                                  |
//! |------------------|------------------------------------------|
//! | test-connection  | `GET {base-url}/api/me`                  |
//! | tickets.search   | `GET {base-url}/api/tickets?q=&limit=`   |
//! | tickets.create   | `POST {base-url}/api/tickets`            |
//! | tickets.get      | `GET {base-url}/api/tickets/{id}`        |
//! | tickets.update   | `PATCH {base-url}/api/tickets/{id}`      |
//! | sync.fetch-page  | `GET {base-url}/api/tickets?offset=&limit=` |

use airlock_sdk::http::{Request, encode_component, join_url};
use airlock_sdk::types::{
    ConnectionReport, NewTicket, PluginError, Priority, SyncPage, SyncRecord, SyncRequest, Ticket,
    TicketQuery, TicketUpdate,
};
use airlock_sdk::{Connector, SyncSource, Tickets, setting_required};
use serde::Deserialize;
use serde_json::{Value, json};

struct Plugin;

/// A ticket as the service answers it.
#[derive(Deserialize)]
struct Wire {
    id: String,
    number: Option<String>,
    title: String,
    description: Option<String>,
    state: Option<String>,
    priority: Option<String>,
    updated_at: Option<String>,
}

fn base() -> Result<String, PluginError> {
    setting_required("base-url")
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::P1 => "p1",
        Priority::P2 => "p2",
        Priority::P3 => "p3",
        Priority::P4 => "p4",
    }
}

fn priority(name: Option<&str>) -> Option<Priority> {
    match name? {
        "p1" => Some(Priority::P1),
        "p2" => Some(Priority::P2),
        "p3" => Some(Priority::P3),
        "p4" => Some(Priority::P4),
        _ => None,
    }
}

fn ticket(w: Wire, base: &str) -> Ticket {
    Ticket {
        url: Some(join_url(base, &format!("/tickets/{}", encode_component(&w.id)))),
        priority: priority(w.priority.as_deref()),
        id: w.id,
        number: w.number,
        title: w.title,
        description: w.description,
        kind: None,
        state: w.state,
        created_at: None,
        updated_at: w.updated_at,
        fields: "{}".into(),
    }
}

/// `fields` is a JSON object (as a string) of extra service fields.
fn extra_fields(fields: Option<&str>) -> Result<serde_json::Map<String, Value>, PluginError> {
    match fields {
        None => Ok(Default::default()),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(PluginError::InvalidInput("fields must be a JSON object".into())),
        },
    }
}

impl Connector for Plugin {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        #[derive(Deserialize)]
        struct Me {
            name: String,
        }
        let base = base()?;
        // Non-2xx answers become the matching `PluginError` (401 -> unauthorized, ...).
        let me: Me = Request::get(join_url(&base, "/api/me")).send_json()?;
        Ok(ConnectionReport {
            account: Some(me.name.clone()),
            message: format!("connected to {base} as {}", me.name),
            details: vec![],
        })
    }
}

impl Tickets for Plugin {
    fn search(query: TicketQuery) -> Result<Vec<Ticket>, PluginError> {
        let base = base()?;
        let limit = if query.limit == 0 { 20 } else { query.limit.min(100) };
        let text = query.text.unwrap_or_default();
        let url = join_url(
            &base,
            &format!("/api/tickets?q={}&limit={limit}", encode_component(&text)),
        );
        let found: Vec<Wire> = Request::get(url).send_json()?;
        Ok(found.into_iter().map(|w| ticket(w, &base)).collect())
    }

    fn create(new: NewTicket) -> Result<Ticket, PluginError> {
        let base = base()?;
        let title = new.title.trim();
        if title.is_empty() {
            return Err(PluginError::InvalidInput("title is empty".into()));
        }
        let mut body = extra_fields(new.fields.as_deref())?;
        body.insert("title".into(), json!(title));
        body.insert("description".into(), json!(new.description));
        body.insert("priority".into(), json!(new.priority.map(priority_name)));
        let created: Wire = Request::post(join_url(&base, "/api/tickets"))
            .json(&body)
            .send_json()?;
        Ok(ticket(created, &base))
    }

    fn get(id: String) -> Result<Ticket, PluginError> {
        let base = base()?;
        let url = join_url(&base, &format!("/api/tickets/{}", encode_component(&id)));
        Ok(ticket(Request::get(url).send_json()?, &base))
    }

    fn update(update: TicketUpdate) -> Result<Ticket, PluginError> {
        let base = base()?;
        let mut body = extra_fields(update.fields.as_deref())?;
        for (key, value) in [
            ("title", update.title.map(Value::from)),
            ("description", update.description.map(Value::from)),
            ("state", update.state.map(Value::from)),
            ("priority", update.priority.map(|p| Value::from(priority_name(p)))),
        ] {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        }
        let url = join_url(&base, &format!("/api/tickets/{}", encode_component(&update.id)));
        Ok(ticket(Request::patch(url).json(&body).send_json()?, &base))
    }
}

impl SyncSource for Plugin {
    /// Pages by offset; a real service wants a "changed since" query and a
    /// cursor of (timestamp, id) so nothing is skipped or read twice.
    fn fetch_page(request: SyncRequest) -> Result<SyncPage, PluginError> {
        let base = base()?;
        let offset: u64 = match request.cursor.as_deref() {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| PluginError::InvalidInput(format!("cursor {c:?} is not ours")))?,
        };
        let limit = request.page_size.clamp(1, 100);
        let url = join_url(&base, &format!("/api/tickets?offset={offset}&limit={limit}"));
        let page: Vec<Value> = Request::get(url).send_json()?;
        let has_more = page.len() as u32 == limit;
        let records = page
            .iter()
            .map(|t| SyncRecord {
                id: t["id"].as_str().unwrap_or_default().to_string(),
                kind: "ticket".into(),
                updated_at: t["updated_at"].as_str().map(str::to_string),
                data: t.to_string(),
            })
            .collect::<Vec<_>>();
        Ok(SyncPage {
            next_cursor: Some((offset + records.len() as u64).to_string()),
            records,
            has_more,
        })
    }
}

airlock_sdk::export!(Plugin, world = tickets, manifest = "airlock.toml");
