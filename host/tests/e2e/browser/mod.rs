//! Browser tests: Debian's headless Chromium (`/usr/bin/chromium`, package
//! `chromium`) driven through ChromeDriver (`/usr/bin/chromedriver`,
//! package `chromium-driver`) with the W3C WebDriver protocol; the client is
//! the small one in `webdriver.rs`.
//!
//! Each [`Browser`] is its own ChromeDriver process and Chromium with a
//! fresh profile, so tests are isolated and may run in parallel; dropping
//! it (also while a failing test unwinds) quits the session and kills the
//! driver. The packages are installed with apt the first time a test needs
//! them, once per process (a file lock keeps parallel test processes from
//! running apt together); where that cannot be done the test fails and says
//! what to install.
//!
//! Every method panics on a WebDriver error with the command, the selector
//! and the error; the waits panic with the page's URL and text.
//! Screenshots go to `target/console-screenshots/<test>/` (see
//! [`Browser::shot`]).

mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use webdriver::{Driver, ELEMENT_KEY, Http, Session, WdError, element_id};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How often the waits poll.
const POLL: Duration = Duration::from_millis(50);

/// The repository root (the host crate's parent).
fn repo_root() -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent().unwrap_or(host).to_path_buf()
}

fn installed() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// `apt-get ARGS`, through `sudo -n` unless we are root.
fn apt(args: &[&str]) -> Output {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        c
    };
    cmd.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| Output {
            status: std::process::ExitStatus::default(),
            stdout: Vec::new(),
            stderr: format!("cannot run apt-get: {e}").into_bytes(),
        })
}

/// Install `chromium` and `chromium-driver` with apt unless both binaries
/// are there; once per process, under a file lock.
pub fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if installed() {
            return;
        }
        let target = repo_root().join("target");
        let _ = std::fs::create_dir_all(&target);
        let lock = std::fs::File::create(target.join(".chromium-install.lock"));
        if let Ok(lock) = &lock {
            let _ = lock.lock();
        }
        if installed() {
            return;
        }
        let started = Instant::now();
        let install = ["install", "-y", "-qq", "chromium", "chromium-driver"];
        let mut out = apt(&install);
        let mut log = String::new();
        if !out.status.success() {
            // Most often the package lists are missing (a fresh container):
            // fetch them and try once more.
            log += &String::from_utf8_lossy(&out.stderr);
            let update = apt(&["update", "-qq"]);
            log += &String::from_utf8_lossy(&update.stderr);
            out = apt(&install);
        }
        log += &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && installed(),
            "the browser tests need Debian's headless Chromium and its ChromeDriver \
             ({CHROMIUM} and {CHROMEDRIVER}); installing them failed. Install the packages \
             `chromium` and `chromium-driver` (`sudo apt-get install chromium chromium-driver`) \
             and run the tests again. apt said: {log}"
        );
        eprintln!(
            "installed chromium and chromium-driver in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    });
}

