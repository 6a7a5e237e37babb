"""Deployed silos: what crosses between the coordinator and a silo's own work pool.

A silo whose plan entry names a deployment (`federated-silo/<name>`, the
`federated-silo` flow served by a worker on the silo's machine) runs every step there:
`propose` (its k-anonymity levels), `prepare` (the data stages at the shared levels),
`reserve` (its ledger entry, in its own state home), `serve` (its SuperNode, dialing the
coordinator's SuperLink until the run ends) and `audit` (the central audit of the global
model on its own rows). The coordinator sends settings, levels and the global weights,
and reads back each step's flow-run result: aggregates only (what `SiloEvidence` and
`SiloAudit` hold), never a row. Results are JSON in Prefect's result storage, which a
real deployment shares between hosts (infra/README.md). Starting and awaiting the
steps is the orchestration layer's (`tasks/federated.py`); this module holds what both
sides agree on: the steps, the error, the weights' encoding.
"""

from __future__ import annotations

import base64
import io
from typing import Literal

import numpy as np

from privgate.errors import PrivgateError

Step = Literal["propose", "prepare", "reserve", "serve", "audit"]


class SiloStepError(PrivgateError):
    """A deployed silo's step did not complete (it names the silo, the step and the state)."""


def encode_weights(weights: list[np.ndarray]) -> str:
    """Return the weights as base64 of an .npz (a flow parameter is JSON)."""
    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_weights(text: str) -> list[np.ndarray]:
    with np.load(io.BytesIO(base64.b64decode(text.encode("ascii")))) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]
