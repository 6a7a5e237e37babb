"""Options shared by privgate's tasks."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from privgate.errors import ServiceUnavailableError
from privgate.home import PROJECT_ROOT

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


@dataclass
class ContentKeyed(CachePolicy):
    """Cache key: the raw tables' content hashes, the config sections the task reads, the code.

    Never the inputs themselves (they are raw rows): a table with other content, a
    changed setting in `sections`, or other privgate code (sources, expectation suites)
    is another key, so a check's result is never reused for different data. The task's
    result must hold aggregates only: it is persisted in Prefect's result storage.
    """

    sections: tuple[str, ...] = ()

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        tables, config = inputs.get("tables"), inputs.get("config")
        if tables is None or config is None:
            return None  # not cacheable: run it
        settings = {name: getattr(config, name).model_dump(mode="json") for name in self.sections}
        return hash_objects(
            task_ctx.task.name,
            tables.train_sha256,
            tables.test_sha256,
            settings,
            code_sha256(),
            raise_on_failure=True,
        )


@functools.cache
def code_sha256() -> str:
    """Return a hash of every file the pipeline's results depend on (code, suites, configs)."""
    digest = hashlib.sha256()
    for folder in ("privgate", "audits", "tasks", "expectations"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def content_keyed(*sections: str) -> dict[str, Any]:
    """Task options: results persisted and cached under a `ContentKeyed` key (7 days)."""
    return {
        "persist_result": True,
        "cache_policy": ContentKeyed(sections=sections),
        "cache_expiration": timedelta(days=7),
    }
