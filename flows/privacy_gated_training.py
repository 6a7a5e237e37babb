"""The `privacy-gated-training` flow: the pipeline diagram, wired.

    ingest -> validate -> preflight -> scan-pii -> anonymize -> verify-anonymization
           -> [data gates] -> train-dp-model
           -> train-reference-models x groups | canary-audit (DP) | canary-audit (control)
           -> audit-membership-inference
           -> [all gates] -> register-model (alias only if every gate passed)
           -> [approval, when the policy asks] pause for a person -> record-approval

A failed gate ends the run Failed, with a message naming each failed gate, its value
and its threshold; the returned summary says the same to the CLI.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.states import Completed, Failed, State

from audits.gates import GateReport
from audits.suite import AuditReport
from flows._approval import sign_off
from flows._runners import build_runner, submit
from privgate import stages
from privgate.config import PipelineConfig, load_config, load_policy
from privgate.home import resolve_path
from privgate.summary import run_summary
from tasks.audit import (
    audit_membership_inference,
    evaluate_gates,
    run_canary_audit,
    train_reference_models,
)
from tasks.data import ingest_tables, preflight_checks, validate_raw_table
from tasks.privacy import anonymize_records, scan_pii, verify_anonymization
from tasks.registry import register_model
from tasks.training import train_dp_model

# The reviewed config file (`$PRIVGATE_CONFIG`, else configs/demo.yaml), read when the
# flow is loaded: `prefect deploy` writes it into the parameter schema, so the Prefect
# UI's form opens filled with it, and a run started without a config uses it.
DEFAULT_CONFIG = load_config()


@flow(name="privacy-gated-training", persist_result=False, validate_parameters=True)
def privacy_gated_training(config: PipelineConfig = DEFAULT_CONFIG) -> State[Any]:
    """Train a model on sensitive data; promote it only through every privacy gate."""
    started = time.perf_counter()
    policy = load_policy()
    tables = ingest_tables(config)
    validation = validate_raw_table(tables, config)
    checks = preflight_checks(tables, config, policy)
    if not checks.ok:
        summary = run_summary(policy=policy, gates=GateReport(()), started=started)
        summary["preflight"] = checks.to_dict()
        return Failed(
            message=f"blocked before training: preflight: {checks.failure_message()}",
            data=summary,
        )
    scan = scan_pii(tables, config)
    anonymized = anonymize_records(tables, scan, config)
    verification = verify_anonymization(anonymized, config, policy)
    data_gates = evaluate_gates(verification, policy)
    if not data_gates.passed:
        summary = run_summary(policy=policy, gates=data_gates, started=started)
        return Failed(
            message=f"blocked before training: {data_gates.failure_message()}", data=summary
        )

    trained = train_dp_model(anonymized, tables, config, policy)
    audit = _audit(trained, config)
    gates = evaluate_gates(verification, policy, trained, audit)
    evidence = stages.RunEvidence(
        tables, validation, scan, anonymized, verification, trained, audit
    )
    registration = register_model(evidence=evidence, gates=gates, config=config, policy=policy)
    approval: dict[str, Any] | None = None
    if registration.pending_approval:
        registration, approval = sign_off(evidence, gates, config, policy, registration)
    summary = run_summary(
        policy=policy,
        gates=gates,
        started=started,
        trained=trained,
        audit=audit,
        registration=registration,
    )
    if not gates.passed:
        return Failed(message=f"blocked: {gates.failure_message()}", data=summary)
    if approval is not None:
        summary["approval"] = approval
        if not approval["approved"]:
            return Failed(message=f"blocked: approval: {approval['outcome']}", data=summary)
    return Completed(message=f"promoted version {registration.version}", data=summary)


@flow(name="privacy-gated-training-from-file", persist_result=False, validate_parameters=True)
def privacy_gated_training_from_file(
    config_file: str = "configs/demo.yaml", overrides: list[str] | None = None
) -> State[Any]:
    """Run `privacy-gated-training` on a reviewed config file (scheduled deployments).

    `config_file` is resolved like the CLI's `--config` (relative to the project when
    not found here); `overrides` are `dotted.key=value` strings, as `--set` takes them.
    """
    config = load_config(resolve_path(config_file), overrides or [])
    return privacy_gated_training(config=config, return_state=True)


def _audit(trained: stages.Trained, config: PipelineConfig) -> AuditReport:
    """Fan the audit's training runs out on the configured runner, then attack."""
    started = time.perf_counter()
    with build_runner(config.orchestration) as runner:
        groups = [
            submit(runner, train_reference_models, trained=trained, config=config, group=group)
            for group in range(len(stages.reference_group_sizes(config)))
        ]
        canary = submit(runner, run_canary_audit, trained=trained, config=config, private=True)
        control = submit(runner, run_canary_audit, trained=trained, config=config, private=False)
        parts = [future.result() for future in groups]
        canary_result, control_result = canary.result(), control.result()
    return audit_membership_inference(
        trained, config, parts, canary_result, control_result, time.perf_counter() - started
    )
