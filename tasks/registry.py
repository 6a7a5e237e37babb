"""Tasks that write the model registry: register (alias only when every gate passed), demote."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run

from audits.gates import GateReport
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from privgate.registry.approval import Decision
from privgate.registry.versions import Registration, demote
from tasks._options import IN_MEMORY, RETRY_WHEN_UNREACHABLE


def promotion_limit(model_name: str) -> str:
    """Return the name of the global concurrency limit that serializes `model_name`'s aliases."""
    return f"privgate-promote-{model_name}"


@contextmanager
def promotion_slot(model_name: str) -> Iterator[None]:
    """Hold the model's one promotion slot, on whatever machine the task runs.

    The limit (1 slot) is created on first use, so a new model needs no set-up. Keep it
    active: Prefect grants every request on an inactive limit, which would let
    promotions on different machines interleave (each host's file lock remains).
    """
    name = promotion_limit(model_name)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
    with concurrency(name, occupy=1, timeout_seconds=600, strict=True):
        yield


@task(name="register-model", **IN_MEMORY, **RETRY_WHEN_UNREACHABLE)
def register_model(
    *,
    evidence: stages.RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
) -> Registration:
    """Log the run to MLflow, register a version, tag its verdict, move the alias if approved."""
    # The flow run's id keys the registration: a retry finds its version, never a second.
    with withheld("register-model"):
        registration = stages.register(
            evidence,
            gates,
            config,
            policy,
            run_key=str(flow_run.id),
            promotion_lock=promotion_slot,
        )
    get_run_logger().info(
        "registered %s version %s (%s)",
        registration.model_name,
        registration.version,
        "promoted to " + config.registry.alias if registration.promoted else "not promoted",
    )
    return registration


@task(name="record-approval", **IN_MEMORY, **RETRY_WHEN_UNREACHABLE)
def record_approval(
    *,
    evidence: stages.RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    registration: Registration,
    decision: Decision | None,
    refusal: str | None,
) -> Registration:
    """Sign and promote an approved version, or tag it rejected with the reason."""
    with withheld("record-approval"):
        done = stages.finish_approval(
            evidence,
            gates,
            config,
            policy,
            registration,
            decision=decision,
            refusal=refusal,
            promotion_lock=promotion_slot,
        )
    get_run_logger().info(
        "%s version %s %s",
        done.model_name,
        done.version,
        "approved and promoted to " + config.registry.alias if done.promoted else "not promoted",
    )
    return done


@task(name="demote-model", **IN_MEMORY, **RETRY_WHEN_UNREACHABLE)
def demote_model(*, model_name: str, alias: str, version: str, reason: str) -> bool:
    """Tag a version that no longer passes demoted, with why; take the alias off it.

    Returns whether the alias was removed (False when it had moved to another version).
    """
    with withheld("demote-model"):
        removed = demote(
            model_name, alias=alias, version=version, reason=reason, promotion_lock=promotion_slot
        )
    get_run_logger().warning(
        "demoted %s version %s%s: %s",
        model_name,
        version,
        f", removed from {alias!r}" if removed else "",
        reason,
    )
    return removed