/// `target/console-screenshots/<test>/`, created on demand.
pub fn screenshot_dir(test: &str) -> PathBuf {
    let dir = repo_root().join("target/console-screenshots").join(test);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// The session's commands that panic on errors, shared by the browser and
/// its elements.
struct Inner {
    session: Session,
}

impl Inner {
    /// The page's URL, or why it cannot be read.
    async fn url_for_errors(&self) -> String {
        match self.session.get("/url").await {
            Ok(v) => v.as_str().unwrap_or_default().to_string(),
            Err(e) => format!("(URL unknown: {e})"),
        }
    }

    async fn fail(&self, what: &str, e: WdError) -> ! {
        let url = self.url_for_errors().await;
        panic!("WebDriver: {what} failed on {url}: {e}")
    }

    async fn get(&self, suffix: &str, what: impl FnOnce() -> String) -> Value {
        match self.session.get(suffix).await {
            Ok(v) => v,
            Err(e) => self.fail(&what(), e).await,
        }
    }

    async fn post(&self, suffix: &str, body: Value, what: impl FnOnce() -> String) -> Value {
        match self.session.post(suffix, body).await {
            Ok(v) => v,
            Err(e) => self.fail(&what(), e).await,
        }
    }

    /// The page's URL and the first 2000 characters of its text, for
    /// timeouts.
    async fn dump(&self) -> String {
        let url = self.url_for_errors().await;
        let text = match self
            .session
            .post(
                "/execute/sync",
                json!({ "script": "return document.body ? document.body.innerText : '(no body)'", "args": [] }),
            )
            .await
        {
            Ok(v) => {
                let t = v.as_str().unwrap_or_default();
                let cut: String = t.chars().take(2000).collect();
                if cut.len() < t.len() {
                    format!("{cut}\n[… cut at 2000 characters]")
                } else {
                    cut
                }
            }
            Err(e) => match self.session.get("/alert/text").await {
                Ok(alert) => format!("(an alert is open: {alert})"),
                Err(_) => format!("(text unavailable: {e})"),
            },
        };
        format!("the page is {url}; its text:\n{text}")
    }

    fn element(self: &Arc<Self>, v: &Value, selector: &str) -> Element {
        Element {
            inner: self.clone(),
            id: element_id(v).unwrap_or_else(|| panic!("not an element reference: {v}")),
            selector: selector.to_string(),
        }
    }

    async fn try_find_all(
        self: &Arc<Self>,
        from: &str,
        css: &str,
    ) -> Result<Vec<Element>, WdError> {
        let v = self
            .session
            .post(
                &format!("{from}/elements"),
                json!({ "using": "css selector", "value": css }),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| a.iter().map(|e| self.element(e, css)).collect())
            .unwrap_or_default())
    }
}

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// As Chromium writes it: source URL, line, then the message
    /// (console.log strings are JSON-quoted).
    pub message: String,
}

/// A headless Chromium with its own ChromeDriver and profile.
pub struct Browser {
    inner: Arc<Inner>,
    // Dropped after the session is quit (see `Drop`), in this order.
    _driver: Driver,
    _profile: tempfile::TempDir,
    /// How long the driver and the session took to start.
    pub driver_start: Duration,
    pub session_start: Duration,
}

