"""Tasks of the `federated-training` flow: each silo's own stages, the rounds, the register.

A silo task runs where its data is: a silo naming a deployment runs the step there (the
`federated-silo` flow on the silo's own work pool, `privgate.federated.remote`); one
that does not runs it in this process with the silo's own folder. Either way only
aggregates come back.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_client, get_run_logger, task
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from audits.gates import GateReport
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from privgate.federated import local, remote, runtime, silo
from privgate.federated.plan import FederatedPlan, Silo
from privgate.federated.registry import register_federated
from privgate.registry.versions import Registration
from tasks._options import IN_MEMORY, RETRY_WHEN_UNREACHABLE
from tasks.registry import promotion_slot


@task(name="propose-silo-levels", task_run_name="propose-levels-{entry.name}", **IN_MEMORY)
def propose_silo_levels(entry: Silo, config: PipelineConfig, plan: FederatedPlan) -> dict[str, int]:
    """The silo's own k-anonymous generalization levels (the coordinator takes the coarsest)."""
    if entry.deployment:
        return _run_step(entry, "propose", _remote(config, plan))["levels"]
    with withheld(f"propose-silo-levels ({entry.name})"):
        return silo.propose_levels(silo.silo_config(config, entry, plan))


@task(name="prepare-silo", task_run_name="prepare-{entry.name}", **IN_MEMORY)
def prepare_silo(
    entry: Silo,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    plan: FederatedPlan,
    folder: Path,
    levels: dict[str, int],
) -> silo.SiloEvidence:
    """Run the data stages in the silo at the shared levels; return its aggregates."""
    if entry.deployment:
        found = _run_step(entry, "prepare", {**_remote(config, plan), "levels": levels})
        evidence = silo.SiloEvidence(**found)
    else:
        with withheld(f"prepare-silo ({entry.name})"):
            evidence = silo.prepare(
                silo.silo_config(config, entry, plan), policy, plan, folder, entry.name, levels
            )
    if evidence.blocked:
        get_run_logger().warning("silo %s is blocked: %s", entry.name, evidence.blocked)
    return evidence


@task(name="reserve-silo-budget", task_run_name="reserve-{entry.name}", **IN_MEMORY)
def reserve_silo_budget(
    entry: Silo,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    plan: FederatedPlan,
    folder: Path,
    evidence: silo.SiloEvidence,
) -> str:
    """Charge the silo's whole planned chain to its ledger before the first round."""
    if entry.deployment:
        parameters = {**_remote(config, plan), "evidence": asdict(evidence)}
        return _run_step(entry, "reserve", parameters)["entry_id"]
    with withheld(f"reserve-silo-budget ({entry.name})"):
        return silo.reserve(
            silo.silo_config(config, entry, plan),
            policy,
            plan,
            folder,
            evidence,
            run_key=str(flow_run.id),
        )


@task(name="reserve-source-budget", **IN_MEMORY)
def reserve_source_budget(
    config: PipelineConfig, policy: PrivacyPolicy, plan: FederatedPlan
) -> str | None:
    """Charge the table the silos were split from, if the plan names one."""
    with withheld("reserve-source-budget"):
        return silo.reserve_source(config, policy, plan, run_key=str(flow_run.id))


@task(name="settle-source-budget", **IN_MEMORY)
def settle_source_budget(entry_id: str | None, audits: list[silo.SiloAudit]) -> None:
    """Settle the source table's entry with the largest epsilon any silo spent."""
    with withheld("settle-source-budget"):
        silo.settle_source(entry_id, audits)


