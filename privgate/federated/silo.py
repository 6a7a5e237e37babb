"""What runs inside a silo, on its own table; only aggregates are returned.

A silo runs the central pipeline's data stages (ingest, GX validation, preflight, PII
scan, anonymization with k-anonymity, the independent residual verifier), keeps its
encoded rows in its own folder for the Flower ClientApp (`privgate.federated.local`),
charges its own ledger entry (its table's content hash) before the federation starts,
and after the last round audits the global model on its own members and holdout with the
central audit (reference models, LiRA/RMIA, white-box and black-box canaries). What it
returns (`SiloEvidence`, `SiloAudit`) is counts, verdicts and bounds: never a row, a
score or a value.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.data.ingest import sha256_file
from privgate.dp.ledger import PrivacyLedger
from privgate.dp.training import DpReport, TrainedModel, accuracy
from privgate.errors import AccountingError, ConfigError, ValidationFailedError
from privgate.federated import local
from privgate.federated.files import NODE_FILE
from privgate.federated.plan import FederatedPlan, Silo
from privgate.preflight import preflight

VERIFICATION_FILE = "verification.pkl"
LEDGER_FILE = "ledger.json"


@dataclass(frozen=True)
class SiloEvidence:
    """A silo's data stages, as aggregates (what the coordinator may see)."""

    silo: str
    train_sha256: str
    rows_in: int
    rows_out: int
    members: int
    input_width: int
    k_achieved: int | None
    l_achieved: int | None
    residual_pii: int | None
    residual_by_verifier: dict[str, Any]
    blocked: str | None  # why the silo cannot train (preflight or its data gates), else None
    data_gates: dict[str, Any]


@dataclass(frozen=True)
class SiloAudit:
    """A silo's verdicts on the global model, as aggregates."""

    silo: str
    gates: dict[str, Any]
    passed: bool
    dp: dict[str, Any]
    audit: dict[str, Any]
    test_rows: int
    test_correct: int
    test_positive: int
    failure: str
    node_id: int | None = None  # the silo's Flower node in this run (names it in the rounds)


def require_dp(config: PipelineConfig) -> None:
    """Refuse federated training without DP: the coordinator would apply unnoised sums.

    Raises:
        ConfigError: when `training.dp.enabled` is false.
    """
    if not config.training.dp.enabled:
        raise ConfigError(
            "federated training needs training.dp.enabled=true: each silo's updates leave "
            "it, and only DP-SGD bounds what they say about its records"
        )


def silo_config(base: PipelineConfig, silo: Silo, plan: FederatedPlan) -> PipelineConfig:
    """Return the pipeline config a silo runs: its own tables, its local epochs."""
    require_dp(base)
    data = base.data.model_copy(
        update={"train_path": silo.train_path, "test_path": silo.test_path, "test_fraction": None}
    )
    training = base.training.model_copy(update={"epochs": plan.local_epochs})
    return base.model_copy(update={"data": data, "training": training})


def chain_config(config: PipelineConfig, plan: FederatedPlan) -> PipelineConfig:
    """The silo's whole DP-SGD chain as one run: what its canary audit re-trains."""
    training = config.training.model_copy(update={"epochs": plan.plan_epochs})
    return config.model_copy(update={"training": training})


def propose_levels(config: PipelineConfig) -> dict[str, int]:
    """Return the generalization levels the silo's own k-anonymity search chooses.

    Silos must encode their rows alike, so they share one node of the lattice: the
    coordinator takes, for each quasi-identifier, the coarsest level any silo proposes
    (`common_levels`), which is k-anonymous in every silo (k-anonymity is monotone up
    the lattice) within its suppression budget. The levels are released as the central
    pipeline releases them (model card), outside the DP guarantee.
    """
    from privgate.pii.kanon import find_k_anonymous_generalization

    tables = stages.ingest(config)
    try:
        stages.validate(tables, config)
    except ValidationFailedError:
        return {}  # no proposal: `prepare` reports the silo blocked, and why
    anonymization = config.anonymization
    quasi = {c: h for c, h in anonymization.quasi_identifiers.items() if c in tables.train.columns}
    result = find_k_anonymous_generalization(
        tables.train[list(quasi)],
        quasi_identifiers=quasi,
        k=anonymization.k,
        max_suppression=anonymization.max_suppression,
    )
    return dict(result.levels)


def common_levels(proposals: list[dict[str, int]]) -> dict[str, int]:
    """Return the coarsest level of each quasi-identifier over the silos' proposals."""
    columns = sorted({c for p in proposals for c in p})
    return {c: max(p.get(c, 0) for p in proposals) for c in columns}


