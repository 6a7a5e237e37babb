"""Faults of a federation on Flower's Deployment Engine: real SuperLink, SuperNodes, SecAgg+.

The silos here hold encoded toy rows (the data stages are tested in test_federated.py);
what runs is privgate's Flower app, or a copy of it patched to misbehave in one silo:
  - a silo's SuperNode is SIGKILLed while it trains round 2: SecAgg+ rebuilds its masks
    from the other silos' shares and the round sums the three survivors, exactly;
  - a silo sends a masked vector whose first array is (1,) (numpy would broadcast it into
    the sum): it is left out of that round's sum and reported as excluded;
  - a coordinator asking for plain FedAvg gets no update from privgate's ClientApp;
  - a round that sums fewer silos than the plan requires fails the run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from privgate.config import TrainingConfig
from privgate.federated import local, runtime
from privgate.federated.plan import FederatedPlan, SecAggConfig, Silo

pytestmark = pytest.mark.e2e

SILOS = {"silo-a": 700, "silo-b": 500, "silo-c": 600, "silo-d": 550}
TRAINING = TrainingConfig(features=["f"], epochs=1, batch_size=100, learning_rate=0.05)
HOOK_POINT = "        from privgate.federated.local import local_round\n"


def _plan(rounds: int, min_silos: int | None = 3) -> FederatedPlan:
    return FederatedPlan(
        rounds=rounds,
        local_epochs=1,
        min_silos=min_silos,
        # Short stage timeout: a dead silo costs one timeout per stage it misses.
        secagg=SecAggConfig(timeout=30.0),
        silos=[Silo(name=n, train_path=Path(n), test_path=Path(n)) for n in SILOS],
    )


def _silos(root: Path, plan: FederatedPlan) -> dict[str, Path]:
    folders = {}
    for seed, (name, n) in enumerate(SILOS.items()):
        folder = root / "silos" / name
        folder.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 6)).astype(np.float32)
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
        np.savez(folder / local.TRAIN_FILE, members_x=x, members_y=y)
        local.write_settings(folder, TRAINING, plan_epochs=plan.plan_epochs)
        local.start_accounting(folder)
        folders[name] = folder
    return folders


def _patched_app(root: Path, hook: str, *, mods: str | None = None) -> Path:
    """A copy of privgate's Flower app whose ClientApp runs `hook` at the start of fit."""
    app = root / "app"
    shutil.copytree(runtime.APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__"))
    client = app / "privgate_flower" / "client_app.py"
    source = client.read_text()
    assert HOOK_POINT in source
    source = source.replace(HOOK_POINT, hook + HOOK_POINT)
    if mods is not None:
        source = source.replace("mods=[note_node_id, secaggplus_mod]", mods)
    client.write_text(source)
    return app


def _run(root: Path, plan: FederatedPlan, **kwargs) -> runtime.FederationResult:  # type: ignore[no-untyped-def]
    folders = _silos(root, plan)
    initial = local.initial_weights(TRAINING, 6)
    return runtime.train_federated(
        plan,
        folders,
        initial,
        root / "federation",
        max_weight=float(max(SILOS.values())),
        record=True,
        timeout=900,
        **kwargs,
    )


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _expected_step(root: Path, round_: int, summed: list[str]) -> list[np.ndarray]:
    """The members-weighted mean of the summed silos' own updates (each silo kept its own)."""
    total = sum(SILOS[n] for n in summed)
    updates = {n: _arrays(root / "silos" / n / f"update-{round_}.npz") for n in summed}
    return [
        sum(updates[n][i] * SILOS[n] / total for n in summed)
        for i in range(len(updates[summed[0]]))
    ]


def _step(root: Path, round_: int) -> list[np.ndarray]:
    out = root / "federation" / "out"
    before = _arrays(root / "federation" / "initial.npz") if round_ == 1 else None
    before = before or _arrays(out / f"global-{round_ - 1}.npz")
    return [a - b for a, b in zip(_arrays(out / f"global-{round_}.npz"), before, strict=True)]


def _max_gap(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def test_when_a_silo_crashes_mid_round_then_secagg_sums_the_survivors(tmp_path: Path) -> None:
    app = _patched_app(
        tmp_path,
        "        if self.folder.name == 'silo-b' and int(config['server-round']) == 2:\n"
        "            import time\n"
        "            (self.folder / 'crash-point').touch()\n"
        "            time.sleep(900)\n",
    )

    def crash_silo_b(fed: runtime.Federation) -> None:
        point = tmp_path / "silos" / "silo-b" / "crash-point"
        deadline = time.monotonic() + 600
        while not point.exists():
            assert fed.processes["flwr-run"].poll() is None, "the run ended before round 2"
            assert time.monotonic() < deadline, "silo-b never reached round 2"
            time.sleep(0.2)
        fed.kill("supernode-silo-b")

    result = _run(tmp_path, _plan(rounds=3), app_dir=app, while_running=crash_silo_b)

    rounds = result.rounds
    assert [r["summed"] for r in rounds] == [
        ["silo-a", "silo-b", "silo-c", "silo-d"],
        ["silo-a", "silo-c", "silo-d"],
        ["silo-a", "silo-c", "silo-d"],
    ]
    assert rounds[1]["dropped"] == ["silo-b"]
    assert result.dropped == ["silo-b"]
    assert result.excluded == []
    # Round 2's masks included silo-b's pairwise masks; rebuilt from shares, they cancel.
    for round_, r in enumerate(rounds, start=1):
        expected = _expected_step(tmp_path, round_, r["summed"])
        assert _max_gap(_step(tmp_path, round_), expected) < 1e-3
        assert max(float(np.max(np.abs(e))) for e in expected) > 1e-3
    # silo-b's accounting: the one round it trained, never the ones it missed.
    assert local.read_dp_state(tmp_path / "silos" / "silo-b")["rounds"] == 1
    assert local.read_dp_state(tmp_path / "silos" / "silo-a")["rounds"] == 3


def test_when_a_silo_sends_a_malformed_vector_then_it_is_left_out_of_the_sum(
    tmp_path: Path,
) -> None:
    # The first weight matrix, (64, 6), replaced by a (1,) array: quantized and masked
    # like any update, it would broadcast into the sum of the others.
    app = _patched_app(
        tmp_path,
        "        if self.folder.name == 'silo-c' and int(config['server-round']) == 2:\n"
        "            from privgate.federated.local import local_round as honest\n"
        "            update, n = honest(self.folder, [np.asarray(p) for p in parameters],\n"
        "                               server_round=2, clipping_range=self.clipping_range)\n"
        "            np.savez(self.folder / 'update-2.npz', *update)\n"
        "            return [np.full(1, 5.0, dtype=np.float32), *update[1:]], n, {}\n",
    )

    result = _run(tmp_path, _plan(rounds=3), app_dir=app)

    rounds = result.rounds
    assert rounds[1]["excluded"] == ["silo-c"]
    assert rounds[1]["summed"] == ["silo-a", "silo-b", "silo-d"]
    assert rounds[1]["dropped"] == []
    assert [r["summed"] for r in (rounds[0], rounds[2])] == [list(SILOS)] * 2
    assert result.excluded == ["silo-c"]
    for round_, r in enumerate(rounds, start=1):
        assert (
            _max_gap(_step(tmp_path, round_), _expected_step(tmp_path, round_, r["summed"])) < 1e-3
        )
    # What the coordinator kept of round 2: the vectors it summed, not the malformed one.
    names = runtime.local_node_ids({n: tmp_path / "silos" / n for n in SILOS})
    kept = (tmp_path / "federation" / "out").glob("received-2-*.npz")
    assert sorted(names[int(p.stem.rsplit("-", 1)[1])] for p in kept) == rounds[1]["summed"]


def test_when_the_coordinator_asks_for_plain_updates_then_no_silo_sends_one(
    tmp_path: Path,
) -> None:
    with pytest.raises(runtime.FederationError, match="0 silos' updates were summed"):
        _run(tmp_path, _plan(rounds=1), secure=False)

    for name in SILOS:  # no silo trained: its accounting is untouched
        assert local.read_dp_state(tmp_path / "silos" / name)["rounds"] == 0


def test_when_a_round_sums_fewer_silos_than_required_then_the_run_fails(tmp_path: Path) -> None:
    app = _patched_app(
        tmp_path,
        "        if self.folder.name == 'silo-a':\n"
        "            raise RuntimeError('silo-a is down')\n",
    )

    with pytest.raises(
        runtime.FederationError, match="3 silos' updates were summed, the plan requires 4"
    ):
        _run(tmp_path, _plan(rounds=2, min_silos=None), app_dir=app)

    assert not (tmp_path / "federation" / "out" / "global.npz").exists()
