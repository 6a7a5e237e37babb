"""The ClientApp: one silo's local DP-SGD round, its update masked by SecAgg+.

`secaggplus_mod` wraps the client: the update leaves the silo only as a masked,
quantized vector (pairwise masks agreed with the other silos, a private mask whose
Shamir shares they hold), so the coordinator can recover the sum of the silos' updates
and nothing else. The silo's folder (`silo-dir` in the SuperNode's node config) holds
its rows; nothing from it is logged. The client answers only SecAgg+ rounds: the mod
refuses a train message that does not carry SecAgg+'s stage, so a coordinator cannot
ask for a plain update.

DP training (torch, Opacus) is imported when a round trains, not when the app loads:
Flower starts a ClientApp process per message, and three of SecAgg+'s four stages per
round are key exchange.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, Message

from privgate.federated.files import NODE_FILE


class SiloClient(NumPyClient):
    """Train from the global weights; return the update (weights after - before)."""

    def __init__(self, folder: Path, record_updates: bool, clipping_range: float) -> None:
        self.folder = folder
        self.record_updates = record_updates
        self.clipping_range = clipping_range

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        from privgate.federated.local import local_round

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


def note_node_id(msg: Message, context: Context, call_next):  # type: ignore[no-untyped-def]
    """Keep the silo's node ID in its folder, from its first message on.

    The coordinator reports silos by node ID (dropped, or excluded for a malformed
    vector); this note is how the flow names them.
    """
    node_file = Path(str(context.node_config["silo-dir"])) / NODE_FILE
    note = json.dumps({"node_id": int(context.node_id)})
    if not node_file.exists() or node_file.read_text() != note:
        node_file.write_text(note)
    return call_next(msg, context)


app = ClientApp(client_fn=client_fn, mods=[note_node_id, secaggplus_mod])
