"""What does federation cost? Federated DP-SGD with SecAgg+ vs central DP-SGD vs plain FedAvg.

On the full Adult training set, anonymized and encoded exactly as the demo pipeline
does (`privgate.stages` up to `training_data`), in one process:

1. Central DP-SGD on every member row at the demo's per-record target (epsilon 3,
   delta 1e-5) for rounds x local epochs epochs, `--central-runs` times (each draws
   fresh noise: the spread is the yardstick for the federated arms' single runs).
2. The same rows split into 3 and into 10 silos, label-skewed (each class spread over
   the silos by Dirichlet(alpha) proportions, the usual non-IID split of Hsu et al.
   2019), each silo calibrating its own DP-SGD for the same per-record target over its
   whole chain. Each runs on Flower's Deployment Engine on loopback (a SuperLink and a
   SuperNode per silo, as processes), twice in the same process:
   - SecAgg+ (privgate's app, as `privgate federated` runs it);
   - plain FedAvg (a copy of the app without `secaggplus_mod`): the baseline for
     SecAgg+'s cost in seconds and in bytes the coordinator sends and receives.
   Test accuracy of the global model, the largest silo epsilon, rounds per minute.

The last line is `secagg_over_fedavg_time_ratio=X` for 3 silos.

    python benchmarks/federated.py [--rows N] [--rounds 3] [--local-epochs 2] [--silos 3 10]
                                   [--batch-size 128]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adult import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="demo rows (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--silos", type=int, nargs="*", default=[3, 10])
    parser.add_argument(
        "--central-runs", type=int, default=5, help="central trainings (DP noise differs)"
    )
    parser.add_argument("--alpha", type=float, default=1.0, help="Dirichlet label skew")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="every arm's (the smallest of 10 silos ~400)"
    )
    args = parser.parse_args()

    config, data, _, prepare_s = prepare(args.rows)
    from privgate.dp.training import accuracy, train_model

    (x, y), (x_test, y_test) = data.members, data.test
    training = config.training.model_copy(update={"batch_size": args.batch_size})
    epochs = args.rounds * args.local_epochs
    dp = training.dp
    print(
        f"rows_train={len(x)} rows_test={len(x_test)} features={x.shape[1]} "
        f"prepare_s={prepare_s:.1f} target_epsilon={dp.target_epsilon:g} "
        f"delta={dp.target_delta:g} rounds={args.rounds} local_epochs={args.local_epochs} "
        f"batch_size={args.batch_size}"
    )
    accuracies, seconds = [], []
    for _ in range(args.central_runs):  # each run draws fresh noise: this is the spread
        started = time.perf_counter()
        central = train_model(x, y, training=training.model_copy(update={"epochs": epochs}))
        seconds.append(time.perf_counter() - started)
        accuracies.append(accuracy(central.network, x_test, y_test))
    central_accuracy = statistics.mean(accuracies)
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(
        f"central_dp accuracy_mean={central_accuracy:.4f} accuracy_sd={spread:.4f} "
        f"runs={len(accuracies)} epsilon={central.dp.epsilon:.3f} "
        f"sigma={central.dp.noise_multiplier:.3f} seconds={statistics.median(seconds):.1f}"
    )
    ratio = None
    for count in args.silos:
        parts = label_skewed(y, count, alpha=args.alpha)
        sizes = sorted(len(p) for p in parts)
        print(f"# {count} silos, members per silo {sizes}")
        arms = {}
        for secure in (True, False):
            arms[secure] = federate(
                x, y, x_test, y_test, parts, training, args.rounds, args.local_epochs, secure
            )
        for secure, arm in arms.items():
            name = "secagg_plus" if secure else "plain_fedavg"
            print(
                f"silos={count} arm={name} accuracy={arm['accuracy']:.4f} "
                f"accuracy_gap_vs_central_points={100 * (central_accuracy - arm['accuracy']):.2f} "
                f"max_silo_epsilon={arm['epsilon']:.3f} seconds={arm['seconds']:.1f} "
                f"rounds_per_min={60 * args.rounds / arm['seconds']:.2f} "
                f"round_s={'/'.join(f'{s:.1f}' for s in arm['round_seconds'])} "
                f"bytes_sent={arm['sent']} bytes_received={arm['received']}"
            )
        secure, plain = arms[True], arms[False]
        time_ratio = secure["seconds"] / plain["seconds"]
        bytes_ratio = (secure["sent"] + secure["received"]) / (plain["sent"] + plain["received"])
        print(
            f"silos={count} secagg_over_fedavg time_ratio={time_ratio:.2f} "
            f"bytes_ratio={bytes_ratio:.2f}"
        )
        if ratio is None:
            ratio = time_ratio
    if ratio is not None:
        print(f"secagg_over_fedavg_time_ratio={ratio:.3f}")


def label_skewed(y: np.ndarray, count: int, *, alpha: float, seed: int = 5) -> list[np.ndarray]:
    """Split row indices into `count` silos, each class by Dirichlet(alpha) proportions."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(count)]
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        shares = rng.dirichlet([alpha] * count)
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for silo, chunk in enumerate(np.split(rows, cuts)):
            parts[silo].extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=int)) for p in parts]


def federate(x, y, x_test, y_test, parts, training, rounds, local_epochs, secure) -> dict:
    """Run one federation on loopback; return its figures."""
    from privgate.dp.training import accuracy
    from privgate.federated import local, runtime
    from privgate.federated.plan import FederatedPlan, SecAggConfig, Silo

    root = Path(tempfile.mkdtemp(prefix="privgate-bench-federated-"))
    shares = min(len(parts), 5)
    plan = FederatedPlan(
        rounds=rounds,
        local_epochs=local_epochs,
        secagg=SecAggConfig(num_shares=shares, reconstruction_threshold=shares // 2 + 1),
        silos=[
            Silo(name=f"silo-{i + 1}", train_path=Path("-"), test_path=Path("-"))
            for i in range(len(parts))
        ],
    )
    local_training = training.model_copy(update={"epochs": local_epochs})
    folders = {}
    for silo, rows in zip(plan.silos, parts, strict=True):
        folder = root / "silos" / silo.name
        folder.mkdir(parents=True)
        np.savez(folder / local.TRAIN_FILE, members_x=x[rows], members_y=y[rows])
        local.write_settings(folder, local_training, plan_epochs=plan.plan_epochs)
        local.start_accounting(folder)
        folders[silo.name] = folder
    app = runtime.APP_DIR
    if not secure:  # the ClientApp without secaggplus_mod answers plain FedAvg
        app = root / "app"
        shutil.copytree(runtime.APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__"))
        client = app / "privgate_flower" / "client_app.py"
        source = client.read_text()
        assert "mods=[note_node_id, secaggplus_mod]" in source
        client.write_text(source.replace("mods=[note_node_id, secaggplus_mod]", "mods=[]"))
    result = runtime.train_federated(
        plan,
        folders,
        local.initial_weights(local_training, x.shape[1]),
        root / "federation",
        max_weight=float(max(len(p) for p in parts)),
        app_dir=app,
        secure=secure,
    )
    network = local.network_with(local_training, x.shape[1], result.weights)
    epsilons = [float(local.read_dp_state(f)["epsilon"]) for f in folders.values()]
    shutil.rmtree(root, ignore_errors=True)
    return {
        "accuracy": accuracy(network, x_test, y_test),
        "epsilon": max(epsilons),
        "seconds": result.seconds,
        "round_seconds": [r["seconds"] for r in result.rounds],
        "sent": result.bytes_sent,
        "received": result.bytes_received,
    }


if __name__ == "__main__":
    main()
