//! The guest of the benchmark's bare wasmtime-wasi-http peer
//! (host/benches/runtime/peer.rs): the `minimal` plugin's `test-connection`
//! without the SDK or airlock's world. `get(url)` sends a GET with
//! `accept: application/json` through `wasi:http/outgoing-handler`, reads the
//! whole body with blocking reads, parses `{"name": ...}` and returns the
//! name.

use serde::Deserialize;

// The generated canonical ABI glue and the export macro are `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "peer", path: "wit", generate_all });

    use super::Peer;
    export!(Peer);
}

use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{Fields, IncomingBody, OutgoingRequest, Scheme};
use bindings::wasi::io::streams::StreamError;

/// How much to ask `blocking-read` for at a time (the SDK's chunk).
const READ_CHUNK: u64 = 64 * 1024;

struct Peer;

#[derive(Deserialize)]
struct Me {
    name: String,
}

impl bindings::Guest for Peer {
    fn get(url: String) -> Result<String, String> {
        let body = fetch(&url)?;
        let me: Me = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))?;
        Ok(me.name)
    }
}

/// GET `url` (`http://` or `https://`) and read its whole body.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("not an http(s) URL: {url}"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let headers = Fields::new();
    headers
        .append("accept", b"application/json")
        .map_err(|e| format!("accept header: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let refused = |what: &str| format!("GET {url}: the {what} was refused");
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    request
        .set_path_with_query(Some(if path.is_empty() { "/" } else { path }))
        .map_err(|()| refused("path"))?;

    let future = outgoing_handler::handle(request, None).map_err(|e| format!("GET {url}: {e}"))?;
    let response = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    }
    .map_err(|()| format!("GET {url}: the response was already taken"))?
    .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !(200..300).contains(&status) {
        return Err(format!("GET {url}: status {status}"));
    }

    let incoming = response
        .consume()
        .map_err(|()| format!("GET {url}: the body was already taken"))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| format!("GET {url}: the body stream was already taken"))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!("GET {url}: {}", e.to_debug_string()));
                }
            }
        }
    }
    // Trailers are not used; finishing releases the body.
    drop(IncomingBody::finish(incoming));
    Ok(body)
}
