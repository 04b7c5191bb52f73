//! A streamed chat answer: the openai plugin through `Airlock::chat_stream`
//! against a native client reading the same server-sent events.
//!
//! The loopback server answers `POST {base}/chat/completions` with
//! `"stream": true` by `text/event-stream`: `data: {chat.completion.chunk}`
//! events, one word of content each, then a finish-reason event, a usage
//! event and `data: [DONE]`, the shape the plugin's decoder reads. The
//! connection's `base-url` picks the stream: `.../chat/burst/N` writes N
//! events as fast as hyper takes them, `.../chat/paced/N` one event every
//! millisecond, each stamped with the time it was written.
//!
//! - Time to the first delta: from the call until the caller holds the
//!   first piece of text, over a 10-event stream. The plugin side pays the
//!   whole turn setup (connection and chat options read from SQLite, PII
//!   redaction of the message, a pooled instance, the egress check, the API
//!   key opened from the vault, the audit row committed before the request
//!   leaves); the native side sends the same request on a pooled
//!   keep-alive connection.
//! - Cost per event: a 1,000-event stream read to its end, divided by 1,000,
//!   in wall time and in CPU time of the whole process (both ends of
//!   loopback, to the nanosecond: `threads_cpu`). The plugin's decoder
//!   merges the events of one body piece into one delta, so the deltas each
//!   caller received are printed too; both sides parse every event's JSON.
//! - Per-delta latency: with 1 ms between events every event arrives alone,
//!   so every delta crosses into the guest and back; the latency is from
//!   the server's write to the caller holding the text.
//!
//! Two more sides run the plugin on a bare `Runtime` (no store, audit off)
//! in the 1,000-event rounds, once with a bearer credential (every body
//! piece goes through the response scrubber) and once with none (nothing
//! to scrub): the median of the differences within a round is what
//! scrubbing costs a stream.
//!
//! The sides take turns within each round, so all see the same machine.
//! Both sides stop reading at `[DONE]`, as the plugin does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use airlock::credential::{Credential, StaticCredential};
use airlock::runtime::types::{ChatMessage, ChatRequest, Role};
use airlock::service::{AuthInput, ChatEvent, ChatInput, NewConnection, Scope};
use airlock::{AddressPolicy, Airlock, Connection, Plugin, Runtime, RuntimeConfig};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::json;

use super::{paired, plugin_wasm, threads_cpu};
use crate::summary::{self, Goal};
use crate::{Client, NoAudit, Options, TOKEN, config, native_client, on_worker, stats, us};

const MODEL: &str = "gpt-bench";
const PROMPT: &str = "Write a long answer, one word at a time.";
/// Events of the stream the first delta is timed on.
const SHORT: usize = 10;
/// Events of the stream the cost per event is timed on.
const LONG: usize = 1000;
/// Events of the paced stream, and the gap between two of them.
const PACED: usize = 100;
const GAP: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Short,
    Long,
    Paced,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Short, Mode::Long, Mode::Paced];

    /// The part of `base-url` that picks this stream.
    fn path(self) -> String {
        match self {
            Mode::Short => format!("chat/burst/{SHORT}"),
            Mode::Long => format!("chat/burst/{LONG}"),
            Mode::Paced => format!("chat/paced/{PACED}"),
        }
    }

    fn connection(self) -> String {
        self.path().replace('/', "-")
    }
}

// ---- the server ------------------------------------------------------------------

/// Time since a zero shared by the server and the callers: the paced
/// stream's send stamps.
fn clock() -> Duration {
    static ZERO: OnceLock<Instant> = OnceLock::new();
    ZERO.get_or_init(Instant::now).elapsed()
}

fn chunk(choice: serde_json::Value, usage: Option<serde_json::Value>) -> String {
    let mut chunk = json!({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk",
        "created": 1_700_000_000, "model": MODEL, "choices": [choice],
    });
    if let Some(usage) = usage {
        chunk["choices"] = json!([]);
        chunk["usage"] = usage;
    }
    format!("data: {chunk}\n\n")
}

/// One `chat.completion.chunk` event with `content`.
pub(super) fn event(content: &str) -> Bytes {
    Bytes::from(chunk(
        json!({"index": 0, "delta": {"content": content}, "finish_reason": null}),
        None,
    ))
}

