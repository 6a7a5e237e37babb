"""Federated pieces without the network: a silo's DP chain, shared levels, the global view."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from audits.gates import GateReport
from privgate.config import IntervalHierarchy, PrefixHierarchy, TrainingConfig, load_policy
from privgate.dp.training import LocalSchedule, accountant_epsilon, train_model
from privgate.errors import ConfigError
from privgate.federated.evidence import global_evidence, judge_federation
from privgate.federated.plan import FederatedPlan, Silo, load_plan, split_demo
from privgate.federated.runtime import run_config
from privgate.federated.silo import SiloAudit, SiloEvidence, common_levels
from privgate.pii.kanon import find_k_anonymous_generalization
from privgate.registry.attestation import Attestation


def _toy(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.float32)


def _weights(model) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {k: v.detach().numpy().copy() for k, v in model.network.state_dict().items()}


def test_when_a_chain_runs_in_two_stretches_then_its_epsilon_covers_every_step() -> None:
    x, y = _toy()
    local = TrainingConfig(features=["f"], model="logistic", epochs=1, batch_size=100)
    whole = local.model_copy(update={"epochs": 2})
    first = train_model(
        x,
        y,
        training=local,
        schedule=LocalSchedule(
            initial_state=_weights(train_model(x, y, training=whole)), plan_epochs=2
        ),
    )
    second = train_model(
        x,
        y,
        training=local,
        schedule=LocalSchedule(
            initial_state=_weights(first), plan_epochs=2, prior_steps=first.dp.steps
        ),
    )
    one_run = train_model(x, y, training=whole)

    # Calibrated once for the whole chain: the same sigma as one run of every epoch.
    assert first.dp.noise_multiplier == pytest.approx(one_run.dp.noise_multiplier)
    assert second.dp.steps == 2 * first.dp.steps == one_run.dp.steps
    # The second stretch reports the chain's epsilon, not its own stretch's.
    assert second.dp.epsilon == pytest.approx(one_run.dp.epsilon, rel=1e-3)
    assert first.dp.epsilon < second.dp.epsilon <= local.dp.target_epsilon * 1.01
    assert second.dp.epsilon == pytest.approx(
        accountant_epsilon(
            accountant=local.dp.accountant,
            noise_multiplier=second.dp.noise_multiplier,
            sample_rate=second.dp.sample_rate,
            steps=second.dp.steps,
            delta=local.dp.target_delta,
        )
    )


def test_when_starting_weights_do_not_fit_the_network_then_training_refuses() -> None:
    x, y = _toy()
    local = TrainingConfig(features=["f"], model="logistic", epochs=1, batch_size=100)
    bad = {"0.weight": np.zeros((1, 4), np.float32), "0.bias": np.zeros(1, np.float32)}

    with pytest.raises(ConfigError, match=r"0\.weight"):
        train_model(x, y, training=local, schedule=LocalSchedule(bad, plan_epochs=2))


def test_when_a_central_attestation_is_signed_then_its_payload_is_unchanged() -> None:
    fields = dict(
        model_name="m",
        version="1",
        run_id="r",
        artifacts={"a": "0" * 64},
        gate_report_sha256="1" * 64,
        epsilon=1.0,
        delta=1e-5,
        policy_sha256="2" * 64,
        key_id="k",
    )
    central = Attestation(**fields)
    federated = Attestation(**fields, silos=[{"silo": "a", "epsilon": 1.0}])

    assert "silos" not in json.loads(central.payload())  # old signatures still verify
    assert Attestation.from_payload(central.payload()) == central
    assert Attestation.from_payload(federated.payload()).silos == [{"silo": "a", "epsilon": 1.0}]


def test_when_levels_are_given_then_the_node_is_evaluated_not_searched() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, 800),
            "zip": [f"{z:05d}" for z in rng.integers(0, 99999, 800)],
        }
    )
    quasi = {"age": IntervalHierarchy(widths=[5, 10, 20]), "zip": PrefixHierarchy(keep=[3, 1])}
    found = find_k_anonymous_generalization(
        frame, quasi_identifiers=quasi, k=5, max_suppression=0.02
    )
    same = find_k_anonymous_generalization(
        frame, quasi_identifiers=quasi, k=5, max_suppression=0.02, levels=found.levels
    )
    coarser = {c: min(v + 1, 3) for c, v in found.levels.items()}
    up = find_k_anonymous_generalization(
        frame, quasi_identifiers=quasi, k=5, max_suppression=0.02, levels=coarser
    )

    assert (same.levels, same.k_achieved) == (found.levels, found.k_achieved)
    assert up.levels == coarser
    assert up.k_achieved >= found.k_achieved  # k-anonymity is monotone up the lattice
    assert common_levels([{"age": 1, "zip": 0}, {"age": 0, "zip": 2}]) == {"age": 1, "zip": 2}
    with pytest.raises(ConfigError, match="out of range"):
        find_k_anonymous_generalization(
            frame, quasi_identifiers=quasi, k=5, max_suppression=0.02, levels={"age": 9, "zip": 0}
        )


def _demo_tables(folder):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        pd.DataFrame(
            {
                "row": range(900),
                "zip_code": [f"{z:05d}" for z in rng.integers(0, 99999, 900)],
            }
        ).to_csv(folder / f"{name}.csv", index=False)
    return folder / "train.csv", folder / "test.csv"


def test_when_the_demo_is_split_then_every_row_is_in_exactly_one_silo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _demo_tables(tmp_path)

    silos = split_demo(tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "out", silos=3)

    parts = [pd.read_csv(s.train_path) for s in silos]
    rows = sorted(r for p in parts for r in p["row"])
    assert rows == list(range(900))
    assert len({len(p) for p in parts}) == 3  # the silos differ in size
    with pytest.raises(ConfigError, match="--silos"):
        split_demo(tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "o", silos=2)


def _silos(n: int = 3) -> list[Silo]:
    return [Silo(name=f"s{i}", train_path="t.csv", test_path="u.csv") for i in range(n)]


def test_when_a_plan_is_inconsistent_then_it_is_refused_naming_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="unique"):
        FederatedPlan(silos=[*_silos(2), _silos(1)[0]])
    with pytest.raises(ValidationError, match="at least 3"):
        FederatedPlan(silos=_silos(2))  # each of 2 silos could read the other's update
    with pytest.raises(ValidationError, match="min_silos"):
        FederatedPlan(silos=_silos(4), min_silos=2)  # a round of 2: the same
    with pytest.raises(ValidationError, match="must be below"):
        FederatedPlan(silos=_silos(), secagg={"num_shares": 3, "reconstruction_threshold": 3})
    with pytest.raises(ValidationError, match="num_shares"):
        FederatedPlan(silos=_silos(), secagg={"num_shares": 2, "reconstruction_threshold": 2})
    (tmp_path / "plan.yaml").write_text("rounds: 0\nsilos: []\n")
    with pytest.raises(ConfigError, match=r"plan\.yaml: rounds"):
        load_plan(tmp_path / "plan.yaml")
    plan = load_plan(
        None, {"rounds": 4, "local_epochs": 2, "silos": [s.model_dump() for s in _silos()]}
    )
    assert plan.plan_epochs == 8
    assert plan.required_silos == 3
    value = run_config(
        plan, init_file=tmp_path / "i.npz", out_dir=tmp_path, max_weight=10, record=False
    )
    assert "rounds=4" in value
    assert 'init-file="' in value


def _evidence(name: str, *, k: int, cross_column: bool = True) -> SiloEvidence:
    by = {"presidio_rescan": 0, "shapes": 0, "cross_column_pairs": {}, "shape_entities": {}}
    if cross_column:
        by["cross_column"] = 0
    return SiloEvidence(
        silo=name,
        train_sha256="0" * 64,
        rows_in=100,
        rows_out=98,
        members=80,
        input_width=4,
        k_achieved=k,
        l_achieved=2,
        residual_pii=0,
        residual_by_verifier=by,
        blocked=None,
        data_gates={"gates": []},
    )


def _audit(name: str, *, epsilon: float, auc: float, passed: bool = True) -> SiloAudit:
    gates = {
        "gates": [
            {
                "name": "utility",
                "passed": passed,
                "value": 0.9,
                "threshold": 0.8,
                "comparison": ">=",
                "details": "",
                "inconclusive": False,
                "status": "passed" if passed else "failed",
            }
        ]
    }
    return SiloAudit(
        silo=name,
        gates=gates,
        passed=passed,
        dp={"epsilon_spent": epsilon, "delta": 1e-5, "steps": 10, "noise_multiplier": 1.0},
        audit={
            "gate_evidence.mia_auc": auc,
            "gate_evidence.audit_power_epsilon": 5.0,
            "gate_evidence.strongest_attack": "lira",
        },
        test_rows=100,
        test_correct=85,
        test_positive=25,
        failure="",
    )


def test_when_silos_differ_then_the_global_view_takes_each_at_its_weakest() -> None:
    silos = [_evidence("a", k=7), _evidence("b", k=5)]
    audits = [_audit("a", epsilon=2.5, auc=0.51), _audit("b", epsilon=2.9, auc=0.55)]

    ev = global_evidence(silos, audits)

    assert (ev.k_achieved, ev.epsilon, ev.mia_auc) == (5, 2.9, 0.55)
    assert ev.strongest_attack == "b/lira"
    assert ev.accuracy == pytest.approx(0.85)
    assert ev.n_train == 160
    assert ev.residual_pii_by_verifier["cross_column"] == 0


def test_when_one_silo_fails_a_gate_then_promotion_is_blocked_naming_it() -> None:
    policy = load_policy()
    silos = [_evidence("a", k=7), _evidence("b", k=7)]
    audits = [_audit("a", epsilon=2.5, auc=0.5), _audit("b", epsilon=2.5, auc=0.5, passed=False)]

    report: GateReport = judge_federation(silos, audits, policy)

    assert not report.passed
    assert "b/utility FAILED" in report.failure_message()
    assert "a/utility" not in report.failure_message()


def test_when_a_silo_lacks_the_independent_verifier_then_the_residual_gate_fails() -> None:
    policy = load_policy()
    silos = [_evidence("a", k=7), _evidence("b", k=7, cross_column=False)]
    audits = [_audit("a", epsilon=2.5, auc=0.5), _audit("b", epsilon=2.5, auc=0.5)]

    report = judge_federation(silos, audits, policy)

    failed = {r.name for r in report.failed}
    assert "residual_pii" in failed


def _silo_folder(tmp_path, rounds: int = 2, *, opened: bool = True):  # type: ignore[no-untyped-def]
    from privgate.federated import local

    x, y = _toy(600)
    np.savez(tmp_path / local.TRAIN_FILE, members_x=x, members_y=y)
    training = TrainingConfig(features=["f"], model="logistic", epochs=1, batch_size=100)
    local.write_settings(tmp_path, training, plan_epochs=rounds)
    if opened:
        local.start_accounting(tmp_path)
    return local, local.initial_weights(training, x.shape[1])


def test_when_a_silo_is_asked_for_rounds_its_budget_does_not_cover_then_it_refuses(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    local, weights = _silo_folder(tmp_path, rounds=2)

    update, n = local.local_round(tmp_path, weights, server_round=1)
    first = local.read_dp_state(tmp_path)
    with pytest.raises(local.RoundRefusedError, match="has trained round 1"):
        local.local_round(tmp_path, weights, server_round=1)  # a replayed round
    # Round 2 missed (the silo dropped out); it rejoins at round 3.
    local.local_round(
        tmp_path, [w + u for w, u in zip(weights, update, strict=True)], server_round=3
    )
    second = local.read_dp_state(tmp_path)

    assert n == 600
    assert (second["rounds"], second["last_round"]) == (2, 3)
    assert second["steps"] == 2 * first["steps"]
    assert first["epsilon"] < second["epsilon"]
    with pytest.raises(local.RoundRefusedError, match="every round"):
        local.local_round(tmp_path, weights, server_round=4)


def test_when_a_silo_has_lost_its_accounting_then_it_trains_no_round(tmp_path) -> None:  # type: ignore[no-untyped-def]
    local, weights = _silo_folder(tmp_path, opened=False)

    with pytest.raises(local.RoundRefusedError, match="accounting is missing"):
        local.local_round(tmp_path, weights, server_round=1)
    assert not (tmp_path / local.DP_STATE_FILE).exists()


def test_when_an_update_would_be_clipped_by_secagg_then_the_silo_refuses_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    local, weights = _silo_folder(tmp_path)

    with pytest.raises(local.RoundRefusedError, match="clipping_range"):
        local.local_round(tmp_path, weights, server_round=1, clipping_range=1e-9)


def test_when_dp_is_off_then_federated_training_is_refused() -> None:
    from privgate.config import load_config
    from privgate.federated.silo import require_dp

    with pytest.raises(ConfigError, match=r"dp\.enabled"):
        require_dp(load_config(overrides=["training.dp.enabled=false"]))


def _round(n: int, summed: list[str], excluded: list[str] = ()) -> dict:  # type: ignore[assignment]
    return {"round": n, "summed": summed, "dropped": [], "excluded": list(excluded)}


def test_when_a_silo_sent_a_malformed_vector_then_the_protocol_gate_blocks() -> None:
    from privgate.federated.evidence import federation_gates

    clean = [_round(1, ["a", "b", "c"]), _round(2, ["a", "c"])]
    faulty = [_round(1, ["a", "b", "c"]), _round(2, ["a", "b"], excluded=["c"])]

    passed = {g.name: g.passed for g in federation_gates(clean, required=2)}
    failed = {g.name: g for g in federation_gates(faulty, required=2)}

    assert passed == {"federation/well_formed_updates": True, "federation/participation": True}
    assert not failed["federation/well_formed_updates"].passed
    assert "c (round 2)" in failed["federation/well_formed_updates"].details
    assert failed["federation/participation"].passed


def test_when_a_round_summed_too_few_silos_then_the_participation_gate_blocks() -> None:
    from privgate.federated.evidence import federation_gates

    gates = {g.name: g for g in federation_gates([_round(1, ["a", "b"])], required=3)}
    none = {g.name: g for g in federation_gates([], required=2)}

    assert not gates["federation/participation"].passed
    assert gates["federation/participation"].value == 2.0
    assert not none["federation/participation"].passed  # no round recorded: fails closed


def test_when_a_table_is_split_again_then_its_source_entry_gives_no_fresh_budget(
    home,  # type: ignore[no-untyped-def]
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    from privgate.config import load_config
    from privgate.errors import BudgetExceededError
    from privgate.federated.silo import reserve_source

    train, test = _demo_tables(tmp_path)
    source = tmp_path / "train.csv"
    config, policy = load_config(), load_policy()  # target epsilon 3, lifetime 10
    # Three splits of one table, each into different silo files.
    for run, count in enumerate((3, 4, 5)):
        silos = split_demo(train, test, tmp_path / f"split-{count}", silos=count)
        plan = FederatedPlan(silos=silos, source=source, min_silos=3)
        reserve_source(config, policy, plan, run_key=f"run-{run}")

    with pytest.raises(BudgetExceededError):
        reserve_source(config, policy, plan, run_key="run-3")
    no_source = plan.model_copy(update={"source": None})
    assert reserve_source(config, policy, no_source, run_key="run-4") is None


def test_when_silos_are_deployed_then_the_plan_keeps_their_own_paths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from privgate.federated.remote import decode_weights, encode_weights

    entries = [
        {"name": f"s{i}", "train_path": "${PRIVGATE_HOME}/t.csv", "test_path": "u.csv"}
        for i in range(3)
    ]
    (tmp_path / "plan.yaml").write_text(
        yaml.safe_dump(
            {"silos": [{**e, "deployment": f"federated-silo/{e['name']}"} for e in entries]}
        )
    )
    plan = load_plan(tmp_path / "plan.yaml")
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(1, dtype=np.float32)]

    assert plan.deployed
    assert [str(s.train_path) for s in plan.silos] == ["${PRIVGATE_HOME}/t.csv"] * 3
    assert str(plan.silos[0].test_path) == "u.csv"  # the silo host's, resolved there
    with pytest.raises(ValidationError, match="every silo names its deployment or none"):
        FederatedPlan(silos=[{**entries[0], "deployment": "federated-silo/s0"}, *entries[1:]])
    decoded = decode_weights(encode_weights(weights))
    assert [w.tolist() for w in decoded] == [w.tolist() for w in weights]


def test_when_the_policy_asks_for_approval_then_federated_training_is_refused_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.federated_training import federated_training
    from privgate.federated.plan import load_plan

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PRIVGATE_POLICY", str(root / "configs" / "policy-approval.yaml"))
    plan = load_plan(root / "configs" / "federated-deployed.yaml")

    state = federated_training.fn(plan=plan)  # the flow's body: it stops before any step

    assert state.is_failed()
    assert "approval.required" in state.message
