//! A test plugin for the host's sandbox tests. Each `test-connection` call
//! does one thing, chosen by the `action` setting, and reports what happened
//! as a JSON document in `ConnectionReport.message` (or fails with a
//! `PluginError`). See tests/guests/README.md for the actions.

use airlock_sdk::http::{Request, Response};
use airlock_sdk::types::{ConnectionReport, PluginError, SyncPage, SyncRecord, SyncRequest};
use airlock_sdk::{Connector, SyncSource, Tickets, host, setting_required};
use serde_json::{Value, json};
use std::hint::black_box;

struct Probe;

impl Connector for Probe {
    fn test_connection() -> Result<ConnectionReport, PluginError> {
        let action = host::setting("action").unwrap_or_default();
        let message = match action.as_str() {
            "ok" => ok(),
            "loop" => spin(),
            "grow-memory" => grow_memory(),
            "recurse" => json!({ "depth": recurse(black_box(0)) }).to_string(),
            "trap" => trap(),
            "fetch" => response_json(&send(fetch_request()?)?).to_string(),
            "fetch-follow" => fetch_follow()?.to_string(),
            "many" => many()?.to_string(),
            "env" => env()?.to_string(),
            "file" => file()?.to_string(),
            "print" => print()?,
            "log" => log()?,
            "state" => state()?.to_string(),
            "state-mark" => state_mark()?.to_string(),
            "echo" => echo()?.to_string(),
            "big-result" => "x".repeat(number("size", None)?),
            "raw-body" => raw_body()?.to_string(),
            _ => return Err(PluginError::InvalidInput("unknown action".to_string())),
        };
        Ok(ConnectionReport {
            account: None,
            message,
            details: vec![],
        })
    }
}

fn ok() -> String {
    json!({ "ok": true }).to_string()
}

/// A numeric setting; `default` when it is absent.
fn number(name: &str, default: Option<usize>) -> Result<usize, PluginError> {
    match host::setting(name).filter(|value| !value.trim().is_empty()) {
        Some(value) => value.trim().parse().map_err(|_| {
            PluginError::InvalidInput(format!("setting `{name}` must be a number, not `{value}`"))
        }),
        None => default.ok_or_else(|| {
            PluginError::InvalidInput(format!("setting `{name}` is required for this action"))
        }),
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn grow_memory() -> ! {
    loop {
        let chunk: &mut [u8] = vec![0u8; 1 << 20].leak();
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 1;
        }
        black_box(chunk);
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 32]);
    recurse(black_box(depth + 1)) + frame[(depth % 32) as usize]
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// The request the `fetch` family sends, from the settings `url`, `method`
/// (default GET), `header` (`name: value`) and `body-size` (that many `a`s).
fn fetch_request() -> Result<Request, PluginError> {
    fetch_request_to(setting_required("url")?)
}

fn fetch_request_to(url: String) -> Result<Request, PluginError> {
    let method = host::setting("method")
        .filter(|method| !method.trim().is_empty())
        .unwrap_or_else(|| "GET".to_string());
    let mut request = Request::new(method.trim(), url);
    if let Some(header) = host::setting("header").filter(|header| !header.trim().is_empty()) {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            PluginError::InvalidInput("setting `header` must look like `name: value`".to_string())
        })?;
        request = request.header(name.trim(), value.trim());
    }
    if host::setting("body-size").is_some_and(|size| !size.trim().is_empty()) {
        let size = number("body-size", None)?;
        request = request.body(vec![b'a'; size], "application/octet-stream");
    }
    Ok(request)
}

/// Send through the transport the `transport` setting names: `wasi-http`
/// (streamed through wasi:http, then read whole) or, by default, the SDK's
/// one-call `send` (airlock:plugin/outbound), so tests cover both.
fn send(request: Request) -> Result<Response, PluginError> {
    match host::setting("transport").as_deref() {
        Some("wasi-http") => request.send_streaming()?.into_response(),
        _ => request.send(),
    }
}

fn response_json(response: &Response) -> Value {
    json!({
        "status": response.status,
        "headers": pairs(&response.headers),
        "body": response.text(),
        "body_len": response.body.len(),
    })
}

fn pairs(pairs: &[(String, String)]) -> Value {
    pairs
        .iter()
        .map(|(name, value)| json!([name, value]))
        .collect()
}

fn error_json(error: &PluginError) -> Value {
    json!({ "error": format!("{error:?}") })
}

/// `fetch`, then one more request to the `Location` of a 3xx answer (same
/// method, header and body), reporting both.
fn fetch_follow() -> Result<Value, PluginError> {
    let url = setting_required("url")?;
    let first = send(fetch_request_to(url.clone())?)?;
    let location = (300..400)
        .contains(&first.status)
        .then(|| first.header("location"))
        .flatten();
    let second = match location {
        None => Value::Null,
        Some(location) => {
            let next = airlock_sdk::http::Url::parse(&url)?.join(location)?;
            match send(fetch_request_to(next.to_string())?) {
                Ok(response) => response_json(&response),
                Err(error) => error_json(&error),
            }
        }
    };
    Ok(json!({ "first": response_json(&first), "second": second }))
}

/// `count` GETs to `url` in sequence: how many got an answer (any status)
/// and the first error.
fn many() -> Result<Value, PluginError> {
    let url = setting_required("url")?;
    let count = number("count", None)?;
    let mut ok = 0;
    let mut first_error = None;
    for _ in 0..count {
        match send(Request::get(url.as_str())) {
            Ok(_) => ok += 1,
            Err(error) => {
                first_error.get_or_insert_with(|| format!("{error:?}"));
            }
        }
    }
    Ok(json!({ "ok": ok, "first_error": first_error }))
}