impl Browser {
    /// Start ChromeDriver and a headless Chromium whose viewport is
    /// `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        ensure_installed();
        let t0 = Instant::now();
        let driver = Driver::spawn(Path::new(CHROMEDRIVER))
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER} failed: {e}"));
        let http = Http::new(driver.base_url());
        if let Err(e) = http.wait_ready(Duration::from_secs(20)).await {
            panic!(
                "{CHROMEDRIVER} did not become ready: {e}; it printed: {}",
                driver.output()
            );
        }
        let driver_start = t0.elapsed();
        let t1 = Instant::now();
        let profile = tempfile::Builder::new()
            .prefix("airlock-chromium-")
            .tempdir()
            .expect("a temporary profile directory");
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            // Without these Chromium keeps calling Google's services, and
            // this machine's closed network refuses the connections.
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            // An unexpected alert stays open (and the commands fail saying
            // so) rather than being dismissed, so `alert_text` can read it.
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let session = match Session::create(http, driver.port, capabilities).await {
            Ok(s) => s,
            Err(e) => panic!(
                "starting a Chromium session failed: {e}; chromedriver printed: {}",
                driver.output()
            ),
        };
        let mut browser = Browser {
            inner: Arc::new(Inner { session }),
            _driver: driver,
            _profile: profile,
            driver_start,
            session_start: Duration::ZERO,
        };
        browser.set_window_size(width, height).await;
        browser.session_start = t1.elapsed();
        browser
    }

    /// Navigate and wait for the page to load.
    pub async fn goto(&self, url: &str) {
        self.inner
            .post("/url", json!({ "url": url }), || format!("goto {url}"))
            .await;
    }

    pub async fn current_url(&self) -> String {
        let v = self.inner.get("/url", || "current_url".into()).await;
        v.as_str().unwrap_or_default().to_string()
    }

    pub async fn title(&self) -> String {
        let v = self.inner.get("/title", || "title".into()).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`; panics if there is none.
    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .inner
            .post(
                "/element",
                json!({ "using": "css selector", "value": css }),
                || format!("find `{css}`"),
            )
            .await;
        self.inner.element(&v, css)
    }

    /// Click the first element matching `css`, found again when the page
    /// re-rendered it between the find and the click (WebDriver's "stale
    /// element reference"), until `timeout`.
    pub async fn click_fresh(&self, css: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let element = self.wait_for(css, timeout).await;
            let suffix = format!("/element/{}/click", element.id);
            match self.inner.session.post(&suffix, json!({})).await {
                Ok(_) => return,
                Err(e) if e.to_string().contains("stale element") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => self.inner.fail(&format!("click `{css}`"), e).await,
            }
        }
    }

    /// Every element matching `css` (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        match self.inner.try_find_all("", css).await {
            Ok(v) => v,
            Err(e) => self.inner.fail(&format!("find_all `{css}`"), e).await,
        }
    }

    /// Wait until an element matches `css` (present; not necessarily
    /// displayed) and return the first.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.inner.try_find_all("", css).await {
                Ok(mut found) if !found.is_empty() => return found.swap_remove(0),
                Ok(_) => "no element matches".to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for `{css}` ({last}); {}",
                    self.inner.dump().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until an element matching `css` has text containing `needle`
    /// and return it.
    pub async fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            match self.inner.try_find_all("", css).await {
                Ok(found) => {
                    for el in found {
                        // An element replaced meanwhile is stale: skip it.
                        if let Ok(v) = el.try_get("/text").await {
                            let text = v.as_str().unwrap_or_default().to_string();
                            if text.contains(needle) {
                                return el;
                            }
                            seen.push(text);
                        }
                    }
                }
                Err(e) => seen.push(format!("({e})")),
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for `{css}` to contain {needle:?}; the matching elements \
                     had the texts {seen:?}; {}",
                    self.inner.dump().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the JavaScript expression `js` is truthy.
    pub async fn wait_until(&self, js: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let script = format!("return !!({js});");
        loop {
            let last = match self
                .inner
                .session
                .post("/execute/sync", json!({ "script": script, "args": [] }))
                .await
            {
                Ok(Value::Bool(true)) => return,
                Ok(v) => format!("it was {v}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for `{js}` ({last}); {}",
                    self.inner.dump().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Run `script` (a function body: `return` gives the value; the
    /// arguments are `arguments[0]`…, elements via [`Element::arg`]).
    pub async fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.inner
            .post(
                "/execute/sync",
                json!({ "script": script, "args": args }),
                || format!("execute `{script}`"),
            )
            .await
    }

    /// Save a PNG of the viewport at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.inner.get("/screenshot", || "screenshot".into()).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("the screenshot is base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Save `target/console-screenshots/<test>/<page>.png` and return its
    /// path.
    pub async fn shot(&self, test: &str, page: &str) -> PathBuf {
        let path = screenshot_dir(test).join(format!("{page}.png"));
        self.screenshot(&path).await;
        path
    }

    /// Make the viewport (`window.innerWidth` × `innerHeight`) `width` ×
    /// `height`: the window is sized, then corrected by the difference
    /// between its outer and inner size.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        let what = || format!("set_window_size {width}x{height}");
        let mut outer = (i64::from(width), i64::from(height));
        for _ in 0..3 {
            self.inner
                .post(
                    "/window/rect",
                    json!({ "width": outer.0, "height": outer.1 }),
                    what,
                )
                .await;
            let inner = self
                .execute("return [window.innerWidth, window.innerHeight]", &[])
                .await;
            let (w, h) = (
                inner[0].as_i64().unwrap_or_default(),
                inner[1].as_i64().unwrap_or_default(),
            );
            if (w, h) == (i64::from(width), i64::from(height)) {
                return;
            }
            outer = (
                outer.0 + i64::from(width) - w,
                outer.1 + i64::from(height) - h,
            );
        }
        let inner = self
            .execute("return [window.innerWidth, window.innerHeight]", &[])
            .await;
        panic!("set_window_size {width}x{height}: the viewport stays {inner}");
    }

    /// The text of the open alert, confirm or prompt; `None` if there is
    /// none.
    pub async fn alert_text(&self) -> Option<String> {
        match self.inner.session.get("/alert/text").await {
            Ok(v) => Some(v.as_str().unwrap_or_default().to_string()),
            Err(e) if e.error == "no such alert" => None,
            Err(e) => self.inner.fail("alert_text", e).await,
        }
    }

    /// Press OK on the open alert.
    pub async fn accept_alert(&self) {
        self.inner
            .post("/alert/accept", json!({}), || "accept_alert".into())
            .await;
    }

    /// Press Cancel on the open alert.
    pub async fn dismiss_alert(&self) {
        self.inner
            .post("/alert/dismiss", json!({}), || "dismiss_alert".into())
            .await;
    }

    /// The browser console entries since the last call (ChromeDriver's
    /// legacy log endpoint, `POST /session/{id}/se/log`, fed by the
    /// `goog:loggingPrefs` capability). Best effort: a driver without the
    /// endpoint gives an empty list.
    pub async fn console_log(&self) -> Vec<ConsoleEntry> {
        let v = match self
            .inner
            .session
            .post("/se/log", json!({ "type": "browser" }))
            .await
        {
            Ok(v) => v,
            Err(e) if e.error == "unknown command" || e.error == "unknown method" => {
                return Vec::new();
            }
            Err(e) => self.inner.fail("console_log", e).await,
        };
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| ConsoleEntry {
                level: e["level"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes Chromium; the driver is killed right after (field drop).
        let _ = self.inner.session.quit_blocking();
    }
}

/// An element found on the page.
#[derive(Clone)]
pub struct Element {
    inner: Arc<Inner>,
    id: String,
    /// The selector it was found with, for error messages.
    selector: String,
}

impl Element {
    fn what(&self, command: &str) -> String {
        format!("{command} on `{}`", self.selector)
    }

    async fn try_get(&self, what: &str) -> Result<Value, WdError> {
        self.inner
            .session
            .get(&format!("/element/{}{what}", self.id))
            .await
    }

    async fn get(&self, command: &str, suffix: &str) -> Value {
        let path = format!("/element/{}{suffix}", self.id);
        self.inner.get(&path, || self.what(command)).await
    }

    async fn post(&self, command: &str, suffix: &str, body: Value) -> Value {
        let path = format!("/element/{}{suffix}", self.id);
        self.inner.post(&path, body, || self.what(command)).await
    }

    /// This element as an argument of [`Browser::execute`].
    pub fn arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    pub async fn click(&self) {
        self.post("click", "/click", json!({})).await;
    }

    /// Type `text`; for `<input type=file>`, the absolute path of a file.
    pub async fn send_keys(&self, text: &str) {
        self.post(
            &format!("send_keys {text:?}"),
            "/value",
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn clear(&self) {
        self.post("clear", "/clear", json!({})).await;
    }

    /// The rendered text (as the user sees it).
    pub async fn text(&self) -> String {
        let v = self.get("text", "/text").await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// An attribute as written in the HTML; `None` if absent.
    pub async fn attr(&self, name: &str) -> Option<String> {
        let v = self
            .get(&format!("attr {name}"), &format!("/attribute/{name}"))
            .await;
        v.as_str().map(str::to_string)
    }

    /// A DOM property (e.g. `value`, `checked`), as JSON.
    pub async fn prop(&self, name: &str) -> Value {
        self.get(&format!("prop {name}"), &format!("/property/{name}"))
            .await
    }

    pub async fn is_displayed(&self) -> bool {
        self.get("is_displayed", "/displayed").await == Value::Bool(true)
    }

    /// The first element under this one matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .post(
                &format!("find `{css}`"),
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        self.inner.element(&v, css)
    }

    /// Every element under this one matching `css`.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let from = format!("/element/{}", self.id);
        match self.inner.try_find_all(&from, css).await {
            Ok(v) => v,
            Err(e) => {
                self.inner
                    .fail(&self.what(&format!("find_all `{css}`")), e)
                    .await
            }
        }
    }
}
