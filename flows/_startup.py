"""What `privgate run` does before and after the flow, so that a verdict comes quickly.

A run without `PREFECT_API_URL` needs Prefect's temporary server, which takes about as
long to start as the pipeline's own imports (torch, Opacus, MLflow, Great Expectations,
Presidio). Prefect starts it on the flow's first API call, after those imports; here it
starts first, in its own process, while this one imports. While the server finishes
starting, this process builds the PII engine and starts its workers, the slowest part
of the scan that does not depend on the data (no data is read for it). Nothing here
changes what any stage or gate does: the flow finds the same engine already built.

`PhaseClock` records where the wall-clock time went; `flow_task_timings` reads each
task's run time back from Prefect once the flow has ended.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uuid import UUID

    from privgate.config import PipelineConfig

__all__ = ["PhaseClock", "TemporaryServer", "flow_task_timings", "prewarm_pii_engine"]

# Public, data-free text: enough to make the engine's workers load their models.
_WARM_UP_TEXTS = ("Warm-up note written by privgate.",)


class PhaseClock:
    """Wall-clock phases of a command, measured from `started` (perf_counter seconds)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self._last = started
        self.phases: list[tuple[str, float]] = []

    def lap(self, name: str) -> float:
        """End the current phase under `name`; return its seconds."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        self.phases.append((name, seconds))
        return seconds

    def total(self) -> float:
        return time.perf_counter() - self.started


class TemporaryServer:
    """Prefect's temporary server, started in the background (a no-op with an API URL).

    Prefect's own client looks the server up as a process-wide singleton, so the flow
    uses this one once `wait` has returned. Prefect stops it when the process exits.
    """

    def __init__(self) -> None:
        self.needed = not os.environ.get("PREFECT_API_URL")
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="prefect-server", daemon=True)
        if self.needed:
            self._thread.start()

    def _start(self) -> None:
        try:
            from prefect.server.api.server import SubprocessASGIServer

            SubprocessASGIServer().start()
        except BaseException as error:  # re-raised in the caller's thread by `wait`
            self._error = error

    def wait(self) -> None:
        """Block until the server answers its health check; raise what stopped it."""
        if self.needed:
            self._thread.join()
        if self._error is not None:
            raise self._error


def prewarm_pii_engine(config: PipelineConfig) -> None:
    """Build the config's PII engine and start its worker processes (no data read).

    The flow's scan asks `stages.engine_for` for the same engine and finds it built;
    the workers load their spaCy model in their own processes meanwhile.
    """
    from privgate import stages

    engine = stages.engine_for(config)
    engine.start_workers(_WARM_UP_TEXTS)


def flow_task_timings(flow_run_id: UUID) -> list[dict[str, Any]]:
    """Return the task runs of a flow run in order of start: name, runs and wall seconds.

    Runs of one task that overlap in time (the audit's parallel reference models) are
    one row, spanning the first start to the last end.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    timed = sorted(
        (run.start_time.timestamp(), run.end_time.timestamp(), run.name.rsplit("-", 1)[0])
        for run in runs
        if run.start_time is not None and run.end_time is not None
    )
    rows: list[dict[str, Any]] = []
    for start, end, name in timed:
        # Runs of the same task still under way when this one started ran beside it.
        earlier = next(
            (row for row in reversed(rows) if row["task"] == name and start < row["_end"]),
            None,
        )
        if earlier is None:
            rows.append({"task": name, "runs": 1, "_start": start, "_end": end})
        else:
            earlier["runs"] += 1
            earlier["_end"] = max(earlier["_end"], end)
    return [
        {"task": row["task"], "runs": row["runs"], "seconds": round(row["_end"] - row["_start"], 2)}
        for row in rows
    ]
