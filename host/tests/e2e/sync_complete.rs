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
pub(crate) struct TableApi {
    /// `(sys_id, sys_updated_on)`.
    rows: Arc<Mutex<Vec<(String, String)>>>,
    /// An instance whose order among records of one second changes from
    /// request to request (it ignores `ORDERBYsys_id`).
    unstable_ties: bool,
    requests: Arc<AtomicUsize>,
}

impl TableApi {
    pub(crate) fn add(&self, updated: &str, ids: impl IntoIterator<Item = String>) {
        let mut rows = self.rows.lock().unwrap();
        rows.extend(ids.into_iter().map(|id| (id, updated.to_string())));
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.rows
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.0.clone())
            .collect()
    }
}

pub(crate) fn sn_id(n: usize) -> String {
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

// ---- Azure DevOps ----------------------------------------------------------------

/// Work items on a loopback Azure DevOps: `POST .../_apis/wit/wiql` evaluates
/// the flat WIQL the plugin sends (`AND` of conditions, one level of
/// parenthesised `OR`, on `[System.TeamProject]`, `[System.ChangedDate]`
/// (with `timePrecision=true`) and `[System.Id]`; `ORDER BY`), honours
/// `$top` and refuses more than 20,000 results without it (VS402337);
/// `GET _apis/wit/workitems?ids=` reads at most 200 ids.
#[derive(Clone, Default)]
struct Boards {
    /// `(id, System.ChangedDate)`.
    items: Arc<Mutex<Vec<(u64, String)>>>,
    /// A service whose order among work items of one millisecond changes
    /// from query to query (it ignores `[System.Id]` in `ORDER BY`).
    unstable_ties: bool,
    queries: Arc<AtomicUsize>,
}

impl Boards {
    fn add(&self, changed: &str, ids: impl IntoIterator<Item = u64>) {
        let mut items = self.items.lock().unwrap();
        items.extend(ids.into_iter().map(|id| (id, changed.to_string())));
    }

    fn ids(&self) -> Vec<String> {
        let items = self.items.lock().unwrap();
        items.iter().map(|i| i.0.to_string()).collect()
    }
}

fn ado_id(n: usize) -> u64 {
    1 + scrambled(n) % 9_000_000
}

/// Split `text` on `sep` outside parentheses.
fn split_top(text: &str, sep: &str) -> Vec<String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ if depth == 0 && text[i..].starts_with(sep) => {
                parts.push(text[start..i].trim().to_string());
                i += sep.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(text[start..].trim().to_string());
    parts
}

fn wiql_condition(text: &str, item: &(u64, String)) -> Result<bool, String> {
    let mut words = text.splitn(3, ' ');
    let (field, op, value) = (
        words.next().unwrap_or(""),
        words.next().unwrap_or(""),
        words.next().unwrap_or("").trim(),
    );
    let cmp = match field {
        "[System.TeamProject]" if value == "@project" => return Ok(op == "="),
        "[System.Id]" => item
            .0
            .cmp(&value.parse::<u64>().map_err(|e| e.to_string())?),
        "[System.ChangedDate]" => {
            let literal = value.trim_matches('\'');
            if !literal.ends_with('Z') || literal.len() != 24 {
                return Err(format!("the date `{literal}` is not valid"));
            }
            item.1.as_str().cmp(literal)
        }
        other => return Err(format!("TF51005: the field {other} does not exist")),
    };
    Ok(match op {
        ">=" => cmp.is_ge(),
        ">" => cmp.is_gt(),
        "<=" => cmp.is_le(),
        "<" => cmp.is_lt(),
        "=" => cmp.is_eq(),
        other => return Err(format!("unknown operator {other}")),
    })
}

impl Boards {
    fn wiql(&self, request: &Request) -> ResponseTemplate {
        let round = self.queries.fetch_add(1, Ordering::SeqCst);
        let q = query_of(request);
        if q.get("timePrecision").map(String::as_str) != Some("true") {
            return bad_request("this mock needs timePrecision=true for times");
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let wiql = body["query"].as_str().unwrap_or_default();
        let Some(rest) = wiql.strip_prefix("SELECT [System.Id] FROM WorkItems WHERE ") else {
            return bad_request("only flat SELECT [System.Id] queries");
        };
        let (condition, order) = rest.split_once(" ORDER BY ").unwrap_or((rest, ""));
        let mut matched = Vec::new();
        for item in self.items.lock().unwrap().iter() {
            let mut keep = true;
            for term in split_top(condition, " AND ") {
                let term = term.trim_start_matches('(').trim_end_matches(')');
                let mut any = false;
                for alternative in split_top(term, " OR ") {
                    match wiql_condition(&alternative, item) {
                        Ok(hit) => any |= hit,
                        Err(why) => return bad_request(&why),
                    }
                }
                keep &= any;
            }
            if keep {
                matched.push(item.clone());
            }
        }
        if order != "[System.ChangedDate] ASC, [System.Id] ASC" {
            return bad_request(&format!(
                "this mock orders only by date and id, not `{order}`"
            ));
        }
        if self.unstable_ties {
            // Same millisecond: storage order, from wherever this query
            // happens to start.
            let len = matched.len().max(1);
            matched.rotate_left((round * 7) % len);
            matched.sort_by(|a, b| a.1.cmp(&b.1));
        } else {
            matched.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
        }
        let top = q.get("$top").map(|t| t.parse::<usize>().unwrap());
        if top.is_none_or(|t| t > 20_000) && matched.len() > 20_000 {
            return bad_request(
                "VS402337: The number of work items returned exceeds the size limit of 20000.",
            );
        }
        let refs: Vec<Value> = matched
            .iter()
            .take(top.unwrap_or(20_000))
            .map(|(id, _)| json!({"id": id, "url": format!("https://dev.azure.com/_apis/wit/workItems/{id}")}))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "queryType": "flat", "asOf": "2026-11-21T00:00:00.000Z", "workItems": refs
        }))
    }

    fn batch(&self, request: &Request) -> ResponseTemplate {
        let q = query_of(request);
        let ids: Vec<u64> = q["ids"].split(',').map(|i| i.parse().unwrap()).collect();
        if ids.len() > 200 {
            return bad_request("VS403474: at most 200 work items per batch");
        }
        let items = self.items.lock().unwrap();
        let value: Vec<Value> = ids
            .iter()
            .filter_map(|id| items.iter().find(|i| i.0 == *id))
            .map(|(id, changed)| {
                json!({"id": id, "rev": 1, "fields": {
                    "System.TeamProject": "Web", "System.Title": format!("item {id}"),
                    "System.WorkItemType": "Task", "System.State": "New",
                    "System.ChangedDate": changed}})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"count": value.len(), "value": value}))
    }
}

