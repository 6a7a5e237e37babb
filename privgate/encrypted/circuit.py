"""The model as a CKKS circuit: records in the slots, features across ciphertexts.

Layout (SIMD batching): a batch of up to N/2 = 4,096 encoded records is a tensor of
`d` ciphertexts, ciphertext j holding feature j of every record, one record per slot.
The first layer's matrix product is then, per output, `sum_j x_j * W[j]`: plaintext
scalar multiplies and ciphertext additions, slot-wise, for all records at once. It
needs no rotation, so no Galois keys (which would be tens of MB per client), and the
cost per batch does not depend on how many records it holds.

`mlp_poly` (Linear, c0 + c1 z + c2 z^2, Linear) is folded so that it costs depth 2
instead of 3. With z_h = x.W1_h + b1_h and output weights w2:

    logit = kappa + x.u + sum_h s_h (alpha_h z_h)^2
    alpha_h = sqrt(c2 |w2_h|), s_h = sign(w2_h), u = c1 W1 w2,
    kappa = b2 + c0 sum(w2) + c1 b1.w2

so each hidden unit is one multiply (alpha folded into its weights) and one square,
and its sign is an addition or a subtraction, which costs no level.
The logit is returned encrypted; the client applies the sigmoid after decrypting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from privgate.dp.activations import QuadraticActivation
from privgate.encrypted.params import HEParameters, NotHEReadyError


@dataclass(frozen=True)
class Circuit:
    """The folded plaintext weights of an HE-ready network (float64)."""

    input_width: int
    linear: np.ndarray  # (d,): the logit's linear part
    constant: float
    squares: np.ndarray  # (d, h): alpha-scaled first-layer columns, h = 0 for logistic
    square_bias: np.ndarray  # (h,)
    signs: np.ndarray  # (h,): +1 or -1

    @classmethod
    def from_network(cls, network: nn.Module) -> Circuit:
        """Fold a trained logistic or mlp_poly network.

        Raises:
            NotHEReadyError: for any other architecture (naming the layer).
        """
        layers = list(network) if isinstance(network, nn.Sequential) else [network]
        kinds = [type(layer).__name__ for layer in layers]
        if len(layers) == 1 and isinstance(layers[0], nn.Linear):
            weight, bias = _linear(layers[0])
            return cls(
                input_width=weight.shape[1],
                linear=weight[0],
                constant=float(bias[0]),
                squares=np.zeros((weight.shape[1], 0)),
                square_bias=np.zeros(0),
                signs=np.zeros(0),
            )
        if (
            len(layers) == 3
            and isinstance(layers[0], nn.Linear)
            and isinstance(layers[1], QuadraticActivation)
            and isinstance(layers[2], nn.Linear)
        ):
            c0, c1, c2 = QuadraticActivation.coefficients
            w1, b1 = _linear(layers[0])  # (h, d), (h,)
            w2, b2 = _linear(layers[2])  # (1, h), (1,)
            w2 = w2[0]
            keep = w2 != 0.0  # a unit with no output weight adds only its linear part
            alpha = np.sqrt(c2 * np.abs(w2[keep]))
            return cls(
                input_width=w1.shape[1],
                linear=c1 * (w1.T @ w2),
                constant=float(b2[0] + c0 * w2.sum() + c1 * (b1 @ w2)),
                squares=(w1[keep] * alpha[:, None]).T,
                square_bias=b1[keep] * alpha,
                signs=np.sign(w2[keep]),
            )
        raise NotHEReadyError(
            f"a {' -> '.join(kinds)} network has no encrypted circuit; HE-ready models are "
            "logistic and mlp_poly (training.model)"
        )

    @property
    def hidden_units(self) -> int:
        """Return the squared units (0 for logistic)."""
        return len(self.signs)

    def plain_logits(self, x: np.ndarray) -> np.ndarray:
        """Return the folded circuit's logits on plaintext rows (the reference, float64)."""
        x = np.asarray(x, dtype=np.float64)
        z = x @ self.squares + self.square_bias
        return self.constant + x @ self.linear + (z * z) @ self.signs

    def evaluate(self, x: Any) -> Any:
        """Return the encrypted logits of a batched CKKS tensor of shape [1, d]: [1, 1]."""
        import tenseal as ts

        out = x.mm(ts.plain_tensor(self.linear[:, None].tolist(), [self.input_width, 1]))
        out = out.add(self.constant)
        for h in range(self.hidden_units):
            column = self.squares[:, h : h + 1].tolist()
            z = x.mm(ts.plain_tensor(column, [self.input_width, 1])).add(float(self.square_bias[h]))
            z.square_()
            out = out.add(z) if self.signs[h] > 0 else out.sub(z)
        return out


def _linear(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    weight = layer.weight.detach().double().numpy()
    bias = (
        layer.bias.detach().double().numpy()
        if layer.bias is not None
        else np.zeros(weight.shape[0])
    )
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise NotHEReadyError("the network has non-finite weights")
    return weight, bias


def encrypt_batches(context: Any, x: np.ndarray, params: HEParameters) -> list[bytes]:
    """Encrypt encoded rows (n, d) into serialized [1, d] tensors of <= `slots` records."""
    import tenseal as ts

    x = np.asarray(x, dtype=np.float64)
    batches = []
    for start in range(0, len(x), params.slots):
        chunk = x[start : start + params.slots]
        tensor = ts.ckks_tensor(context, ts.plain_tensor(chunk), batch=True)
        batches.append(tensor.reshape([1, x.shape[1]]).serialize())
    return batches


def decrypt_logits(context: Any, payload: bytes, records: int) -> np.ndarray:
    """Decrypt one result tensor ([1, 1], batched) into `records` logits."""
    import tenseal as ts

    values = np.asarray(ts.ckks_tensor_from(context, payload).decrypt().tolist(), dtype=float)
    return values.reshape(-1)[:records]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Return 1 / (1 + e^-x), stable for large |x|."""
    out = np.empty_like(logits, dtype=np.float64)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp = np.exp(logits[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def agreement(encrypted: np.ndarray, plain: np.ndarray) -> dict[str, float]:
    """Return max |p_enc - p_plain| and the share of equal predicted classes."""
    if len(encrypted) == 0:
        return {"max_abs_probability_difference": math.nan, "class_agreement": math.nan}
    return {
        "max_abs_probability_difference": float(np.max(np.abs(encrypted - plain))),
        "class_agreement": float(np.mean((encrypted >= 0.5) == (plain >= 0.5))),
    }
