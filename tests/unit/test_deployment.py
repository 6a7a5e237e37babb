"""The deployment file points at the real flow, and the flow's UI form is typed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from flows.privacy_gated_training import (
    privacy_gated_training,
    privacy_gated_training_from_file,
)
from privgate.config import PipelineConfig, PrivacyPolicy, load_config, load_policy

ROOT = Path(__file__).resolve().parents[2]


def _deployments() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def _flow_at(entrypoint: str) -> Flow[..., Any]:
    path, name = entrypoint.split(":")
    return load_flow_from_entrypoint(str(ROOT / path) + ":" + name)


def test_when_prefect_yaml_is_read_then_every_deployment_runs_a_privgate_flow() -> None:
    deployments = _deployments()

    flows = {name: _flow_at(d["entrypoint"]).name for name, d in deployments.items()}

    assert flows == {
        "nightly-training": "privacy-gated-training-from-file",
        "manual-training": "privacy-gated-training",
        "approved-training": "privacy-gated-training",
        "champion-reaudit": "champion-reaudit",
        "privacy-utility-sweep": "privacy-utility-sweep",
        "federated-training": "federated-training-from-file",
        "silo-1": "federated-silo",
        "silo-2": "federated-silo",
        "silo-3": "federated-silo",
    }
    pools = {name: d["work_pool"]["name"] for name, d in deployments.items()}
    assert {pools[n] for n in flows if not n.startswith("silo-")} == {"privgate-process"}
    # Each silo on a pool of its own (its worker runs on the silo's host), same environment.
    assert [pools[f"silo-{i}"] for i in (1, 2, 3)] == [f"privgate-silo-{i}" for i in (1, 2, 3)]


def test_when_the_federation_is_deployed_then_its_plan_names_each_silo_deployment() -> None:
    from privgate.federated.plan import load_plan

    deployments = _deployments()
    parameters = deployments["federated-training"]["parameters"]

    plan = load_plan(ROOT / parameters["plan_file"])

    assert plan.deployed
    silo_deployments = {f"federated-silo/{n}" for n in deployments if n.startswith("silo-")}
    assert {s.deployment for s in plan.silos} == silo_deployments
    # Each path is the silo host's own: left for that host to resolve.
    assert all(str(s.train_path).startswith("${PRIVGATE_HOME}") for s in plan.silos)
    assert (ROOT / parameters["config_file"]).is_file()


def test_when_deployments_are_scheduled_then_nightly_trains_and_weekly_reaudits() -> None:
    deployments = _deployments()

    schedules = {
        name: [CronSchedule(**s).cron for s in d.get("schedules", [])]
        for name, d in deployments.items()
    }

    assert schedules == {
        "nightly-training": ["0 2 * * *"],
        "manual-training": [],
        "approved-training": [],
        "champion-reaudit": ["0 4 * * 1"],
        "privacy-utility-sweep": [],
        "federated-training": [],
        "silo-1": [],
        "silo-2": [],
        "silo-3": [],
    }


def test_when_deployments_take_parameters_then_they_name_files_never_thresholds() -> None:
    deployments = _deployments()
    thresholds = set(PrivacyPolicy.model_fields)

    parameters = {name: d.get("parameters", {}) for name, d in deployments.items()}

    assert parameters["nightly-training"] == {"config_file": "configs/demo.yaml"}
    assert (ROOT / parameters["nightly-training"]["config_file"]).is_file()
    flat = yaml.safe_dump(parameters)
    assert not [key for key in thresholds if key in flat]
    for name, deployment in deployments.items():
        env = deployment["work_pool"]["job_variables"]["env"]
        reviewed = "configs/policy-approval.yaml" if name == "approved-training" else None
        assert env["PRIVGATE_POLICY"] == (reviewed or "configs/policy.yaml")
        assert load_policy(ROOT / env["PRIVGATE_POLICY"]).min_k >= 2
    # The sign-off deployment's environment is the others' but for the policy file.
    approval = deployments["approved-training"]["work_pool"]["job_variables"]["env"]
    manual = deployments["manual-training"]["work_pool"]["job_variables"]["env"]
    assert {k: v for k, v in approval.items() if k != "PRIVGATE_POLICY"} == {
        k: v for k, v in manual.items() if k != "PRIVGATE_POLICY"
    }
    reviewed_policy = load_policy(ROOT / approval["PRIVGATE_POLICY"])
    assert reviewed_policy.approval.required
    assert reviewed_policy.approval.approvers
    assert not load_policy(ROOT / manual["PRIVGATE_POLICY"]).approval.required


def test_when_the_file_flow_runs_then_its_parameters_point_at_a_config_and_overrides() -> None:
    schema = parameter_schema(privacy_gated_training_from_file.fn).model_dump()

    assert set(schema["properties"]) == {"config_file", "overrides"}
    assert schema["properties"]["config_file"]["default"] == "configs/demo.yaml"


def test_when_the_ui_renders_the_form_then_fields_have_help_and_choices_are_dropdowns() -> None:
    schema = parameter_schema(privacy_gated_training.fn).model_dump()

    definitions = schema["definitions"]
    dp = definitions["DpConfig"]["properties"]
    assert dp["accountant"]["enum"] == ["prv", "rdp", "gdp"]
    assert "Opacus" in dp["target_epsilon"]["description"]
    assert definitions["TrainingConfig"]["properties"]["model"]["enum"] == [
        "logistic",
        "mlp",
        "mlp_poly",
    ]
    # The form opens filled with the reviewed config file.
    default = schema["properties"]["config"]["default"]
    assert PipelineConfig.model_validate(default) == load_config(ROOT / "configs" / "demo.yaml")


def test_when_the_sweep_is_deployed_then_its_entrypoint_and_grid_form_resolve() -> None:
    from flows.privacy_utility_sweep import privacy_utility_sweep

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entrypoints = {d["name"]: d["entrypoint"] for d in spec["deployments"]}
    path, name = entrypoints["privacy-utility-sweep"].split(":")
    schema = parameter_schema(privacy_utility_sweep.fn).model_dump()

    assert (ROOT / path).is_file()
    assert privacy_utility_sweep.fn.__name__ == name
    assert privacy_utility_sweep.name == "privacy-utility-sweep"
    assert "default" in schema["properties"]["config"]  # the form opens filled
    grid = schema["definitions"]["SweepConfig"]["properties"]
    assert {"epsilons", "ks", "workers"} <= set(grid)
    assert all(field.get("description") for field in grid.values())
