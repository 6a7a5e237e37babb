"""The `federated-silo` flow: one silo's step of a federated run, on the silo's own host.

Deployed once per silo (`prefect.yaml`: `federated-silo/<silo>` on the work pool
`privgate-silo-<silo>`, whose worker runs on the silo's machine next to its tables). The
coordinator's `federated-training` flow starts it for each step of the run
(`privgate.federated.remote`):

    propose  the silo's own k-anonymous generalization levels
    prepare  the data stages at the shared levels; the encoded rows stay in its folder
    reserve  the silo's whole planned chain charged to its own ledger
    serve    its Flower SuperNode, dialing the coordinator's SuperLink until the run ends
    audit    its ledger settled; the central audit of the global model on its rows

Every step returns aggregates (JSON, the flow run's result), never a row. The silo's
folder is `$PRIVGATE_HOME/federated/runs/<coordinator run>/silos/<silo>` on its host; its
policy is its own worker's `PRIVGATE_POLICY`, and the coordinator judges the aggregates
with its own.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow

from privgate.config import PipelineConfig, load_config, load_policy
from privgate.errors import ConfigError, withheld
from privgate.federated import remote, runtime, silo
from privgate.federated.plan import FederatedPlan, Silo
from privgate.home import privgate_home

DEFAULT_CONFIG = load_config()


@flow(
    name="federated-silo",
    persist_result=True,
    result_serializer="json",
    validate_parameters=True,
)
def federated_silo(
    step: remote.Step,
    silo_entry: Silo,
    plan: FederatedPlan,
    run_id: str,
    config: PipelineConfig = DEFAULT_CONFIG,
    levels: dict[str, int] | None = None,
    evidence: dict[str, Any] | None = None,
    superlink: str | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Run one step of the coordinator's run `run_id` in this silo; return aggregates."""
    folder = privgate_home() / "federated" / "runs" / run_id / "silos" / silo_entry.name
    policy = load_policy()
    local = silo.silo_config(config, silo_entry, plan)
    with withheld(f"federated-silo {step} ({silo_entry.name})"):
        if step == "propose":
            return {"levels": silo.propose_levels(local)}
        if step == "prepare":
            if levels is None:
                raise ConfigError("federated-silo prepare needs the shared levels")
            found = silo.prepare(local, policy, plan, folder, silo_entry.name, levels)
            return asdict(found)
        if step == "reserve":
            if evidence is None:
                raise ConfigError("federated-silo reserve needs the silo's evidence")
            entry = silo.reserve(
                local, policy, plan, folder, silo.SiloEvidence(**evidence), run_key=run_id
            )
            return {"entry_id": entry}
        if step == "serve":
            if superlink is None:
                raise ConfigError("federated-silo serve needs the SuperLink's address")
            runtime.serve_supernode(superlink, folder, silo_entry.name)
            return {"served": True}
        if weights is None:
            raise ConfigError("federated-silo audit needs the global weights")
        audited = silo.audit(
            local, policy, plan, folder, silo_entry.name, remote.decode_weights(weights)
        )
        return asdict(audited)