/// After the last word: the finish reason, the usage and `[DONE]`.
fn closing(n: usize) -> Bytes {
    let stop = chunk(
        json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
        None,
    );
    let usage = json!({"prompt_tokens": 9, "completion_tokens": n, "total_tokens": n + 9});
    let usage = chunk(json!(null), Some(usage));
    Bytes::from(format!("{stop}{usage}data: [DONE]\n\n"))
}

fn burst(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| event(&format!("w{i} ")))
        .chain([closing(n)])
        .collect()
}

type Events = BoxStream<'static, Result<Frame<Bytes>, Infallible>>;

/// `n` events `GAP` apart, each stamped with the time it is written.
fn paced(n: usize) -> Events {
    futures::stream::unfold(0, move |i| async move {
        match i {
            i if i > n => None,
            i if i == n => Some((Ok(Frame::data(closing(n))), i + 1)),
            i => {
                if i > 0 {
                    tokio::time::sleep(GAP).await;
                }
                let stamp = clock().as_micros();
                Some((Ok(Frame::data(event(&format!("s{stamp} ")))), i + 1))
            }
        }
    })
    .boxed()
}

/// The answer to one request: the stream its path names.
async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    bursts: Arc<BTreeMap<usize, Vec<Bytes>>>,
) -> Result<hyper::Response<StreamBody<Events>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let streamed = body.is_ok_and(|b| memchr::memmem::find(&b, b"\"stream\":true").is_some());
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.get(3).and_then(|n| n.parse::<usize>().ok());
    let events: Option<Events> = match (streamed, parts.get(2), n) {
        (true, Some(&"burst"), Some(n)) => bursts.get(&n).map(|events| {
            let frames = events.clone().into_iter().map(|e| Ok(Frame::data(e)));
            futures::stream::iter(frames).boxed()
        }),
        (true, Some(&"paced"), Some(n)) => Some(paced(n)),
        _ => None,
    };
    let response = hyper::Response::builder();
    Ok(match events {
        Some(events) => response
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(StreamBody::new(events)),
        None => response
            .status(404)
            .body(StreamBody::new(futures::stream::empty().boxed())),
    }
    .unwrap())
}

/// A keep-alive HTTP/1.1 server on loopback streaming chat answers.
async fn serve_chat() -> String {
    let bursts = Arc::new(BTreeMap::from([(SHORT, burst(SHORT)), (LONG, burst(LONG))]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let bursts = bursts.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, bursts.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

// ---- the native client -------------------------------------------------------------

/// What the plugin's decoder reads of a chunk (`wire::Chunk`).
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[allow(dead_code)]
    usage: Option<Usage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: Option<ChunkDelta>,
    #[allow(dead_code)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    content: Option<String>,
}

/// What a caller does with each piece of text as it arrives.
type Sink<'a> = dyn FnMut(&str) + Send + 'a;

/// Events out of body pieces: `data:` lines, `[DONE]` ends the answer.
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
    done: bool,
}

impl Sse {
    /// Feed one body piece; `on` gets each event's content.
    fn feed(&mut self, piece: &[u8], on: &mut Sink<'_>) -> Result<(), String> {
        self.buf.extend_from_slice(piece);
        let mut start = 0;
        while !self.done
            && let Some(len) = memchr::memmem::find(&self.buf[start..], b"\n\n")
        {
            let event = &self.buf[start..start + len];
            start += len + 2;
            for line in event.split(|b| *b == b'\n') {
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let data = data.trim_ascii();
                if data == b"[DONE]" {
                    self.done = true;
                    break;
                }
                let chunk: Chunk = serde_json::from_slice(data).map_err(|e| e.to_string())?;
                if let Some(error) = chunk.error {
                    return Err(format!("error event: {error}"));
                }
                let choice = chunk.choices.into_iter().next();
                let content = choice.and_then(|c| c.delta).and_then(|d| d.content);
                if let Some(text) = content.filter(|t| !t.is_empty()) {
                    on(&text);
                }
            }
        }
        self.buf.drain(..start);
        Ok(())
    }
}

async fn native_stream(
    client: &Client,
    url: &http::Uri,
    body: &Bytes,
    on: &mut Sink<'_>,
) -> Result<(), String> {
    let req = http::Request::post(url.clone())
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Full::new(body.clone()))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut sse = Sse::default();
    while !sse.done
        && let Some(frame) = body.frame().await
    {
        if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
            sse.feed(&data, on)?;
        }
    }
    if sse.done {
        Ok(())
    } else {
        Err("the stream ended without [DONE]".into())
    }
}

// ---- the sides --------------------------------------------------------------------

