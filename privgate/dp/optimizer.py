"""Opacus's DP optimizer over a book-keeping clipper's flat gradient buffer.

`DPOptimizerFastGradientClipping` expects `p.grad` to hold the clipped sum already (as
ghost clipping leaves it) and adds noise per parameter, copying each gradient first.
Here the clipper wrote the sum into one flat buffer, so the noise is one Opacus
`_generate_noise` draw over that buffer (same distribution: i.i.d. N(0, (sigma C)^2) per
coordinate, secure_mode honored) and scaling one division. Skip signalling, the step
hook that feeds the accountant, and the wrapped optimizer's step are Opacus's own.
Imported lazily: Opacus takes seconds to import.
"""

from __future__ import annotations

from typing import Any

from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.optimizers.optimizer import _generate_noise

from privgate.dp.clipping import BookKeepingClipper


class BookKeepingDPOptimizer(DPOptimizerFastGradientClipping):
    """Noise and scale the clipper's flat clipped-gradient sum, then step."""

    def __init__(self, optimizer: Any, *, clipper: BookKeepingClipper, **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        self.clipper = clipper

    def accumulate(self) -> None:
        """Do nothing: the clipper's buffer already holds the batch's clipped sum."""

    def add_noise(self) -> None:
        """Add N(0, (sigma C)^2) to every coordinate of the clipped sum, once.

        Raises:
            RuntimeError: when no fresh clipped sum was written since the last noise.
        """
        if not self.clipper.fresh:
            raise RuntimeError("no fresh clipped gradient sum to noise: call the clipper first")
        noise = _generate_noise(
            std=self.noise_multiplier * self.max_grad_norm,
            reference=self.clipper.flat,
            generator=self.generator,
            secure_mode=self.secure_mode,
        )
        self.clipper.flat.add_(noise)
        self.clipper.noised()

    def scale_grad(self) -> None:
        """Divide by the expected (not the drawn) batch size, as Opacus does for "mean"."""
        if self.loss_reduction == "mean":
            self.clipper.flat.div_(self.expected_batch_size)
