"""The ServerApp: FedAvg of the silos' DP-SGD updates, every round through SecAgg+.

The coordinator holds the global weights and, each round, only the SecAgg+ sum of the
silos' masked updates (`GuardedSecAggPlus`): it never sees one silo's update. What it
can check, it checks:
- each masked vector's layout (one weight factor, then the model's shapes) is public;
  a silo whose vector does not match is left out of the sum, as SecAgg+ leaves out a
  silo that drops (its masks are rebuilt from the other silos' shares), and the round
  records it as excluded;
- a silo that drops before the key exchange is done leaves the round (Flower 1.42
  would halt it); one that drops later has its masks rebuilt from shares;
- a round that SecAgg+ halts (too few silos left to rebuild the masks) or that sums
  fewer silos than the plan requires fails the run;
- the summed update's shapes and finiteness before it moves the global weights.
A failed run writes `error.json` and no `global.npz`, so privgate promotes nothing.
The final weights and per-round figures (silos sampled, summed, dropped, excluded,
seconds, bytes exchanged) go to `out-dir`.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.serde import recorddict_to_proto
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
    RECORD_KEY_CONFIGS,
    Key,
    WorkflowState,
)


class FederationFaultError(RuntimeError):
    """A round cannot be trusted: its message is privgate's own, never a silo's data."""


class DeltaFedAvg(FedAvg):
    """FedAvg over updates: global += weighted mean of the silos' updates."""

    def __init__(
        self, initial: list[np.ndarray], required: int, keep: Path | None = None, **kwargs
    ):  # type: ignore[no-untyped-def]
        super().__init__(initial_parameters=ndarrays_to_parameters(initial), **kwargs)
        self.required = required
        self.keep = keep  # where each round's global weights are kept (the coordinator-view audit)
        self.current = [np.asarray(w, dtype=np.float32) for w in initial]
        self.rounds: list[dict[str, Any]] = []
        self.excluded: dict[int, list[int]] = {}  # round -> nodes whose vector was malformed
        self._sampled: list[int] = []
        self._started = time.perf_counter()

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [w.shape for w in self.current]

    def configure_fit(self, server_round, parameters, client_manager):  # type: ignore[no-untyped-def]
        self._started = time.perf_counter()
        instructions = super().configure_fit(server_round, parameters, client_manager)
        for _, fit_ins in instructions:
            fit_ins.config["server-round"] = server_round
        self._sampled = sorted(int(proxy.node_id) for proxy, _ in instructions)
        return instructions

    def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
        summed = sorted(int(proxy.node_id) for proxy, _ in results)
        if len(summed) < self.required:
            raise FederationFaultError(
                f"round {server_round}: {len(summed)} silos' updates were summed, "
                f"the plan requires {self.required}"
            )
        aggregated, metrics = super().aggregate_fit(server_round, results, failures)
        if aggregated is None:
            raise FederationFaultError(f"round {server_round}: no aggregate")
        mean_update = parameters_to_ndarrays(aggregated)
        if [u.shape for u in mean_update] != self.shapes:
            raise FederationFaultError(
                f"round {server_round}: the summed update has the wrong shapes"
            )
        if not all(np.all(np.isfinite(u)) for u in mean_update):
            raise FederationFaultError(f"round {server_round}: the summed update is not finite")
        self.current = [
            w + u.astype(np.float32) for w, u in zip(self.current, mean_update, strict=True)
        ]
        if self.keep is not None:
            np.savez(self.keep / f"global-{server_round}.npz", *self.current)
        excluded = self.excluded.get(server_round, [])
        self.rounds.append(
            {
                "round": server_round,
                "sampled": self._sampled,
                "summed": summed,
                "dropped": sorted(set(self._sampled) - set(summed) - set(excluded)),
                "excluded": excluded,
                "silos": len(summed),
                "seconds": time.perf_counter() - self._started,
            }
        )
        return ndarrays_to_parameters(self.current), metrics


class CheckingGrid:
    """Pass-through grid at the masked-vector stage: drops malformed vectors, may keep them.

    A masked vector's layout is public (SecAgg+ masks values, not shapes). A reply whose
    layout differs from the model's is removed from the replies, so the workflow treats
    its sender as dropped: it is not summed (numpy would broadcast a (1,) array into the
    sum, and `zip` would silently drop a missing one) and its pairwise masks are rebuilt
    from the other silos' shares.
    """

    def __init__(
        self,
        grid: Grid,
        strategy: DeltaFedAvg,
        server_round: int,
        sink: Path | None,
    ) -> None:
        self._grid, self._strategy, self._round, self._sink = grid, strategy, server_round, sink

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
        from flwr.common import bytes_to_ndarray

        expected = [(1,), *self._strategy.shapes]
        kept = []
        for reply in self._grid.send_and_receive(messages, *args, **kwargs):
            if reply.has_error():
                kept.append(reply)
                continue
            node = int(reply.metadata.src_node_id)
            record = reply.content.config_records.get(RECORD_KEY_CONFIGS)
            try:
                vectors = [bytes_to_ndarray(b) for b in record[Key.MASKED_PARAMETERS]]
            except Exception:  # no record, no vectors, or bytes that are not arrays
                vectors = None
            if vectors is None or [v.shape for v in vectors] != expected:
                self._strategy.excluded.setdefault(self._round, []).append(node)
                continue
            if self._sink is not None:
                np.savez(self._sink / f"received-{self._round}-{node}.npz", *vectors)
            kept.append(reply)
        return kept


