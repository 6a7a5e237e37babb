"""The configured task runner for the fan-out steps: threads, processes, or Dask."""

from __future__ import annotations

import pytest
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows._runners import DASK_ADDRESS_ENV, build_runner
from privgate.config import OrchestrationConfig, PipelineConfig, load_config
from privgate.errors import ConfigError


def test_when_nothing_is_configured_then_steps_run_in_threads() -> None:
    runner = build_runner(OrchestrationConfig())

    assert isinstance(runner, ThreadPoolTaskRunner)


def test_when_processes_are_configured_then_the_pool_has_the_configured_width() -> None:
    runner = build_runner(OrchestrationConfig(task_runner="processes", workers=3))

    assert isinstance(runner, ProcessPoolTaskRunner)
    assert runner._max_workers == 3


def test_when_a_dask_address_is_configured_then_the_runner_connects_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://from-env:8786")

    runner = build_runner(
        OrchestrationConfig(task_runner="dask", dask_address="tcp://scheduler:8786")
    )

    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://scheduler:8786"


def test_when_only_the_environment_names_a_cluster_then_the_runner_connects_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://from-env:8786")

    runner = build_runner(OrchestrationConfig(task_runner="dask"))

    assert runner.address == "tcp://from-env:8786"


def test_when_no_cluster_is_named_then_a_temporary_local_one_is_sized_by_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)

    runner = build_runner(OrchestrationConfig(task_runner="dask", workers=3))

    assert runner.address is None
    assert runner.cluster_kwargs["n_workers"] == 3
    assert runner.cluster_kwargs["threads_per_worker"] == 1


def test_when_the_dask_address_is_not_a_url_then_the_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"orchestration\.dask_address"):
        load_config(overrides=["orchestration.task_runner=dask", "orchestration.dask_address=x"])


def test_when_only_the_runner_changes_then_the_lineage_hash_does_not() -> None:
    config = load_config()
    on_dask = PipelineConfig.model_validate(
        config.model_dump() | {"orchestration": {"task_runner": "dask", "workers": 4}}
    )

    assert on_dask.sha256() == config.sha256()
    renamed = config.model_copy(
        update={"registry": config.registry.model_copy(update={"alias": "x"})}
    )
    assert renamed.sha256() != config.sha256()
