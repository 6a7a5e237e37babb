"""Register a federated model: one signed version listing every silo's evidence."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from audits.gates import GateReport
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.data.features import build_feature_spec, input_width
from privgate.data.validation import public_domains
from privgate.federated.evidence import PER_RECORD_STATEMENT, attestation_silos, global_evidence
from privgate.federated.local import network_with
from privgate.federated.plan import FederatedPlan
from privgate.federated.silo import SiloAudit, SiloEvidence
from privgate.home import resolve_path
from privgate.registry.model_card import render_model_card
from privgate.registry.versions import (
    PromotionLock,
    Registration,
    log_and_register,
    log_run_text,
)


def shared_feature_spec(config: PipelineConfig, levels: dict[str, int]) -> dict[str, Any]:
    """Return the encoding every silo uses: the suite's public domains at shared levels."""
    training = config.training
    return build_feature_spec(
        features=training.features,
        domains=public_domains(resolve_path(config.data.expectation_suite)),
        quasi_identifiers=config.anonymization.quasi_identifiers,
        levels=levels,
        log_scaled=training.log_scaled,
    )


def register_federated(
    *,
    weights: list[np.ndarray],
    feature_spec: dict[str, Any],
    silos: list[SiloEvidence],
    audits: list[SiloAudit],
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    plan: FederatedPlan,
    federation: dict[str, Any],
    run_key: str,
    promotion_lock: PromotionLock | None = None,
) -> Registration:
    """Log the global model once; sign and promote it only if every gate passed."""
    training = config.training
    network = network_with(training, input_width(feature_spec), weights)
    evidence = global_evidence(silos, audits)
    listed = attestation_silos(silos, audits, federation["rounds"])
    epsilon = evidence.epsilon if evidence.epsilon is not None else math.inf
    delta = evidence.delta if evidence.delta is not None else 1.0
    tags = {
        "privgate.training": "federated",
        "privgate.federated.silos": str(len(silos)),
        "privgate.lineage.config_sha256": config.sha256(),
        "privgate.lineage.policy_sha256": policy.sha256(),
        "privgate.lineage.code_version": stages.code_version(),
        **{f"privgate.lineage.silo.{s.silo}.train_sha256": s.train_sha256 for s in silos},
    }
    metrics = {
        "accuracy": evidence.accuracy,
        "epsilon_spent": epsilon,
        "mia_auc": evidence.mia_auc,
        "k_achieved": evidence.k_achieved,
        "n_train": evidence.n_train,
        "rounds": plan.rounds,
        "federation_seconds": federation.get("seconds"),
    }
    registration = log_and_register(
        model_name=policy.registered_model_name,
        alias=config.registry.alias,
        experiment=config.registry.experiment,
        network=network,
        model_spec={
            "model": training.model,
            "hidden_units": training.hidden_units,
            "input_width": input_width(feature_spec),
            "feature_spec": feature_spec,
        },
        params={
            "training.mode": "federated",
            "training.model": training.model,
            "federated.rounds": str(plan.rounds),
            "federated.local_epochs": str(plan.local_epochs),
            "federated.silos": str(len(silos)),
            "federated.secagg.num_shares": str(plan.secagg.num_shares),
            "federated.secagg.reconstruction_threshold": str(plan.secagg.reconstruction_threshold),
            "anonymization.k": str(config.anonymization.k),
        },
        metrics={
            k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))
        },
        tags=tags,
        gate_tags={r.name: r.status for r in gates.results},
        gate_report_json=json.dumps(gates.to_dict(), sort_keys=True, indent=2),
        approved=gates.passed,
        epsilon=epsilon,
        delta=delta,
        policy_sha256=policy.sha256(),
        json_artifacts={
            "federation/silos.json": listed,
            "federation/audits.json": [
                {"silo": a.silo, "dp": a.dp, "audit": a.audit, "gates": a.gates} for a in audits
            ],
            "federation/rounds.json": federation,
            "config.json": config.model_dump(mode="json"),
        },
        text_artifacts={"gate_report.md": gates.to_markdown()},
        run_key=run_key,
        promotion_lock=promotion_lock,
        silos=listed,
    )
    card_md, card_html = render_model_card(
        _card_facts(registration, gates, evidence, listed, config, plan, federation)
    )
    log_run_text(registration.run_id, card_md, f"model_card/v{registration.version}.md")
    log_run_text(registration.run_id, card_html, f"model_card/v{registration.version}.html")
    return registration


def _card_facts(
    registration: Registration,
    gates: GateReport,
    evidence: Any,
    silos: list[dict[str, Any]],
    config: PipelineConfig,
    plan: FederatedPlan,
    federation: dict[str, Any],
) -> dict[str, Any]:
    faults = [
        f"Round {r['round']}: {', '.join(r[kind])} {verb}."
        for r in federation["rounds"]
        for kind, verb in (
            ("dropped", "dropped out (SecAgg+ rebuilt its masks from the other silos' shares)"),
            ("excluded", "sent a malformed masked vector, left out of the sum"),
        )
        if r[kind]
    ]
    silo_notes = [
        f"Silo {s['silo']}: table sha256 {s['train_sha256'][:16]}..., epsilon "
        f"{s['epsilon']:.3f} over {s['steps']} DP-SGD steps (sigma {s['noise_multiplier']:.3f}), "
        f"k={s['k_achieved']}, {s['members']} members, summed in rounds "
        f"{', '.join(map(str, s['rounds_summed'])) or 'none'}, gates "
        f"{'passed' if s['gates_passed'] else 'FAILED'}."
        for s in silos
    ]
    return {
        "model": stages.card_model_facts(registration, approved=gates.passed),
        "data": {
            "k_target": config.anonymization.k,
            "k_achieved": evidence.k_achieved,
            "l_achieved": evidence.l_achieved,
            "rows_out": evidence.n_train,
        },
        "training": {
            "model": config.training.model,
            "epochs": plan.plan_epochs,
            "batch_size": config.training.batch_size,
            "dp": {"enabled": True, "epsilon": evidence.epsilon, "delta": evidence.delta},
        },
        "audit": {
            "mia_auc": evidence.mia_auc,
            "attack": evidence.strongest_attack,
            "empirical_epsilon_lower_bound": evidence.empirical_epsilon_lower_bound,
            "claimed_epsilon": evidence.claimed_epsilon,
            "audit_power_epsilon": evidence.audit_power_epsilon,
        },
        "utility": {"accuracy": evidence.accuracy, "majority_rate": evidence.majority_rate},
        "gates": gates.to_dict()["gates"],
        "lineage": {"training": f"federated: {len(silos)} silos, {plan.rounds} rounds, SecAgg+"},
        "notes": [
            PER_RECORD_STATEMENT,
            "Accuracy is the global model's on the union of the silos' test tables; the "
            "audit ran inside each silo, on its members against its holdout.",
            "Each silo's canary audit re-trains the silo's planned chain (every round's "
            "local epochs, the same sigma and sampling rate) as one run from the seeded "
            "initial weights, not round by round from the global weights.",
            *silo_notes,
            *faults,
        ],
    }
