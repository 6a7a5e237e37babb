"""A silo's local DP-SGD round: what Flower's ClientApp calls inside the silo.

Imports only privgate's DP training (torch, Opacus, numpy, pydantic): it runs in the
Flower environment, which holds none of the data stages' libraries. Everything it reads
and writes is in the silo's own folder: its encoded training rows (`train.npz`, written
by `privgate.federated.silo.prepare`), its training settings and its running DP
accounting (`dp_state.json`), which is written before an update leaves the silo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from privgate.config import TrainingConfig
from privgate.dp.training import LocalSchedule, build_network, train_model
from privgate.federated.files import DP_STATE_FILE, SETTINGS_FILE, TRAIN_FILE


def write_settings(folder: Path, training: TrainingConfig, *, plan_epochs: int) -> None:
    """Record the silo's local training settings (epochs = local epochs per round)."""
    payload = {"training": training.model_dump(mode="json"), "plan_epochs": plan_epochs}
    (folder / SETTINGS_FILE).write_text(json.dumps(payload, sort_keys=True))


def read_settings(folder: Path) -> tuple[TrainingConfig, int]:
    payload = json.loads((folder / SETTINGS_FILE).read_text())
    return TrainingConfig.model_validate(payload["training"]), int(payload["plan_epochs"])


def start_accounting(folder: Path) -> None:
    """Open the silo's accounting: no round trained, no step taken.

    A round is refused without it, so a lost file cannot restart the accounting at zero.
    """
    _write_atomic(folder / DP_STATE_FILE, {"rounds": 0, "last_round": 0, "steps": 0})


def read_dp_state(folder: Path) -> dict[str, object]:
    """Return the silo's accounting so far ({} when it was never opened)."""
    path = folder / DP_STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def weight_names(training: TrainingConfig, input_width: int) -> list[str]:
    """Return the network's weight names, in the order updates are exchanged."""
    network = build_network(
        model=training.model, input_width=input_width, hidden_units=training.hidden_units
    )
    return list(network.state_dict())


def network_with(training: TrainingConfig, input_width: int, weights: list[np.ndarray]):  # type: ignore[no-untyped-def]
    """Return the network holding `weights` (in exchange order), in eval mode."""
    import torch

    network = build_network(
        model=training.model, input_width=input_width, hidden_units=training.hidden_units
    )
    names = list(network.state_dict())
    network.load_state_dict(
        {
            n: torch.from_numpy(np.asarray(w, dtype=np.float32))
            for n, w in zip(names, weights, strict=True)
        }
    )
    network.eval()
    return network


def initial_weights(training: TrainingConfig, input_width: int) -> list[np.ndarray]:
    """Return the seeded initial weights (the same in every silo and at the coordinator)."""
    import torch

    torch.manual_seed(training.seed)
    network = build_network(
        model=training.model, input_width=input_width, hidden_units=training.hidden_units
    )
    return [t.detach().numpy().copy() for t in network.state_dict().values()]


class RoundRefusedError(RuntimeError):
    """The silo refuses a round its accounting or its budget does not cover."""


def local_round(
    folder: Path,
    weights: list[np.ndarray],
    *,
    server_round: int | None = None,
    clipping_range: float | None = None,
) -> tuple[list[np.ndarray], int]:
    """Train this round's local epochs from the global `weights`; return the update.

    The update is the difference between the silo's weights after its local DP-SGD
    steps and the global weights it started from (what SecAgg+ sums). The silo's
    accounting (`dp_state.json`: every noised step so far, sigma, q, epsilon) is written
    before the update is returned. A silo that missed rounds (it dropped out) may train
    a later one: its epsilon counts the steps it took, never more than were reserved.
    """
    training, plan_epochs = read_settings(folder)
    with np.load(folder / TRAIN_FILE) as data:
        x, y = data["members_x"], data["members_y"]
    names = weight_names(training, x.shape[1])
    if len(weights) != len(names):
        raise ValueError(f"the global model has {len(weights)} weights, the silo's {len(names)}")
    state = read_dp_state(folder)
    if not state:
        # A lost dp_state.json would restart the silo's accounting at zero.
        raise RoundRefusedError("the silo's accounting is missing; it trains no round")
    done, last = int(state["rounds"]), int(state["last_round"])  # type: ignore[call-overload]
    if done >= plan_epochs // training.epochs:
        raise RoundRefusedError("the silo has trained every round its budget was reserved for")
    if server_round is not None and server_round <= last:
        raise RoundRefusedError(
            f"round {server_round} asked, but the silo's accounting has trained round {last}"
        )
    prior = int(state.get("steps", 0))  # type: ignore[arg-type]
    schedule = LocalSchedule(
        initial_state=dict(zip(names, weights, strict=True)),
        plan_epochs=plan_epochs,
        prior_steps=prior,
    )
    model = train_model(x, y, training=training, schedule=schedule)
    after = [t.detach().numpy() for t in model.network.state_dict().values()]
    dp = model.dp
    _write_atomic(
        folder / DP_STATE_FILE,
        {
            "rounds": done + 1,
            "last_round": server_round if server_round is not None else last + 1,
            "steps": dp.steps,
            "noise_multiplier": dp.noise_multiplier,
            "sample_rate": dp.sample_rate,
            "epsilon": dp.epsilon,
            "epsilon_cross_check": dp.epsilon_cross_check,
            "accountant": dp.accountant,
            "accountant_cross_check": dp.accountant_cross_check,
            "delta": dp.delta,
            "max_grad_norm": dp.max_grad_norm,
            "clipping": dp.clipping,
            "secure_mode": dp.secure_mode,
        },
    )
    update = [
        (a - np.asarray(w, dtype=np.float32)).astype(np.float32)
        for a, w in zip(after, weights, strict=True)
    ]
    # SecAgg+ clips to +/- clipping_range before quantizing (NaN becomes a large finite
    # value): the coordinator cannot see a bad update, so the silo refuses to send one.
    # The steps were taken and are accounted for above.
    if not all(np.all(np.isfinite(u)) for u in update):
        raise RoundRefusedError("the silo's update is not finite (training diverged)")
    if (
        clipping_range is not None
        and max(float(np.max(np.abs(u))) for u in update) > clipping_range
    ):
        raise RoundRefusedError(
            "the silo's update exceeds secagg.clipping_range and would be clipped; "
            "lower training.learning_rate or raise secagg.clipping_range"
        )
    return update, len(x)


def _write_atomic(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, sort_keys=True))
    os.replace(tmp, path)
