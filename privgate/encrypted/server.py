"""The encrypted-scoring service: an approved model scores ciphertexts it cannot read.

`privgate encrypted serve NAME` loads `NAME@champion` through the registry consumer's
checks (approved, signed, every artifact's digest) and refuses a version whose signed
spec does not record a passing encrypted-vs-plain agreement at promotion. The server
holds the model's weights and clients' *public* contexts only: a context carrying a
secret key is refused and dropped, and no endpoint takes a plaintext record.

    GET  /v1/model      the model's identity, epsilon, public feature encoding, CKKS
                        parameters, and the agreement measured at promotion
    POST /v1/contexts   a client's public context (body); answers its id (SHA-256)
    POST /v1/score      a batched [1, d] CKKS tensor (body), header X-Privgate-Context;
                        answers the encrypted logits, a [1, 1] tensor
    GET  /healthz

Every payload is size-capped while it is read and structurally checked
(`privgate.encrypted.wire`) before TenSEAL parses it; a refusal is a 4xx whose detail
names what was wrong, never the bytes. Logs carry counts and ids only.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from privgate.encrypted.circuit import Circuit
from privgate.encrypted.params import (
    CONTEXT_HEADER,
    HEParameters,
    PayloadError,
    load_public_context,
    new_secret_context,
    parameters_for,
    parms_id,
)
from privgate.encrypted.wire import TensorLayout, check_tensor

log = logging.getLogger("privgate.encrypted")

MAX_CONTEXT_BYTES = 8 * 1024 * 1024  # a mlp_poly public context is about 1.9 MB
MAX_CONTEXTS = 16  # clients' contexts kept, least recently used dropped first
MAX_CONCURRENT_SCORES = 2  # one per core: a batch takes a core for a second or more


@dataclass(frozen=True)
class ServedModel:
    """A verified, approved, HE-ready model version, ready to evaluate."""

    name: str
    version: str
    run_id: str
    epsilon: float
    delta: float
    model: str
    feature_spec: dict[str, Any]
    circuit: Circuit
    params: HEParameters
    evidence: dict[str, Any]  # the agreement measured at promotion (signed with the spec)

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, *, name: str, version: str, run_id: str, epsilon: float, delta: float
    ) -> ServedModel:
        """Build from a verified model copy (the registry consumer's `local_path`).

        Raises:
            RefusedError: when the signed spec records no passing encrypted agreement.
        """
        import torch

        from privgate.dp.training import build_network
        from privgate.registry.consumer import RefusedError

        spec = json.loads((model_dir / "artifacts" / "model_spec.json").read_text())
        evidence = spec.get("encrypted_inference")
        what = f"{name} version {version}"
        if not evidence:
            raise RefusedError(
                f"{what} ({spec.get('model')}) was not checked for encrypted inference at "
                "promotion; train an HE-ready model (training.model: logistic or mlp_poly)"
            )
        if not evidence.get("ready"):
            raise RefusedError(
                f"{what}: its encrypted scoring did not match plaintext scoring at promotion "
                f"(max probability difference {evidence.get('max_abs_probability_difference')}, "
                f"class agreement {evidence.get('class_agreement')})"
            )
        network = build_network(
            model=spec["model"], input_width=spec["input_width"], hidden_units=spec["hidden_units"]
        )
        state = torch.load(model_dir / "artifacts" / "weights.pt", weights_only=True)
        network.load_state_dict(state)
        return cls(
            name=name,
            version=version,
            run_id=run_id,
            epsilon=epsilon,
            delta=delta,
            model=spec["model"],
            feature_spec=spec["feature_spec"],
            circuit=Circuit.from_network(network),
            params=parameters_for(spec["model"]),
            evidence=evidence,
        )

    def describe(self) -> dict[str, Any]:
        """Return what `GET /v1/model` answers (public: no weights, no record)."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "model": self.model,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "input_width": self.circuit.input_width,
            "feature_spec": self.feature_spec,
            "he": self.params.to_dict(),
            "agreement_at_promotion": self.evidence,
        }


def load_served_model(
    name: str, *, alias: str = "champion", max_epsilon: float | None = None
) -> ServedModel:
    """Verify `name@alias` with the consumer's checks and load it for encrypted scoring.

    Raises:
        RefusedError: for a version that is not approved, signed, untampered and HE-ready.
    """
    from privgate.registry.consumer import verify_version

    with tempfile.TemporaryDirectory(prefix="privgate-encrypted-") as tmp:
        verified = verify_version(name, alias=alias, max_epsilon=max_epsilon, download_to=Path(tmp))
        return ServedModel.from_model_dir(
            verified.local_path,
            name=name,
            version=verified.version,
            run_id=verified.run_id,
            epsilon=verified.attestation.epsilon,
            delta=verified.attestation.delta,
        )


