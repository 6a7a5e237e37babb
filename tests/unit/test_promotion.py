"""Promotion survives crashes and outages; demotion takes the alias away for good.

Real MLflow (SQLite under a temporary PRIVGATE_HOME) and real tiny models, through the
same `register` helper as the consumer tests.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from privgate.errors import ServiceUnavailableError, StageError, is_transient, withheld
from privgate.registry.consumer import RefusedError, load_approved_model, verify_version
from privgate.registry.versions import (
    DEMOTED_REASON_TAG,
    SIGNATURE_TAG,
    STATUS_TAG,
    champion_version,
    demote,
)
from tests.unit.test_consumer import NAME, register

# Every MLflow call a registration makes after logging its run, in order.
STEPS = [
    "create_model_version",
    "set_model_version_tag",  # the signature
    "set_registered_model_alias",
]


class CrashError(RuntimeError):
    """The process died here."""


@pytest.mark.parametrize("step", STEPS)
def test_when_a_registration_crashes_at_any_step_then_no_alias_points_at_it_and_a_retry_finishes(
    home: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    original = getattr(MlflowClient, step)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise CrashError(step)

    monkeypatch.setattr(MlflowClient, step, crash)
    with pytest.raises(CrashError):
        register(approved=True, run_key="nightly-1")
    assert champion_version(NAME, "champion") is None  # consumers find nothing to load

    monkeypatch.setattr(MlflowClient, step, original)
    version = register(approved=True, run_key="nightly-1")

    assert version == "1"  # the retry found or made the one version, not a second
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == 1
    assert champion_version(NAME, "champion") == "1"
    assert verify_version(NAME).version == "1"


def test_when_the_champion_is_demoted_then_consumers_refuse_it_and_no_retry_promotes_it(
    home: Path,
) -> None:
    version = register(approved=True, run_key="run-a")

    demoted = demote(NAME, alias="champion", version=version, reason="re-audit: AUC 0.71 > 0.6")

    assert demoted is True
    assert champion_version(NAME, "champion") is None
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert tags[STATUS_TAG] == "demoted"
    assert tags[DEMOTED_REASON_TAG] == "re-audit: AUC 0.71 > 0.6"
    assert tags[SIGNATURE_TAG]  # the signed record of what it once was stays
    with pytest.raises(RefusedError, match="does not exist"):
        load_approved_model(NAME)
    assert register(approved=True, run_key="run-a") == version  # the same run, retried
    assert champion_version(NAME, "champion") is None
    MlflowClient().set_registered_model_alias(NAME, "champion", version)  # by hand
    with pytest.raises(RefusedError, match="'demoted', not approved"):
        load_approved_model(NAME)


def test_when_a_newer_champion_took_the_alias_then_demoting_the_old_one_leaves_the_alias(
    home: Path,
) -> None:
    old = register(approved=True, run_key="run-a")
    new = register(approved=True, run_key="run-b")

    removed = demote(NAME, alias="champion", version=old, reason="re-audit failed")

    assert removed is False
    assert champion_version(NAME, "champion") == new
    # The judged version is still demoted: loading it by number is refused too.
    assert MlflowClient().get_model_version(NAME, old).tags[STATUS_TAG] == "demoted"
    with pytest.raises(RefusedError, match="'demoted', not approved"):
        verify_version(NAME, alias=None, version=old)


def test_when_the_registry_refuses_the_credentials_then_no_champion_is_not_the_answer(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise MlflowException("forbidden", error_code="PERMISSION_DENIED")

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", forbidden)

    with pytest.raises(MlflowException):
        champion_version(NAME, "champion")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_when_the_tracking_server_is_unreachable_then_the_error_is_retryable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{_closed_port()}")

    with pytest.raises(ServiceUnavailableError, match="register-model"), withheld("register-model"):
        client.get_model_version_by_alias(NAME, "champion")


def test_when_a_version_is_missing_then_the_error_is_final_not_retried(home: Path) -> None:
    with pytest.raises(MlflowException) as missing:
        MlflowClient().get_model_version(NAME, "7")

    assert not is_transient(missing.value)
    with pytest.raises(StageError) as withheld_error, withheld("register-model"):
        raise missing.value
    assert not isinstance(withheld_error.value, ServiceUnavailableError)


@pytest.mark.parametrize(
    ("error", "retried"),
    [(ServiceUnavailableError("down"), True), (StageError("bug"), False), (KeyError("x"), False)],
)
def test_when_a_registry_task_fails_then_only_an_unreachable_server_is_retried(
    error: Exception, retried: bool
) -> None:
    from prefect.states import Failed

    from tasks.champion import reaudit_champion
    from tasks.registry import demote_model, register_model

    state = Failed(data=error)

    for task in (register_model, demote_model, reaudit_champion):
        assert task.retries == 3
        assert task.retry_condition_fn(task, None, state) is retried


def test_when_the_champion_is_refused_then_the_check_fails_but_a_missing_key_is_an_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privgate.config import load_policy
    from privgate.errors import ConfigError
    from tasks.champion import reaudit_champion, verify_champion

    version = register(approved=True, run_key="run-a")
    MlflowClient().set_model_version_tag(NAME, version, STATUS_TAG, "rejected")

    refused = verify_champion.fn(NAME, version)
    # The test registration records no config: the lineage cannot be rebuilt (fail closed).
    unrebuildable = reaudit_champion.fn(NAME, version, load_policy())
    monkeypatch.setenv("PRIVGATE_VERIFY_KEY_FILE", str(home / "absent.pub"))

    assert (refused.passed, unrebuildable.passed) == (False, False)
    assert "not approved" in refused.reason
    assert "no recorded config" in unrebuildable.reason
    with pytest.raises(ConfigError, match="no public key"):  # the worker's fault, not the model's
        verify_champion.fn(NAME, version)
