"""A real team stack on loopback: PostgreSQL, a Prefect server, an MLflow server, a worker.

PostgreSQL backs both servers (Prefect through asyncpg, MLflow through psycopg2): a
throwaway cluster from Debian's `postgresql` binaries, on a Unix socket, no system
service (the `pgserver` wheel lacks the `pg_trgm` extension Prefect's schema needs). The
MLflow server proxies artifacts to a local folder (`--serve-artifacts`), the way a team
server proxies an object store. The flows are deployed from the project's own
`prefect.yaml` with the `prefect deploy` CLI, and a process worker runs them from this
checkout, with nothing of the test process's configuration but what a worker host has.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    """The running services and how to reach them."""

    root: Path
    prefect_url: str
    mlflow_url: str
    home: Path
    logs: Path
    socket_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None
    mlflow: subprocess.Popen[bytes] | None = None
    prefect: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"{self.prefect_url}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """Return the environment of a host of this stack (the worker's, the CLI's)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_", "MLFLOW_", "PRIVGATE_"))
        }
        env |= {
            "PREFECT_API_URL": self.api,
            "PREFECT_HOME": str(self.root / "prefect-client"),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PRIVGATE_HOME": str(self.home),
            "PRIVGATE_PROJECT_DIR": str(ROOT),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        return env | extra

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")  # a restart appends
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def start_prefect(self) -> subprocess.Popen[bytes]:
        """Start the Prefect server on `prefect_url`'s port (PostgreSQL, UI on); no wait."""
        server_env = self.env(
            PREFECT_HOME=str(self.root / "prefect-server"),
            PREFECT_API_DATABASE_CONNECTION_URL=(
                f"postgresql+asyncpg://postgres@/prefect?host={self.socket_dir}"
            ),
            PREFECT_UI_ENABLED="true",
            # The URL the browser's UI calls back: this server's, on its random port.
            PREFECT_UI_API_URL=self.api,
        )
        server_env.pop("PREFECT_API_URL")
        port = self.prefect_url.rsplit(":", 1)[1]
        self.prefect = self.start(
            "prefect-server",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
            server_env,
        )
        return self.prefect

    def restart_prefect(self, down_s: float) -> None:
        """Kill the Prefect server (SIGKILL), wait `down_s`, start it again and wait for it."""
        assert self.prefect is not None
        self.stop_process(self.prefect)
        time.sleep(down_s)
        _wait_http(f"{self.api}/health", "the Prefect server", self.start_prefect(), timeout=180)

    def start_mlflow(
        self,
        name: str = "mlflow-server",
        *,
        port: int | None = None,
        database: str = "mlflow",
        max_file_bytes: int | None = None,
    ) -> tuple[subprocess.Popen[bytes], str]:
        """Start an MLflow server on PostgreSQL `database`; return it and its URL.

        The stack's own (`mlflow-server`) on `mlflow_url`'s port, unless `port` is given.
        `max_file_bytes` runs it under a file-size limit (`prlimit --fsize`): a write that
        would grow a file past it fails, as on a full disk (EFBIG there, ENOSPC here); its
        output then goes nowhere (a log file would be limited too).
        """
        port = port or int(self.mlflow_url.rsplit(":", 1)[1])
        artifacts = self.root / (
            "mlflow-artifacts" if name == "mlflow-server" else f"{name}-artifacts"
        )
        command = [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"postgresql+psycopg2://postgres@/{database}?host={self.socket_dir}",
            "--artifacts-destination",
            artifacts.as_uri(),
            "--serve-artifacts",
            "--workers",
            "1",
        ]
        if max_file_bytes is None:
            process = self.start(name, command, self.env())
        else:
            process = subprocess.Popen(
                ["prlimit", f"--fsize={max_file_bytes}", *command],
                cwd=ROOT,
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/health", f"the MLflow server {name}", process, timeout=180)
        if name == "mlflow-server":
            self.mlflow = process
        return process, url

    def stop_process(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL `process` and its children (a server lost mid-request)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.processes.remove(process)

    def start_worker(self) -> None:
        """Start the process worker (polling every second: the tests wait on its runs)."""
        self.worker = self.start(
            "worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", "privgate-process"],
            self.env(PREFECT_WORKER_QUERY_SECONDS="1"),
        )

    def kill_worker(self) -> None:
        """SIGKILL the worker and every process under it at once, as a lost host would.

        Killing the worker alone is not that: Prefect starts each flow run in a session
        of its own, connected to the worker by a control channel, and a run whose
        worker vanishes stops itself and reports `Crashed` (seen: in about 2 s).
        """
        import psutil

        assert self.worker is not None
        worker = psutil.Process(self.worker.pid)
        for process in [worker, *worker.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.worker.wait(timeout=30)
        self.processes.remove(self.worker)
        self.worker = None

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        """Run `sql` on one of the stack's PostgreSQL databases; return the rows."""
        import psycopg2

        with (
            contextlib.closing(
                psycopg2.connect(dbname=database, user="postgres", host=str(self.socket_dir))
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
            return list(cursor.fetchall())

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a command against the stack, as an operator would from the project root."""
        return subprocess.run(
            list(args),
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_logs(self, limit: int = 10000) -> list[dict[str, Any]]:
        """Return every log record the server holds (subflow runs included), up to `limit`."""
        return [
            record
            for offset in range(0, limit, 200)
            for record in self.post("/logs/filter", {"limit": 200, "offset": offset})
        ]

    def deployment_id(self, name: str) -> str:
        return str(self.get(f"/deployments/name/{name}")["id"])

    def get(self, path: str) -> Any:
        response = httpx.get(self.api + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(self.api + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def wait_for_run(self, flow_run_id: str, timeout: float = 900) -> dict[str, Any]:
        """Poll the flow run until it is final; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/flow_runs/{flow_run_id}")
            if run["state"]["type"] in TERMINAL:
                return run
            time.sleep(2)
        raise TimeoutError(f"flow run {flow_run_id} not final after {timeout} s")

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait_http(url: str, what: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer {url} within {timeout} s")


def postgres_bin() -> Path:
    """Return the newest PostgreSQL server binaries: `$PRIVGATE_PG_BIN`, else Debian's."""
    if configured := os.environ.get("PRIVGATE_PG_BIN"):
        found = [Path(configured) / "pg_ctl"] if (Path(configured) / "pg_ctl").is_file() else []
    else:
        debian = Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
        found = sorted(debian, key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL's server binaries (`apt-get install postgresql`)")
    return found[-1].parent


@contextlib.contextmanager
def postgres(databases: list[str]) -> Iterator[Path]:
    """Run a throwaway PostgreSQL cluster; yield its socket folder (trust auth, no TCP)."""
    binaries = postgres_bin()
    # Short and outside pytest's root-only folder: the server user must reach its socket.
    data = Path(tempfile.mkdtemp(prefix="privgate-pg-"))
    as_server_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_server_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres", "postgres")
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
    try:
        run(
            [
                *as_server_user,
                str(binaries / "initdb"),
                "-D",
                str(data / "db"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ]
        )
        run(
            [
                *as_server_user,
                str(binaries / "pg_ctl"),
                "-D",
                str(data / "db"),
                "-l",
                str(data / "server.log"),
                "-w",
                "-o",
                f"-k {data} -c listen_addresses=''",
                "start",
            ]
        )
        for database in databases:
            run([str(binaries / "createdb"), "-h", str(data), "-U", "postgres", database])
        yield data
    finally:
        subprocess.run(
            [
                *as_server_user,
                str(binaries / "pg_ctl"),
                "-D",
                str(data / "db"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def running_stack(root: Path, deployments: list[str]) -> Iterator[Stack]:
    """Start PostgreSQL, both servers and a worker under `root`; deploy; stop on exit."""
    logs = root / "logs"
    logs.mkdir(parents=True)
    with postgres(["prefect", "mlflow", "mlflow_faults"]) as socket_dir:
        yield from _servers(root, logs, socket_dir, deployments)


def _servers(root: Path, logs: Path, socket_dir: Path, deployments: list[str]) -> Iterator[Stack]:
    prefect_port, mlflow_port = free_port(), free_port()
    stack = Stack(
        root=root,
        prefect_url=f"http://127.0.0.1:{prefect_port}",
        mlflow_url=f"http://127.0.0.1:{mlflow_port}",
        home=root / "privgate-home",
        logs=logs,
        socket_dir=socket_dir,
    )
    try:
        prefect = stack.start_prefect()
        stack.start_mlflow()
        _wait_http(f"{stack.api}/health", "the Prefect server", prefect, timeout=180)

        created = stack.cli(
            str(BIN / "prefect"), "work-pool", "create", "privgate-process", "--type", "process"
        )
        assert created.returncode == 0, created.stdout + created.stderr
        names = [arg for name in deployments for arg in ("--name", name)]
        deployed = stack.cli(str(BIN / "prefect"), "--no-prompt", "deploy", *names)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        automations = stack.cli(sys.executable, "infra/prefect/automations.py")
        assert automations.returncode == 0, automations.stdout + automations.stderr
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
