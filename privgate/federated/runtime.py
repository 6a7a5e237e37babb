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
    rounds: list[dict[str, Any]]
    seconds: float
    folder: Path
    bytes_sent: int = 0
    bytes_received: int = 0

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


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FederationError(f"{what} exited with code {process.returncode} (log: {log})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
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
def federation(folder: Path, silos: dict[str, Path]) -> Iterator[Federation]:
    """Start a SuperLink and one SuperNode per silo on loopback; stop them on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flwr-home").mkdir(exist_ok=True)
    fed = Federation(folder=folder, env=flower_env(), port=free_port())
    bin_ = fed.env / "bin"
    try:
        link = fed.start(
            "superlink",
            [
                str(bin_ / "flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(fed.port),
                "--database",
                str(folder / "superlink.db"),
            ],
        )
        _wait_for_port(fed.port, link, "the Flower SuperLink", folder / "superlink.log")
        for name, silo_dir in silos.items():
            port = free_port()
            node = fed.start(
                f"supernode-{name}",
                [
                    str(bin_ / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{fed.port}",
                    "--port",
                    str(port),
                    "--node-config",
                    f'silo-dir="{silo_dir}" silo="{name}"',
                ],
            )
            _wait_for_port(
                port, node, f"silo {name}'s Flower SuperNode", folder / f"supernode-{name}.log"
            )
        (folder / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "privgate"\n\n[superlink.privgate]\n'
            f'address = "127.0.0.1:{fed.port}"\ninsecure = true\n'
        )
        yield fed
    finally:
        fed.stop_all()


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
    """Run the plan's rounds on a fresh loopback federation; return the global weights.

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
    with federation(folder, silos) as fed:
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
        rounds=_named_rounds(summary["rounds"], silos),
        seconds=time.perf_counter() - started,
        folder=folder,
        bytes_sent=int(summary["bytes_sent"]),
        bytes_received=int(summary["bytes_received"]),
    )


def _named_rounds(rounds: list[dict[str, Any]], silos: dict[str, Path]) -> list[dict[str, Any]]:
    """Replace the coordinator's node IDs by silo names (each silo noted its own)."""
    names: dict[int, str] = {}
    for name, folder in silos.items():
        note = folder / NODE_FILE
        if note.exists():
            names[int(json.loads(note.read_text())["node_id"])] = name

    def named(nodes: list[int]) -> list[str]:
        return sorted(names.get(int(n), f"node {n}") for n in nodes)

    return [
        {
            "round": r["round"],
            "silos": r["silos"],
            "summed": named(r["summed"]),
            "dropped": named(r["dropped"]),
            "excluded": named(r["excluded"]),
            "seconds": r["seconds"],
        }
        for r in rounds
    ]
