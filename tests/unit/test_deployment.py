"""The deployment file points at the real flow, and the flow's UI form is typed."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.utilities.callables import parameter_schema

from flows.privacy_gated_training import privacy_gated_training

ROOT = Path(__file__).resolve().parents[2]


def test_when_prefect_yaml_is_read_then_every_entrypoint_is_the_gated_flow() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())

    entrypoints = {d["name"]: d["entrypoint"] for d in spec["deployments"]}

    assert (
        entrypoints["manual-training"] == "flows/privacy_gated_training.py:privacy_gated_training"
    )
    path, name = entrypoints["manual-training"].split(":")
    assert (ROOT / path).is_file()
    assert privacy_gated_training.fn.__name__ == name
    assert privacy_gated_training.name == "privacy-gated-training"


def test_when_the_ui_renders_the_form_then_fields_have_help_and_choices_are_dropdowns() -> None:
    schema = parameter_schema(privacy_gated_training.fn).model_dump()

    definitions = schema["definitions"]
    dp = definitions["DpConfig"]["properties"]
    assert dp["accountant"]["enum"] == ["prv", "rdp", "gdp"]
    assert "Opacus" in dp["target_epsilon"]["description"]
    assert definitions["TrainingConfig"]["properties"]["model"]["enum"] == ["logistic", "mlp"]
    assert schema["required"] == ["config"]


def test_when_the_sweep_is_deployed_then_its_entrypoint_and_grid_form_resolve() -> None:
    from flows.privacy_utility_sweep import privacy_utility_sweep

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entrypoints = {d["name"]: d["entrypoint"] for d in spec["deployments"]}
    path, name = entrypoints["privacy-utility-sweep"].split(":")
    schema = parameter_schema(privacy_utility_sweep.fn).model_dump()

    assert (ROOT / path).is_file()
    assert privacy_utility_sweep.fn.__name__ == name
    assert privacy_utility_sweep.name == "privacy-utility-sweep"
    assert schema["required"] == ["config"]
    grid = schema["definitions"]["SweepConfig"]["properties"]
    assert {"epsilons", "ks", "workers"} <= set(grid)
    assert all(field.get("description") for field in grid.values())
