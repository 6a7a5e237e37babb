"""Tasks of the champion's scheduled re-audit: find it, verify it, re-audit it.

Each returns a failed verdict when the champion itself is at fault: verification
refuses it, today's gates fail it, or its lineage can no longer be rebuilt (nothing
vouches for it any more: fail closed). The flow then demotes it. What says nothing about
the champion raises instead and fails the run without demoting: an unreachable server
(retried first), a worker without the public key, an unexpected error.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from privgate.config import PrivacyPolicy
from privgate.errors import DataError, RegistryError, withheld
from privgate.reaudit import reaudit
from privgate.registry.consumer import RefusedError, verify_version
from privgate.registry.versions import champion_version
from tasks._options import IN_MEMORY, RETRY_WHEN_UNREACHABLE


@dataclass(frozen=True)
class Verdict:
    """Whether a check of the champion passed, and why not (no data values)."""

    check: str
    passed: bool
    reason: str = ""


@task(name="find-champion", **IN_MEMORY, **RETRY_WHEN_UNREACHABLE)
def find_champion(model_name: str, alias: str) -> str | None:
    """Return the version `alias` points at, or None when it points nowhere."""
    with withheld("find-champion"):
        return champion_version(model_name, alias)


@task(name="verify-champion", **IN_MEMORY, **RETRY_WHEN_UNREACHABLE)
def verify_champion(model_name: str, version: str) -> Verdict:
    """Check the version's status, signature and every artifact digest, as consumers do."""
    with tempfile.TemporaryDirectory(prefix="privgate-reaudit-") as tmp:
        try:
            with withheld("verify-champion"):
                verify_version(model_name, alias=None, version=version, download_to=Path(tmp))
        except RefusedError as exc:
            return Verdict("registry verification", False, str(exc))
    return Verdict("registry verification", True)


@task(name="reaudit-champion", **IN_MEMORY, **RETRY_WHEN_UNREACHABLE)
def reaudit_champion(model_name: str, version: str, policy: PrivacyPolicy) -> Verdict:
    """Re-run today's audit on the version from its recorded lineage, judged by today's policy."""
    try:
        with withheld("reaudit-champion"):
            report, gates, _ = reaudit(model_name, version=version, alias="", policy=policy)
    except (DataError, RegistryError) as exc:
        # The lineage cannot be rebuilt (data changed, artifacts gone): nothing vouches for
        # the version any more, so the re-audit fails closed.
        return Verdict("re-audit", False, f"the re-audit could not run: {exc}")
    create_markdown_artifact(
        key="champion-reaudit",
        markdown=f"## Re-audit of {model_name} version {version}\n\n"
        + gates.to_markdown()
        + "\n"
        + report.to_markdown(),
    )
    get_run_logger().info(
        "re-audit of version %s: %s (AUC %.4f, TPR@1%%FPR %.4f)",
        version,
        "passed" if gates.passed else "FAILED",
        report.mia_auc,
        report.mia_tpr_at_1pct_fpr,
    )
    return Verdict("re-audit", gates.passed, "" if gates.passed else gates.failure_message())
