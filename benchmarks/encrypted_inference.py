"""What does encrypted scoring cost? CKKS inference vs plaintext, full Adult test file.

The demo's table, anonymized and encoded as the pipeline does (`_adult.prepare`). Each
HE-ready model is trained with DP-SGD (the demo's epsilon), then served by privgate's
encrypted-scoring app (uvicorn on loopback, in a thread of this process) and scored by
its HTTP client (`privgate.encrypted.EncryptedScorer`), against plaintext scoring of the
same network in the same process:

- latency of 1 record and of 1,000 records (median of --repeats, context upload
  excluded: it is sent once per client), and records/s;
- the whole test file (16,281 records, 4 batches of up to 4,096), with the agreement:
  max |p_encrypted - p_plain| and the share of identical predicted classes;
- bytes on the wire per record, and the one-time context;
- for 1,000 records, where the time goes: encryption, server evaluation, decryption.

Targets (issue 20): identical class >= 99.9%, max probability difference <= 1e-3, 1,000
records in <= 10 s on 2 cores.

    python benchmarks/encrypted_inference.py [--rows N] [--repeats 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adult import prepare

MODELS = (("logistic", 1), ("mlp_poly", 16), ("mlp_poly", 64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="demo training rows (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measure")
    args = parser.parse_args()

    config, data, _, prepare_s = prepare(args.rows)
    x, y = data.members
    x_test, y_test = data.test
    print(
        f"rows_train={len(x)} rows_test={len(x_test)} features={x.shape[1]} "
        f"prepare_s={prepare_s:.1f}"
    )
    rows = []
    for model, hidden in MODELS:
        rows.append(bench_model(config, x, y, x_test, y_test, model, hidden, args.repeats))
    print()
    print(
        "| model | hidden | accuracy | 1 rec s | 1,000 rec s | rec/s (1,000) | full file s "
        "| rec/s (full) | plain 1,000 s | ratio (1,000) | bytes/rec (1) | bytes/rec (1,000) "
        "| bytes/rec (full) | context bytes | max abs dp | same class |"
    )
    print("|" + "---|" * 16)
    for r in rows:
        print(
            f"| {r['model']} | {r['hidden']} | {r['accuracy']:.4f} | {r['one_s']:.3f} "
            f"| {r['thousand_s']:.3f} | {1000 / r['thousand_s']:.0f} | {r['full_s']:.2f} "
            f"| {r['full_records'] / r['full_s']:.0f} | {r['plain_thousand_s']:.5f} "
            f"| {r['thousand_s'] / r['plain_thousand_s']:.0f}x | {r['bytes_one']:,} "
            f"| {r['bytes_thousand'] / 1000:,.0f} | {r['bytes_full'] / r['full_records']:,.0f} "
            f"| {r['context_bytes']:,} | {r['max_abs']:.2e} | {r['same_class']:.4%} |"
        )
    for r in rows:
        verdict = (
            "ok"
            if r["same_class"] >= 0.999 and r["max_abs"] <= 1e-3 and r["thousand_s"] <= 10
            else "MISSED"
        )
        print(
            f"{r['model']}/{r['hidden']}: 1,000 records encrypt_s={r['encrypt_s']:.3f} "
            f"server_eval_s={r['eval_s']:.3f} decrypt_s={r['decrypt_s']:.3f}; targets {verdict}"
        )


def bench_model(config, x, y, x_test, y_test, model: str, hidden: int, repeats: int) -> dict:
    import tenseal as ts
    import uvicorn

    from privgate.dp.training import accuracy, predict_proba, train_model
    from privgate.encrypted import EncryptedScorer
    from privgate.encrypted.circuit import Circuit, decrypt_logits, encrypt_batches
    from privgate.encrypted.params import (
        load_public_context,
        new_secret_context,
        parameters_for,
        parms_id,
        public_context_bytes,
    )
    from privgate.encrypted.server import ServedModel, create_app

    training = config.training.model_copy(update={"model": model, "hidden_units": hidden})
    trained = train_model(x, y, training=training)
    network = trained.network.eval()
    params = parameters_for(model)
    served = ServedModel(
        name="bench", version="1", run_id="bench", epsilon=trained.dp.epsilon_spent,
        delta=trained.dp.delta, model=model, feature_spec={}, circuit=Circuit.from_network(network),
        params=params, evidence={"ready": True},
    )  # fmt: skip
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        scorer = EncryptedScorer(f"http://127.0.0.1:{port}")
        scorer.score_encoded(x_test[:1].astype(np.float64))  # uploads the context once
        context_bytes = scorer.context_bytes
        one = _timed(lambda: scorer.score_encoded(x_test[:1].astype(np.float64)), repeats)
        before = scorer.bytes_sent
        scorer.score_encoded(x_test[:1].astype(np.float64))
        bytes_one = scorer.bytes_sent - before
        thousand = _timed(lambda: scorer.score_encoded(x_test[:1000].astype(np.float64)), repeats)
        before = scorer.bytes_sent
        scorer.score_encoded(x_test[:1000].astype(np.float64))
        bytes_thousand = scorer.bytes_sent - before
        before = scorer.bytes_sent
        started = time.perf_counter()
        encrypted = scorer.score_encoded(x_test.astype(np.float64))
        full_s = time.perf_counter() - started
        bytes_full = scorer.bytes_sent - before
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    plain = predict_proba(network, x_test).astype(np.float64)
    plain_thousand = _timed(lambda: predict_proba(network, x_test[:1000]), repeats)

    # Where the time goes for 1,000 records, in process (no HTTP).
    client = new_secret_context(params)
    public = load_public_context(public_context_bytes(client, params), params, parms_id(client))
    started = time.perf_counter()
    (payload,) = encrypt_batches(client, x_test[:1000].astype(np.float64), params)
    encrypt_s = time.perf_counter() - started
    started = time.perf_counter()
    result = served.circuit.evaluate(ts.ckks_tensor_from(public, payload)).serialize()
    eval_s = time.perf_counter() - started
    started = time.perf_counter()
    decrypt_logits(client, result, 1000)
    decrypt_s = time.perf_counter() - started

    return {
        "model": model,
        "hidden": hidden if model != "logistic" else 0,
        "accuracy": accuracy(network, x_test, y_test),
        "one_s": one,
        "thousand_s": thousand,
        "full_s": full_s,
        "full_records": len(x_test),
        "plain_thousand_s": plain_thousand,
        "bytes_one": bytes_one,
        "bytes_thousand": bytes_thousand,
        "bytes_full": bytes_full,
        "context_bytes": context_bytes,
        "max_abs": float(np.max(np.abs(encrypted - plain))),
        "same_class": float(np.mean((encrypted >= 0.5) == (plain >= 0.5))),
        "encrypt_s": encrypt_s,
        "eval_s": eval_s,
        "decrypt_s": decrypt_s,
    }


def _timed(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
