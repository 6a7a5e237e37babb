"""The privacy-utility sweep: a 5 x 3 grid, points in parallel against one after another.

    python -u benchmarks/sweep.py [--rows N] [--workers W]

Runs the `privacy-utility-sweep` flow twice on the same demo table (the UCI Adult rows
with synthetic identifiers), each time in a fresh state home so the ledger starts empty:
once with one worker (the points one after another) and once with `--workers` (default
2) in parallel. Grid: target epsilon 0.5, 1, 2, 4 and the non-private baseline, times
k = 5, 10, 25. Its planned spend, 3 x 7.5 = epsilon 22.5 and 12 x 1e-5 = delta 1.2e-4,
exceeds the demo policy's lifetime budget (10, 1e-4), so the benchmark runs under a copy
of the policy with a lifetime budget of 100 and 1e-3 (a real sweep of this width needs
that decision in the policy too).

Prints each run's wall time, the speed-up, every point's figures and the choice, and
checks that both runs chose the same point.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPSILONS: list[float | None] = [0.5, 1.0, 2.0, 4.0, None]
KS = [5, 10, 25]
BENCH_LIFETIME_EPSILON = 100.0
BENCH_LIFETIME_DELTA = 1e-3  # 12 DP points x delta 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="demo rows (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runner", choices=["threads", "processes", "dask"], default="threads")
    args = parser.parse_args()
    print(f"load_average_1m_5m_15m={'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"grid: epsilons={EPSILONS} ks={KS} rows={args.rows or 'all'} runner={args.runner}")
    sequential = run(args.rows, workers=1, runner=args.runner)
    parallel = run(args.rows, workers=args.workers, runner=args.runner)
    print("## points (parallel run)")
    for point in parallel["summary"]["points"]:
        gates = point["gates"]
        blocked = sorted(name for name, status in gates.items() if status != "passed")
        print(
            f"  {point['label']:<18} eps_spent={_num(point['epsilon_spent'])} "
            f"accuracy={_num(point['accuracy'])} cost={_num(point['accuracy_cost'])} "
            f"mia_auc={_num(point['mia_auc'])} tpr@1%={_num(point['mia_tpr_at_1pct_fpr'])} "
            f"eps_lb={_num(point['empirical_epsilon_lower_bound'])} "
            f"{'all gates passed' if not blocked else 'blocked: ' + ', '.join(blocked)} "
            f"seconds={point['seconds']:.1f}"
        )
    print(f"chosen: {parallel['summary']['chosen']} ({parallel['summary']['reason']})")
    print(f"ledger_charge={parallel['summary']['ledger_charge']}")
    same = sequential["summary"]["chosen"] == parallel["summary"]["chosen"]
    print("## summary")
    print(f"points={len(parallel['summary']['points'])}")
    print(f"sequential_s={sequential['seconds']:.1f} (workers=1)")
    print(f"parallel_s={parallel['seconds']:.1f} (workers={args.workers})")
    print(f"speedup={sequential['seconds'] / parallel['seconds']:.2f}x")
    # DP noise is fresh every run, so two runs can rank close points differently.
    print(f"same_choice={'yes' if same else 'no'}")
    print(f"within_20_min={'yes' if parallel['seconds'] <= 20 * 60 else 'no'} (parallel run)")


def run(rows: int | None, *, workers: int, runner: str) -> dict[str, Any]:
    """Run the sweep flow in a fresh state home; return its summary and wall time."""
    home = Path(tempfile.mkdtemp(prefix="privgate-bench-sweep-"))
    os.environ["PRIVGATE_HOME"] = str(home)
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        os.environ.pop(key, None)
    from privgate.home import configure_state_environment

    configure_state_environment()
    import logging

    import yaml

    from flows.privacy_utility_sweep import privacy_utility_sweep
    from privgate.config import load_config, load_policy
    from privgate.data.demo_data import write_demo_data
    from privgate.sweep import SweepConfig

    logging.getLogger("prefect").setLevel(logging.WARNING)
    write_demo_data(home / "demo", rows=rows)
    os.environ.pop("PRIVGATE_POLICY", None)
    policy = load_policy().model_dump(mode="json") | {
        "lifetime_epsilon": BENCH_LIFETIME_EPSILON,
        "lifetime_delta": BENCH_LIFETIME_DELTA,
    }
    policy_path = home / "benchmark-policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    os.environ["PRIVGATE_POLICY"] = str(policy_path)
    config = load_config(ROOT / "configs" / "demo.yaml", [f"orchestration.task_runner={runner}"])
    sweep = SweepConfig(epsilons=EPSILONS, ks=KS, workers=workers)
    started = time.perf_counter()
    state = privacy_utility_sweep(config=config, sweep=sweep, return_state=True)
    seconds = time.perf_counter() - started
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict) or "points" not in summary:
        raise SystemExit(f"the sweep failed: {state.message}")
    print(f"workers={workers} seconds={seconds:.1f} chosen={summary['chosen']} state={state.name}")
    return {"summary": summary, "seconds": seconds}


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    main()
