"""Discretized Gaussian likelihood of quantized values (METHOD §3, after HAC / CompressAI)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCALE_LOWER_BOUND = 1e-9
"""Smallest scale used in the likelihood (absolute, attribute units). Below it a Gaussian of the
bin width is already a point mass for every q0 of METHOD §3 (the smallest q0 is 1e-3)."""

LIKELIHOOD_FLOOR = 1e-6
"""Probability floor of a bin (METHOD §3, as HAC): bounds a single value's cost at ~19.9 bits."""


def _std_normal_cdf(z: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2.0))


def discretized_gaussian_likelihood(
    x_hat: Tensor,
    mean: Tensor,
    scale: Tensor,
    step: Tensor | float,
    floor: float = LIKELIHOOD_FLOOR,
) -> Tensor:
    """Gaussian mass of the bin ``[x_hat - step/2, x_hat + step/2]``.

    Uses the symmetric form of CompressAI: with ``v = |x_hat - mean|`` the mass is
    ``Phi((step/2 - v)/scale) - Phi((-step/2 - v)/scale)``, which evaluates both CDFs in the lower
    tail where ``erfc`` keeps full relative precision.

    Args:
        x_hat: quantized values, any shape.
        mean, scale: Gaussian parameters, broadcastable to ``x_hat``; ``scale`` is clamped below at
            ``SCALE_LOWER_BOUND``.
        step: bin width, broadcastable to ``x_hat``.
        floor: smallest returned probability.

    Returns:
        Probabilities in ``[floor, 1]``, shape of the broadcast inputs.
    """
    scale = scale.clamp_min(SCALE_LOWER_BOUND)
    v = (x_hat - mean).abs()
    half = 0.5 * step
    upper = _std_normal_cdf((half - v) / scale)
    lower = _std_normal_cdf((-half - v) / scale)
    return (upper - lower).clamp_min(floor)


def bits_from_likelihood(p: Tensor) -> Tensor:
    """Information content ``-log2 p`` in bits, same shape as ``p``."""
    return -torch.log2(p)
