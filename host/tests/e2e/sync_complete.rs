//! Sync completeness: the real ServiceNow, Azure DevOps and Confluence
//! plugins, run by the service (`Airlock::sync`, runs, cursors and records
//! in real SQLite), against loopback servers that evaluate the plugins'
//! queries the way the real APIs do, with 1,000 records sharing one
//! timestamp (one second; one minute for Confluence). A full sync, then a
//! delta after more records are saved at that same timestamp and a later
//! one, must store exactly the upstream's records. Where an upstream cannot
//! be paged to the end, the run must end `failed` with a reason, never
//! `succeeded`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use airlock::Airlock;
use airlock::service::{AuthInput, NewConnection, Scope};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::CANARY;

/// Records many enough that no page size or per-request limit covers them.
const BULK: usize = 1000;

/// A fresh data directory with `plugin` installed.
fn service(plugin: &str) -> (tempfile::TempDir, Airlock) {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::openai::service(dir.path(), plugin);
    (dir, airlock)
}

fn add(airlock: &Airlock, name: &str, plugin: &str, settings: &[(&str, &str)]) {
    airlock
        .add_connection(NewConnection {
            name: name.into(),
            plugin_id: plugin.into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            auth: AuthInput::Basic {
                username: "sync@acme.example".into(),
                password: SecretString::from(CANARY),
            },
            scope: Scope::Global,
        })
        .unwrap();
}

/// A scrambled but stable id for record `n`, so id order is not the order
/// records were created in.
fn scrambled(n: usize) -> u64 {
    (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20
}

/// Run a sync and check it succeeded and the store holds exactly `want`.
async fn assert_synced(airlock: &Airlock, name: &str, full: bool, page: u32, want: &[String]) {
    let run = airlock.sync(name, full, page, |_| {}).await.unwrap();
    assert_eq!(run.status, "succeeded", "{run:?}");
    let stored: Vec<String> = airlock
        .synced_records(name, 100_000, 0)
        .unwrap()
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    let want_set: BTreeSet<&String> = want.iter().collect();
    assert_eq!(stored.len(), stored_set.len(), "no record stored twice");
    let missing: Vec<_> = want_set.difference(&stored_set).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records missing after a {} sync, e.g. {missing:?}",
        want_set.len() - stored_set.intersection(&want_set).count(),
        want.len(),
        if full { "full" } else { "delta" }
    );
    assert_eq!(stored_set, want_set);
}

/// Run a sync that must fail; the reason is returned.
async fn assert_fails(airlock: &Airlock, name: &str, page: u32) -> String {
    let err = airlock
        .sync(name, true, page, |_| {})
        .await
        .expect_err("an incomplete sync must not succeed");
    let run = &airlock.sync_runs(name, 1).unwrap()[0];
    assert_eq!(run.status, "failed", "{run:?}");
    let reason = run.error.clone().unwrap_or_default();
    assert_eq!(reason, err.to_string());
    reason
}

fn query_of(request: &Request) -> BTreeMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

fn bad_request(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({"message": message}))
}

// ---- ServiceNow ------------------------------------------------------------------

/// Incidents on a loopback Table API: `sysparm_query` conditions on
/// `sys_updated_on` and `sys_id` (`>=`, `>`, `<`, `<=`, `=`, with `^` for
/// AND and `^OR` joining a condition to the one before it), `ORDERBY`,
/// `sysparm_offset` and `sysparm_limit`, as the Table API evaluates them.
#[derive(Clone, Default)]
struct TableApi {
    /// `(sys_id, sys_updated_on)`.
    rows: Arc<Mutex<Vec<(String, String)>>>,
    /// An instance whose order among records of one second changes from
    /// request to request (it ignores `ORDERBYsys_id`).
    unstable_ties: bool,
    requests: Arc<AtomicUsize>,
}

impl TableApi {
    fn add(&self, updated: &str, ids: impl IntoIterator<Item = String>) {
        let mut rows = self.rows.lock().unwrap();
        rows.extend(ids.into_iter().map(|id| (id, updated.to_string())));
    }

    fn ids(&self) -> Vec<String> {
        self.rows
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.0.clone())
            .collect()
    }
}

fn sn_id(n: usize) -> String {
    format!("{:032x}", u128::from(scrambled(n)) << 64 | n as u128)
}

