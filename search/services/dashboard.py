"""`hwnas dashboard`: Streamlit over the database, on 127.0.0.1 unless `--host` says otherwise."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import NoReturn

from hwnas.db.session import open_db, resolve_url
from hwnas.extras import require
from hwnas.search.output import UserError


def app_script() -> str:
    """The dashboard's Streamlit script, wherever hwnas is (a checkout or site-packages)."""
    spec = importlib.util.find_spec("hwnas.app.main")
    assert spec is not None and spec.origin is not None
    return spec.origin


def command(port: int, host: str) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", app_script(),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        # the users' menu only: no "Deploy" button, no developer options
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def dashboard(db_url: str | None, port: int, host: str) -> NoReturn:
    """Become the Streamlit server (exec), so that a signal to `hwnas dashboard` reaches the
    server itself: a child process would outlive a terminated parent and keep serving."""
    if not 1 <= port <= 65535:
        raise UserError(f"{{field}} must be between 1 and 65535, got {port}", field="port")
    require("dashboard", "hwnas dashboard")
    url = resolve_url(db_url)
    open_db(url, create=False).dispose()  # a wrong URL fails here, in one line
    env = os.environ | {"HWNAS_DB": url}
    print(f"hwnas dashboard: http://{host}:{port}  (database {url})", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execve(sys.executable, command(port, host), env)


def free_port() -> int:
    """A port nothing listens on now (for tests and benchmarks that start a dashboard)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """Stop a dashboard started by a test or benchmark: SIGTERM, then SIGKILL after `grace`."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_serving(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Block until the dashboard on `port` answers its health check."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the dashboard did not answer on port {port} in {timeout:g} s")
