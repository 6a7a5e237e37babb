"""A person's sign-off, bound to the evidence they saw.

When the policy says `approval.required`, a version whose gates all passed waits
(`pending-approval`) while the run shows an approver the evidence and its digest: the
SHA-256 of the exact gate report registered with the version. The decision is accepted
only from an approver the policy lists, with a rationale, for that very digest; it is
then signed into the version's attestation (an approval) or tagged on it (a rejection).
A run that gets no acceptable decision within the policy's timeout blocks the version.

This module judges and records decisions; the pause itself is the flow's
(`flows/_approval.py`, Prefect's `pause_flow_run`), so the core needs no orchestrator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from privgate.config import ApprovalPolicy

MAX_RATIONALE = 2000


@dataclass(frozen=True)
class Decision:
    """What an approver decided, and on which evidence."""

    approver: str
    decision: Literal["approve", "reject"]
    rationale: str
    evidence_sha256: str
    decided_utc: str

    @classmethod
    def now(
        cls,
        *,
        approver: str,
        decision: Literal["approve", "reject"],
        rationale: str,
        evidence_sha256: str,
    ) -> Decision:
        """Return a decision stamped with the current UTC time."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        digest = evidence_sha256.strip().lower()
        return cls(approver.strip(), decision, rationale.strip(), digest, stamp)

    def to_dict(self) -> dict[str, Any]:
        """Return the record signed into the attestation."""
        return asdict(self)


def refusal(decision: Decision, policy: ApprovalPolicy, *, evidence_sha256: str) -> str | None:
    """Return why `decision` cannot be accepted, or None when it can.

    The reason never quotes what was typed: an unlisted approver's name is not echoed
    (it could be anything, a record value pasted by mistake included).
    """
    if decision.approver not in policy.approvers:
        return "the approver is not one the policy lists (approval.approvers)"
    if decision.evidence_sha256.lower() != evidence_sha256.lower():
        return (
            "the decision is for other evidence: its gate-report SHA-256 is not this "
            f"version's ({evidence_sha256})"
        )
    if decision.decision not in ("approve", "reject"):
        return "the decision must be approve or reject"
    if not decision.rationale:
        return "a decision needs a rationale"
    if len(decision.rationale) > MAX_RATIONALE:
        return f"the rationale is longer than {MAX_RATIONALE} characters"
    return None


def timeout_refusal(policy: ApprovalPolicy) -> str:
    """Return the reason recorded when nobody decided in time."""
    return f"no approval within {policy.timeout} (approval.timeout)"
