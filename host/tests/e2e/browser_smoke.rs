//! The browser harness end to end: a real headless Chromium through
//! ChromeDriver on a page served from loopback (a form whose external
//! script writes the typed value into the page), with every harness call
//! used once: typing, clicking, file inputs, the waits and their failure
//! message, alerts, the console log, screenshots and the viewport size.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::browser::Browser;

const PAGE: &str = r#"<!doctype html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Harness smoke</title>
<script src="/app.js" defer></script>
</head>
<body>
<h1>Greeting</h1>
<form id="form">
  <label for="name">Name</label>
  <input id="name" name="name" value="nobody">
  <input id="file" type="file">
  <button id="go" type="button">Greet</button>
</form>
<p id="out"></p>
<p id="hidden" style="display: none">hidden text</p>
<ul><li>one</li><li>two</li></ul>
</body>
</html>
"#;

const SCRIPT: &str = r#"document.getElementById('go').addEventListener('click', () => {
  const name = document.getElementById('name').value;
  const file = document.getElementById('file').files[0];
  const out = document.getElementById('out');
  out.textContent = 'Hello, ' + name;
  out.dataset.file = file ? file.name : '';
  console.log('greeted ' + name);
});
"#;

/// A loopback HTTP server for the page and its script.
async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let (status, kind, body) = match req.uri().path() {
                            "/" => (200, "text/html; charset=utf-8", PAGE),
                            "/app.js" => (200, "text/javascript", SCRIPT),
                            _ => (404, "text/plain", "not found"),
                        };
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("content-type", kind)
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Wait for an alert to open and return its text.
async fn next_alert(b: &Browser) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(text) = b.alert_text().await {
            return text;
        }
        assert!(Instant::now() < deadline, "no alert opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn browser_smoke() {
    let started = Instant::now();
    let addr = serve().await;
    let url = format!("http://{addr}/");
    let b = Browser::start(1280, 800).await;
    eprintln!(
        "chromedriver ready in {:?}, session in {:?}",
        b.driver_start, b.session_start
    );
    let t = Duration::from_secs(10);

    b.goto(&url).await;
    assert_eq!(b.current_url().await, url);
    assert_eq!(b.title().await, "Harness smoke");
    assert_eq!(b.find("h1").await.text().await, "Greeting");
    let items = b.find_all("li").await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].text().await, "two");
    assert!(b.find_all("table").await.is_empty());
    let form = b.find("#form").await;
    assert_eq!(form.find_all("input").await.len(), 2);
    assert_eq!(
        form.find("label").await.attr("for").await.as_deref(),
        Some("name")
    );

    // Type, attach a file, click; the external script answers.
    let input = b.wait_for("#name", t).await;
    assert_eq!(input.attr("value").await.as_deref(), Some("nobody"));
    assert_eq!(input.attr("placeholder").await, None);
    input.clear().await;
    input.send_keys("Ada Lovelace").await;
    assert_eq!(input.prop("value").await, json!("Ada Lovelace"));
    let upload = tempfile::tempdir().unwrap();
    let file = upload.path().join("notes.txt");
    std::fs::write(&file, "some notes").unwrap();
    b.find("#file")
        .await
        .send_keys(file.to_str().unwrap())
        .await;
    b.find("#go").await.click().await;
    let out = b.wait_for_text("#out", "Hello, Ada Lovelace", t).await;
    assert!(out.is_displayed().await);
    assert!(!b.find("#hidden").await.is_displayed().await);
    b.wait_until(
        "document.getElementById('out').dataset.file === 'notes.txt'",
        t,
    )
    .await;
    let id = b
        .execute(
            "return arguments[0].id + arguments[1]",
            &[out.arg(), json!("!")],
        )
        .await;
    assert_eq!(id, json!("out!"));

    // The console log has the script's line (Debian's ChromeDriver serves
    // the log; see `Browser::console_log`).
    let log = b.console_log().await;
    assert!(
        log.iter()
            .any(|e| e.level == "INFO" && e.message.contains("greeted Ada Lovelace")),
        "{log:?}"
    );

    // No alert; then one, read and accepted; then a confirm, dismissed.
    assert_eq!(b.alert_text().await, None);
    b.execute("setTimeout(() => alert('careful'), 0)", &[])
        .await;
    assert_eq!(next_alert(&b).await, "careful");
    b.accept_alert().await;
    assert_eq!(b.alert_text().await, None);
    b.execute(
        "setTimeout(() => { window.answer = confirm('sure?') }, 0)",
        &[],
    )
    .await;
    assert_eq!(next_alert(&b).await, "sure?");
    b.dismiss_alert().await;
    b.wait_until("window.answer === false", t).await;

    // A wait that times out names the selector and shows the page.
    let failed = std::panic::AssertUnwindSafe(b.wait_for("#missing", Duration::from_millis(200)))
        .catch_unwind()
        .await
        .map(|_| ())
        .expect_err("waiting for a missing element fails");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("#missing"), "{message}");
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("Hello, Ada Lovelace"), "{message}");

    // A screenshot is a real PNG.
    let shot = b.shot("browser_smoke", "form").await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", shot.display());
    assert!(
        png.len() > 1024,
        "{} is {} bytes",
        shot.display(),
        png.len()
    );

    // A phone-sized viewport.
    b.set_window_size(390, 844).await;
    assert_eq!(b.execute("return window.innerWidth", &[]).await, json!(390));
    assert_eq!(
        b.execute("return window.innerHeight", &[]).await,
        json!(844)
    );
    b.shot("browser_smoke", "form-390").await;

    drop(b);
    eprintln!("browser_smoke took {:?}", started.elapsed());
}
