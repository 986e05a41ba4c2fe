"""Discretized Gaussian likelihood of quantized values (docs/method.md §3, after HAC)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

MIN_SCALE_IN_STEPS = 0.125
"""Smallest scale, as a fraction of the bin width: the entropy coder's smallest table scale
(``csgaussian.entropy.coder.SCALE_TABLE[0]``), so that training prices what the coder codes.
Below it a Gaussian is a point mass on one bin anyway (its mass there is 1 - 6e-5)."""

LIKELIHOOD_FLOOR = 1e-6
"""Probability floor of a bin (docs/method.md §3, as HAC): a value costs at most ~19.9 bits."""

_TINY_LOG_GAP = 1e-30
"""Keeps ``log(1 - exp(gap))`` finite when a bin is a vanishing share of a huge scale."""


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows where it would raise ``x`` (CompressAI).

    A plain clamp zeroes the gradient of every value below the bound. For the likelihood floor that
    is fatal: a value priced at the floor (a far outlier under an over-confident prior) would
    cost ~20 bits while giving neither the prior nor the value any gradient, so training never
    repairs it (measured: benchmarks/results/notes/measurements.md#likelihood-floor).
    """

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:
        ctx.save_for_backward(x, bound)
        return torch.maximum(x, bound)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        x, bound = ctx.saved_tensors
        passes = (x >= bound) | (grad_output < 0)
        return grad_output * passes.to(grad_output.dtype), None


def lower_bound(x: Tensor, bound: Tensor | float) -> Tensor:
    """``max(x, bound)`` with a gradient that can lift values from below the bound."""
    bound = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    x, bound = torch.broadcast_tensors(x, bound)
    return _LowerBound.apply(x, bound)


def discretized_gaussian_bits(
    x_hat: Tensor,
    mean: Tensor,
    scale: Tensor,
    step: Tensor | float,
    floor: float = LIKELIHOOD_FLOOR,
) -> Tensor:
    """Information content ``-log2 p`` of the Gaussian mass ``p`` of the bin ``x_hat +- step/2``.

    Computed in log space: with ``v = |x_hat - mean|`` (the symmetric form of CompressAI) the
    mass is ``Phi(b) - Phi(a)``, ``a = (-step/2 - v)/scale < b = (step/2 - v)/scale``, and
    ``log p = log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b)))`` stays finite, with a useful
    gradient, hundreds of scales into the tail, where ``erfc`` underflows to zero. The floor is a
    lower bound that keeps its lifting gradient, so far outliers still pull the prior (and the
    value) towards each other.

    Args:
        x_hat: quantized values, any shape.
        mean, scale: Gaussian parameters, broadcastable to ``x_hat``; ``scale`` is bounded below
            at ``MIN_SCALE_IN_STEPS * step``.
        step: bin width, broadcastable to ``x_hat``.
        floor: smallest probability, so at most ``-log2(floor)`` bits per value.

    Returns:
        Bits in ``[0, -log2 floor]``, shape of the broadcast inputs.
    """
    scale = lower_bound(scale, MIN_SCALE_IN_STEPS * step)
    v = (x_hat - mean).abs()
    half = 0.5 * step
    log_upper = torch.special.log_ndtr((half - v) / scale)
    log_lower = torch.special.log_ndtr((-half - v) / scale)
    gap = (log_lower - log_upper).clamp_max(-_TINY_LOG_GAP)  # < 0
    log_mass = log_upper + torch.log(-torch.expm1(gap))
    log_floor = math.log(floor) if floor > 0 else -math.inf
    return -lower_bound(log_mass, log_floor) / math.log(2.0)
