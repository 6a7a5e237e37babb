"""Options shared by privgate's tasks."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from privgate.errors import ServiceUnavailableError

# Results hold raw rows: never persisted, never cached.
IN_MEMORY: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE}


def _service_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only when a server could not be reached; any other failure is final."""
    try:
        state.result()
    except ServiceUnavailableError:
        return True
    except BaseException:
        return False
    return False


# For tasks that talk to the MLflow tracking server (or the Prefect API): an outage of a
# few minutes is retried with backoff. Retries are safe because these tasks are
# idempotent (a registration is keyed by its flow run) and charge no privacy budget.
RETRY_WHEN_UNREACHABLE: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [10, 30, 90],
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": _service_unavailable,
}