class GuardedSecAggPlus(SecAggPlusWorkflow):
    """SecAgg+ whose halted rounds fail the run and whose masked vectors are checked."""

    def __init__(self, strategy: DeltaFedAvg, sink: Path | None = None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.strategy, self.sink = strategy, sink
        self.round = 0

    def __call__(self, grid: Grid, context: Context) -> None:
        # SecAggPlusWorkflow logs a halted round and returns; the next round would then
        # train again on the same global weights, spending the silos' budget for nothing.
        state = WorkflowState()
        stages = (
            self.setup_stage,
            self.share_keys_stage,
            self.collect_masked_vectors_stage,
            self.unmask_stage,
        )
        for stage in stages:
            if not stage(grid, context, state):
                raise FederationFaultError(
                    f"round {self.round}: SecAgg+ halted at its "
                    f"{stage.__name__.removesuffix('_stage').replace('_', ' ')} stage "
                    "(too few silos answered to rebuild the masks)"
                )

    def setup_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
        self.round += 1
        return super().setup_stage(grid, context, state)

    def share_keys_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
        answered = super().share_keys_stage(grid, context, state)
        # Flower 1.42 keeps a silo that never finished the key exchange (it dropped at
        # setup or here) in the round's sampled set and neighbour graph: the unmask stage
        # then wants shares of keys no silo holds, and halts. No silo masked with it (a
        # client masks only with the silos whose shares it received), so it leaves the
        # round here; a silo dropping later is rebuilt from shares as SecAgg+ intends.
        completed = set(state.active_node_ids)
        state.sampled_node_ids = completed
        state.nid_to_neighbours = {
            nid: neighbours & completed
            for nid, neighbours in state.nid_to_neighbours.items()
            if nid in completed
        }
        return answered

    def collect_masked_vectors_stage(self, grid, context, state):  # type: ignore[no-untyped-def]
        return super().collect_masked_vectors_stage(
            CheckingGrid(grid, self.strategy, self.round, self.sink), context, state
        )


class MeteredGrid:
    """Pass-through grid counting the bytes of every message sent and received."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.sent = 0
        self.received = 0

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
        messages = list(messages)
        self.sent += sum(recorddict_to_proto(m.content).ByteSize() for m in messages)
        replies = list(self._grid.send_and_receive(messages, *args, **kwargs))
        self.received += sum(
            recorddict_to_proto(r.content).ByteSize() for r in replies if not r.has_error()
        )
        return replies


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
        secure = bool(cfg.get("secure-aggregation", True))
        strategy = DeltaFedAvg(
            initial,
            required,
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
        metered = MeteredGrid(grid)
        if secure:
            fit = GuardedSecAggPlus(
                strategy,
                out if record else None,
                num_shares=int(cfg["num-shares"]),
                reconstruction_threshold=int(cfg["reconstruction-threshold"]),
                max_weight=float(cfg["max-weight"]),
                clipping_range=float(cfg["clipping-range"]),
                timeout=float(cfg["timeout"]),
            )
            DefaultWorkflow(fit_workflow=fit)(metered, legacy)
        else:  # plain FedAvg: the benchmark's baseline; privgate's ClientApp refuses it
            DefaultWorkflow()(metered, legacy)
        if len(strategy.rounds) != int(cfg["rounds"]):
            raise FederationFaultError(
                f"{len(strategy.rounds)} of {int(cfg['rounds'])} rounds completed"
            )
        np.savez(out / "global.npz", *strategy.current)
        summary = {
            "rounds": strategy.rounds,
            "seconds": time.perf_counter() - started,
            "secure_aggregation": secure,
            "bytes_sent": metered.sent,
            "bytes_received": metered.received,
        }
        (out / "summary.json").write_text(json.dumps(summary))
    except Exception as error:
        kind = type(error).__name__
        message = str(error) if isinstance(error, FederationFaultError) else kind
        (out / "error.json").write_text(json.dumps({"error": kind, "message": message}))
        traceback.print_exc()
        raise
