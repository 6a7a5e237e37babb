"""The polynomial activation of `training.model: mlp_poly`, the network HE can evaluate.

Homomorphic encryption (CKKS) adds and multiplies; it has no max, no exp. A ReLU network
cannot be evaluated on ciphertexts without approximating ReLU by a high-degree
polynomial, which costs depth, time and precision. `mlp_poly` is trained with a degree-2
activation from the start, so the encrypted circuit computes exactly what the trained
network computes (`privgate.encrypted.circuit`).

The polynomial is the second-order Taylor expansion of softplus at 0,
softplus(z) = log(1 + e^z) ~ log 2 + z/2 + z^2/8: smooth, increasing near 0 and
convex, like a smoothed ReLU. Its coefficients are fixed, not learned, so the layer has
no parameters and keeps per-sample gradients separable (DP-SGD's clipping treats it
as any row-wise activation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# (c0, c1, c2): c0 + c1 z + c2 z^2.
SOFTPLUS_QUADRATIC: tuple[float, float, float] = (math.log(2.0), 0.5, 0.125)


def quadratic(z: torch.Tensor) -> torch.Tensor:
    """Return c0 + c1 z + c2 z^2, elementwise."""
    c0, c1, c2 = SOFTPLUS_QUADRATIC
    return c0 + z * (c1 + c2 * z)


class QuadraticActivation(nn.Module):
    """softplus's degree-2 Taylor polynomial; no parameters."""

    coefficients = SOFTPLUS_QUADRATIC

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Apply the polynomial elementwise."""
        return quadratic(z)
