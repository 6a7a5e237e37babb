"""Consumers load only approved, signed, untampered versions, and refuse before unpickling.

Real MLflow (SQLite under a temporary PRIVGATE_HOME), real Ed25519 keys, tiny real models.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from privgate.dp.training import build_network
from privgate.registry import attestation
from privgate.registry.consumer import (
    RefusedError,
    load_approved_model,
    verify_registry,
    verify_version,
)
from privgate.registry.versions import SIGNATURE_TAG, STATUS_TAG, log_and_register

NAME = "privgate-test-model"
ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "model": "logistic",
    "hidden_units": 1,
    "input_width": 1,
    "feature_spec": {
        "version": 1,
        "features": [
            {
                "name": "age",
                "input": "long",
                "kind": "numeric",
                "min": 17.0,
                "max": 90.0,
                "log": False,
            }
        ],
    },
}


def register(*, approved: bool, run_key: str, epsilon: float = 2.5) -> str:
    """Register a tiny real model through the production code path; return its version."""
    torch.manual_seed(0)
    network = build_network(model="logistic", input_width=1, hidden_units=1)
    registration = log_and_register(
        model_name=NAME,
        alias="champion",
        experiment="privgate-tests",
        network=network,
        model_spec=SPEC,
        params={"dp.epsilon": str(epsilon)},
        metrics={"accuracy": 0.8},
        tags={},
        gate_tags={"privacy_budget": "passed" if approved else "failed"},
        gate_report_json=json.dumps({"passed": approved}),
        approved=approved,
        epsilon=epsilon,
        delta=1e-5,
        policy_sha256="0" * 64,
        json_artifacts={},
        text_artifacts={},
        run_key=run_key,
    )
    return registration.version


@pytest.fixture
def versions(home: Path) -> dict[str, str]:
    """v1 approved (champion), v2 rejected."""
    return {
        "approved": register(approved=True, run_key="run-a"),
        "rejected": register(approved=False, run_key="run-b"),
    }


@pytest.fixture
def deserialization(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every call that could deserialize a model, still letting it through."""
    calls: list[str] = []

    def spy(owner: Any, attribute: str) -> None:
        original = getattr(owner, attribute)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{getattr(owner, '__name__', owner)}.{attribute}")
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, recorded)

    for owner, attribute in [
        (pickle, "load"),
        (pickle, "loads"),
        (cloudpickle, "load"),
        (cloudpickle, "loads"),
        (torch, "load"),
        (mlflow.pyfunc, "load_model"),
    ]:
        spy(owner, attribute)
    return calls


def _refuses(match: str, deserialization: list[str], **kwargs: Any) -> None:
    with pytest.raises(RefusedError, match=match):
        load_approved_model(NAME, **kwargs)
    assert deserialization == []


def test_when_the_champion_is_approved_and_signed_then_it_loads_and_predicts(
    versions: dict[str, str], deserialization: list[str]
) -> None:
    model = load_approved_model(NAME)

    predicted = model.predict(pd.DataFrame({"age": [30, 60]}))
    assert list(predicted.columns) == ["probability", "prediction"]
    assert len(predicted) == 2
    assert "mlflow.pyfunc.load_model" in deserialization
    assert str(MlflowClient().get_model_version_by_alias(NAME, "champion").version) == "1"


def test_when_the_alias_was_moved_by_hand_to_a_rejected_version_then_load_refuses(
    versions: dict[str, str], deserialization: list[str]
) -> None:
    MlflowClient().set_registered_model_alias(NAME, "champion", versions["rejected"])

    _refuses("not approved", deserialization)


def test_when_someone_tags_a_version_approved_by_hand_then_load_refuses_it_as_unsigned(
    versions: dict[str, str], deserialization: list[str]
) -> None:
    client = MlflowClient()
    client.set_model_version_tag(NAME, versions["rejected"], STATUS_TAG, "approved")
    client.set_registered_model_alias(NAME, "champion", versions["rejected"])

    _refuses("no signed approval", deserialization)


