"""The ServerApp: FedAvg of the silos' DP-SGD updates, every round through SecAgg+.

The coordinator holds the global weights and, each round, only the SecAgg+ sum of the
silos' masked updates (`SecAggPlusWorkflow`): it never sees one silo's update. The
strategy applies the weighted mean update to the global weights after checking its
shapes and values; a malformed aggregate fails the run (nothing is written, so privgate
promotes nothing). It writes the final weights and per-round figures to `out-dir`.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

import numpy as np
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import RECORD_KEY_CONFIGS, Key


class MalformedUpdateError(ValueError):
    """The silos' summed update has the wrong shapes or non-finite values."""


class DeltaFedAvg(FedAvg):
    """FedAvg over updates: global += weighted mean of the silos' updates."""

    def __init__(self, initial: list[np.ndarray], keep: Path | None = None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(initial_parameters=ndarrays_to_parameters(initial), **kwargs)
        self.keep = keep  # where each round's global weights are kept (the coordinator-view audit)
        self.current = [np.asarray(w, dtype=np.float32) for w in initial]
        self.rounds: list[dict[str, float]] = []
        self._started = time.perf_counter()

    def configure_fit(self, server_round, parameters, client_manager):  # type: ignore[no-untyped-def]
        self._started = time.perf_counter()
        instructions = super().configure_fit(server_round, parameters, client_manager)
        for _, fit_ins in instructions:
            fit_ins.config["server-round"] = server_round
        return instructions

    def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
        aggregated, metrics = super().aggregate_fit(server_round, results, failures)
        if aggregated is None:
            raise MalformedUpdateError(
                f"round {server_round}: no aggregate ({len(results)} silos answered, "
                f"{len(failures)} failed)"
            )
        mean_update = parameters_to_ndarrays(aggregated)
        shapes = [w.shape for w in self.current]
        if [u.shape for u in mean_update] != shapes:
            raise MalformedUpdateError(
                f"round {server_round}: the summed update has the wrong shapes"
            )
        if not all(np.all(np.isfinite(u)) for u in mean_update):
            raise MalformedUpdateError(f"round {server_round}: the summed update is not finite")
        self.current = [
            w + u.astype(np.float32) for w, u in zip(self.current, mean_update, strict=False)
        ]
        if self.keep is not None:
            np.savez(self.keep / f"global-{server_round}.npz", *self.current)
        self.rounds.append(
            {
                "round": server_round,
                "silos": len(results),
                "failures": len(failures),
                "seconds": time.perf_counter() - self._started,
            }
        )
        return ndarrays_to_parameters(self.current), metrics


class RecordingGrid:
    """Pass-through grid that keeps what the coordinator receives at the masked-vector stage."""

    def __init__(self, grid: Grid, sink: Path, server_round: int) -> None:
        self._grid, self._sink, self._round = grid, sink, server_round

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
        replies = list(self._grid.send_and_receive(messages, *args, **kwargs))
        for reply in replies:
            if reply.has_error():
                continue
            record = reply.content.config_records.get(RECORD_KEY_CONFIGS)
            if record is not None and Key.MASKED_PARAMETERS in record:
                from flwr.common import bytes_to_ndarray

                vectors = [bytes_to_ndarray(b) for b in record[Key.MASKED_PARAMETERS]]
                node = reply.metadata.src_node_id
                np.savez(self._sink / f"received-{self._round}-{node}.npz", *vectors)
        return replies


class RecordingSecAggPlus(SecAggPlusWorkflow):
    """SecAgg+ that keeps, for an audit, each masked vector the coordinator receives."""

    def __init__(self, sink: Path, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.sink = sink
        self.round = 0

    def collect_masked_vectors_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
        self.round += 1
        return super().collect_masked_vectors_stage(
            RecordingGrid(grid, self.sink, self.round), context, state
        )


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    out = Path(str(cfg["out-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        with np.load(str(cfg["init-file"])) as data:
            initial = [data[f"arr_{i}"] for i in range(len(data.files))]
        required = int(cfg["min-silos"])
        record = bool(cfg.get("record-received", False))
        strategy = DeltaFedAvg(
            initial,
            keep=out if record else None,
            fraction_fit=1.0,
            min_fit_clients=required,
            min_available_clients=required,
            fraction_evaluate=0.0,
            accept_failures=True,
        )
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=int(cfg["rounds"])), strategy=strategy
        )
        secagg = {
            "num_shares": int(cfg["num-shares"]),
            "reconstruction_threshold": int(cfg["reconstruction-threshold"]),
            "max_weight": float(cfg["max-weight"]),
            "clipping_range": float(cfg["clipping-range"]),
            "timeout": float(cfg["timeout"]),
        }
        fit = RecordingSecAggPlus(out, **secagg) if record else SecAggPlusWorkflow(**secagg)
        DefaultWorkflow(fit_workflow=fit)(grid, legacy)
        if len(strategy.rounds) != int(cfg["rounds"]):
            raise MalformedUpdateError(
                f"{len(strategy.rounds)} of {int(cfg['rounds'])} rounds completed"
            )
        np.savez(out / "global.npz", *strategy.current)
        summary = {"rounds": strategy.rounds, "seconds": time.perf_counter() - started}
        (out / "summary.json").write_text(json.dumps(summary))
    except Exception as error:
        kind = type(error).__name__
        message = str(error) if isinstance(error, MalformedUpdateError) else kind
        (out / "error.json").write_text(json.dumps({"error": kind, "message": message}))
        traceback.print_exc()
        raise
