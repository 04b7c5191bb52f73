"""`python3 build.py`: installs the pinned tools (requirements.txt) into
.venv on the first run, turns src/app.py into a WebAssembly component with
componentize-py, then embeds and checks the manifest with
`airlock plugin pack`. The airlock binary is $AIRLOCK, else `airlock` on
PATH.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
AIRLOCK = os.environ.get("AIRLOCK") or "airlock"


def run(*args):
    args = [str(a) for a in args]
    print(">", " ".join(args), flush=True)
    try:
        subprocess.run(args, cwd=ROOT, check=True)
    except FileNotFoundError as e:
        hint = " (set AIRLOCK=/path/to/airlock or put airlock on PATH)" if args[0] == AIRLOCK else ""
        sys.exit(f"cannot run {args[0]}: {e.strerror}{hint}")
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)


def tool(name):
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


# The tools at the versions requirements.txt pins, again whenever it changes.
requirements = (ROOT / "requirements.txt").read_text()
installed = VENV / "requirements.installed"
if not installed.exists() or installed.read_text() != requirements:
    print(f"> python -m venv {VENV.name}", flush=True)
    venv.create(VENV, with_pip=True, clear=True)
    run(tool("python"), "-m", "pip", "install", "--disable-pip-version-check", "-r", "requirements.txt")
    installed.write_text(requirements)

(ROOT / "dist").mkdir(exist_ok=True)
run(tool("componentize-py"), "-d", "wit", "-w", "{{world}}",
    "componentize", "app", "-p", "src", "-o", "dist/component.wasm")
run(AIRLOCK, "plugin", "pack", "dist/component.wasm", "--manifest", "airlock.toml", "-o", "dist/{{id}}.wasm")
print("built dist/{{id}}.wasm: install it with `airlock plugin install dist/{{id}}.wasm`")
