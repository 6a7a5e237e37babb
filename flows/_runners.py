"""Where the fan-out steps run, chosen per run by `config.orchestration`.

A flow's own task runner is fixed when the flow is decorated, but a deployment's runs
each bring their config from the UI form or a file. So the flows open the configured
runner for their fan-out steps only (the audit's reference models and canary runs, the
sweep's points) and submit to it; every other task runs on the flow's default runner.

Every task input crosses to the runner: to a Dask cluster that means the audit's
anonymized training table, and each sweep point's raw tables (a point anonymizes to its
own k), travel to its workers, whose memory Dask may spill to disk. Point
`dask_address` only at a cluster inside the trust boundary the raw data may enter.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from prefect import Task
from prefect.futures import PrefectFuture
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from privgate.config import OrchestrationConfig

R = TypeVar("R")

DASK_ADDRESS_ENV = "PRIVGATE_DASK_ADDRESS"


def build_runner(orchestration: OrchestrationConfig) -> TaskRunner[Any]:
    """Return an unstarted task runner for `orchestration` (a context manager: `with`)."""
    if orchestration.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=orchestration.workers)
    if orchestration.task_runner == "dask":
        # Imported here: dask is only loaded by the runs that use it.
        from prefect_dask import DaskTaskRunner

        address = orchestration.dask_address or os.environ.get(DASK_ADDRESS_ENV) or None
        if address:
            return DaskTaskRunner(address=address)
        # A temporary cluster on this machine: one single-threaded worker per process,
        # because each step already uses every core torch gives it.
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": orchestration.workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return ThreadPoolTaskRunner()


def submit(runner: TaskRunner[Any], task: Task[..., R], **parameters: Any) -> PrefectFuture[R]:
    """Submit `task` with keyword `parameters` to `runner` (what `Task.submit` does)."""
    return runner.submit(task, parameters)
