"""End to end: the audit's fan-out runs on an existing Dask cluster, found by its address.

The test starts a real local Dask cluster (a scheduler and two worker processes), points
`privgate run` at it with `--set orchestration.task_runner=dask` and
`orchestration.dask_address`, and reads the scheduler's task stream: every reference-model
group and both canary runs must have run there, and the run must still promote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from privgate.config import load_config
from privgate.data.demo_data import write_demo_data
from privgate.stages import reference_group_sizes
from tests.e2e.cli_runner import run_cli

pytestmark = pytest.mark.e2e

ROWS = 4000


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("privgate-dask-home")


@pytest.fixture(scope="module")
def cluster(home: Path) -> Iterator[object]:
    from distributed import Client, LocalCluster

    # The workers are spawned with this environment: the run's state home, so tasks they
    # run report to the same Prefect and MLflow state as the CLI that submitted them.
    saved = dict(os.environ)
    os.environ["PRIVGATE_HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        os.environ.pop(key, None)
    try:
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as local,
            Client(local) as client,
        ):
            yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_when_dask_is_configured_then_the_audit_fan_out_runs_on_the_cluster(
    home: Path, cluster: object
) -> None:
    client = cluster
    write_demo_data(home / "demo", rows=ROWS)
    client.get_task_stream()  # registers the scheduler's task-stream plugin
    started = time.time()

    run = run_cli(
        home,
        "run",
        "--json",
        "--set",
        "orchestration.task_runner=dask",
        "--set",
        f"orchestration.dask_address={client.scheduler.address}",
    )

    assert run.code == 0, run.stderr[-3000:]
    assert run.json()["promoted"] is True
    tasks = client.get_task_stream(start=started)
    expected = len(reference_group_sizes(load_config())) + 2  # groups, canary, control
    assert len(tasks) == expected, [t["key"] for t in tasks]
    assert {t["worker"] for t in tasks} <= set(client.scheduler_info()["workers"])