class ContextStore:
    """Clients' public contexts by the SHA-256 of their bytes, least recently used out."""

    def __init__(self, params: HEParameters, capacity: int = MAX_CONTEXTS) -> None:
        self.params = params
        self.capacity = capacity
        # The parameters' exact primes, from a reference context made here.
        self.expected_parms_id = parms_id(new_secret_context(params))
        self._contexts: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, data: bytes) -> str:
        """Load and keep a public context; return its id (raises PayloadError)."""
        context_id = hashlib.sha256(data).hexdigest()
        with self._lock:
            if context_id in self._contexts:
                self._contexts.move_to_end(context_id)
                return context_id
        context = load_public_context(data, self.params, self.expected_parms_id)
        with self._lock:
            self._contexts[context_id] = context
            while len(self._contexts) > self.capacity:
                self._contexts.popitem(last=False)
        return context_id

    def get(self, context_id: str) -> Any:
        """Return a kept context (raises PayloadError 404 when unknown or dropped)."""
        with self._lock:
            context = self._contexts.get(context_id)
            if context is None:
                raise PayloadError(404, "unknown context id: upload the context first")
            self._contexts.move_to_end(context_id)
            return context

    def contexts(self) -> list[Any]:
        """Return the kept contexts (for the tests' check that none is private)."""
        with self._lock:
            return list(self._contexts.values())


async def _read_capped(request: Request, cap: int, what: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise PayloadError(400, "the Content-Length header is not a number") from None
        if declared_bytes > cap:
            raise PayloadError(413, f"the {what} exceeds {cap} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise PayloadError(413, f"the {what} exceeds {cap} bytes")
        chunks.append(chunk)
    if not total:
        raise PayloadError(400, f"the {what} is empty")
    return b"".join(chunks)


def create_app(served: ServedModel, *, max_contexts: int = MAX_CONTEXTS) -> FastAPI:
    """Return the FastAPI application serving `served`."""
    app = FastAPI(title="privgate encrypted scoring", docs_url=None, redoc_url=None)
    store = ContextStore(served.params, max_contexts)
    app.state.contexts = store
    app.state.served = served
    width = served.circuit.input_width
    layout = TensorLayout(
        shape=(1, width),
        scale=2.0**served.params.scale_bits,
        max_batch=served.params.slots,
        max_ciphertext_bytes=served.params.ciphertext_bytes_bound(),
    )
    max_score_bytes = width * (layout.max_ciphertext_bytes + 16) + 64 * 1024
    scoring = asyncio.Semaphore(MAX_CONCURRENT_SCORES)

    @app.exception_handler(PayloadError)
    async def refused(request: Request, exc: PayloadError) -> JSONResponse:
        log.info("refused %s %s: %s", request.method, request.url.path, exc.status)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer quotes the input; this one names the fields only.
        fields = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
        return JSONResponse({"detail": f"invalid request: {fields}"}, status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    def model() -> dict[str, Any]:
        return served.describe()

    @app.post("/v1/contexts", status_code=201)
    async def upload_context(request: Request) -> dict[str, str]:
        data = await _read_capped(request, MAX_CONTEXT_BYTES, "context")
        context_id = await run_in_threadpool(store.add, data)
        log.info("context %s kept", context_id[:12])
        return {"context_id": context_id}

    @app.post("/v1/score")
    async def score(request: Request) -> Response:
        context = store.get(request.headers.get(CONTEXT_HEADER, ""))
        data = await _read_capped(request, max_score_bytes, "ciphertext payload")
        records = check_tensor(data, layout)
        async with scoring:
            started = time.perf_counter()
            result = await run_in_threadpool(_evaluate, served.circuit, context, data)
        log.info("scored a batch of %d records in %.2f s", records, time.perf_counter() - started)
        return Response(result, media_type="application/octet-stream")

    return app


def _evaluate(circuit: Circuit, context: Any, data: bytes) -> bytes:
    import tenseal as ts

    try:
        tensor = ts.ckks_tensor_from(context, data)
    except (ValueError, RuntimeError, TypeError, MemoryError):
        raise PayloadError(
            422, "the ciphertexts were not made under this context's parameters"
        ) from None
    try:
        return circuit.evaluate(tensor).serialize()
    except (ValueError, RuntimeError, TypeError, MemoryError):
        raise PayloadError(
            422,
            "the ciphertexts could not be evaluated: encrypt fresh ciphertexts at the "
            "context's scale (privgate.encrypted's client does)",
        ) from None


def serve(served: ServedModel, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the service until interrupted (uvicorn; access log carries paths only)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(create_app(served), host=host, port=port, log_level="info")