def prepare(
    config: PipelineConfig,
    policy: PrivacyPolicy,
    plan: FederatedPlan,
    folder: Path,
    name: str,
    levels: dict[str, int],
) -> SiloEvidence:
    """Run the data stages on the silo's table at the shared `levels`; keep the rows.

    The encoded rows stay in `folder` for the ClientApp; what returns is aggregates.

    Raises:
        ValidationFailedError, DataError, ConfigError: as the central stages raise them
            (their messages name files, columns and expectations, never values).
    """
    folder.mkdir(parents=True, exist_ok=True)
    stale_files = (local.TRAIN_FILE, local.DP_STATE_FILE, NODE_FILE, LEDGER_FILE, VERIFICATION_FILE)
    for stale in stale_files:
        (folder / stale).unlink(missing_ok=True)
    tables = stages.ingest(config)
    try:
        stages.validate(tables, config)
    except ValidationFailedError as error:
        return SiloEvidence(
            silo=name,
            train_sha256=tables.train_sha256,
            rows_in=len(tables.train),
            rows_out=0,
            members=0,
            input_width=0,
            k_achieved=None,
            l_achieved=None,
            residual_pii=None,
            residual_by_verifier={},
            blocked=f"validation: {error}",
            data_gates={"gates": []},
        )
    checks = preflight(tables, config, policy)
    scan = stages.scan(tables, config)
    anonymized = stages.anonymize(tables, scan, config, levels=levels)
    verification = stages.verify(anonymized, config, policy)
    data_gates = stages.judge_data(verification, policy)
    blocked = None
    if not checks.ok:
        blocked = f"preflight: {checks.failure_message()}"
    elif not data_gates.passed:
        blocked = data_gates.failure_message()
    members, width = 0, 0
    if blocked is None:
        data = stages.training_data(anonymized, tables, config)
        (mx, my), (hx, hy), (tx, ty) = data.members, data.non_members, data.test
        if len(mx) < config.training.batch_size:  # before any charge, not in round 1
            blocked = (
                f"training: {len(mx)} member rows, fewer than "
                f"training.batch_size={config.training.batch_size}"
            )
    if blocked is None:
        np.savez(
            folder / local.TRAIN_FILE,
            members_x=mx,
            members_y=my,
            holdout_x=hx,
            holdout_y=hy,
            test_x=tx,
            test_y=ty,
        )
        (folder / "feature_spec.json").write_text(json.dumps(data.feature_spec, sort_keys=True))
        local.write_settings(folder, config.training, plan_epochs=plan.plan_epochs)
        local.start_accounting(folder)
        members, width = len(mx), mx.shape[1]
    with (folder / VERIFICATION_FILE).open("wb") as out:
        pickle.dump(verification, out)
    return SiloEvidence(
        silo=name,
        train_sha256=tables.train_sha256,
        rows_in=anonymized.report.rows_in,
        rows_out=anonymized.report.rows_out,
        members=members,
        input_width=width,
        k_achieved=verification.k_measured,
        l_achieved=verification.l_measured,
        residual_pii=verification.residual_total,
        residual_by_verifier=verification.residual_by_verifier(),
        blocked=blocked,
        data_gates=data_gates.to_dict(),
    )


def reserve(
    config: PipelineConfig,
    policy: PrivacyPolicy,
    plan: FederatedPlan,
    folder: Path,
    evidence: SiloEvidence,
    *,
    run_key: str,
) -> str:
    """Charge the silo's whole planned chain to its ledger entry, before any round.

    Raises:
        PrivacyBudgetExceededError: when the silo's table has no budget left.
    """
    entry = stages.reserve_record_budget(
        evidence.train_sha256,
        config,
        policy,
        run_key=f"{run_key}:{evidence.silo}",
        note=(
            f"federated: {config.training.model}, {plan.rounds} rounds x "
            f"{plan.local_epochs} local epochs in silo {evidence.silo}"
        ),
    )
    (folder / LEDGER_FILE).write_text(json.dumps({"entry_id": entry.entry_id}))
    return entry.entry_id


def reserve_source(
    config: PipelineConfig, policy: PrivacyPolicy, plan: FederatedPlan, *, run_key: str
) -> str | None:
    """Charge the table the silos were split from (`plan.source`), if any.

    Each silo's entry is keyed by its own file, so a table split again (another seed,
    another silo count) would meet fresh entries: the source's entry closes that gap.
    Each record is in one silo, so this run costs it at most the largest silo's epsilon:
    the target is reserved now and the largest epsilon spent settled after the rounds.

    Raises:
        PrivacyBudgetExceededError: when the source table has no budget left.
    """
    if plan.source is None:
        return None
    entry = stages.reserve_record_budget(
        sha256_file(plan.source),
        config,
        policy,
        run_key=f"{run_key}:source",
        note=f"federated: {len(plan.silos)} silos split from this table, {plan.rounds} rounds",
    )
    return entry.entry_id


