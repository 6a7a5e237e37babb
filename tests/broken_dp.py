"""Deliberately broken DP implementations, planted in the production classes.

The audit must catch a DP-SGD that does not deliver its claim; these are the breaches
the tests and `benchmarks/audit_power.py` plant, each by patching the one production
function it breaks (never a copy of the training loop):

- `noise_off`: the DP optimizer adds no noise (the accountant still claims epsilon);
- `half_noise`: it adds noise of half the calibrated standard deviation;
- `unclipped_layer`: the book-keeping clipper sums the first Linear layer's per-row
  gradients unclipped (the norm, and every other layer, as before).

`python -m tests.broken_dp BUG ARGS...` runs `privgate ARGS...` with BUG planted.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

import privgate.dp.optimizer
from privgate.dp.clipping import BookKeepingClipper

_ORIGINAL_NOISE = privgate.dp.optimizer._generate_noise
_ORIGINAL_CLIP = BookKeepingClipper._clip_and_add


def _no_noise(std: float, reference: torch.Tensor, **_: Any) -> torch.Tensor:
    return torch.zeros_like(reference)


def _half_noise(std: float, reference: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return _ORIGINAL_NOISE(std=std / 2, reference=reference, **kwargs)


def _unclipped_first_layer(
    self: BookKeepingClipper, inputs: list[torch.Tensor], output_grads: list[torch.Tensor]
) -> None:
    norms = self._norms(inputs, output_grads)
    clip = (self.max_grad_norm / (norms + 1e-6)).clamp_(max=1.0).unsqueeze(1)
    views = iter(self.views)
    for index, (layer, a, g) in enumerate(zip(self.linears, inputs, output_grads, strict=True)):
        weighted = g if index == 0 else g * clip
        next(views).addmm_(weighted.T, a)
        if layer.bias is not None:
            next(views).add_(weighted.sum(0))


# bug -> (object, attribute, replacement)
BUGS: dict[str, tuple[Any, str, Callable[..., Any]]] = {
    "noise_off": (privgate.dp.optimizer, "_generate_noise", _no_noise),
    "half_noise": (privgate.dp.optimizer, "_generate_noise", _half_noise),
    "unclipped_layer": (BookKeepingClipper, "_clip_and_add", _unclipped_first_layer),
}


def install(bug: str) -> None:
    """Plant `bug` for the rest of this process."""
    if bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}; choose one of {sorted(BUGS)}")
    target, name, replacement = BUGS[bug]
    setattr(target, name, replacement)


@contextlib.contextmanager
def planted(bug: str | None) -> Iterator[None]:
    """Plant `bug` (None: nothing) for the duration of the block."""
    if bug is None:
        yield
        return
    target, name, _ = BUGS[bug]
    original = getattr(target, name)
    install(bug)
    try:
        yield
    finally:
        setattr(target, name, original)


if __name__ == "__main__":
    install(sys.argv[1])
    from privgate.cli import main

    sys.exit(main(sys.argv[2:]))
