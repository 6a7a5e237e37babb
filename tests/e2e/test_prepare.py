"""`privgate prepare` (run by `make install`): the state home's databases, made ahead."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.cli_runner import run_cli

pytestmark = pytest.mark.e2e


def _tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_when_a_home_is_prepared_then_both_databases_are_migrated_and_again_is_harmless(
    tmp_path: Path,
) -> None:
    # when
    first = run_cli(tmp_path, "prepare", timeout=300)
    again = run_cli(tmp_path, "prepare", timeout=300)

    # then: Prefect's schema at its head revision, MLflow's tables, nothing else written
    assert first.code == 0, first.stderr[-2000:]
    assert again.code == 0, again.stderr[-2000:]
    assert f"prepared {tmp_path}" in first.stdout
    prefect = _tables(tmp_path / "prefect" / "prefect.db")
    assert {"alembic_version", "flow_run", "task_run", "deployment"} <= prefect
    assert {"alembic_version", "experiments", "runs", "registered_models"} <= _tables(
        tmp_path / "mlflow.db"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "prefect"]
