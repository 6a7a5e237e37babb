"""Flower's Deployment Engine on loopback: a SuperLink, one SuperNode per silo, `flwr run`.

Each is a process of Flower's own environment (`.venv-flower`, or
`$PRIVGATE_FLOWER_ENV`), started here and stopped when the run ends, whatever happens.
In a real deployment each silo's SuperNode runs on the silo's machine
(`infra/flower/`); this module is the single-machine path the flow and the tests use.
Logs go to files in the run's folder; the app writes nothing there that came from a row.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from privgate.errors import ConfigError, PrivgateError
from privgate.federated.files import NODE_FILE
from privgate.federated.plan import FederatedPlan
from privgate.home import PROJECT_ROOT

APP_DIR = Path(__file__).with_name("app")
FLOWER_ENV_VARIABLE = "PRIVGATE_FLOWER_ENV"


class FederationError(PrivgateError):
    """The federated training did not complete (a silo, the protocol or the coordinator)."""


@dataclass
class FederationResult:
    """The final global weights and what each round took.

    Each round lists its silos by name: `summed` (their updates are in the global
    step), `dropped` (sampled, but gone before their masked vector arrived: SecAgg+
    rebuilt their masks) and `excluded` (their masked vector's layout was malformed).
    """

    weights: list[np.ndarray]
    node_rounds: list[dict[str, Any]]  # as the coordinator recorded them, by node ID
    seconds: float
    folder: Path
    bytes_sent: int = 0
    bytes_received: int = 0
    names: dict[int, str] = field(default_factory=dict)  # node ID -> silo

    @property
    def rounds(self) -> list[dict[str, Any]]:
        """The rounds, silos by name (a node no silo claimed stays `node <ID>`)."""

        def named(nodes: list[int]) -> list[str]:
            return sorted(self.names.get(int(n), f"node {n}") for n in nodes)

        return [
            {
                "round": r["round"],
                "silos": r["silos"],
                "summed": named(r["summed"]),
                "dropped": named(r["dropped"]),
                "excluded": named(r["excluded"]),
                "seconds": r["seconds"],
            }
            for r in self.node_rounds
        ]

    @property
    def excluded(self) -> list[str]:
        """Silos whose update was malformed in any round (a fault, not a dropout)."""
        return sorted({name for r in self.rounds for name in r["excluded"]})

    @property
    def dropped(self) -> list[str]:
        return sorted({name for r in self.rounds for name in r["dropped"]})


def flower_env() -> Path:
    """Return Flower's environment, checked.

    Raises:
        ConfigError: when it is missing (it names the folder and how to create it).
    """
    env = Path(os.environ.get(FLOWER_ENV_VARIABLE) or PROJECT_ROOT / ".venv-flower")
    if not (env / "bin" / "flwr").exists():
        raise ConfigError(
            f"Flower's environment is missing at {env} ({FLOWER_ENV_VARIABLE}); "
            "`make install` creates .venv-flower (flwr 1.42 cannot share Prefect's environment)"
        )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], what: str, log: Path, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FederationError(f"{what} exited with code {process.returncode} (log: {log})")
        if _answers(host, port):
            return
        time.sleep(0.2)
    raise FederationError(f"{what} did not listen on port {port} within 60 s (log: {log})")


@dataclass
class Federation:
    """The running processes of one federation on loopback."""

    folder: Path
    env: Path
    port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
        env["PATH"] = f"{self.env / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["FLWR_HOME"] = str(self.folder / "flwr-home")
        env.pop("VIRTUAL_ENV", None)
        return env

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.folder / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environ(),
                cwd=self.folder,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        """Kill one process and everything it started (its session)."""
        process = self.processes.pop(name, None)
        if process is None:
            return
        # The group too when the leader is gone: its children may still run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def kill(self, name: str) -> None:
        """SIGKILL one process and its session, as a machine that loses power would."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


@contextlib.contextmanager
def federation(
    folder: Path, silos: dict[str, Path], *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[Federation]:
    """Start a SuperLink, and a SuperNode on loopback for each of `silos`; stop them on exit.

    `silos` may be empty: deployed silos start their own SuperNodes (`serve_supernode`)
    and dial the SuperLink at `host:port`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flwr-home").mkdir(exist_ok=True)
    fed = Federation(folder=folder, env=flower_env(), port=port or free_port())
    bin_ = fed.env / "bin"
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        link = fed.start(
            "superlink",
            [
                str(bin_ / "flower-superlink"),
                "--insecure",
                "--host",
                host,
                "--port",
                str(fed.port),
                "--database",
                str(folder / "superlink.db"),
            ],
        )
        _wait_for_port(fed.port, link, "the Flower SuperLink", folder / "superlink.log", local)
        for name, silo_dir in silos.items():
            port = free_port()
            node = fed.start(
                f"supernode-{name}",
                supernode_args(bin_, f"{local}:{fed.port}", silo_dir, name, port=port),
            )
            _wait_for_port(
                port, node, f"silo {name}'s Flower SuperNode", folder / f"supernode-{name}.log"
            )
        (folder / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "privgate"\n\n[superlink.privgate]\n'
            f'address = "{local}:{fed.port}"\ninsecure = true\n'
        )
        yield fed
    finally:
        fed.stop_all()


def supernode_args(
    bin_: Path, superlink: str, silo_dir: Path, name: str, port: int = 0
) -> list[str]:
    """Return the command line of silo `name`'s SuperNode dialing `superlink`."""
    return [
        str(bin_ / "flower-supernode"),
        "--insecure",
        "--superlink",
        superlink,
        "--port",
        str(port or free_port()),
        "--node-config",
        f'silo-dir="{silo_dir}" silo="{name}"',
    ]


def serve_supernode(
    superlink: str,
    silo_dir: Path,
    name: str,
    *,
    grace: float = 20.0,
    timeout: float = 7200.0,
) -> None:
    """Run silo `name`'s SuperNode (on the silo's host) until the coordinator's run ends.

    A SuperNode does not exit when its SuperLink goes away (Flower 1.42 logs that it
    gives up reconnecting, and stays): this watches the SuperLink's port instead, and
    stops the SuperNode `grace` seconds after the SuperLink stopped answering.

    Raises:
        FederationError: when the SuperLink never answers, the SuperNode exits on its
            own, or the run outlasts `timeout`.
    """
    host, _, port = superlink.rpartition(":")
    logs = silo_dir / "flower"
    (logs / "flwr-home").mkdir(parents=True, exist_ok=True)
    fed = Federation(folder=logs, env=flower_env(), port=int(port))
    started = time.monotonic()
    try:
        node = fed.start("supernode", supernode_args(fed.env / "bin", superlink, silo_dir, name))
        seen, lost = False, None
        while time.monotonic() - started < timeout:
            if node.poll() is not None:
                raise FederationError(
                    f"silo {name}'s SuperNode exited with code {node.returncode} "
                    f"(log: {logs / 'supernode.log'})"
                )
            if _answers(host, int(port)):
                seen, lost = True, None
            elif seen:
                lost = lost or time.monotonic()
                if time.monotonic() - lost > grace:
                    return
            elif time.monotonic() - started > 300:
                raise FederationError(f"silo {name}: the SuperLink at {superlink} never answered")
            time.sleep(1.0)
        raise FederationError(f"silo {name}: the run outlasted {timeout:.0f} s")
    finally:
        fed.stop_all()


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 1.0):
        return True
    return False


def run_config(
    plan: FederatedPlan,
    *,
    init_file: Path,
    out_dir: Path,
    max_weight: float,
    record: bool,
    secure: bool = True,
) -> str:
    """Return `flwr run --run-config`'s value for this plan."""
    secagg = plan.secagg
    values: dict[str, Any] = {
        "rounds": plan.rounds,
        "min-silos": plan.required_silos,
        "num-shares": secagg.num_shares,
        "reconstruction-threshold": secagg.reconstruction_threshold,
        "clipping-range": float(secagg.clipping_range),
        "timeout": float(secagg.timeout),
        "max-weight": float(max_weight),
        "init-file": str(init_file),
        "out-dir": str(out_dir),
        "record-received": record,
        "record-updates": record,
        "secure-aggregation": secure,
    }
    return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def train_federated(
    plan: FederatedPlan,
    silos: dict[str, Path],
    initial: list[np.ndarray],
    folder: Path,
    *,
    max_weight: float,
    app_dir: Path = APP_DIR,
    record: bool = False,
    secure: bool = True,
    timeout: float = 1800,
    while_running: Any = None,
) -> FederationResult:
    """Run the plan's rounds on a fresh federation; return the global weights.

    `silos` (name -> folder) get a SuperNode on loopback each; with none, the silos are
    deployed and their SuperNodes dial the SuperLink at `plan.coordinator`.

    `record` keeps, for the coordinator-view audit, each masked vector the coordinator
    receives (in `folder/out`) and each silo's own update (in the silo's folder).
    `while_running(federation)` is called once the run is submitted (tests inject faults).
    `secure=False` runs plain FedAvg, the benchmark's baseline (privgate's ClientApp
    refuses it: only a copy of the app without `secaggplus_mod` answers).

    Raises:
        FederationError: naming what failed (a process, a round, a malformed update).
    """
    started = time.perf_counter()
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*"):
        stale.unlink()
    init_file = folder / "initial.npz"
    np.savez(init_file, *initial)
    coordinator = plan.coordinator
    with federation(folder, silos, host=coordinator.host, port=coordinator.port) as fed:
        args = [
            str(fed.env / "bin" / "flwr"),
            "run",
            str(app_dir),
            "privgate",
            "--stream",
            "--run-config",
            run_config(
                plan,
                init_file=init_file,
                out_dir=out,
                max_weight=max_weight,
                record=record,
                secure=secure,
            ),
        ]
        runner = fed.start("flwr-run", args)
        if while_running is not None:
            while_running(fed)
        try:
            runner.wait(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise FederationError(
                f"the federated run did not finish within {timeout:.0f} s"
            ) from error
    error_file, weights_file = out / "error.json", out / "global.npz"
    if error_file.exists():
        detail = json.loads(error_file.read_text())
        raise FederationError(f"the federated run failed: {detail['message']}")
    if not weights_file.exists() or runner.returncode != 0:
        raise FederationError(
            f"the federated run ended without a global model (flwr run exit code "
            f"{runner.returncode}; logs in {folder})"
        )
    with np.load(weights_file) as data:
        weights = [data[f"arr_{i}"] for i in range(len(data.files))]
    summary = json.loads((out / "summary.json").read_text())
    return FederationResult(
        weights=weights,
        node_rounds=summary["rounds"],
        seconds=time.perf_counter() - started,
        folder=folder,
        bytes_sent=int(summary["bytes_sent"]),
        bytes_received=int(summary["bytes_received"]),
        names=local_node_ids(silos),
    )


def local_node_ids(silos: dict[str, Path]) -> dict[int, str]:
    """Return node ID -> silo from the notes the silos' ClientApps kept in their folders."""
    names = {}
    for name, folder in silos.items():
        note = folder / NODE_FILE
        if note.exists():
            names[int(json.loads(note.read_text())["node_id"])] = name
    return names