def test_when_a_signature_is_copied_from_another_version_then_load_refuses(
    versions: dict[str, str], deserialization: list[str]
) -> None:
    client = MlflowClient()
    stolen = client.get_model_version(NAME, versions["approved"]).tags[SIGNATURE_TAG]
    client.set_model_version_tag(NAME, versions["rejected"], STATUS_TAG, "approved")
    client.set_model_version_tag(NAME, versions["rejected"], SIGNATURE_TAG, stolen)
    client.set_registered_model_alias(NAME, "champion", versions["rejected"])

    _refuses("attestation artifact is missing|does not verify", deserialization)


def test_when_a_model_file_changes_after_approval_then_load_refuses(
    versions: dict[str, str], home: Path, deserialization: list[str]
) -> None:
    weights = [p for p in (home / "mlartifacts").rglob("weights.pt")]
    assert len(weights) == 2  # one per version: tamper with every copy
    for path in weights:
        path.write_bytes(path.read_bytes() + b"\x00")

    _refuses(
        r"differ from the approved ones \(changed: \['artifacts/weights.pt'\]", deserialization
    )


def test_when_the_gate_report_changes_after_approval_then_load_refuses(
    versions: dict[str, str], home: Path, deserialization: list[str]
) -> None:
    for report in (home / "mlartifacts").rglob("gate_report.json"):
        report.write_text(json.dumps({"passed": True, "edited": True}))

    _refuses("gate report changed", deserialization)


def test_when_the_signature_does_not_verify_with_the_public_key_then_load_refuses(
    versions: dict[str, str],
    tmp_path: Path,
    deserialization: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = tmp_path / "other.pub"
    key = attestation.Ed25519PrivateKey.generate()
    other.write_bytes(
        key.public_key().public_bytes(
            attestation.serialization.Encoding.PEM,
            attestation.serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    monkeypatch.setenv("PRIVGATE_VERIFY_KEY_FILE", str(other))

    _refuses("does not verify", deserialization)


def test_when_epsilon_exceeds_the_consumers_limit_then_load_refuses(
    versions: dict[str, str], deserialization: list[str]
) -> None:
    _refuses("more than --max-epsilon 1", deserialization, max_epsilon=1.0)


def test_when_the_alias_is_deleted_then_load_refuses_instead_of_falling_back(
    versions: dict[str, str], deserialization: list[str]
) -> None:
    MlflowClient().delete_registered_model_alias(NAME, "champion")

    _refuses("does not exist; privgate never falls back", deserialization)


def test_when_an_alias_was_moved_by_hand_then_verify_reports_it(versions: dict[str, str]) -> None:
    client = MlflowClient()
    client.set_registered_model_alias(NAME, "staging", versions["approved"])
    client.set_registered_model_alias(NAME, "champion", versions["rejected"])

    rows = {row["alias"]: row for row in verify_registry(NAME)}

    assert rows["staging"]["ok"] is True
    assert rows["champion"]["ok"] is False
    assert "not approved" in rows["champion"]["reason"]


def test_when_a_registration_is_retried_with_its_run_key_then_no_second_version_appears(
    home: Path,
) -> None:
    first = register(approved=True, run_key="same-run")
    again = register(approved=True, run_key="same-run")

    assert first == again == "1"
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == 1


def test_when_the_signing_key_is_created_then_it_is_private_and_its_public_half_is_beside_it(
    versions: dict[str, str], home: Path
) -> None:
    key = home / "keys" / "signing.key"

    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.with_suffix(".pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    verified = verify_version(NAME)
    assert verified.attestation.key_id == attestation.key_id(attestation.load_verify_key())


_CONCURRENT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tests.unit.test_consumer import register
    from privgate.registry.versions import configure_mlflow
    configure_mlflow()
    print(register(approved=True, run_key=sys.argv[1]))
    """
)


def test_when_two_promotions_finish_together_then_champion_is_the_newer_signed_version(
    home: Path,
) -> None:
    script = _CONCURRENT.format(root=str(ROOT))
    env = {**os.environ}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"concurrent-{i}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]

    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    made = sorted(int(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert made == [1, 2]  # one version per run
    client = MlflowClient()
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "2"  # the alias only moves forward: no lost update
    for version in ("1", "2"):
        tags = client.get_model_version(NAME, version).tags
        assert tags[STATUS_TAG] == "approved"
        assert tags[SIGNATURE_TAG]
    assert verify_version(NAME).version == "2"