/// One `field op value` of an encoded query, evaluated on a row.
fn sn_condition(text: &str, row: &(String, String)) -> Result<bool, String> {
    let field_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .ok_or(format!("no operator in `{text}`"))?;
    let (field, rest) = text.split_at(field_end);
    let value = match field {
        "sys_id" => &row.0,
        "sys_updated_on" => &row.1,
        other => return Err(format!("field `{other}` is not on this table")),
    };
    for op in [">=", "<=", ">", "<", "="] {
        if let Some(operand) = rest.strip_prefix(op) {
            let v = value.as_str();
            return Ok(match op {
                ">=" => v >= operand,
                "<=" => v <= operand,
                ">" => v > operand,
                "<" => v < operand,
                _ => v == operand,
            });
        }
    }
    Err(format!("unknown operator in `{text}`"))
}

impl Respond for TableApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let round = self.requests.fetch_add(1, Ordering::SeqCst);
        let q = query_of(request);
        let encoded = q.get("sysparm_query").cloned().unwrap_or_default();
        let (mut and, mut order) = (Vec::<Vec<String>>::new(), Vec::new());
        for term in encoded.split('^').filter(|t| !t.is_empty()) {
            if let Some(field) = term.strip_prefix("ORDERBY") {
                order.push(field.to_string());
            } else if let Some(alternative) = term.strip_prefix("OR") {
                match and.last_mut() {
                    Some(group) => group.push(alternative.to_string()),
                    None => return bad_request("^OR without a condition before it"),
                }
            } else {
                and.push(vec![term.to_string()]);
            }
        }
        let mut rows = Vec::new();
        for row in self.rows.lock().unwrap().iter() {
            let mut keep = true;
            for group in &and {
                let mut any = false;
                for condition in group {
                    match sn_condition(condition, row) {
                        Ok(hit) => any |= hit,
                        Err(why) => return bad_request(&why),
                    }
                }
                keep &= any;
            }
            if keep {
                rows.push(row.clone());
            }
        }
        if self.unstable_ties {
            // Same second: whatever order this request happens to give.
            rows.sort_by(|a, b| a.1.cmp(&b.1));
            let len = rows.len().max(1);
            rows.rotate_left((round * 7) % len);
            rows.sort_by(|a, b| a.1.cmp(&b.1));
        } else {
            for field in order.iter().rev() {
                match field.as_str() {
                    "sys_id" => rows.sort_by(|a, b| a.0.cmp(&b.0)),
                    "sys_updated_on" => rows.sort_by(|a, b| a.1.cmp(&b.1)),
                    other => return bad_request(&format!("cannot order by `{other}`")),
                }
            }
        }
        let number = |k: &str, default: usize| {
            q.get(k)
                .map(|v| v.parse::<usize>().unwrap())
                .unwrap_or(default)
        };
        let (offset, limit) = (number("sysparm_offset", 0), number("sysparm_limit", 10_000));
        let result: Vec<Value> = rows
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(id, updated)| {
                json!({"sys_id": id, "number": format!("INC{}", &id[..7]),
                       "short_description": "bulk", "sys_updated_on": updated})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "result": result }))
    }
}

async fn servicenow(api: &TableApi) -> (MockServer, tempfile::TempDir, Airlock) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .respond_with(api.clone())
        .mount(&server)
        .await;
    let (dir, airlock) = service("servicenow");
    add(
        &airlock,
        "sn",
        "servicenow",
        &[("base-url", server.uri().as_str())],
    );
    (server, dir, airlock)
}

#[tokio::test]
async fn servicenow_syncs_every_record_of_a_crowded_second() {
    let api = TableApi::default();
    let second = "2026-11-20 10:15:00";
    api.add("2026-11-20 09:00:00", (0..5).map(|n| sn_id(5000 + n)));
    api.add(second, (0..BULK).map(sn_id));
    let (_server, _dir, airlock) = servicenow(&api).await;
    assert_synced(&airlock, "sn", true, 100, &api.ids()).await;

    // Saved later with the same second (a late commit of the import), and
    // one second later.
    api.add(second, (BULK..BULK + 300).map(sn_id));
    api.add("2026-11-20 10:15:01", (0..2).map(|n| sn_id(9000 + n)));
    assert_synced(&airlock, "sn", false, 100, &api.ids()).await;
    assert_eq!(api.ids().len(), BULK + 307);
}

#[tokio::test]
async fn servicenow_fails_rather_than_page_an_unstable_order() {
    let api = TableApi {
        unstable_ties: true,
        ..TableApi::default()
    };
    api.add("2026-11-20 10:15:00", (0..BULK).map(sn_id));
    let (_server, _dir, airlock) = servicenow(&api).await;
    let reason = assert_fails(&airlock, "sn", 100).await;
    assert!(reason.contains("sysparm_query"), "{reason}");
}
