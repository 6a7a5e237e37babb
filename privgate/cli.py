"""`privgate`: run the privacy-gated pipeline and read the registry.

Exit codes: 0 = promoted (or the command succeeded), 2 = blocked by a gate, 1 = error
(usage errors included: 2 is reserved for gates, so a script can tell them apart).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from privgate.errors import ConfigError, PrivgateError
from privgate.home import configure_state_environment, privgate_home

EXIT_OK, EXIT_ERROR, EXIT_BLOCKED = 0, 1, 2
# When this module was imported, the first thing `privgate` does: `run` times from here.
_STARTED = time.perf_counter()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        if "--json" in sys.argv:  # the promise of one JSON object holds for usage errors too
            print(json.dumps({"error": message, "promoted": False}))
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _at_least_two(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 2, got {text!r}")
    return value


def _epsilons(text: str) -> list[float | None]:
    values: list[float | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            values.append(None if part == "none" else float(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected numbers or `none`, comma-separated; got {part!r}"
            ) from None
    return values


def _whole_numbers(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected whole numbers, comma-separated; got {text!r}")
    return [int(part) for part in parts]


def _add_pipeline_options(parser: argparse.ArgumentParser, *, set_help: str) -> None:
    """Add --config, --set and --policy, shared by the commands that run the pipeline."""
    parser.add_argument(
        "--config", type=Path, help="pipeline config YAML (default: configs/demo.yaml)"
    )
    _add_set_option(parser, set_help=set_help)
    parser.add_argument(
        "--policy",
        type=Path,
        help="privacy policy YAML (default: $PRIVGATE_POLICY, else configs/policy.yaml)",
    )


def _add_set_option(parser: argparse.ArgumentParser, *, set_help: str) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="dotted.key=value",
        help=f"override a config value, {set_help} (repeatable)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="privgate", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run the privacy-gated training flow")
    _add_pipeline_options(run, set_help="e.g. --set training.dp.enabled=false")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    sweep = commands.add_parser(
        "sweep", help="run the privacy-utility sweep: the pipeline over epsilon x k"
    )
    _add_pipeline_options(sweep, set_help="for every point")
    sweep.add_argument(
        "--epsilons",
        type=_epsilons,
        help="target epsilons, comma-separated; `none` is the non-private baseline "
        "(default: 0.5,1,2,none)",
    )
    sweep.add_argument(
        "--ks", type=_whole_numbers, help="k values, comma-separated (default: 5,10)"
    )
    sweep.add_argument("--workers", type=int, help="points run in parallel (default: 2)")
    sweep.add_argument(
        "--runner",
        choices=["threads", "processes", "dask"],
        help="where the points run: threads of this process, local worker processes, or "
        "a Dask cluster (orchestration.dask_address, else a temporary local one); "
        "default: the config's orchestration.task_runner",
    )
    sweep.add_argument("--json", action="store_true", help="print the sweep summary as JSON")

    init = commands.add_parser(
        "init",
        help="propose a config, policy and suite for your own table, from its scan",
    )
    init.add_argument("table", type=Path, help="the raw training table (CSV, CSV.GZ, Parquet)")
    init.add_argument("--target", required=True, help="the binary label column")
    split = init.add_mutually_exclusive_group()
    split.add_argument("--test", type=Path, help="a held-out test table with the same columns")
    split.add_argument(
        "--test-fraction", type=float, help="split the test table off (default: 0.2)"
    )
    init.add_argument("--out", type=Path, default=Path("privgate-project"), help="folder")
    init.add_argument(
        "--domain-epsilon",
        type=float,
        default=1.0,
        help="epsilon of the DP release of category sets, charged to the ledger (default 1)",
    )
    init.add_argument("--force", action="store_true", help="overwrite the files in --out")

    check = commands.add_parser(
        "check",
        help="every check that needs no training (columns, suite, sizes, k, audit power, "
        "budget), in seconds, before anything is charged",
    )
    _add_pipeline_options(check, set_help="as `run` would")
    check.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    commands.add_parser(
        "prepare",
        help="create the state home's Prefect and MLflow databases (`make install` runs it), "
        "so that the first run does not wait for their migrations",
    )

    demo = commands.add_parser("demo-data", help="write the enriched Adult demo tables")
    demo.add_argument("--out", type=Path, help="folder (default: $PRIVGATE_HOME/demo)")
    demo.add_argument("--rows", type=_at_least_two, help="keep only this many training rows")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic identifiers")

    models = commands.add_parser("models", help="read the model registry")
    model_commands = models.add_subparsers(
        dest="models_command", required=True, parser_class=_Parser
    )
    listing = model_commands.add_parser("list", help="registered models, versions, aliases")
    listing.add_argument("--json", action="store_true")
    show = model_commands.add_parser("show", help="one version: status, gates, DP, metrics")
    show.add_argument("name")
    show.add_argument("--version", help="version number (default: the champion, else latest)")
    show.add_argument("--json", action="store_true")
    load = model_commands.add_parser(
        "load", help="verify the signed approval and every artifact, then load the model"
    )
    load.add_argument("name")
    load.add_argument("--alias", default="champion", help="alias to resolve (default: champion)")
    load.add_argument("--max-epsilon", type=float, help="refuse a model that spent more epsilon")
    load.add_argument(
        "--require-approval", action="store_true", help="refuse a model no person signed off"
    )
    load.add_argument("--json", action="store_true")
    verify = model_commands.add_parser(
        "verify", help="check every aliased version against its signed approval"
    )
    verify.add_argument("name", nargs="?", help="one registered model (default: all)")
    verify.add_argument("--json", action="store_true")

    approvals = commands.add_parser("approvals", help="who approved or rejected what")
    approval_commands = approvals.add_subparsers(
        dest="approvals_command", required=True, parser_class=_Parser
    )
    approvals_list = approval_commands.add_parser(
        "list", help="every decision and pending request, approvals verified as signed"
    )
    approvals_list.add_argument("name", nargs="?", help="one registered model (default: all)")
    approvals_list.add_argument("--json", action="store_true")

    encrypted = commands.add_parser(
        "encrypted", help="score records encrypted (CKKS): the server never sees them"
    )
    encrypted_commands = encrypted.add_subparsers(
        dest="encrypted_command", required=True, parser_class=_Parser
    )
    serve = encrypted_commands.add_parser(
        "serve", help="serve an approved, HE-ready model to encrypted-scoring clients"
    )
    serve.add_argument("name", help="registered model name")
    serve.add_argument("--alias", default="champion", help="alias to resolve (default: champion)")
    serve.add_argument("--max-epsilon", type=float, help="refuse a model that spent more epsilon")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: loopback)"
    )
    serve.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    score = encrypted_commands.add_parser(
        "score", help="encrypt records here, score them on the server, decrypt here"
    )
    score.add_argument("--url", default="http://127.0.0.1:8765", help="the server's base URL")
    score.add_argument("--in", dest="in_path", type=Path, required=True, help="records to score")
    score.add_argument("--out", type=Path, help="CSV of row, probability, prediction")
    score.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    scan = commands.add_parser(
        "scan", help="classify every column of a table with the pipeline's PII engine"
    )
    scan.add_argument("file", type=Path, help="table to scan (CSV, CSV.GZ or Parquet)")
    scan.add_argument(
        "--config", type=Path, help="pipeline config YAML for the PII settings (default: demo)"
    )
    _add_set_option(scan, set_help="e.g. data.limits.max_cell_chars=2000000")
    scan.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    anonymize = commands.add_parser(
        "anonymize",
        help="anonymize a table the pipeline's way, verify it, and write it only if it passes",
    )
    anonymize.add_argument("input", type=Path, help="raw table (CSV, CSV.GZ or Parquet)")
    anonymize.add_argument(
        "output", type=Path, help="anonymized table (.csv or .parquet); must not exist"
    )
    anonymize.add_argument(
        "--config", type=Path, help="pipeline config YAML (default: configs/demo.yaml)"
    )
    anonymize.add_argument(
        "--policy",
        type=Path,
        help="privacy policy YAML (default: $PRIVGATE_POLICY, else configs/policy.yaml)",
    )
    _add_set_option(anonymize, set_help="e.g. pii.processes=1")
    anonymize.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    federated = commands.add_parser(
        "federated",
        help="train across silos (Flower, SecAgg+, DP-SGD in each) under the same gates",
    )
    _add_pipeline_options(federated, set_help="applied in every silo, e.g. training.batch_size=128")
    federated.add_argument(
        "--silos",
        type=int,
        default=3,
        help="split the config's tables into this many silos (default 3; ignored with --plan)",
    )
    federated.add_argument(
        "--plan", type=Path, help="federation YAML: rounds, silos and their tables"
    )
    federated.add_argument("--rounds", type=int, help="federated rounds (default 3)")
    federated.add_argument("--local-epochs", type=int, help="local epochs per round (default 1)")
    federated.add_argument(
        "--record-coordinator-view",
        action="store_true",
        help="keep each masked vector the coordinator receives, each round's global weights "
        "and each silo's own update in its folder (to audit what the coordinator can see)",
    )
    federated.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    audit = commands.add_parser(
        "audit", help="re-audit a registered version from its recorded lineage"
    )
    audit.add_argument("name", help="registered model name")
    audit.add_argument("--version", help="version number (default: the alias's version)")
    audit.add_argument("--alias", default="champion", help="alias to resolve (default: champion)")
    audit.add_argument(
        "--policy",
        type=Path,
        help="privacy policy YAML (default: $PRIVGATE_POLICY, else configs/policy.yaml)",
    )
    audit.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = _build_parser().parse_args(argv)
    configure_state_environment()
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "init":
            return _init(args)
        if args.command == "check":
            return _check(args)
        if args.command == "demo-data":
            return _demo_data(args)
        if args.command == "prepare":
            return _prepare()
        if args.command == "audit":
            return _audit(args)
        if args.command == "federated":
            return _federated(args)
        if args.command == "scan":
            return _scan(args)
        if args.command == "anonymize":
            return _anonymize(args)
        if args.command == "encrypted":
            return _encrypted(args)
        if args.command == "approvals":
            return _approvals_list(args)
        if args.models_command == "list":
            return _models_list(args)
        if args.models_command == "load":
            return _models_load(args)
        if args.models_command == "verify":
            return _models_verify(args)
        return _models_show(args)
    except PrivgateError as exc:
        _fail(str(exc), as_json=getattr(args, "json", False))
        return EXIT_ERROR
    except Exception as exc:  # anything else: the type only, its message may quote data
        _fail(
            f"unexpected {type(exc).__name__}; message withheld (PRIVGATE_DEBUG=1 shows it)",
            as_json=getattr(args, "json", False),
        )
        if os.environ.get("PRIVGATE_DEBUG") == "1":
            raise
        return EXIT_ERROR


def _fail(message: str, *, as_json: bool) -> None:
    print(f"privgate: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message, "promoted": False}))


def _run(args: argparse.Namespace) -> int:
    from privgate.config import load_config, load_policy

    config = load_config(args.config, args.overrides)
    if args.policy is not None:
        os.environ["PRIVGATE_POLICY"] = str(args.policy.resolve())
    # A bad policy file is a usage error: say so before Prefect starts.
    _require_an_approvers_server(load_policy())
    from flows._startup import PhaseClock, TemporaryServer, flow_task_timings, prewarm_pii_engine

    clock = PhaseClock(_STARTED)
    clock.lap("start-up (config, policy)")
    with _stdout_to_stderr():
        # The server starts in its own process while this one imports the pipeline.
        server = TemporaryServer()
        from flows.privacy_gated_training import privacy_gated_training

        clock.lap("imports (torch, Opacus, MLflow, GX, Presidio, Prefect)")
        prewarm_pii_engine(config)
        clock.lap("PII engine built, its workers starting")
        server.wait()
        if server.needed:
            clock.lap("waiting for Prefect's temporary server")
        state = privacy_gated_training(config=config, return_state=True)
        data = state.result(raise_on_failure=False)
        clock.lap("flow run")
        tasks = flow_task_timings(state.state_details.flow_run_id) if isinstance(data, dict) else []
    if not isinstance(data, dict):
        _fail(state.message or "the flow run crashed", as_json=args.json)
        return EXIT_ERROR
    data["timings"] = {
        "phases": [{"phase": name, "seconds": round(sec, 2)} for name, sec in clock.phases],
        "tasks": tasks,
        "total_s": round(clock.total(), 2),
    }
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        _print_run(data, state.message or "")
        _print_timings(data["timings"])
    return EXIT_OK if data["promoted"] else EXIT_BLOCKED


def _print_timings(timings: dict[str, Any]) -> None:
    """Print where the run's wall-clock time went: phases, then the flow's tasks."""
    print(f"timings (wall clock, {timings['total_s']:.1f} s since privgate started):")
    for phase in timings["phases"]:
        print(f"  {phase['seconds']:6.1f} s  {phase['phase']}")
    for task in timings["tasks"]:
        runs = f" (x{task['runs']}, in parallel)" if task["runs"] > 1 else ""
        print(f"  {task['seconds']:6.1f} s    task {task['task']}{runs}")


def _require_an_approvers_server(policy: Any) -> None:
    """Refuse a run that would wait for a person nobody can reach.

    Without PREFECT_API_URL, a run starts Prefect's temporary server, which serves no UI
    and stops with the run: a pause for approval there would wait out its timeout.
    """
    if policy.approval.required and not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "the policy asks for a person's approval (approval.required): run against a "
            "Prefect server the approvers can reach (set PREFECT_API_URL), or start the "
            "approved-training deployment there"
        )


def _federated(args: argparse.Namespace) -> int:
    from privgate.config import load_config, load_policy
    from privgate.federated.plan import load_plan, split_demo
    from privgate.home import resolve_path

    config = load_config(args.config, args.overrides)
    if args.policy is not None:
        os.environ["PRIVGATE_POLICY"] = str(args.policy.resolve())
    load_policy()
    changes = {
        k: v
        for k, v in (("rounds", args.rounds), ("local_epochs", args.local_epochs))
        if v is not None
    }
    if args.plan is not None:
        plan = load_plan(args.plan, changes)
    else:
        if config.data.test_path is None:
            raise ConfigError(
                "--silos splits data.train_path and data.test_path: set data.test_path"
            )
        silos = split_demo(
            resolve_path(config.data.train_path),
            resolve_path(config.data.test_path),
            privgate_home() / "federated" / "split",
            silos=args.silos,
        )
        plan = load_plan(
            None,
            {
                **changes,
                "silos": [s.model_dump() for s in silos],
                "source": resolve_path(config.data.train_path),
            },
        )
    with _stdout_to_stderr():
        from flows.federated_training import federated_training

        state = federated_training(
            plan=plan,
            config=config,
            record_coordinator_view=args.record_coordinator_view,
            return_state=True,
        )
        data = state.result(raise_on_failure=False)
    if not isinstance(data, dict):
        _fail(state.message or "the flow run crashed", as_json=args.json)
        return EXIT_ERROR
    data["message"] = state.message or ""
    promoted = bool(data.get("model", {}).get("promoted"))
    data["promoted"] = promoted
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        print(state.message or "")
        for silo in data.get("silos", []):
            eps = data.get("epsilon_per_silo", {}).get(silo["silo"])
            shown = "not trained" if eps is None else f"epsilon {eps:.3f}"
            print(f"  {silo['silo']}: {silo['members']} members, k={silo['k']}, {shown}")
        for r in data.get("federation", {}).get("rounds", []):
            faults = "".join(
                f", {kind}: {', '.join(r[kind])}" for kind in ("dropped", "excluded") if r[kind]
            )
            print(
                f"  round {r['round']}: {r['silos']} silos summed in {r['seconds']:.0f} s{faults}"
            )
        if "per_record_statement" in data:
            print(data["per_record_statement"])
    return EXIT_OK if promoted else EXIT_BLOCKED


def _init(args: argparse.Namespace) -> int:
    from privgate.scaffold import init_project

    with _stdout_to_stderr():
        proposal = init_project(
            args.table,
            target=args.target,
            out=args.out,
            test=args.test,
            test_fraction=args.test_fraction,
            domain_epsilon=args.domain_epsilon,
            force=args.force,
        )
    for path in proposal.files.values():
        print(f"wrote {path}")
    print(
        f"charged epsilon {proposal.epsilon_charged:.3g}, delta {proposal.delta_charged:.2g} "
        "to this table's ledger for the released category sets"
    )
    print(f"review these {len(proposal.review)} lines, then delete each REVIEW mark:")
    for line in proposal.review:
        print(f"  {line}")
    config, policy = proposal.files["config.yaml"], proposal.files["policy.yaml"]
    print(f"then: privgate check --config {config} --policy {policy}")
    print(f"      privgate run --config {config} --policy {policy}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from privgate import stages
    from privgate.config import default_config_path, load_config, load_policy
    from privgate.errors import ValidationFailedError
    from privgate.home import resolve_path
    from privgate.preflight import CheckReport, Finding, preflight

    config = load_config(args.config, args.overrides)
    if args.policy is not None:
        os.environ["PRIVGATE_POLICY"] = str(args.policy.resolve())
    policy = load_policy()
    policy_path = resolve_path(os.environ.get("PRIVGATE_POLICY", "configs/policy.yaml"))
    suite = resolve_path(config.data.expectation_suite)
    tables = stages.ingest(config)
    report = preflight(
        tables, config, policy, files=(args.config or default_config_path(), policy_path, suite)
    )
    try:
        with _stdout_to_stderr():
            stages.validate(tables, config)
    except ValidationFailedError as exc:
        failed = Finding("error", "validation", str(exc))
        report = CheckReport((failed, *report.findings), report.seconds)
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        print(report.to_text())
    return EXIT_OK if report.ok else EXIT_ERROR


def _sweep(args: argparse.Namespace) -> int:
    from privgate.config import load_config, load_policy
    from privgate.sweep import SweepConfig

    runner = [f"orchestration.task_runner={args.runner}"] if args.runner else []
    config = load_config(args.config, [*args.overrides, *runner])
    grid = {
        key: value
        for key, value in (("epsilons", args.epsilons), ("ks", args.ks), ("workers", args.workers))
        if value is not None
    }
    try:
        sweep = SweepConfig.model_validate(grid)
    except ValueError as exc:  # pydantic's message names the option and the rule
        raise ConfigError(f"sweep grid: {exc}") from None
    if args.policy is not None:
        os.environ["PRIVGATE_POLICY"] = str(args.policy.resolve())
    _require_an_approvers_server(load_policy())
    with _stdout_to_stderr():
        from flows.privacy_utility_sweep import privacy_utility_sweep

        state = privacy_utility_sweep(config=config, sweep=sweep, return_state=True)
        data = state.result(raise_on_failure=False)
    if not isinstance(data, dict):
        _fail(state.message or "the flow run crashed", as_json=args.json)
        return EXIT_ERROR
    if "error" in data:
        _fail(data["error"], as_json=args.json)
        return EXIT_BLOCKED
    if args.json:
        print(json.dumps(data, sort_keys=True))
    else:
        print(state.message or "")
    return EXIT_OK if data.get("promoted") else EXIT_BLOCKED


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout to stderr, subprocesses included.

    Prefect, MLflow and the ephemeral API server print to stdout here and there; `--json`
    promises exactly one object there. Redirecting the file descriptor (not only
    `sys.stdout`) also covers child processes and C-level writes.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _print_run(summary: dict[str, Any], message: str) -> None:
    verdict = "PROMOTED" if summary["promoted"] else "BLOCKED"
    version = summary["version"] or "(not registered)"
    print(f"{verdict}: {summary['model_name']} version {version} in {summary['duration_s']:.1f} s")
    for gate in summary["gates"]:
        mark = "pass" if gate["passed"] else "FAIL"
        value = "n/a" if gate["value"] is None else f"{gate['value']:.6g}"
        threshold = "n/a" if gate["threshold"] is None else f"{gate['threshold']:.6g}"
        extra = f"  ({gate['details']})" if gate["details"] else ""
        print(f"  [{mark}] {gate['name']:<26} {value:>12} {gate['comparison']} {threshold}{extra}")
    if not summary["promoted"]:
        print(message)


def _prepare() -> int:
    """Migrate Prefect's database and create MLflow's tables under the state home.

    With `PREFECT_API_URL` or a non-SQLite `MLFLOW_TRACKING_URI` set, that server's
    database is its own business and is left alone.
    """
    import subprocess

    home = privgate_home()
    started = time.perf_counter()
    if not os.environ.get("PREFECT_API_URL"):
        subprocess.run(
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith("sqlite:"):
        from mlflow.tracking import MlflowClient

        MlflowClient().search_experiments(max_results=1)
    print(f"prepared {home} in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def _demo_data(args: argparse.Namespace) -> int:
    from privgate.data.demo_data import write_demo_data

    out = args.out or privgate_home() / "demo"
    train, test = write_demo_data(out, seed=args.seed, rows=args.rows)
    print(f"wrote {train}\nwrote {test}")
    return EXIT_OK


def _models_list(args: argparse.Namespace) -> int:
    from privgate.registry.versions import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models, sort_keys=True))
        return EXIT_OK
    if not models:
        print("no registered models")
    for model in models:
        print(model["name"])
        for version in model["versions"]:
            aliases = ", ".join(version["aliases"])
            print(f"  v{version['version']:<5} {version['status']:<10} {aliases}")
    return EXIT_OK


def _models_show(args: argparse.Namespace) -> int:
    from privgate.registry.versions import show_model

    summary = show_model(args.name, args.version)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return EXIT_OK
    print(f"{summary['name']} version {summary['version']} ({summary['resolved_by']})")
    print(f"  status:  {summary['status']}")
    print(f"  aliases: {', '.join(summary['aliases']) or '-'}")
    print("  gates:")
    for gate, verdict in summary["gates"].items():
        print(f"    {gate:<26} {verdict}")
    for section in ("dp", "metrics", "lineage"):
        print(f"  {section}:")
        for key, value in summary.get(section, {}).items():
            print(f"    {key:<34} {value}")
    return EXIT_OK


def _models_load(args: argparse.Namespace) -> int:
    from privgate.registry.consumer import RefusedError, load_verified_model

    try:
        _, verified = load_verified_model(
            args.name,
            alias=args.alias,
            max_epsilon=args.max_epsilon,
            require_approval=args.require_approval,
        )
    except RefusedError as exc:
        _fail(f"refused: {exc}", as_json=args.json)
        return EXIT_BLOCKED
    summary = {
        "model_name": verified.model_name,
        "version": verified.version,
        "run_id": verified.run_id,
        "epsilon": verified.attestation.epsilon,
        "delta": verified.attestation.delta,
        "key_id": verified.attestation.key_id,
        "artifacts_verified": len(verified.attestation.artifacts),
        "loaded": True,
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"verified and loaded {verified.model_name} version {verified.version}: signature "
            f"ok (key {verified.attestation.key_id}), {summary['artifacts_verified']} artifact "
            f"digests ok, epsilon {verified.attestation.epsilon:.4g}"
        )
    return EXIT_OK


def _models_verify(args: argparse.Namespace) -> int:
    from privgate.registry.consumer import verify_registry

    rows = verify_registry(args.name)
    if args.json:
        print(json.dumps(rows, sort_keys=True))
    else:
        if not rows:
            print("no aliases to verify")
        for row in rows:
            verdict = "ok" if row["ok"] else f"REFUSED: {row['reason']}"
            approval = row.get("approval")
            if approval:
                verdict += f", approved by {approval['approver']} at {approval['decided_utc']}"
            print(f"{row['model']}@{row['alias']} -> v{row['version']}: {verdict}")
    return EXIT_OK if all(row["ok"] for row in rows) else EXIT_BLOCKED


def _approvals_list(args: argparse.Namespace) -> int:
    from privgate.registry.consumer import list_approvals

    rows = list_approvals(args.name)
    if args.json:
        print(json.dumps(rows, sort_keys=True))
        return EXIT_OK
    if not rows:
        print("no version was asked for approval")
    for row in rows:
        who = row.get("approver")
        decided = f"{row['decision']} by {who} at {row['decided_utc']}" if who else "no decision"
        signed = "signed" if row.get("signed") else "not signed"
        line = f"{row['model']} v{row['version']} [{row['status']}]: {decided} ({signed})"
        if row.get("evidence_sha256"):
            line += f", evidence {row['evidence_sha256'][:16]}..."
        if row.get("reason"):
            line += f"; {row['reason']}"
        print(line)
    return EXIT_OK


def _encrypted(args: argparse.Namespace) -> int:
    from privgate.registry.consumer import RefusedError

    if args.encrypted_command == "serve":
        from privgate.encrypted.server import load_served_model, serve

        try:
            served = load_served_model(args.name, alias=args.alias, max_epsilon=args.max_epsilon)
        except RefusedError as exc:
            _fail(f"refused: {exc}", as_json=False)
            return EXIT_BLOCKED
        agreement = served.evidence
        print(
            f"serving {served.name} version {served.version} ({served.model}, epsilon "
            f"{served.epsilon:.4g}) for encrypted scoring on http://{args.host}:{args.port}; "
            f"agreement at promotion: max probability difference "
            f"{agreement['max_abs_probability_difference']:.2e}, same class "
            f"{agreement['class_agreement']:.2%} of {agreement['records']} records",
            flush=True,
        )
        serve(served, host=args.host, port=args.port)
        return EXIT_OK
    from privgate.encrypted.client import score_file

    started = time.perf_counter()
    scores = score_file(args.url, args.in_path, args.out)
    summary = {
        "records": len(scores),
        "predicted_positive": int(scores["prediction"].sum()),
        "seconds": round(time.perf_counter() - started, 3),
        "out": str(args.out) if args.out else None,
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        where = f"; wrote {args.out}" if args.out else ""
        print(
            f"scored {summary['records']} records encrypted in {summary['seconds']} s: "
            f"{summary['predicted_positive']} predicted positive{where}"
        )
    return EXIT_OK


def _scan(args: argparse.Namespace) -> int:
    from privgate import stages
    from privgate.config import load_config

    config = load_config(args.config, args.overrides)
    frame = stages.read_configured(args.file, config, require_string_columns=False)
    with _stdout_to_stderr():
        report = stages.scan_frame(frame, config, where=str(args.file))
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
        return EXIT_OK
    print(f"{args.file}: {report.rows} rows, {len(report.columns)} columns, {report.seconds:.1f} s")
    for column in report.columns:
        found = ", ".join(f"{e} {f:.0%}" for e, f in column.entities.items()) or "-"
        print(f"  {column.name:<24} {column.kind:<18} {found}")
    return EXIT_OK


def _anonymize(args: argparse.Namespace) -> int:
    from privgate import stages
    from privgate.config import load_config, load_policy
    from privgate.data.ingest import write_table
    from privgate.errors import DataError

    if args.output.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"{args.output}: write .csv or .parquet")
    if args.output.exists():  # never overwrite: the raw input may be the only copy
        raise DataError(f"{args.output} already exists; choose a new output path")
    config, policy = load_config(args.config, args.overrides), load_policy(args.policy)
    frame = stages.read_configured(args.input, config, require_string_columns=False)
    with _stdout_to_stderr():
        started = time.perf_counter()
        scan = stages.scan_frame(frame, config, where=str(args.input))
        anonymized = stages.anonymize_frame(frame, scan, config)
        verification = stages.verify(anonymized, config, policy)
        gates = stages.judge_data(verification, policy)
        escaped = write_table(anonymized.frame, args.output) if gates.passed else 0
    summary = {
        **anonymized.report.to_dict(),
        "residual_findings": verification.residual_findings,
        "residual_by_verifier": verification.residual_by_verifier(),
        "k_measured": verification.k_measured,
        "gates": gates.to_dict()["gates"],
        "written": gates.passed,
        "formula_cells_escaped": escaped,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True, allow_nan=False))
    else:
        kanon = anonymized.report.kanon
        verdict = f"wrote {args.output}" if gates.passed else "NOT written"
        if escaped:
            verdict += f" ({escaped} formula-like cells escaped with a leading ')"
        print(
            f"{args.input}: {summary['rows_in']} rows in, {summary['rows_out']} out; k "
            f"{verification.k_measured} (target {kanon.k_target}), {kanon.suppressed_rows} "
            f"suppressed, information loss {kanon.information_loss:.3f}; {verdict}"
        )
        for result in gates.results:
            print(f"  {result.describe()}")
    return EXIT_OK if gates.passed else EXIT_BLOCKED


def _audit(args: argparse.Namespace) -> int:
    from audits.gates import json_number
    from privgate.config import load_policy
    from privgate.reaudit import reaudit

    policy = load_policy(args.policy)
    with _stdout_to_stderr():
        _, gates, summary = reaudit(
            args.name, version=args.version, alias=args.alias, policy=policy
        )
    if args.json:
        print(json.dumps(summary, sort_keys=True, allow_nan=False))
    else:
        print(
            f"{summary['model_name']} version {summary['version']}: audit "
            f"{'passed' if gates.passed else 'BLOCKED'}"
        )
        for key in (
            "mia_auc",
            "mia_tpr_at_1pct_fpr",
            "mia_tpr_at_0_1pct_fpr",
            "empirical_epsilon_lower_bound",
            "claimed_epsilon",
            "control_epsilon_lower_bound",
        ):
            value = json_number(summary[key])
            print(f"  {key:<32} {'-' if value is None else f'{value:.4g}'}")
        for result in gates.results:
            print(f"  {result.describe()}")
    return EXIT_OK if gates.passed else EXIT_BLOCKED


if __name__ == "__main__":
    raise SystemExit(main())