def settle_source(entry_id: str | None, audits: list[SiloAudit]) -> None:
    """Settle the source table's entry with the largest epsilon (and delta) any silo spent."""
    if entry_id is not None:
        PrivacyLedger().settle(
            entry_id,
            epsilon=max(a.dp["epsilon_spent"] for a in audits),
            delta=max(a.dp["delta"] for a in audits),
        )


def dp_report(folder: Path, plan: FederatedPlan) -> DpReport:
    """Return the silo's DP report over every local step of every round it trained.

    A silo that missed rounds (a dropout) reports the steps it took; the global model
    saw only those of its updates, so that is its epsilon.

    Raises:
        AccountingError: when the silo trained no round.
    """
    state = local.read_dp_state(folder)
    if not state.get("rounds"):
        raise AccountingError("the silo has no accounting: it trained no round")
    return DpReport(
        enabled=True,
        epsilon=float(state["epsilon"]),
        delta=float(state["delta"]),
        noise_multiplier=float(state["noise_multiplier"]),
        sample_rate=float(state["sample_rate"]),
        steps=int(state["steps"]),
        max_grad_norm=float(state["max_grad_norm"]),
        accountant=str(state["accountant"]),
        poisson_sampling=True,
        secure_mode=bool(state["secure_mode"]),
        clipping=str(state["clipping"]),
        epsilon_cross_check=float(state["epsilon_cross_check"]),
        accountant_cross_check=str(state["accountant_cross_check"]),
    )


def audit(
    config: PipelineConfig,
    policy: PrivacyPolicy,
    plan: FederatedPlan,
    folder: Path,
    name: str,
    weights: list[np.ndarray],
) -> SiloAudit:
    """Settle the silo's ledger entry, audit the global model on its data, judge it.

    Membership inference scores the silo's own members against its own holdout; the
    reference models and canary runs use its own test table; the canary audit re-trains
    the silo's whole chain (every round's local epochs, the same sigma and q). Every gate
    of the policy judges this silo's view: its k, its residual PII, its epsilon, the
    global model's accuracy on its test table, its attacks.
    """
    dp = dp_report(folder, plan)
    ledger = json.loads((folder / LEDGER_FILE).read_text())
    PrivacyLedger().settle(ledger["entry_id"], epsilon=dp.epsilon_spent, delta=dp.delta)
    with np.load(folder / local.TRAIN_FILE) as data:
        members = (data["members_x"], data["members_y"])
        holdout = (data["holdout_x"], data["holdout_y"])
        test = (data["test_x"], data["test_y"])
    spec = json.loads((folder / "feature_spec.json").read_text())
    network = local.network_with(config.training, members[0].shape[1], weights)
    model = TrainedModel(network=network, dp=dp, n_train=len(members[0]))
    test_accuracy = accuracy(network, *test)
    trained = stages.Trained(
        model=model,
        feature_spec=spec,
        test_accuracy=test_accuracy,
        baseline_accuracy=None,
        members=members,
        non_members=holdout,
        population=test,
        majority_rate=stages.majority_rate(test[1]),
    )
    with (folder / VERIFICATION_FILE).open("rb") as source:
        verification = pickle.load(source)
    chain = chain_config(config, plan)
    report = stages.run_audit(trained, chain)
    gates = stages.judge(verification, trained, report, policy)
    correct = 0 if math.isnan(test_accuracy) else round(test_accuracy * len(test[0]))
    return SiloAudit(
        silo=name,
        gates=gates.to_dict(),
        passed=gates.passed,
        dp={**asdict(dp), "epsilon_spent": dp.epsilon_spent},
        audit={**report.to_dict(), **_evidence_json(stages.audit_evidence(report))},
        test_rows=len(test[0]),
        test_correct=correct,
        test_positive=int(np.sum(test[1])),
        failure=gates.failure_message(),
        node_id=_node_id(folder),
    )


def _node_id(folder: Path) -> int | None:
    note = folder / NODE_FILE
    return int(json.loads(note.read_text())["node_id"]) if note.exists() else None


def _evidence_json(values: dict[str, Any]) -> dict[str, Any]:
    return {f"gate_evidence.{k}": v for k, v in values.items()}
