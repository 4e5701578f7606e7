"""The sandbox's MLflow tracking server: ``mlflow server`` with sqlite and local artifacts.

State lives under ``<state>/mlflow/``: ``mlflow.db`` (runs, experiments, registry) and
``artifacts/`` (served through the tracking server, ``--artifacts-destination``), so clients
need no access to the directory. The server answers ``/health`` 12 to 28 s after start on a
busy machine; :func:`wait_healthy` polls it (never a fixed sleep) and fails fast if the
process exits.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx

from .kubelet.images import venv_bin

#: Environment of the server: no job execution (MLflow 3's huey consumers for GenAI jobs, several
#: extra processes the sandbox does not need; tracking, registry and artifacts do not use them).
ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowStartError(RuntimeError):
    """The MLflow server exited or did not become healthy in time."""


def mlflow_dir(state_dir: Path) -> Path:
    """``<state>/mlflow``: the sqlite database and the artifact root."""
    return Path(state_dir) / "mlflow"


def prepare_state(state_dir: Path) -> Path:
    """Create ``<state>/mlflow`` (database and artifact root); returns the database path.

    A new database is created in sqlite's write-ahead-log mode (a property of the file, kept
    across restarts). In the default rollback-journal mode, readers and the writer of the two
    server workers block each other: under a burst of training runs and registrations, single
    requests were measured taking 30 to 160 s. WAL lets reads proceed beside the one writer.
    """
    root = mlflow_dir(state_dir)
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    database = root / "mlflow.db"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    return database


def command(state_dir: Path, port: int, workers: int = 2) -> list[str]:
    """The ``mlflow server`` argv for a state dir, listening on 127.0.0.1:``port``."""
    root = mlflow_dir(state_dir).resolve()
    return [
        str(venv_bin() / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def url_for(port: int) -> str:
    """The tracking URI of a server on ``port``."""
    return f"http://127.0.0.1:{port}"


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether ``GET <url>/health`` answers 200."""
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(
    url: str, process: subprocess.Popen[bytes] | None, timeout: float = 120.0, log_path: Path | None = None
) -> float:
    """Poll ``/health`` every 0.25 s until it answers; returns the seconds waited.

    Raises MlflowStartError when ``process`` exits first or after ``timeout`` seconds (the
    message carries the end of ``log_path``).
    """
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if is_healthy(url):
            return time.monotonic() - began
        if process is not None and process.poll() is not None:
            raise MlflowStartError(f"mlflow server exited with code {process.returncode}{_tail(log_path)}")
        time.sleep(0.25)
    raise MlflowStartError(f"mlflow server at {url} not healthy after {timeout:.0f}s{_tail(log_path)}")


def _tail(log_path: Path | None, lines: int = 15) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log_path) + " ---\n" + "\n".join(text)
