"""Book-keeping per-sample clipping for stacks of linear layers (Bu et al., ICML 2023).

DP-SGD needs the sum over a batch of each record's gradient clipped to norm C. Opacus's
`hooks` mode materializes every per-sample gradient (B copies of the weights); its ghost
clipping computes per-sample norms cheaply but runs backward twice. For a linear layer
on tabular rows, record i's weight gradient is the outer product g_i a_i^T of the
gradient g_i w.r.t. the layer's output and the layer's input a_i, so

    ||grad_i W||^2 = ||g_i||^2 ||a_i||^2,  ||grad_i b||^2 = ||g_i||^2,
    sum_i c_i grad_i W = (c * G)^T A,

where c_i = min(1, C / (||grad_i|| + 1e-6)) is Opacus's clip factor. One backward pass
to the layers' outputs gives G; the norms and the clipped sum follow from G and the
activations A kept from the forward pass, without a second backward pass and without
per-sample weight copies. Noise, scaling and accounting stay Opacus's
(`DPOptimizerFastGradientClipping` adds noise to the clipped sum this module writes into
`p.grad`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from privgate.dp.activations import QuadraticActivation
from privgate.errors import ConfigError

# Parameter-free layers that act on each row alone, so they keep per-sample gradients
# separable. Anything else (BatchNorm, attention, embeddings) needs Opacus's hooks.
ROW_WISE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
    nn.Dropout,
    QuadraticActivation,
)

# Opacus adds this to the per-sample norm before dividing (DPOptimizer.clip_and_accumulate).
_NORM_EPSILON = 1e-6

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ExtraRows(Protocol):
    """Rows clipped and summed with the batch's records, drawn afresh at every step.

    The seam the white-box audit uses (`audits.gradient_canaries`): each row is given in
    the clipper's own terms, per Linear layer the layer's input `a` and the gradient `g`
    at its output (zeros in the layers a row does not touch), so its gradient is
    `g a^T` (and `g` for the bias) and it goes through exactly the norm, clip factor and
    sum a record's does, before the optimizer adds noise. At every step the rows' owner
    also sees, per Linear layer's weight, the records' clipped sum before its rows are
    added (`records_summed`) and the noised sum the optimizer releases
    (`released`): what DP-SGD's accountant counts as released, and what an auditor who
    knows every record may subtract the records from.
    """

    def rows(self) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """Return this step's (inputs, output gradients) per layer, or None for no row."""
        ...

    def records_summed(self, weights: list[torch.Tensor]) -> None:
        """See the records' clipped weight-gradient sums, before the rows are added."""
        ...

    def released(self, weights: list[torch.Tensor]) -> None:
        """See the noised weight-gradient sums, after the noise and before scaling."""
        ...


def supports(network: nn.Module) -> bool:
    """Return whether book-keeping clipping can train `network` exactly."""
    return _unsupported_layer(network) is None


