"""The `federated-training` flow: privgate's gates around Flower's SecAgg+ rounds.

    per silo: propose-levels -> [coarsest levels] -> prepare-silo (ingest, validate,
              preflight, scan-pii, anonymize, verify) -> [every silo's data gates]
              -> reserve-source-budget (the table split into silos, if any)
              -> reserve-silo-budget
    train-federated (SuperLink + one SuperNode per silo, DP-SGD in each, SecAgg+ sums)
    per silo: audit-silo (ledger settled, the central audit on its own data)
    -> settle-source-budget
    -> [global gates + every silo's gates] -> register-federated-model

Any silo's failing evidence blocks promotion, and the message names the silo.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from privgate.config import PipelineConfig, load_config, load_policy
from privgate.data.features import input_width
from privgate.federated.evidence import (
    PER_RECORD_STATEMENT,
    blocked_before_training,
    federation_gates,
    judge_federation,
)
from privgate.federated.plan import FederatedPlan, load_plan
from privgate.federated.registry import shared_feature_spec
from privgate.federated.runtime import flower_env
from privgate.federated.silo import common_levels, require_dp
from privgate.home import privgate_home, resolve_path
from tasks.federated import (
    audit_silo,
    prepare_silo,
    propose_silo_levels,
    register_federated_model,
    reserve_silo_budget,
    reserve_source_budget,
    settle_source_budget,
    train_federated,
)

DEFAULT_CONFIG = load_config()


@flow(name="federated-training", persist_result=False, validate_parameters=True)
def federated_training(
    plan: FederatedPlan,
    config: PipelineConfig = DEFAULT_CONFIG,
    workdir: str | None = None,
    record_coordinator_view: bool = False,
) -> State[Any]:
    """Train one model across silos that keep their rows; promote it only through every gate."""
    started = time.perf_counter()
    require_dp(config)
    policy = load_policy()
    if policy.approval.required:
        # Fail closed: a federated version has no sign-off step yet, and must not be
        # promoted past a policy that asks for one.
        return Failed(
            message="blocked before training: the policy asks for a person's approval "
            "(approval.required), which federated training does not support yet"
        )
    # One folder per run: a concurrent run must never touch this run's silo accounting.
    root = Path(workdir) if workdir else privgate_home() / "federated" / "runs" / str(flow_run.id)
    folders = {s.name: root / "silos" / s.name for s in plan.silos}
    levels = common_levels(_per_silo(plan, propose_silo_levels, lambda s: (s, config, plan)))
    silos = _per_silo(
        plan, prepare_silo, lambda s: (s, config, policy, plan, folders[s.name], levels)
    )
    summary: dict[str, Any] = {
        "mode": "federated",
        "silos": [
            {
                "silo": s.silo,
                "rows_in": s.rows_in,
                "members": s.members,
                "k": s.k_achieved,
                "blocked": s.blocked,
            }
            for s in silos
        ],
        "levels": levels,
    }
    blocked = [s for s in silos if s.blocked]
    if blocked:
        gates = blocked_before_training(silos)
        summary.update(passed=False, gates=gates.to_dict(), seconds=time.perf_counter() - started)
        names = ", ".join(f"silo {s.silo}: {s.blocked}" for s in blocked)
        return Failed(message=f"blocked before training: {names}", data=summary)
    flower_env()  # before any charge: a missing Flower environment must not cost budget
    source_entry = reserve_source_budget(config, policy, plan)
    evidence = {e.silo: e for e in silos}
    _per_silo(
        plan,
        reserve_silo_budget,
        lambda s: (s, config, policy, plan, folders[s.name], evidence[s.name]),
    )
    spec = shared_feature_spec(config, levels)
    result = train_federated(
        plan,
        folders,
        config,
        input_width(spec),
        float(max(s.members for s in silos)),
        root / "federation",
        record_coordinator_view,
    )
    audits = _per_silo(
        plan, audit_silo, lambda s: (s, config, policy, plan, folders[s.name], result.weights)
    )
    settle_source_budget(source_entry, audits)
    # Each silo names its own node (a deployed silo's folder is on its own host).
    result = replace(result, names={a.node_id: a.silo for a in audits if a.node_id is not None})
    gates = judge_federation(
        silos, audits, policy, federation_gates(result.rounds, plan.required_silos)
    )
    federation = {
        "rounds": result.rounds,
        "seconds": result.seconds,
        "dropped": result.dropped,
        "excluded": result.excluded,
        "bytes_sent": result.bytes_sent,
        "bytes_received": result.bytes_received,
    }
    registration = register_federated_model(
        weights=result.weights,
        feature_spec=spec,
        silos=silos,
        audits=audits,
        gates=gates,
        config=config,
        policy=policy,
        plan=plan,
        federation=federation,
    )
    epsilons = {a.silo: a.dp["epsilon_spent"] for a in audits}
    summary.update(
        passed=gates.passed,
        gates=gates.to_dict(),
        epsilon_per_silo=epsilons,
        epsilon=max(epsilons.values()),
        per_record_statement=PER_RECORD_STATEMENT,
        federation=federation,
        model={
            "name": registration.model_name,
            "version": registration.version,
            "promoted": registration.promoted,
        },
        seconds=time.perf_counter() - started,
    )
    if not gates.passed:
        return Failed(message=f"blocked: {gates.failure_message()}", data=summary)
    return Completed(message=f"promoted version {registration.version}", data=summary)


def _per_silo(plan: FederatedPlan, silo_task: Any, arguments: Any) -> list[Any]:
    """Run a silo task for every silo, in plan order.

    Deployed silos run at once, each on its own pool; silos in this process run one
    after another (they share its cores and its Presidio engine).
    """
    if plan.deployed:
        futures = [silo_task.submit(*arguments(s)) for s in plan.silos]
        return [future.result() for future in futures]
    return [silo_task(*arguments(s)) for s in plan.silos]


@flow(name="federated-training-from-file", persist_result=False, validate_parameters=True)
def federated_training_from_file(
    plan_file: str = "configs/federated-deployed.yaml",
    config_file: str = "configs/demo.yaml",
    overrides: list[str] | None = None,
) -> State[Any]:
    """Run `federated-training` on a reviewed plan file and config file (deployments).

    Both are resolved like the CLI's `--plan` and `--config`; `overrides` are
    `dotted.key=value` strings, as `--set` takes them.
    """
    plan = load_plan(resolve_path(plan_file))
    config = load_config(resolve_path(config_file), overrides or [])
    return federated_training(plan=plan, config=config, return_state=True)
