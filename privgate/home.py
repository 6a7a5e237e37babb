"""Where privgate keeps its state, and how configured paths resolve.

Everything a run writes lives under `PRIVGATE_HOME` (default `./.privgate`): the MLflow
SQLite database and artifacts, Prefect's home, keys, generated demo data. The standard
variables `MLFLOW_TRACKING_URI`, `PREFECT_API_URL` and `PREFECT_HOME` still win.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_HOME_TOKENS = ("${PRIVGATE_HOME}", "$PRIVGATE_HOME")


def privgate_home() -> Path:
    """Return the state folder, created if missing."""
    home = Path(os.environ.get("PRIVGATE_HOME", ".privgate")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def resolve_path(value: str | Path) -> Path:
    """Resolve a configured path.

    `${PRIVGATE_HOME}` expands to the state folder. A relative path is taken from the
    working directory when it exists there, else from the project root, so the bundled
    `configs/` and `expectations/` are found from anywhere.
    """
    text = str(value)
    for token in _HOME_TOKENS:
        if text.startswith(token):
            return privgate_home() / text[len(token) :].lstrip("/")
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists():
        return path.resolve()
    return (PROJECT_ROOT / path).resolve()


def configure_state_environment() -> Path:
    """Point MLflow and Prefect at `PRIVGATE_HOME` unless their own variables are set.

    Must run before `prefect` is imported: Prefect reads its settings at import time.
    """
    home = privgate_home()
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    # Prefect's local ephemeral API: no server to start, state in PREFECT_HOME.
    os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    # A fresh Prefect home migrates its database on first start: ~17 s on 2 cores, more
    # under load, and Prefect gives up after 20 s by default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Nothing leaves this machine: no usage analytics from Prefect, GX or MLflow.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Progress bars are terminal noise in a run log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return home


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock shared by every process using this PRIVGATE_HOME.

    Covers the embedded default and one host; runs on several machines against shared
    servers are serialized by Prefect concurrency limits instead.
    """
    locks = privgate_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_private_file(path: Path, content: bytes) -> None:
    """Write `content` to a new 0600 file at `path`, unless one exists already.

    Written whole to a private temporary file, flushed, then linked into place: a
    concurrent first run sees no file or the complete file, and exactly one writer wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def is_private(path: Path) -> bool:
    """Return True when neither group nor others may read or write `path`."""
    return not path.stat().st_mode & 0o077