@task(name="train-federated", **IN_MEMORY)
def train_federated(
    plan: FederatedPlan,
    folders: dict[str, Path],
    config: PipelineConfig,
    input_width: int,
    max_weight: float,
    workdir: Path,
    record: bool = False,
) -> runtime.FederationResult:
    """Run every round on Flower's Deployment Engine (SuperLink, SuperNodes), with SecAgg+.

    Local silos get a SuperNode on loopback; deployed silos start theirs on their own
    hosts (the `serve` step), dialing this run's SuperLink, and stop when it stops.
    """
    initial = local.initial_weights(config.training, input_width)
    serving: list[tuple[Any, Any]] = []

    def serve_deployed(fed: runtime.Federation) -> None:
        address = plan.coordinator.address or f"{plan.coordinator.host}:{fed.port}"
        for entry in plan.silos:
            parameters = {**_remote(config, plan), "superlink": address}
            serving.append((entry, _start_step(entry, "serve", parameters)))

    result = runtime.train_federated(
        plan,
        {} if plan.deployed else folders,
        initial,
        workdir,
        max_weight=max_weight,
        record=record,
        while_running=serve_deployed if plan.deployed else None,
    )
    for entry, run in serving:  # each SuperNode stops once the SuperLink is gone
        try:
            _wait_step(entry, "serve", run.id, timeout=300)
        except remote.SiloStepError as error:
            get_run_logger().warning("%s (the rounds had completed)", error)
    get_run_logger().info(
        "federated training: %d rounds with %d silos in %.1f s",
        len(result.rounds),
        len(folders),
        result.seconds,
    )
    return result


@task(name="audit-silo", task_run_name="audit-{entry.name}", **IN_MEMORY)
def audit_silo(
    entry: Silo,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    plan: FederatedPlan,
    folder: Path,
    weights: list[Any],
) -> silo.SiloAudit:
    """Settle the silo's ledger and audit the global model on the silo's own data."""
    if entry.deployment:
        parameters = {**_remote(config, plan), "weights": remote.encode_weights(weights)}
        return silo.SiloAudit(**_run_step(entry, "audit", parameters))
    with withheld(f"audit-silo ({entry.name})"):
        return silo.audit(
            silo.silo_config(config, entry, plan), policy, plan, folder, entry.name, weights
        )


def _start_step(silo: Silo, step: remote.Step, parameters: dict[str, Any]) -> Any:
    """Start the silo's step on its deployment without waiting; return the flow run."""
    return run_deployment(
        name=str(silo.deployment),
        parameters={"step": step, "silo_entry": silo.model_dump(mode="json"), **parameters},
        timeout=0,
        as_subflow=False,
        tags=["privgate", "federated", f"silo:{silo.name}"],
    )


def _wait_step(silo: Silo, step: remote.Step, flow_run_id: Any, timeout: float) -> dict[str, Any]:
    """Wait for the silo's step; return its result (aggregates), or raise naming the silo."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                break
            if time.monotonic() > deadline:
                raise remote.SiloStepError(
                    f"silo {silo.name}: step {step} did not finish within {timeout:.0f} s"
                )
            time.sleep(1.0)
    if not run.state.is_completed():
        # The state's message is the silo's withheld one (privgate.errors.withheld).
        raise remote.SiloStepError(
            f"silo {silo.name}: step {step} ended {run.state.type.value}: {run.state.message}"
        )
    result = run.state.result()
    if not isinstance(result, dict):
        raise remote.SiloStepError(f"silo {silo.name}: step {step} returned no aggregates")
    return result


def _run_step(
    silo: Silo, step: remote.Step, parameters: dict[str, Any], *, timeout: float = 3600
) -> dict[str, Any]:
    """Run the silo's step on its deployment and return its aggregates."""
    run = _start_step(silo, step, parameters)
    return _wait_step(silo, step, run.id, timeout)


def _remote(config: PipelineConfig, plan: FederatedPlan) -> dict[str, Any]:
    """The parameters every step of a deployed silo takes."""
    return {
        "config": config.model_dump(mode="json"),
        "plan": plan.model_dump(mode="json"),
        "run_id": str(flow_run.id),
    }


@task(name="register-federated-model", **IN_MEMORY, **RETRY_WHEN_UNREACHABLE)
def register_federated_model(**kwargs: Any) -> Registration:
    """One signed version listing every silo's evidence; the alias only if all passed."""
    gates: GateReport = kwargs["gates"]
    with withheld("register-federated-model"):
        registration = register_federated(
            **kwargs, run_key=str(flow_run.id), promotion_lock=promotion_slot
        )
    get_run_logger().info(
        "registered %s version %s (%s)",
        registration.model_name,
        registration.version,
        "promoted" if registration.promoted else f"not promoted: {gates.failure_message()}",
    )
    return registration
