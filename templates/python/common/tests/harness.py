"""A loopback stand-in of the service and the airlock binary on a temporary
data directory, for the tests here. The airlock binary is $AIRLOCK, else
`airlock` on PATH.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "dist" / "{{id}}.wasm"
TOKEN = "smoke-test-token-0123456789"


class Upstream:
    """An HTTP server on 127.0.0.1 answering each request with
    `answer(method, path, body) -> (status, json)`; `seen` lists what came in."""

    def __init__(self, answer):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def respond(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                seen.append({"method": self.command, "path": self.path,
                             "authorization": self.headers.get("authorization"), "body": body})
                status, value = answer(self.command, self.path, body)
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = respond

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Airlock:
    """The airlock binary on a fresh data directory."""

    def __init__(self):
        self.bin = os.environ.get("AIRLOCK") or "airlock"
        self.dir = tempfile.mkdtemp(prefix="{{id}}-")

    def run(self, *args, env=None):
        """`airlock ARGS`; its stdout, or an AssertionError with what it said."""
        # A test upstream on this machine: loopback allowed for this run only.
        full_env = {**os.environ, "AIRLOCK_EGRESS_ALLOW_PRIVATE": "127.0.0.0/8", **(env or {})}
        try:
            done = subprocess.run([self.bin, "--data-dir", self.dir, "--quiet", *args],
                                  env=full_env, capture_output=True, text=True)
        except FileNotFoundError:
            raise AssertionError(f"cannot run {self.bin}: set AIRLOCK=/path/to/airlock")
        if done.returncode != 0:
            raise AssertionError(f"airlock {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def call(self, operation, value=None):
        """Run `operation` on connection `smoke`; its JSON result."""
        return json.loads(self.run("call", "smoke", operation, "--input", json.dumps(value or {})))

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def connect(airlock, service):
    """Install the built plugin and add connection `smoke` to `service` with a bearer token."""
    if not PLUGIN.exists():
        raise AssertionError(f"{PLUGIN} is missing: build it first with `python3 build.py`")
    airlock.run("plugin", "install", str(PLUGIN), "--approve")
    airlock.run("connection", "add", "smoke", "--plugin", "{{id}}", "--auth", "bearer",
                "--secret-env", "SMOKE_TOKEN", "--setting", f"base-url={service.url}", "--global",
                env={"SMOKE_TOKEN": TOKEN})
