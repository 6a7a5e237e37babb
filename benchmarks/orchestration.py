"""What does orchestration cost? The same stages, plain Python vs the Prefect flow.

Runs the pipeline's stage functions (`privgate.stages`) on one demo sample, in one
process: as plain chained calls, and as the `privacy-gated-training` flow with MLflow
tracking and registration. Prints each arm's times and the warm ratio (target <= 1.10),
and the cold start (the first flow run: Prefect's ephemeral API starting) separately.

Both arms start every repetition with Presidio's analysis cache emptied, so neither
reuses the other's work; spaCy stays loaded (that is what "warm" means).

    python benchmarks/orchestration.py [--rows 3000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3000, help="demo training rows")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per arm")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="privgate-bench-"))
    os.environ["PRIVGATE_HOME"] = str(home)
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        os.environ.pop(key, None)
    from privgate.home import configure_state_environment

    configure_state_environment()

    import logging

    from privgate import stages
    from privgate.config import load_config, load_policy
    from privgate.data.demo_data import write_demo_data

    write_demo_data(home / "demo", rows=args.rows)
    config = load_config(ROOT / "configs" / "demo.yaml")
    # The benchmark trains the same synthetic-identity demo sample 2 x repeats + 2 times;
    # the ledger would rightly refuse that under the demo policy's lifetime budget.
    import yaml

    bench_policy = home / "benchmark-policy.yaml"
    policy_data = load_policy().model_dump(mode="json") | {"lifetime_epsilon": 1e6}
    bench_policy.write_text(yaml.safe_dump(policy_data))
    os.environ["PRIVGATE_POLICY"] = str(bench_policy)
    policy = load_policy()

    def plain() -> None:
        tables = stages.ingest(config)
        stages.validate(tables, config)
        scan = stages.scan(tables, config)
        anonymized = stages.anonymize(tables, scan, config)
        verification = stages.verify(anonymized, config, policy)
        stages.judge_data(verification, policy)
        trained = stages.train(anonymized, tables, config, policy, run_key=str(uuid.uuid4()))
        report = stages.run_audit(trained, config)
        stages.judge(verification, trained, report, policy)

    from flows.privacy_gated_training import privacy_gated_training

    logging.getLogger("prefect").setLevel(logging.WARNING)

    def orchestrated() -> None:
        state = privacy_gated_training(config=config, return_state=True)
        if not isinstance(state.result(raise_on_failure=False), dict):
            raise SystemExit(f"flow run failed: {state.message}")

    def timed(fn: object) -> float:
        stages.engine_for(config).clear_cache()
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        return time.perf_counter() - started

    warmup = timed(plain)  # loads spaCy, GX, torch once; not counted
    cold = timed(orchestrated)  # first flow run: starts Prefect's ephemeral API
    plain_times, flow_times = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both arms alike
        plain_times.append(timed(plain))
        flow_times.append(timed(orchestrated))

    plain_s, flow_s = statistics.median(plain_times), statistics.median(flow_times)
    print(f"rows={args.rows} repeats={args.repeats} state={home}")
    print(f"plain_warmup_s={warmup:.2f}")
    print("plain_s=" + ",".join(f"{t:.2f}" for t in plain_times) + f" median={plain_s:.2f}")
    print("flow_s=" + ",".join(f"{t:.2f}" for t in flow_times) + f" median={flow_s:.2f}")
    print(f"cold_flow_s={cold:.2f} cold_overhead_s={cold - plain_s:.2f}")
    print(f"warm_overhead_s={flow_s - plain_s:.2f}")
    print(f"flow_over_plain_ratio={flow_s / plain_s:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
