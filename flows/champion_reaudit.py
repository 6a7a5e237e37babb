"""The `champion-reaudit` flow: does today's champion still pass?

    find-champion -> verify-champion (status, signature, artifact digests)
                  -> reaudit-champion (today's attacks and policy, on its recorded lineage)
                  -> [either failed] -> demote-model (version tagged demoted, alias removed)

Scheduled weekly: attacks improve, policies tighten, artifacts can be tampered with.
A lineage that can no longer be rebuilt fails closed and demotes. What says nothing about
the champion (an unreachable server, retried first; a worker without the public key; an
unexpected error) fails the run and demotes nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import Completed, Failed, State

from privgate.config import load_policy
from tasks.champion import find_champion, reaudit_champion, verify_champion
from tasks.registry import demote_model


@flow(name="champion-reaudit", persist_result=False, validate_parameters=True)
def champion_reaudit(alias: str = "champion") -> State[Any]:
    """Re-audit and verify the policy's model at `alias`; demote it if either fails."""
    policy = load_policy()
    name = policy.registered_model_name
    version = find_champion(name, alias)
    if version is None:
        return Completed(message=f"{name}@{alias} points at no version: nothing to re-audit")
    verdicts = [verify_champion(name, version), reaudit_champion(name, version, policy)]
    failed = [f"{v.check}: {v.reason}" for v in verdicts if not v.passed]
    summary = {
        "model_name": name,
        "alias": alias,
        "version": version,
        "checks": {v.check: "passed" if v.passed else "failed" for v in verdicts},
    }
    if not failed:
        return Completed(message=f"{name} version {version} still passes", data=summary)
    reason = "; ".join(failed)
    removed = demote_model(model_name=name, alias=alias, version=version, reason=reason)
    summary |= {"demoted": True, "alias_removed": removed}
    moved = "" if removed else f" ({alias} had already moved to another version)"
    return Failed(message=f"{name} version {version} demoted{moved}: {reason}", data=summary)