impl Respond for Boards {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match request.url.path() {
            "/acme/Web/_apis/wit/wiql" => self.wiql(request),
            "/acme/_apis/wit/workitems" => self.batch(request),
            other => ResponseTemplate::new(404).set_body_string(other.to_string()),
        }
    }
}

async fn azure_devops(boards: &Boards) -> (MockServer, tempfile::TempDir, Airlock) {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path_regex("^/acme/"))
        .respond_with(boards.clone())
        .mount(&server)
        .await;
    let (dir, airlock) = service("azure-devops");
    let base = format!("{}/acme", server.uri());
    add(
        &airlock,
        "ado",
        "azure-devops",
        &[("base-url", base.as_str()), ("project", "Web")],
    );
    (server, dir, airlock)
}

#[tokio::test]
async fn azure_devops_syncs_every_work_item_of_a_crowded_millisecond() {
    let boards = Boards::default();
    let moment = "2026-11-20T10:15:00.123Z";
    boards.add("2026-11-20T09:00:00.000Z", (0..5).map(|n| ado_id(5000 + n)));
    boards.add(moment, (0..BULK).map(ado_id));
    let (_server, _dir, airlock) = azure_devops(&boards).await;
    assert_synced(&airlock, "ado", true, 100, &boards.ids()).await;

    boards.add(moment, (BULK..BULK + 300).map(ado_id));
    boards.add("2026-11-20T10:15:00.124Z", (0..2).map(|n| ado_id(9000 + n)));
    assert_synced(&airlock, "ado", false, 100, &boards.ids()).await;
    assert_eq!(boards.ids().len(), BULK + 307);
}

#[tokio::test]
async fn azure_devops_fails_rather_than_page_an_unstable_order() {
    let boards = Boards {
        unstable_ties: true,
        ..Boards::default()
    };
    boards.add("2026-11-20T10:15:00.123Z", (0..BULK).map(ado_id));
    let (_server, _dir, airlock) = azure_devops(&boards).await;
    let reason = assert_fails(&airlock, "ado", 100).await;
    assert!(reason.contains("out of order"), "{reason}");
}

// ---- Confluence ------------------------------------------------------------------

/// Pages on a loopback Confluence Data Center: `GET /rest/api/content/search`
/// evaluates `type=page [AND lastmodified >= "yyyy-MM-dd HH:mm"] ORDER BY
/// lastmodified ASC` (minute precision, ties in index order), serves at most
/// 50 results a request from `start`, and links the next page by offset,
/// with `totalSize`.
#[derive(Clone, Default)]
struct Wiki {
    /// `(id, version.when)`, in index order.
    pages: Arc<Mutex<Vec<(u64, String)>>>,
    /// Results beyond this offset are not served (a search window).
    window: Option<usize>,
}

