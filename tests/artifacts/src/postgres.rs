//! A real PostgreSQL server for the tests: the distribution's binaries,
//! initialised in a temporary directory, listening on a free loopback port,
//! run as an unprivileged user (`nobody` when the tests run as root, which
//! PostgreSQL refuses to run as).
//!
//! The server is a child of a thread that lives as long as the test process
//! and is started with a parent-death signal, so it never outlives the
//! tests, even when they are killed. [`TestPostgres::database`] hands each
//! test a fresh empty database; fault tests stop, kill and restart the
//! server.
//!
//! `.ci/run` installs the `postgresql` package when no `initdb` is found.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The role every test database belongs to (no password: trust on loopback).
pub const USER: &str = "airlock";

/// A running (or stopped) test server.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_nobody: bool,
    /// Whether commits reach the disk (off for the tests: a killed server
    /// loses nothing the kernel holds, and tests run faster).
    fsync: bool,
    keeper: Mutex<mpsc::Sender<Command>>,
    spawned: Mutex<mpsc::Receiver<std::io::Result<Child>>>,
    child: Mutex<Option<Child>>,
}

/// The server this test process shares, started on first use.
///
/// Panics with what to install when PostgreSQL is missing.
pub fn shared() -> &'static TestPostgres {
    static SHARED: OnceLock<TestPostgres> = OnceLock::new();
    SHARED.get_or_init(|| TestPostgres::start().unwrap_or_else(|e| panic!("{e}")))
}

fn find_bin() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = found.pop() {
        return Ok(bin);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let dir = Path::new(dir);
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir.to_path_buf());
        }
    }
    Err(
        "the PostgreSQL tests need the server binaries (initdb, postgres): install the \
         distribution's `postgresql` package (`.ci/run` does when they are missing)"
            .into(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl TestPostgres {
    /// Initialise a cluster in a new temporary directory and start it,
    /// with fsync off.
    pub fn start() -> Result<Self, String> {
        Self::start_with(false)
    }

    /// [`TestPostgres::start`] with fsync on, as a production server runs
    /// (for benchmarks).
    pub fn start_durable() -> Result<Self, String> {
        Self::start_with(true)
    }

    fn start_with(fsync: bool) -> Result<Self, String> {
        let bin = find_bin()?;
        remove_stale_clusters();
        let dir = tempfile::Builder::new()
            .prefix("airlock-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let as_nobody = is_root();
        if as_nobody {
            let status = Command::new("chown")
                .args(["-R", "nobody:"])
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err("cannot hand the test cluster's directory to `nobody`".into());
            }
        }
        let (keeper, spawned) = keeper_thread();
        let pg = Self {
            dir,
            bin,
            port: free_port(),
            as_nobody,
            fsync,
            keeper: Mutex::new(keeper),
            spawned: Mutex::new(spawned),
            child: Mutex::new(None),
        };
        // An English ICU collation, as many production clusters have, not
        // the byte order of the C locale: text that airlock orders must
        // come out the same as on SQLite anyway. (PostgreSQL before 15 has
        // no ICU default: the cluster's locale then.)
        let initdb = |icu: bool| {
            let mut c = pg.command("initdb");
            c.args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"]);
            if icu {
                c.args(["--locale-provider=icu", "--icu-locale=en-US"]);
            }
            c.arg("-D")
                .arg(pg.data_dir())
                .stdout(Stdio::null())
                .output()
                .map_err(|e| format!("initdb: {e}"))
        };
        let mut out = initdb(true)?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(pg.data_dir());
            out = initdb(false)?;
        }
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        pg.start_server()?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for one of the server's binaries, as the unprivileged user.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--pdeathsig=KILL",
            ]);
            c.arg(program);
            c
        } else {
            let mut c = Command::new("setpriv");
            c.arg("--pdeathsig=KILL").arg(program);
            c
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Start the server (again) and wait until it accepts connections.
    pub fn start_server(&self) -> Result<(), String> {
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.path().display()),
            ])
            .args(["-c", "max_connections=200"])
            .args(["-c", if self.fsync { "fsync=on" } else { "fsync=off" }])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.keeper
            .lock()
            .unwrap()
            .send(cmd)
            .expect("keeper thread");
        let child = self
            .spawned
            .lock()
            .unwrap()
            .recv()
            .expect("keeper thread")
            .map_err(|e| format!("starting postgres: {e}"))?;
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("postgres did not accept connections within 30 s".into())
    }

    /// Stop the server abruptly (SIGKILL to the postmaster; its backends
    /// exit when they see it gone) and wait for the port to close.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        // Backends notice the postmaster is gone within a moment; a new
        // postmaster refuses to start while they hold shared memory.
        let pidfile = self.data_dir().join("postmaster.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let busy = Command::new("pgrep")
                .args(["-f", &self.data_dir().display().to_string()])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty());
            if !busy {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(pidfile);
    }

    /// A fresh empty database; its URL.
    pub fn database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let out = self
            .command("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name)
            .output()
            .expect("running createdb");
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Run one SQL statement with `psql` against database `name`; its output.
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", name, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Clusters of test processes that ended (their postmaster is gone): the
/// shared server's directory is not removed when its process exits.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_cluster = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("airlock-pg-"));
        if !is_cluster {
            continue;
        }
        let pid = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string));
        let alive = pid.is_some_and(|pid| Path::new("/proc").join(pid.trim()).exists());
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        if !alive && old {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A thread that outlives every test and spawns the server, so the
/// parent-death signal (which follows the spawning thread) fires only when
/// the test process ends.
fn keeper_thread() -> (
    mpsc::Sender<Command>,
    mpsc::Receiver<std::io::Result<Child>>,
) {
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>();
    let (child_tx, child_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            while let Ok(mut cmd) = cmd_rx.recv() {
                let _ = child_tx.send(cmd.spawn());
            }
            // The server is gone; keep the thread (and so the server's
            // parent) alive until the process ends anyway.
            loop {
                std::thread::park();
            }
        })
        .expect("spawning the keeper thread");
    (cmd_tx, child_rx)
}
