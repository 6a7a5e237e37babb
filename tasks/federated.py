"""Tasks of the `federated-training` flow: each silo's own stages, the rounds, the register.

A silo task runs where its data is (in a deployment, on the silo's work pool; on one
machine, in the flow's process with the silo's own folder) and returns aggregates only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from audits.gates import GateReport
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from privgate.federated import local, runtime, silo
from privgate.federated.plan import FederatedPlan, Silo
from privgate.federated.registry import register_federated
from privgate.registry.versions import Registration
from tasks._options import IN_MEMORY, RETRY_WHEN_UNREACHABLE
from tasks.registry import promotion_slot


@task(name="propose-silo-levels", task_run_name="propose-levels-{entry.name}", **IN_MEMORY)
def propose_silo_levels(entry: Silo, config: PipelineConfig, plan: FederatedPlan) -> dict[str, int]:
    """The silo's own k-anonymous generalization levels (the coordinator takes the coarsest)."""
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
    """Run every round on Flower's Deployment Engine (SuperLink, SuperNodes), with SecAgg+."""
    initial = local.initial_weights(config.training, input_width)
    result = runtime.train_federated(
        plan, folders, initial, workdir, max_weight=max_weight, record=record
    )
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
    with withheld(f"audit-silo ({entry.name})"):
        return silo.audit(
            silo.silo_config(config, entry, plan), policy, plan, folder, entry.name, weights
        )


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