class BookKeepingClipper:
    """Compute the sum of per-sample clipped gradients of an `nn.Sequential` MLP.

    The sum lands in one flat buffer (`flat`) whose views are the parameters' `.grad`,
    so that noise and scaling are one operation each over all parameters.

    Args:
        network: an `nn.Sequential` of `nn.Linear` and row-wise parameter-free layers.
        max_grad_norm: the clipping norm C.
        loss: per-sample loss, `loss(output, target)` with one value per row.
        max_physical_batch_size: rows processed at once; a larger (Poisson) batch is
            processed in chunks, which bounds memory and does not change the result,
            since clipping is per row.

    Raises:
        ConfigError: when the network has a layer the kernel cannot treat exactly.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        max_grad_norm: float,
        loss: PerSampleLoss,
        max_physical_batch_size: int = 4096,
    ) -> None:
        problem = _unsupported_layer(network)
        if problem is not None:
            raise ConfigError(
                f"training.dp.clipping=bookkeeping supports stacks of Linear and row-wise "
                f"activation layers; this model has {problem}. Use clipping=hooks"
            )
        assert isinstance(network, nn.Sequential)
        self.layers = list(network)
        self.linears = [layer for layer in self.layers if isinstance(layer, nn.Linear)]
        self.parameters = [p for layer in self.linears for p in layer.parameters()]
        self.max_grad_norm = max_grad_norm
        self.loss = loss
        self.max_physical_batch_size = max_physical_batch_size
        self.flat = torch.zeros(sum(p.numel() for p in self.parameters))
        chunks = torch.split(self.flat, [p.numel() for p in self.parameters])
        self.views = [c.view_as(p) for c, p in zip(chunks, self.parameters, strict=True)]
        self.weight_views = [
            view
            for view, p in zip(self.views, self.parameters, strict=True)
            if any(p is layer.weight for layer in self.linears)
        ]
        # Set when a fresh clipped sum is written, cleared when it is noised: a sum is
        # never noised twice, and noise is never added to a stale sum.
        self.fresh = False
        # The audit's seam: rows clipped and summed with every batch (None in training).
        self.extra_rows: ExtraRows | None = None

    def clipped_gradient_sum(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Write sum_i clip(grad_i) into each parameter's `.grad`; return the summed loss.

        An empty batch writes zero gradients (DP-SGD still takes its noised step).

        Raises:
            ValueError: for inputs that are not one row per record (2-D).
        """
        if x.dim() != 2:
            raise ValueError(f"book-keeping clipping takes 2-D rows, got shape {tuple(x.shape)}")
        self.flat.zero_()
        loss_total = 0.0
        for start in range(0, max(len(x), 1), self.max_physical_batch_size):
            stop = start + self.max_physical_batch_size
            loss_total += self._accumulate(x[start:stop], y[start:stop])
        if self.extra_rows is not None:
            self.extra_rows.records_summed(self.weight_views)
            extra = self.extra_rows.rows()
            if extra is not None:
                self._clip_and_add(*extra)
        for parameter, view in zip(self.parameters, self.views, strict=True):
            parameter.grad = view
        self.fresh = True
        return loss_total

    def noised(self) -> None:
        """Mark the sum as noised (the optimizer calls it once, after adding noise).

        Raises:
            RuntimeError: when no fresh clipped sum was written since the last noise.
        """
        if not self.fresh:
            raise RuntimeError("no fresh clipped gradient sum to noise: call the clipper first")
        self.fresh = False
        if self.extra_rows is not None:
            self.extra_rows.released(self.weight_views)

    def per_sample_norms(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return each row's full-gradient L2 norm (before clipping)."""
        _, inputs, output_grads = self._forward_backward(x, y)
        return self._norms(inputs, output_grads)

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        loss, inputs, output_grads = self._forward_backward(x, y)
        if len(x):
            self._clip_and_add(inputs, output_grads)
        return loss

    def _clip_and_add(self, inputs: list[torch.Tensor], output_grads: list[torch.Tensor]) -> None:
        """Add each row's clipped gradient, given per layer as input and output gradient."""
        norms = self._norms(inputs, output_grads)
        clip = (self.max_grad_norm / (norms + _NORM_EPSILON)).clamp_(max=1.0).unsqueeze(1)
        views = iter(self.views)
        for layer, a, g in zip(self.linears, inputs, output_grads, strict=True):
            weighted = g * clip
            next(views).addmm_(weighted.T, a)
            if layer.bias is not None:
                next(views).add_(weighted.sum(0))

    def _forward_backward(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
        inputs: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        h = x
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                inputs.append(h.detach())
                h = layer(h)
                outputs.append(h)
            else:
                h = layer(h)
        loss = self.loss(h, y).sum()
        if not len(x):
            return 0.0, inputs, outputs
        # Gradients w.r.t. the layers' outputs only: autograd skips the weight gradients,
        # which the clipped sum replaces.
        output_grads = torch.autograd.grad(loss, outputs)
        return float(loss.detach()), inputs, list(output_grads)

    def _norms(self, inputs: list[torch.Tensor], output_grads: list[torch.Tensor]) -> torch.Tensor:
        squared: torch.Tensor | None = None
        for layer, a, g in zip(self.linears, inputs, output_grads, strict=True):
            a_sq = torch.linalg.vecdot(a, a)
            term = torch.linalg.vecdot(g, g) * (a_sq + 1.0 if layer.bias is not None else a_sq)
            squared = term if squared is None else squared.add_(term)
        assert squared is not None
        return squared.sqrt_()


def _unsupported_layer(network: nn.Module) -> str | None:
    if not isinstance(network, nn.Sequential):
        return f"a {type(network).__name__} (not an nn.Sequential)"
    linears = 0
    for layer in network:
        if isinstance(layer, nn.Linear):
            linears += 1
        elif not isinstance(layer, ROW_WISE_LAYERS) or any(True for _ in layer.parameters()):
            return f"a {type(layer).__name__} layer"
    return None if linears else "no Linear layer"