enum Side {
    Native {
        client: Box<Client>,
        urls: Vec<http::Uri>,
        body: Bytes,
    },
    Airlock(Arc<Airlock>),
    Runtime {
        runtime: Arc<Runtime>,
        plugin: Arc<Plugin>,
        connections: Vec<Connection>,
    },
}

impl Side {
    /// One streamed answer in `mode`, each piece of text handed to `on`.
    async fn stream(&self, mode: Mode, on: &mut Sink<'_>) -> Result<(), String> {
        let at = mode as usize;
        match self {
            Side::Native { client, urls, body } => native_stream(client, &urls[at], body, on).await,
            Side::Airlock(airlock) => {
                let input = ChatInput::new(PROMPT);
                let mut events = airlock
                    .chat_stream(&mode.connection(), input)
                    .await
                    .map_err(|e| e.to_string())?;
                while let Some(event) = events.next().await {
                    match event.map_err(|e| e.to_string())? {
                        ChatEvent::Delta(text) => on(&text),
                        ChatEvent::Done(_) => return Ok(()),
                    }
                }
                Err("the turn ended without its answer".into())
            }
            Side::Runtime {
                runtime,
                plugin,
                connections,
            } => {
                let mut stream = runtime
                    .chat_stream(plugin, &connections[at], request())
                    .await
                    .map_err(|e| e.to_string())?;
                while let Some(delta) = stream.next().await.map_err(|e| e.to_string())? {
                    if !delta.content.is_empty() {
                        on(&delta.content);
                    }
                }
                Ok(())
            }
        }
    }
}

/// What `Airlock::chat_stream` sends for a new conversation with no system
/// text, but for the conversation id.
fn request() -> ChatRequest {
    ChatRequest {
        model: None,
        messages: vec![ChatMessage {
            role: Role::User,
            content: PROMPT.into(),
        }],
        temperature: None,
        max_tokens: None,
        conversation_id: None,
    }
}

fn native_side(server: &str) -> Side {
    let body = json!({
        "model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": true,
    });
    Side::Native {
        client: Box::new(native_client()),
        urls: Mode::ALL
            .iter()
            .map(|m| {
                format!("{server}/{}/chat/completions", m.path())
                    .parse()
                    .unwrap()
            })
            .collect(),
        body: Bytes::from(serde_json::to_vec(&body).unwrap()),
    }
}

/// A host on `dir` with the openai plugin and an API-key connection per
/// stream (`Authorization: Bearer`, the plugin's default header).
fn airlock_side(dir: &std::path::Path, server: &str) -> Side {
    let airlock = Airlock::open(config(dir)).unwrap();
    let plan = airlock.plan_install(plugin_wasm("openai")).unwrap();
    airlock.install(&plan, true).unwrap();
    for mode in Mode::ALL {
        let settings = [
            ("base-url", format!("{server}/{}", mode.path())),
            ("model", MODEL.to_string()),
        ];
        airlock
            .add_connection(NewConnection {
                name: mode.connection(),
                plugin_id: "openai".into(),
                settings: settings.map(|(k, v)| (k.to_string(), v)).into(),
                auth: AuthInput::ApiKey {
                    header: String::new(),
                    prefix: None,
                    key: TOKEN.to_string().into(),
                },
                scope: Scope::Global,
            })
            .unwrap();
    }
    Side::Airlock(Arc::new(airlock))
}

/// The plugin on a bare runtime (audit off), with a bearer credential (the
/// answer is scrubbed) and without one (nothing to scrub).
fn runtime_sides(server: &str, cache: &std::path::Path) -> [Side; 2] {
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.to_path_buf()),
            address_policy: AddressPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
            audit: Arc::new(NoAudit(AtomicU64::new(0))),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let plugin = runtime.load(&plugin_wasm("openai")).unwrap();
    [true, false].map(|credential| {
        let connections = Mode::ALL.map(|mode| {
            let id = format!("rt-{}-{credential}", mode.connection());
            let conn = Connection::new(id.clone(), id)
                .with_setting("base-url", format!("{server}/{}", mode.path()))
                .with_setting("model", MODEL);
            if !credential {
                return conn;
            }
            let token = Credential::Bearer {
                token: TOKEN.to_string().into(),
            };
            conn.with_credential(http::header::AUTHORIZATION, StaticCredential::new(token))
                .unwrap()
        });
        Side::Runtime {
            runtime: runtime.clone(),
            plugin: plugin.clone(),
            connections: connections.into(),
        }
    })
}

