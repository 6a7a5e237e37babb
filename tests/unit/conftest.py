"""Fixtures shared by the unit tests that use a real, local MLflow registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from privgate.registry.versions import configure_mlflow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PRIVGATE_HOME with its own SQLite MLflow registry and signing keys."""
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for key in ("PRIVGATE_SIGNING_KEY_FILE", "PRIVGATE_VERIFY_KEY_FILE"):
        monkeypatch.delenv(key, raising=False)
    configure_mlflow()
    return tmp_path
