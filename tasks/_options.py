"""Options shared by privgate's tasks."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import version
from typing import Any

from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from privgate.errors import ServiceUnavailableError
from privgate.home import PROJECT_ROOT, resolve_path

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
    """Cache key: the raw tables' content hashes, the settings the task reads, the code.

    Never the inputs themselves (they are raw rows). Another table content, another value
    of a setting in `settings` (dotted config paths), another expectation suite file, or
    other privgate code or library versions is another key, so a check's result is never
    reused for different data. The task's result must hold aggregates only: it is
    persisted in Prefect's result storage.
    """

    settings: tuple[str, ...] = ()

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
        settings = {path: _setting(config, path) for path in self.settings}
        suite = resolve_path(config.data.expectation_suite)
        return hash_objects(
            task_ctx.task.name,
            tables.train_sha256,
            tables.test_sha256,
            settings,
            hashlib.sha256(suite.read_bytes()).hexdigest() if suite.is_file() else None,
            code_sha256(),
            raise_on_failure=True,
        )


def _setting(config: Any, path: str) -> Any:
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


# What a scan or a validation also depends on besides privgate's own files.
_LIBRARIES = ("presidio-analyzer", "spacy", "great-expectations", "pandas", "numpy")


@functools.cache
def code_sha256() -> str:
    """Return a hash of privgate's code, its bundled suites and the libraries it judges with.

    Computed once per process (44 files, about 0.6 MB): a worker that updates its checkout
    is restarted anyway.
    """
    digest = hashlib.sha256()
    for folder in ("privgate", "audits", "tasks", "expectations"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    for package in _LIBRARIES:
        digest.update(f"{package}=={version(package)}".encode())
    return digest.hexdigest()


def content_keyed(*settings: str) -> dict[str, Any]:
    """Task options: results persisted and cached under a `ContentKeyed` key (7 days)."""
    return {
        "persist_result": True,
        "cache_policy": ContentKeyed(settings=settings),
        "cache_expiration": timedelta(days=7),
    }