// ---- measuring ----------------------------------------------------------------------

/// One streamed answer as its caller saw it.
struct Sample {
    first: Duration,
    total: Duration,
    /// CPU time of the whole process (the server's too) over the stream.
    cpu: Duration,
    deltas: usize,
    /// Paced streams: from each event's write to the caller holding it.
    lags: Vec<Duration>,
}

async fn once(side: &Side, mode: Mode) -> Sample {
    let (start, cpu) = (Instant::now(), threads_cpu());
    let (mut first, mut deltas, mut lags) = (None, 0, Vec::new());
    let mut on = |text: &str| {
        first.get_or_insert_with(|| start.elapsed());
        deltas += 1;
        if mode == Mode::Paced {
            let now = clock();
            let sent = text
                .split_whitespace()
                .filter_map(|w| w.strip_prefix('s')?.parse::<u64>().ok());
            lags.extend(sent.map(|us| now.saturating_sub(Duration::from_micros(us))));
        }
    };
    side.stream(mode, &mut on).await.unwrap();
    let total = start.elapsed();
    Sample {
        first: first.unwrap_or(total),
        total,
        cpu: threads_cpu().saturating_sub(cpu),
        deltas,
        lags,
    }
}

/// `runs` rounds after `warmup` unrecorded ones; in each, every side in
/// `which` streams once, one after the other. One column per side.
async fn rounds(
    sides: Arc<Vec<Side>>,
    which: Vec<usize>,
    mode: Mode,
    runs: usize,
    warmup: usize,
) -> Vec<Vec<Sample>> {
    on_worker(async move {
        let mut columns: Vec<Vec<Sample>> = which.iter().map(|_| Vec::new()).collect();
        for round in 0..warmup + runs {
            for (column, &side) in columns.iter_mut().zip(&which) {
                let sample = once(&sides[side], mode).await;
                if round >= warmup {
                    column.push(sample);
                }
            }
        }
        columns
    })
    .await
}

fn median_deltas(samples: &[Sample]) -> usize {
    let mut n: Vec<usize> = samples.iter().map(|s| s.deltas).collect();
    n.sort_unstable();
    n[n.len() / 2]
}

pub(super) fn ns(d: Duration) -> String {
    format!("{:.0} ns", d.as_secs_f64() * 1e9)
}

pub async fn run(opts: &Options) {
    let server = serve_chat().await;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let [scrubbed, plain] = runtime_sides(&server, cache.path());
    let sides = Arc::new(vec![
        native_side(&server),
        airlock_side(dir.path(), &server),
        scrubbed,
        plain,
    ]);
    let (short, long, paced) = if opts.quick {
        (30, 25, 3)
    } else {
        (200, 60, 10)
    };
    let first = rounds(sides.clone(), vec![0, 1], Mode::Short, short, 5).await;
    let whole = rounds(sides.clone(), vec![0, 1, 2, 3], Mode::Long, long, 1).await;
    let lags = rounds(sides, vec![0, 1], Mode::Paced, paced, 1).await;
    report(&first, &whole, &lags);
    scrub_report(&whole[2], &whole[3]);
}

/// A table row: native and plugin figures as printed, and their ratio.
type Row = (String, String, String, Option<f64>);

fn ratio(plugin: Duration, native: Duration) -> Option<f64> {
    Some(plugin.as_secs_f64() / native.as_secs_f64())
}

fn timed(
    label: String,
    (native, plugin): (Duration, Duration),
    show: fn(Duration) -> String,
) -> Row {
    (label, show(native), show(plugin), ratio(plugin, native))
}

fn counted(label: &str, native: &[Sample], plugin: &[Sample]) -> Row {
    let (n, p) = (median_deltas(native), median_deltas(plugin));
    (label.into(), n.to_string(), p.to_string(), None)
}

