"""How strong and how costly is the audit? Attacks, canary audit and a LiRA-64 yardstick.

On the full Adult demo table, anonymized and encoded as the pipeline does, for the demo
MLP trained three ways (non-private, DP at epsilon 1, DP at epsilon 8), in one process,
plus a model that does leak (a wider MLP trained longer without DP on 2,000 rows, with
2,000 holdout rows and 4,000 test rows as the population): the demo model leaks so little
that every attack sits at chance, and a yardstick comparison needs a signal to compare.

1. The production audit (`privgate.stages`): loss threshold, RMIA and offline LiRA with
   the configured 4 reference models trained with the target's recipe on the test table,
   the one-run canary audit (1,000 canaries) and its non-private control. Prints AUC,
   TPR at 1% and 0.1% FPR of each attack, the empirical epsilon lower bound, the
   worst-decile (most atypical tenth of records) result and the wall times.
2. The yardstick: offline LiRA with 64 reference models (per-record variances, as the
   paper does from 16 models on), on the same records, timed.
3. Ratios: the production attack's AUC minus LiRA-64's (bar >= -0.01) and its TPR at
   0.1% FPR over LiRA-64's (bar >= 0.8); the canary audit's wall time in units of the
   target's training time (bar <= 2).

    python benchmarks/audit.py [--rows N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adult import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="demo rows (default: all)")
    parser.add_argument("--yardstick", type=int, default=64, help="LiRA reference models")
    args = parser.parse_args()

    config, data, _, prepare_s = prepare(args.rows)
    from audits.membership_inference import evaluate_scores, lira_offline_scores
    from audits.reference_models import reference_probabilities
    from privgate import stages
    from privgate.dp.training import accuracy, train_model

    x = data.members[0]
    print(
        f"rows_train={len(x)} rows_holdout={len(data.non_members[0])} "
        f"rows_population={len(data.test[0])} features={x.shape[1]} prepare_s={prepare_s:.1f}"
    )
    full = (data.members, data.non_members, data.test)
    small = tuple((a[:n], b[:n]) for (a, b), n in zip(full, (2000, 2000, 4000), strict=True))
    overfit = stages.non_private(config.training).model_copy(
        update={"hidden_units": 128, "epochs": 30, "batch_size": 128, "learning_rate": 0.01}
    )
    arms = {
        "non_private": (stages.non_private(config.training), full),
        "dp_eps1": (_with_epsilon(config.training, 1.0), full),
        "dp_eps8": (_with_epsilon(config.training, 8.0), full),
        "non_private_overfit_2000": (overfit, small),
    }
    for arm, (training, (members, non_members, population)) in arms.items():
        arm_config = config.model_copy(update={"training": training})
        started = time.perf_counter()
        model = train_model(*members, training=training)
        train_s = time.perf_counter() - started
        trained = stages.Trained(
            model=model,
            feature_spec=data.feature_spec,
            test_accuracy=accuracy(model.network, *data.test),
            baseline_accuracy=None,
            members=members,
            non_members=non_members,
            population=population,
        )
        report = stages.run_audit(trained, arm_config)
        print(
            f"## {arm}: claimed_epsilon={model.dp.epsilon_spent:.3g} "
            f"accuracy={trained.test_accuracy:.4f} train_s={train_s:.2f} "
            f"audit_s={report.seconds:.1f}"
        )
        for a in report.attacks:
            print(
                f"attack={a.attack} auc={a.mia_auc:.4f} tpr@1%={a.mia_tpr_at_1pct_fpr:.4f} "
                f"tpr@0.1%={a.mia_tpr_at_0_1pct_fpr:.4f} "
                f"eps_lb={report.bounds[a.attack].epsilon:.3f}"
            )
        if report.worst_decile is not None:
            w = report.worst_decile
            print(
                f"worst_decile attack={w.attack} members={w.members} "
                f"non_members={w.non_members} auc={w.mia_auc:.4f} "
                f"tpr@1%={w.mia_tpr_at_1pct_fpr:.4f}"
            )
        for name, run in (("canary", report.canary), ("control", report.control)):
            if run is None:
                print(f"{name}: not run")
                continue
            print(
                f"{name} eps_lb={run.bound.epsilon:.3f} correct={run.bound.correct}/"
                f"{run.bound.guesses} canaries={run.bound.canaries} rows={run.rows_trained} "
                f"seconds={run.seconds:.2f} training_runs={run.seconds / train_s:.2f} "
                f"(bar <= 2)"
            )
        print(f"empirical_epsilon_lower_bound={report.empirical_epsilon_lower_bound:.3f}")

        # The yardstick: LiRA with many reference models, on the same records.
        records = stages.audit_records(trained, arm_config)
        rows = len(population[0]) // 2
        recipe = stages.reference_recipe(arm_config, model.dp, rows=rows)
        started = time.perf_counter()
        reference_p = reference_probabilities(
            population,
            (records.x, records.y),
            recipe,
            models=args.yardstick,
            seed=99,
        )
        yard_s = time.perf_counter() - started
        target_p = stages.target_probabilities(trained, records)
        scores = lira_offline_scores(target_p, reference_p)
        lira = evaluate_scores(
            scores[: records.members], scores[records.members :], attack="lira_offline"
        )
        best_auc = max(report.attacks, key=lambda a: a.mia_auc)
        best_low = max(report.attacks, key=lambda a: a.mia_tpr_at_0_1pct_fpr)
        ratio = (
            best_low.mia_tpr_at_0_1pct_fpr / lira.mia_tpr_at_0_1pct_fpr
            if lira.mia_tpr_at_0_1pct_fpr > 0
            else float("nan")
        )
        print(
            f"yardstick lira_{args.yardstick}ref auc={lira.mia_auc:.4f} "
            f"tpr@1%={lira.mia_tpr_at_1pct_fpr:.4f} tpr@0.1%={lira.mia_tpr_at_0_1pct_fpr:.4f} "
            f"seconds={yard_s:.1f} (bar <= 120)"
        )
        print(
            f"production_vs_yardstick auc_diff={best_auc.mia_auc - lira.mia_auc:+.4f} "
            f"({best_auc.attack}; bar >= -0.01) tpr@0.1%_ratio={ratio:.2f} "
            f"({best_low.attack}; bar >= 0.8)"
        )


def _with_epsilon(training, epsilon: float):
    dp = training.dp.model_copy(update={"enabled": True, "target_epsilon": epsilon})
    return training.model_copy(update={"dp": dp})


if __name__ == "__main__":
    main()