impl Wiki {
    fn add(&self, when: &str, ids: impl IntoIterator<Item = u64>) {
        let mut pages = self.pages.lock().unwrap();
        pages.extend(ids.into_iter().map(|id| (id, when.to_string())));
    }

    fn ids(&self) -> Vec<String> {
        let pages = self.pages.lock().unwrap();
        pages.iter().map(|p| p.0.to_string()).collect()
    }
}

fn wiki_id(n: usize) -> u64 {
    65_536 + scrambled(n) % 90_000_000
}

impl Respond for Wiki {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let q = query_of(request);
        let cql = q.get("cql").cloned().unwrap_or_default();
        let Some(condition) = cql.strip_suffix(" ORDER BY lastmodified ASC") else {
            return bad_request("this mock needs ORDER BY lastmodified ASC");
        };
        let since = match condition.strip_prefix("type=page") {
            Some("") => None,
            Some(rest) => match rest
                .strip_prefix(" AND lastmodified >= \"")
                .and_then(|r| r.strip_suffix('"'))
            {
                Some(minute) if minute.len() == 16 => Some(minute.replace(' ', "T")),
                _ => return bad_request(&format!("cannot parse the CQL `{cql}`")),
            },
            None => return bad_request("only type=page"),
        };
        let mut hits: Vec<(u64, String)> = self
            .pages
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, when)| since.as_ref().is_none_or(|s| &when[..16] >= s.as_str()))
            .cloned()
            .collect();
        hits.sort_by(|a, b| a.1.cmp(&b.1));
        let number = |k: &str| q.get(k).map(|v| v.parse::<usize>().unwrap());
        let (start, limit) = (number("start").unwrap_or(0), number("limit").unwrap_or(25));
        let limit = limit.min(50);
        let served = self.window.unwrap_or(usize::MAX).min(hits.len());
        let results: Vec<Value> = hits
            .iter()
            .take(served)
            .skip(start)
            .take(limit)
            .map(|(id, when)| {
                json!({"id": id.to_string(), "type": "page", "status": "current",
                       "title": format!("Page {id}"),
                       "version": {"number": 1, "when": when},
                       "body": {"storage": {"value": "<p>x</p>", "representation": "storage"}}})
            })
            .collect();
        let mut links = json!({"base": "http://wiki", "context": ""});
        if start + results.len() < served {
            links["next"] = json!(format!(
                "/rest/api/content/search?cql={}&limit={limit}&start={}&expand={}",
                url_encode(&cql),
                start + results.len(),
                q.get("expand").cloned().unwrap_or_default()
            ));
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "results": results, "start": start, "limit": limit, "size": results.len(),
            "totalSize": hits.len(), "_links": links
        }))
    }
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn confluence(wiki: &Wiki) -> (MockServer, tempfile::TempDir, Airlock) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/content/search"))
        .respond_with(wiki.clone())
        .mount(&server)
        .await;
    let (dir, airlock) = service("confluence");
    add(
        &airlock,
        "wiki",
        "confluence",
        &[
            ("base-url", server.uri().as_str()),
            ("deployment", "data-center"),
        ],
    );
    (server, dir, airlock)
}

/// The tester's report: 365 pages in one minute came back as 315 with a
/// `succeeded` run, and neither a delta nor `--full` recovered the rest.
#[tokio::test]
async fn confluence_syncs_every_page_of_a_crowded_minute() {
    let wiki = Wiki::default();
    wiki.add(
        "2026-11-20T09:00:00.000Z",
        (0..5).map(|n| wiki_id(5000 + n)),
    );
    for n in 0..BULK {
        wiki.add(
            &format!("2026-11-20T10:15:{:02}.{:03}Z", n % 60, n % 1000),
            [wiki_id(n)],
        );
    }
    let (_server, _dir, airlock) = confluence(&wiki).await;
    assert_synced(&airlock, "wiki", true, 50, &wiki.ids()).await;

    // Saved later in that same minute, and a minute later.
    wiki.add("2026-11-20T10:15:59.999Z", (BULK..BULK + 300).map(wiki_id));
    wiki.add(
        "2026-11-20T10:16:00.000Z",
        (0..2).map(|n| wiki_id(9000 + n)),
    );
    assert_synced(&airlock, "wiki", false, 50, &wiki.ids()).await;
    assert_eq!(wiki.ids().len(), BULK + 307);
}

#[tokio::test]
async fn confluence_fails_when_the_search_stops_short_of_its_results() {
    let wiki = Wiki {
        window: Some(500),
        ..Wiki::default()
    };
    wiki.add("2026-11-20T10:15:00.000Z", (0..BULK).map(wiki_id));
    let (_server, _dir, airlock) = confluence(&wiki).await;
    let reason = assert_fails(&airlock, "wiki", 50).await;
    assert!(reason.contains("500 of 1000"), "{reason}");
}