/// The table's rows: native against the full host path.
fn rows(first: &[Vec<Sample>], whole: &[Vec<Sample>], paced: &[Vec<Sample>]) -> Vec<Row> {
    let column = |c: &[Sample], f: fn(&Sample) -> Duration| stats(c.iter().map(f).collect());
    let first = [0, 1].map(|i| column(&first[i], |s| s.first));
    let total = [0, 1].map(|i| column(&whole[i], |s| s.total));
    let per_event = total.map(|s| s.median / LONG as u32);
    let cpu = [0, 1].map(|i| column(&whole[i], |s| s.cpu).median / LONG as u32);
    let lag = [0, 1].map(|i| stats(paced[i].iter().flat_map(|s| s.lags.clone()).collect()));
    let [f, t, l] = [first, total, lag].map(|[n, p]| [(n.median, p.median), (n.p99, p.p99)]);
    let paced_label = format!(
        "paced, {PACED} events {GAP:?} apart: from the server's write to the caller, median"
    );
    vec![
        timed(
            format!("time to first delta, {SHORT}-event stream: median"),
            f[0],
            us,
        ),
        timed("… p99".into(), f[1], us),
        timed(
            format!("{LONG} events back to back: whole stream, median"),
            t[0],
            us,
        ),
        timed(
            format!("… per event (whole stream / {LONG})"),
            (per_event[0], per_event[1]),
            ns,
        ),
        timed(
            "… CPU per event (the whole process: both ends of loopback)".into(),
            (cpu[0], cpu[1]),
            ns,
        ),
        counted(
            "… deltas the caller received (median)",
            &whole[0],
            &whole[1],
        ),
        timed(paced_label, l[0], us),
        timed("… p99".into(), l[1], us),
        counted(
            "… deltas the caller received (median)",
            &paced[0],
            &paced[1],
        ),
    ]
}

fn report(first: &[Vec<Sample>], whole: &[Vec<Sample>], paced: &[Vec<Sample>]) {
    let rows = rows(first, whole, paced);
    println!("## streaming: a chat answer as server-sent events (OpenAI-shaped loopback server)\n");
    println!(
        "runs: {} for the first delta, {} for the whole stream, {} paced\n",
        first[0].len(),
        whole[0].len(),
        paced[0].len()
    );
    println!("| measure | native (hyper + SSE parser) | plugin, full host path | plugin/native |");
    println!("|---|---:|---:|---:|");
    for (label, native, plugin, r) in &rows {
        let r = r.map_or(String::new(), |r| format!("{r:.2}x"));
        println!("| {label} | {native} | {plugin} | {r} |");
    }
    println!();
    for (measure, row) in [
        ("chat stream: time to first delta, median", &rows[0]),
        (
            "chat stream: cost per event, 1,000 events back to back",
            &rows[3],
        ),
        (
            "chat stream: CPU per event, 1,000 events back to back",
            &rows[4],
        ),
        ("chat stream: per-delta latency, paced, median", &rows[6]),
    ] {
        let baseline = format!("{} native", row.1);
        summary::add(measure, row.2.clone(), baseline, row.3, Goal::Report);
    }
}

/// The scrubber's share of a stream: the same runtime call with and without
/// a credential to mask.
fn scrub_report(scrubbed: &[Sample], plain: &[Sample]) {
    let median = |c: &[Sample], f: fn(&Sample) -> Duration| stats(c.iter().map(f).collect()).median;
    println!(
        "| runtime only (no store, audit off), {LONG} events back to back | whole stream (median) | CPU (median) | CPU per event | deltas (median) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, samples) in [
        (
            "bearer credential injected: every body piece scrubbed",
            scrubbed,
        ),
        ("no credential: nothing to scrub", plain),
    ] {
        let cpu = median(samples, |s| s.cpu);
        println!(
            "| {label} | {} | {} | {} | {} |",
            us(median(samples, |s| s.total)),
            us(cpu),
            ns(cpu / LONG as u32),
            median_deltas(samples)
        );
    }
    let cpu = paired(scrubbed.iter().map(|s| s.cpu), plain.iter().map(|s| s.cpu));
    let wall = paired(
        scrubbed.iter().map(|s| s.total),
        plain.iter().map(|s| s.total),
    );
    let without = median(plain, |s| s.cpu).as_secs_f64();
    let per_event = 1e-9 * LONG as f64;
    println!(
        "\nscrubbing a {LONG}-event stream, differences within a round: CPU {} ns per event ({:+.1}% of the CPU without it); wall time {} ns per event\n",
        cpu.text(per_event, 0),
        cpu.median / without * 100.0,
        wall.text(per_event, 0),
    );
    summary::add(
        format!(
            "response scrubbing, {LONG}-event stream (runtime, with vs without credential): CPU"
        ),
        format!("{:+.0} ns per event", cpu.median / per_event),
        format!(
            "{} per event without",
            ns(Duration::from_secs_f64(without / LONG as f64))
        ),
        Some((without + cpu.median) / without),
        Goal::Report,
    );
}
