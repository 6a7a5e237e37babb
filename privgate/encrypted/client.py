"""The client: encode and encrypt records here, send ciphertexts, decrypt the scores here.

The secret key is generated in this process and never serialized; the server gets the
public context (parameters and, for mlp_poly, relinearization keys) once, then one
tensor of `d` ciphertexts per batch of up to 4,096 records. The client refuses CKKS
parameters other than privgate's (`parameters_from_dict`), and checks the structure of
the server's answers before TenSEAL parses them, as the server does for requests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from privgate.encrypted.circuit import decrypt_logits, encrypt_batches, sigmoid
from privgate.encrypted.params import (
    CONTEXT_HEADER,
    PayloadError,
    new_secret_context,
    parameters_from_dict,
    public_context_bytes,
)
from privgate.encrypted.wire import TensorLayout, check_tensor
from privgate.errors import ConfigError, PrivgateError


class EncryptedScoringError(PrivgateError):
    """Raised when the server refuses a request or answers something malformed."""


class EncryptedScorer:
    """Score records with a privgate encrypted-scoring server, keys kept here.

    Args:
        url: the server's base URL, e.g. http://127.0.0.1:8765.
        http: an httpx-compatible client to use instead (tests pass FastAPI's TestClient).
        timeout: seconds per request.
    """

    def __init__(self, url: str = "", *, http: Any = None, timeout: float = 300.0) -> None:
        import httpx

        self._http = http or httpx.Client(base_url=url, timeout=timeout)
        self._model: dict[str, Any] | None = None
        self._context: Any = None
        self._context_id: str | None = None
        self._public: bytes | None = None
        self._uploaded = False
        self.bytes_sent = 0
        self.bytes_received = 0

    def model(self) -> dict[str, Any]:
        """Return the served model's description (identity, epsilon, encoding, parameters)."""
        if self._model is None:
            answer = self._json(self._http.get("/v1/model"))
            if not isinstance(answer, dict) or not {"he", "input_width", "feature_spec"} <= set(
                answer
            ):
                raise EncryptedScoringError("the server's model description is malformed")
            self._model = answer
        return self._model

    @property
    def context_bytes(self) -> int:
        """Return the size of the public context sent once per client (0 before any)."""
        return len(self._public or b"")

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return `probability` and `prediction` for each row of raw records `frame`.

        Raises:
            ConfigError: naming feature columns missing from `frame`.
            EncryptedScoringError: when the server refuses.
        """
        from privgate.data.features import encode

        x = encode(frame, self.model()["feature_spec"], generalized=False)
        probability = self.score_encoded(x)
        return pd.DataFrame(
            {"probability": probability, "prediction": (probability >= 0.5).astype(int)},
            index=frame.index,
        )

    def score_encoded(self, x: np.ndarray) -> np.ndarray:
        """Return P(positive) for encoded rows (n, d), computed on ciphertexts."""
        info = self.model()
        params = parameters_from_dict(info["he"])
        if x.ndim != 2 or x.shape[1] != info["input_width"]:
            raise ConfigError(
                f"the encoded records have {x.shape[-1]} features; the model takes "
                f"{info['input_width']}"
            )
        if self._context is None:
            self._context = new_secret_context(params)
            self._public = public_context_bytes(self._context, params)
            self._context_id = hashlib.sha256(self._public).hexdigest()
        layout = TensorLayout(
            shape=(1, 1),
            scale=2.0**params.scale_bits,
            max_batch=params.slots,
            max_ciphertext_bytes=params.ciphertext_bytes_bound(),
        )
        logits = []
        for start, payload in zip(
            range(0, len(x), params.slots), encrypt_batches(self._context, x, params), strict=True
        ):
            records = min(params.slots, len(x) - start)
            answer = self._score_batch(payload)
            try:
                check_tensor(answer, layout)
            except PayloadError:
                raise EncryptedScoringError("the server's answer is not a CKKS result") from None
            try:
                logits.append(decrypt_logits(self._context, answer, records))
            except (ValueError, RuntimeError, TypeError, MemoryError):
                raise EncryptedScoringError("the server's answer does not decrypt") from None
        return sigmoid(np.concatenate(logits)) if logits else np.zeros(0)

    def _score_batch(self, payload: bytes) -> bytes:
        if not self._uploaded:
            self._upload_context()
        for attempt in range(2):
            response = self._http.post(
                "/v1/score", content=payload, headers={CONTEXT_HEADER: self._context_id or ""}
            )
            if response.status_code == 404 and attempt == 0:  # the server dropped the context
                self._upload_context()
                continue
            self.bytes_sent += len(payload)
            self._check(response)
            self.bytes_received += len(response.content)
            return response.content
        raise EncryptedScoringError("the server does not keep this client's context")

    def _upload_context(self) -> None:
        assert self._public is not None
        answer = self._json(self._http.post("/v1/contexts", content=self._public))
        self.bytes_sent += len(self._public)
        if not isinstance(answer, dict) or answer.get("context_id") != self._context_id:
            raise EncryptedScoringError("the server answered another context id")
        self._uploaded = True

    def _json(self, response: Any) -> Any:
        self._check(response)
        try:
            return response.json()
        except ValueError:
            raise EncryptedScoringError("the server's answer is not JSON") from None

    @staticmethod
    def _check(response: Any) -> None:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", "")
            except ValueError:
                detail = ""
            raise EncryptedScoringError(
                f"the encrypted-scoring server answered {response.status_code}: {detail}"
            )


def score_file(url: str, in_path: Path, out_path: Path | None = None) -> pd.DataFrame:
    """Score a table of raw records (CSV, CSV.GZ, Parquet) encrypted; write a CSV if asked.

    The CSV holds `row, probability, prediction`: no column of the input.

    Raises:
        ConfigError: naming the file and the feature columns it lacks.
    """
    from privgate.data.ingest import read_table

    scorer = EncryptedScorer(url)
    names = [f["name"] for f in scorer.model()["feature_spec"]["features"]]
    frame = read_table(in_path, known_columns=names)
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ConfigError(f"{in_path}: feature columns {missing} are missing")
    scores = scorer.score(frame)
    if out_path is not None:
        scores.rename_axis("row").to_csv(out_path)
    return scores