fn env() -> Result<Value, PluginError> {
    let name = host::setting("name").unwrap_or_default();
    Ok(json!({
        "var": std::env::var(name).ok(),
        "count": std::env::vars().count(),
        "args": std::env::args().count(),
    }))
}

fn file() -> Result<Value, PluginError> {
    let path = host::setting("path").unwrap_or_else(|| "/etc/passwd".to_string());
    let read = match std::fs::read(&path) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let read_dir = match std::fs::read_dir("/") {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    Ok(json!({ "read": read, "read_dir": read_dir }))
}

fn print() -> Result<String, PluginError> {
    let text = host::setting("text").unwrap_or_default();
    println!("probe stdout: {text}");
    eprintln!("probe stderr: {text}");
    Ok(ok())
}

fn log() -> Result<String, PluginError> {
    let text = host::setting("text").unwrap_or_default();
    let repeat = number("repeat", Some(1))?;
    host::info(&text.repeat(repeat));
    Ok(ok())
}

fn state() -> Result<Value, PluginError> {
    let key = setting_required("key")?;
    let value = host::setting("value").unwrap_or_default();
    host::state_set(&key, &value)?;
    Ok(json!({ "got": host::state_get(&key) }))
}

/// What `key` held when the call started, then a mark of this call's
/// project written over it: shows which calls share a state scope.
fn state_mark() -> Result<Value, PluginError> {
    let key = setting_required("key")?;
    let before = host::state_get(&key);
    let project = host::context().project;
    let wrote = match &project {
        Some(p) => format!("project {p}"),
        None => "no project".to_string(),
    };
    host::state_set(&key, &wrote)?;
    Ok(json!({ "before": before, "wrote": wrote }))
}

/// `fetch`, plus everything the guest can observe: the request as it built
/// it, its settings and call context, and the answer. Used to show that the
/// credential the host injects never reaches the guest.
fn echo() -> Result<Value, PluginError> {
    let request = fetch_request()?;
    let observed_request = json!({
        "method": request.method().as_str(),
        "url": request.url(),
        "headers": pairs(request.headers()),
        "body_len": request.body_bytes().map_or(0, <[u8]>::len),
    });
    let context = host::context();
    let mut report = json!({
        "request": observed_request,
        "settings": pairs(&host::settings()),
        "context": {
            "plugin_id": context.plugin_id,
            "connection_id": context.connection_id,
            "connection_name": context.connection_name,
            "project": context.project,
        },
    });
    match send(request) {
        Ok(response) => report["response"] = response_json(&response),
        Err(error) => report["error"] = json!(format!("{error:?}")),
    }
    Ok(report)
}

/// A GET of `url` over raw wasi-http, reading the whole body and reporting
/// what a failed read says through `wasi:io/error.to-debug-string`: the
/// one place a guest sees a host error's own text (the SDK prefers the
/// error's wasi-http code).
fn raw_body() -> Result<Value, PluginError> {
    use airlock_sdk::__bindings::base::wasi::http::{outgoing_handler, types as wasi};
    use airlock_sdk::__bindings::base::wasi::io::streams::StreamError;

    let url = setting_required("url")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| PluginError::InvalidInput("raw-body takes an http:// url".into()))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = wasi::OutgoingRequest::new(wasi::Fields::new());
    let refused = |what: &str| PluginError::Internal(format!("raw-body: the {what} was refused"));
    request
        .set_scheme(Some(&wasi::Scheme::Http))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(if path.is_empty() { "/" } else { path }))
        .map_err(|()| refused("path"))?;
    let future = outgoing_handler::handle(request, None)
        .map_err(|code| PluginError::Internal(format!("raw-body: {code:?}")))?;
    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| refused("response"))?
        .map_err(|code| PluginError::Internal(format!("raw-body: {code:?}")))?;
    let body = response.consume().map_err(|()| refused("body"))?;
    let stream = body.stream().map_err(|()| refused("body stream"))?;
    let mut read = 0;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => read += chunk.len(),
            Err(StreamError::Closed) => return Ok(json!({ "read": read, "error": null })),
            Err(StreamError::LastOperationFailed(error)) => {
                return Ok(json!({ "read": read, "error": error.to_debug_string() }));
            }
        }
    }
}

/// No ticket operations: the defaults answer `unsupported`.
impl Tickets for Probe {}

/// A feed for testing the host's sync loop: GET `{url}?cursor=<cursor>`
/// answers `{"records": [{"id", "updated_at", ...}], "next_cursor", "has_more"}`.
impl SyncSource for Probe {
    fn fetch_page(request: SyncRequest) -> Result<SyncPage, PluginError> {
        let url = setting_required("url")?;
        let cursor = request.cursor.unwrap_or_default();
        let page: Value = Request::get(format!("{url}?cursor={cursor}&size={}", request.page_size))
            .send_json()?;
        let records = page["records"]
            .as_array()
            .ok_or_else(|| {
                PluginError::Upstream(airlock_sdk::types::UpstreamFailure {
                    status: 200,
                    message: "feed answered without `records`".into(),
                })
            })?
            .iter()
            .map(|r| SyncRecord {
                id: r["id"].as_str().unwrap_or_default().to_string(),
                kind: "item".into(),
                updated_at: r["updated_at"].as_str().map(String::from),
                data: r.to_string(),
            })
            .collect();
        Ok(SyncPage {
            records,
            next_cursor: page["next_cursor"].as_str().map(String::from),
            has_more: page["has_more"].as_bool().unwrap_or(false),
        })
    }
}

airlock_sdk::export!(Probe, world = tickets, manifest = "airlock.toml");
