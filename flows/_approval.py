"""The pause for a person's sign-off: Prefect's typed input form, bound to the evidence.

`await_decision` pauses the flow run (never a task: Prefect cannot pause from inside
one, prefect#19435) with the evidence as the form's Markdown description and a typed
form: approver, decision, rationale, and the evidence digest, filled in with the SHA-256
of the gate report on show. The Prefect UI renders it on the paused run (Resume), and
a script resumes it through the REST API the same way (`POST /flow_runs/{id}/resume`
with `run_input`).

A decision the policy does not accept (an unlisted approver, another digest, no
rationale) is refused and the form is asked again, under a new pause key, until the
policy's timeout runs out: a retried or repeated pause asks afresh (prefect#12279), and
the deadline is the first pause's. No acceptable decision in time is a refusal, and the
version is blocked.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Literal

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field

from audits.gates import GateReport
from privgate import stages
from privgate.config import ApprovalPolicy, PipelineConfig, PrivacyPolicy
from privgate.registry.approval import MAX_RATIONALE, Decision, refusal, timeout_refusal
from privgate.registry.versions import Registration, registered_gate_report_sha256
from tasks.registry import record_approval

# Prefect polls the run's state this often while it is paused.
POLL_SECONDS = 5
# The server fails a pause this long after privgate's own deadline, if ever.
SERVER_EXPIRY_GRACE_SECONDS = 600


class ApprovalInput(RunInput):
    """The approval form."""

    approver: str = Field(
        min_length=1, max_length=200, description="Your name, as the policy's approvers list it."
    )
    decision: Literal["approve", "reject"] = Field(
        description="approve: the version gets the alias; reject: it never does."
    )
    rationale: str = Field(
        min_length=1,
        max_length=MAX_RATIONALE,
        description="Why: the trade-off accepted or the reason to refuse (kept in the record).",
    )
    evidence_sha256: str = Field(
        min_length=64,
        max_length=64,
        description="SHA-256 of the gate report you reviewed (filled in; leave it as shown).",
    )


def await_decision(
    *, policy: ApprovalPolicy, description: str, evidence_sha256: str, run_key: str
) -> tuple[Decision | None, str | None]:
    """Pause until an acceptable decision arrives or the timeout passes.

    Returns (decision, None) for an accepted decision, (None, reason) when none came in
    time: the caller blocks the version with that reason.
    """
    logger = get_run_logger()
    deadline = time.monotonic() + policy.timeout_seconds
    attempt = 0
    note = ""
    expired = threading.Event()
    while (remaining := deadline - time.monotonic()) > 0:
        attempt += 1
        form = ApprovalInput.with_initial_data(
            description=note + description, evidence_sha256=evidence_sha256
        )
        # The policy's deadline is kept here: at it, the run is set back to Running,
        # which ends the pause. The server's own pause expiry is set later, so that it
        # never fails the run first (it would leave the version pending, unrecorded).
        timer = threading.Timer(remaining, _end_pause, args=(flow_run.id, expired))
        timer.start()
        try:
            answer = pause_flow_run(
                wait_for_input=form,
                timeout=int(remaining) + SERVER_EXPIRY_GRACE_SECONDS,
                poll_interval=POLL_SECONDS,
                key=f"approval-{run_key}-{attempt}",
            )
        except Exception:
            if expired.is_set():  # the pause ended at the deadline, with no input
                break
            raise
        finally:
            timer.cancel()
        if expired.is_set():  # an answer racing the deadline: too late, fail closed
            break
        decision = Decision.now(
            approver=answer.approver,
            decision=answer.decision,
            rationale=answer.rationale,
            evidence_sha256=answer.evidence_sha256,
        )
        reason = refusal(decision, policy, evidence_sha256=evidence_sha256)
        if reason is None:
            logger.info("%s by %s", decision.decision, decision.approver)
            return decision, None
        logger.warning("decision refused: %s; asking again", reason)
        note = f"**The last decision was refused: {reason}.**\n\n"
    reason = timeout_refusal(policy)
    logger.warning(reason)
    if not expired.is_set():
        _end_pause(flow_run.id, expired)
    return None, reason


def _end_pause(flow_run_id: Any, expired: threading.Event) -> None:
    """Set a paused run back to Running (the policy's deadline passed)."""
    expired.set()
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
        if state is not None and state.is_paused():
            client.set_flow_run_state(
                flow_run_id, Running(message="no decision in time"), force=True
            )


def sign_off(
    evidence: stages.RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    registration: Registration,
) -> tuple[Registration, dict[str, Any]]:
    """Pause for an approver's decision on this evidence, then record it.

    Returns the registration after the decision and the summary's `approval` entry.
    """
    description, digest = stages.approval_request(evidence, gates, config, policy, registration)
    decision: Decision | None = None
    refusal: str | None = None
    if registered_gate_report_sha256(registration.run_id) != digest:
        # A retried run found the version an earlier attempt registered, with that
        # attempt's evidence: an approval of this run's evidence would not be its.
        refusal = (
            "the run was retried and its evidence is not the registered version's; start a new run"
        )
    else:
        try:
            decision, refusal = await_decision(
                policy=policy.approval,
                description=description,
                evidence_sha256=digest,
                # Unique per execution: a retried run asks afresh, never replays an answer.
                run_key=f"{registration.model_name}-{registration.version}-{uuid.uuid4().hex[:8]}",
            )
        except BaseException as exc:
            # Fail closed and say so: the version is rejected, not left pending.
            record_approval(
                evidence=evidence,
                gates=gates,
                config=config,
                policy=policy,
                registration=registration,
                decision=None,
                refusal=f"the sign-off step failed ({type(exc).__name__})",
            )
            raise
    done = record_approval(
        evidence=evidence,
        gates=gates,
        config=config,
        policy=policy,
        registration=registration,
        decision=decision,
        refusal=refusal,
    )
    if decision is None:
        outcome = refusal or "no decision"
    else:
        verdict = {"approve": "approved", "reject": "rejected"}[decision.decision]
        outcome = f"{verdict} by {decision.approver}"
    entry = {
        "outcome": outcome,
        "approved": decision is not None and decision.decision == "approve" and not refusal,
        "evidence_sha256": digest,
        **({} if decision is None else decision.to_dict()),
    }
    return done, entry