// ---- the host's sync loop --------------------------------------------------------

/// A plugin page that says `has-more` with no records and no cursor would
/// be asked for again unchanged forever: the run ends `failed` at once,
/// naming the plugin, instead of looping or ending `succeeded`.
#[tokio::test]
async fn a_page_with_more_but_no_cursor_fails_the_run() {
    let feed = MockServer::start().await;
    Mock::given(path("/feed"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "records": [], "next_cursor": null, "has_more": true
        })))
        .mount(&feed)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    crate::service::install(&airlock, airlock_test_artifacts::PROBE);
    let url = format!("{}/feed", feed.uri());
    airlock
        .add_connection(NewConnection {
            name: "feed".into(),
            plugin_id: "probe".into(),
            settings: BTreeMap::from([
                ("base-url".to_string(), feed.uri()),
                ("action".to_string(), "ok".to_string()),
                ("url".to_string(), url),
            ]),
            auth: AuthInput::None,
            scope: Scope::Global,
        })
        .unwrap();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        airlock.sync("feed", true, 10, |_| {}),
    )
    .await
    .expect("the run ends instead of asking for the same page forever");
    let err = outcome.expect_err("a run that cannot continue must not succeed");
    assert!(
        err.to_string().contains("without advancing its cursor"),
        "{err}"
    );
    let run = &airlock.sync_runs("feed", 1).unwrap()[0];
    assert_eq!(run.status, "failed");
    assert_eq!(run.pages, 1);
    assert_eq!(run.error.as_deref(), Some(err.to_string().as_str()));
}

/// Two servers on one PostgreSQL database (two `Airlock`s sharing the
/// master key): a sync runs on one at a time, and a sync whose server
/// stopped mid-run (its future dropped after three committed pages, its
/// lease left to run out) resumes from its last committed cursor on the
/// other, which marks the dead run failed. The records stored end up
/// exactly the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_stopped_on_one_server_resumes_from_its_cursor_on_another() {
    let api = TableApi::default();
    api.add("2026-11-20 09:00:00", (0..1000).map(sn_id));
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .respond_with(api.clone())
        .mount(&server)
        .await;
    let database =
        airlock::DatabaseUrl::parse(&airlock_test_artifacts::postgres::shared().database())
            .unwrap();
    let key = tempfile::tempdir().unwrap();
    let lease = std::time::Duration::from_secs(1);
    let open = |dir: &std::path::Path| {
        let mut config = crate::service::config(dir);
        config.key_source = Some(airlock::KeySource::File(key.path().join("master.key")));
        config.database = database.clone();
        config.sync_lease = lease;
        Airlock::open(config).unwrap()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dir_a.path());
    crate::service::install(&a, crate::openai::plugin_path("servicenow"));
    add(
        &a,
        "sn",
        "servicenow",
        &[("base-url", server.uri().as_str())],
    );
    let b = open(dir_b.path());

    // Server A stops after its third page: nothing of it runs any more, its
    // run stays `running` and its lease held until it runs out.
    let stop = tokio::sync::Notify::new();
    tokio::select! {
        _ = a.sync("sn", true, 100, |run| if run.pages == 3 { stop.notify_one() }) => {
            panic!("the sync ended before it was stopped")
        }
        () = stop.notified() => {}
    }
    let stopped = a.sync_runs("sn", 1).unwrap().remove(0);
    assert_eq!((stopped.status.as_str(), stopped.pages), ("running", 3));

    // While the lease lasts, B refuses to run a second sync.
    let err = b.sync("sn", false, 100, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("is running on"), "{err}");

    tokio::time::sleep(lease + std::time::Duration::from_millis(200)).await;
    let requests_before = api.requests.load(Ordering::SeqCst);
    let resumed = b.sync("sn", false, 100, |_| {}).await.unwrap();
    assert_eq!(resumed.status, "succeeded");
    // Pages 4 to 10 and the empty end, not the first three again.
    assert!(resumed.pages <= 8, "resumed from page 4: {resumed:?}");
    assert!(api.requests.load(Ordering::SeqCst) - requests_before <= 8);
    let runs = b.sync_runs("sn", 5).unwrap();
    let dead = runs.iter().find(|r| r.id == stopped.id).unwrap();
    assert_eq!(dead.status, "failed");
    assert!(
        dead.error.as_deref().unwrap_or("").contains("interrupted"),
        "{dead:?}"
    );
    let stored: BTreeSet<String> = b
        .synced_records("sn", 5000, 0)
        .unwrap()
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert_eq!(stored, api.ids().into_iter().collect::<BTreeSet<_>>());
}
