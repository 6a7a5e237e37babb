"""The `privacy-utility-sweep` flow: the pipeline at every grid point, side by side.

    ingest -> validate -> scan-pii (once, shared by every point)
           -> [ledger preflight: the whole grid's spend must fit the lifetime budget]
           -> sweep-point x N, in parallel: anonymize (k) -> verify -> train (epsilon)
              -> audit -> every gate
           -> report (table, Pareto front, plots: MLflow and Prefect artifacts)
           -> register-model for the chosen point (its alias moves through its gates)

The chosen point is the most accurate one that passed every gate (`privgate.sweep`), so
a sweep never recommends a model the single-run pipeline would not have promoted.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from flows._approval import sign_off
from flows._runners import build_runner, submit
from flows.privacy_gated_training import DEFAULT_CONFIG
from privgate import stages
from privgate import sweep as sw
from privgate.config import PipelineConfig, PrivacyPolicy, load_policy
from privgate.dp.ledger import PrivacyLedger
from privgate.errors import withheld
from privgate.registry.versions import artifact_url, configure_mlflow, experiment_id
from tasks._options import IN_MEMORY
from tasks.data import ingest_tables, validate_raw_table
from tasks.privacy import scan_pii
from tasks.registry import register_model
from tasks.sweep import PointOutcome, run_sweep_point


@flow(name="privacy-utility-sweep", persist_result=False, validate_parameters=True)
def privacy_utility_sweep(
    config: PipelineConfig = DEFAULT_CONFIG, sweep: sw.SweepConfig | None = None
) -> State[Any]:
    """Run the pipeline over a grid of epsilon x k; register the best point that passes."""
    started = time.perf_counter()
    sweep = sweep or sw.SweepConfig()
    policy = load_policy()
    tables = ingest_tables(config)
    validation = validate_raw_table(tables, config)
    refusal = _preflight(sweep, config, policy, tables.train_sha256)
    if refusal:
        return Failed(message=f"sweep refused: {refusal}", data={"error": refusal})
    scan = scan_pii(tables, config)
    try:
        # At most `sweep.workers` points in flight, whatever the task runner allows: each
        # is a whole training and audit.
        outcomes: list[PointOutcome] = []
        running: list[PrefectFuture[PointOutcome]] = []
        # The pool (processes, a temporary Dask cluster) is as wide as the points in flight.
        orchestration = config.orchestration.model_copy(update={"workers": sweep.workers})
        with build_runner(orchestration) as runner:
            for point in sweep.points():
                if len(running) >= sweep.workers:
                    outcomes.append(running.pop(0).result())
                running.append(
                    submit(
                        runner,
                        run_sweep_point,
                        tables=tables,
                        validation=validation,
                        scan=scan,
                        config=config,
                        policy=policy,
                        point=point,
                    )
                )
            outcomes += [future.result() for future in running]
    finally:
        # The points shared the engine's analysis cache (raw texts): forget it now.
        stages.engine_for(config).clear_cache()
    results = [o.result for o in outcomes]
    choice = sw.choose(results)
    summary = report_sweep(results, choice, config)
    summary["duration_s"] = round(time.perf_counter() - started, 1)
    chosen = next(
        (o for o in outcomes if choice.result is not None and o.result is choice.result), None
    )
    if chosen is None or chosen.evidence is None or chosen.gates is None:
        summary |= {"promoted": False, "version": None}
        return Failed(message=f"nothing to promote: {choice.reason}", data=summary)
    registration = register_model(
        evidence=chosen.evidence, gates=chosen.gates, config=chosen.config, policy=policy
    )
    if registration.pending_approval:  # the chosen point goes through the same sign-off
        registration, summary["approval"] = sign_off(
            chosen.evidence, chosen.gates, chosen.config, policy, registration
        )
    summary |= {"promoted": registration.promoted, "version": registration.version}
    if not registration.promoted:
        return Failed(message=f"chosen point not promoted: {choice.reason}", data=summary)
    return Completed(
        message=f"promoted version {registration.version}: {choice.reason}", data=summary
    )


def _preflight(
    sweep: sw.SweepConfig, config: PipelineConfig, policy: PrivacyPolicy, dataset: str
) -> str | None:
    """Return why the grid cannot run within the ledger's budget, or None when it can.

    The ledger refuses a training that would cross the lifetime budget; checked only
    then, a sweep would stop half run, its spend gone. Every DP point is charged in
    full (basic composition): tuning on private data leaks through the choice too.
    """
    if None in sweep.epsilons and not policy.allow_non_private:
        return (
            "the grid has a non-private point (`none`), and the policy refuses training "
            "without DP on this dataset (allow_non_private: false); sweep only epsilons"
        )
    epsilon, delta = sweep.planned_charge(config.training.dp.target_delta)
    spent = PrivacyLedger().balance(dataset_sha256=dataset, privacy_unit="record")
    left_epsilon = policy.lifetime_epsilon - spent.spent_epsilon
    left_delta = policy.lifetime_delta - spent.spent_delta
    if epsilon > left_epsilon + 1e-12 or delta > left_delta + 1e-18:
        return (
            f"the grid's {len(sweep.points())} points would spend epsilon {epsilon:g}, delta "
            f"{delta:g}; this dataset has epsilon {left_epsilon:g}, delta {left_delta:g} left of "
            f"its lifetime budget (policy lifetime_epsilon / lifetime_delta). Sweep fewer or "
            "smaller epsilons, or raise the budget in the policy"
        )
    return None


@task(name="report-sweep", **IN_MEMORY)
def report_sweep(
    results: list[sw.PointResult], choice: sw.Choice, config: PipelineConfig
) -> dict[str, Any]:
    """Log the table, the plots and the choice to MLflow and Prefect; return the summary."""
    import mlflow

    markdown = sw.to_markdown(results, choice)
    summary = sw.to_dict(results, choice)
    with withheld("report-sweep"):
        configure_mlflow()
        with (
            mlflow.start_run(
                experiment_id=experiment_id(config.registry.experiment),
                run_name=f"sweep-{flow_run.id}",
            ) as run,
            tempfile.TemporaryDirectory() as tmp,
        ):
            mlflow.set_tags({"privgate.kind": "sweep", "privgate.sweep.flow_run": str(flow_run.id)})
            mlflow.log_text(markdown, "sweep/sweep.md")
            mlflow.log_dict(summary, "sweep/sweep.json")
            plots = [path.name for path in sw.plot_sweep(results, Path(tmp))]
            mlflow.log_artifacts(tmp, "sweep")
        summary["mlflow_run_id"] = run.info.run_id
        urls = {name: artifact_url(run.info.run_id, f"sweep/{name}") for name in plots}
    summary["plots"] = urls
    create_markdown_artifact(markdown, key="privacy-utility-sweep", description=choice.reason)
    for name, url in urls.items():
        # Prefect shows an image by URL: the tracking server's, when there is one.
        create_image_artifact(
            image_url=url,
            key=f"sweep-{Path(name).stem.replace('_', '-')}",
            description=f"privacy-utility sweep: {Path(name).stem.replace('_', ' ')}",
        )
    get_run_logger().info("sweep: %s", choice.reason)
    return summary
