"""The ClientApp: one silo's local DP-SGD round, its update masked by SecAgg+.

`secaggplus_mod` wraps the client: the update leaves the silo only as a masked,
quantized vector (pairwise masks agreed with the other silos, a private mask whose
Shamir shares they hold), so the coordinator can recover the sum of the silos' updates
and nothing else. The silo's folder (`silo-dir` in the SuperNode's node config) holds
its rows; nothing from it is logged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context

from privgate.federated.local import local_round


class SiloClient(NumPyClient):
    """Train from the global weights; return the update (weights after - before)."""

    def __init__(self, folder: Path, record_updates: bool, clipping_range: float) -> None:
        self.folder = folder
        self.record_updates = record_updates
        self.clipping_range = clipping_range

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        round_ = int(config["server-round"]) if config and "server-round" in config else None
        update, n = local_round(
            self.folder,
            [np.asarray(p) for p in parameters],
            server_round=round_,
            clipping_range=self.clipping_range,
        )
        if self.record_updates:  # the silo's own copy, for the coordinator-view audit
            np.savez(self.folder / f"update-{round_}.npz", *update)
        return update, n, {}


def client_fn(context: Context):  # type: ignore[no-untyped-def]
    folder = Path(str(context.node_config["silo-dir"]))
    record = bool(context.run_config.get("record-updates", False))
    clipping = float(context.run_config.get("clipping-range", 8.0))
    return SiloClient(folder, record, clipping).to_client()


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
