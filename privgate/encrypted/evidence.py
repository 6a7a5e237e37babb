"""Encrypted-vs-plain agreement, measured on the test table before a version is registered.

The figures go into the model's spec (`model_spec.json`, inside the model directory the
attestation's digests cover), so they are signed with the model; `privgate encrypted
serve` refuses a version whose signed figures miss the targets or are absent.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch import nn

from privgate.encrypted.circuit import (
    Circuit,
    agreement,
    decrypt_logits,
    encrypt_batches,
    sigmoid,
)
from privgate.encrypted.params import (
    HE_READY_MODELS,
    load_public_context,
    new_secret_context,
    parameters_for,
    parms_id,
    public_context_bytes,
)

# Encrypted scoring must give the plaintext model's answer: the same class for >= 99.9%
# of records and probabilities within 1e-3.
MAX_PROBABILITY_DIFFERENCE = 1e-3
MIN_CLASS_AGREEMENT = 0.999


def measure_agreement(network: nn.Module, model: str, x: np.ndarray) -> dict[str, Any] | None:
    """Score up to one batch (4,096) of encoded rows encrypted and in plaintext; compare.

    Runs the server's path (a public context loaded with the server's checks, the
    circuit) and the client's (keys, encryption, decryption) in this process.
    Returns None for a model family that is not HE-ready.
    """
    from privgate.dp.training import predict_proba

    if model not in HE_READY_MODELS:
        return None
    started = time.perf_counter()
    params = parameters_for(model)
    rows = np.asarray(x[: params.slots], dtype=np.float32)
    client = new_secret_context(params)
    server = load_public_context(public_context_bytes(client, params), params, parms_id(client))
    circuit = Circuit.from_network(network)
    import tenseal as ts

    encrypted = np.zeros(0)
    for payload in encrypt_batches(client, rows, params):  # one batch, none when empty
        result = circuit.evaluate(ts.ckks_tensor_from(server, payload)).serialize()
        encrypted = sigmoid(decrypt_logits(client, result, len(rows)))
    figures = agreement(encrypted, predict_proba(network, rows).astype(np.float64))
    ready = bool(
        figures["max_abs_probability_difference"] <= MAX_PROBABILITY_DIFFERENCE
        and figures["class_agreement"] >= MIN_CLASS_AGREEMENT
    )
    return {
        "ready": ready,
        "records": len(rows),
        **figures,
        "targets": {
            "max_abs_probability_difference": MAX_PROBABILITY_DIFFERENCE,
            "class_agreement": MIN_CLASS_AGREEMENT,
        },
        "parameters": params.to_dict(),
        "seconds": round(time.perf_counter() - started, 3),
    }
