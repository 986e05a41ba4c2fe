"""Adaptive-step quantization of anchor attributes (docs/method.md §3, after HAC).

The step of each anchor and attribute group is ``q = q0 * (1 + tanh(r))`` with ``r`` predicted by
the hyperprior. Training adds uniform noise of one step width; evaluation and encoding round
to the step grid with a straight-through gradient.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

QuantMode = Literal["noise", "round"]


@dataclass(frozen=True)
class QuantizationConfig:
    """Base step ``q0`` per attribute group.

    Source: docs/method.md §3 (ours, after HAC): q0 = 1 for the feature f and 0.2 for the offsets
    O; the scaling's q0 is 0.03 (a 3% step on the log-scale; the adaptive step can still shrink
    it), not 0.001 (measured: benchmarks/results/notes/measurements.md#quantization-steps).
    """

    feature: float = 1.0
    """q0 of the anchor feature f (50 channels)."""
    scaling: float = 0.03
    """q0 of the anchor scaling l (6 channels)."""
    offsets: float = 0.2
    """q0 of the K offsets O (K x 3 channels)."""

    def __post_init__(self) -> None:
        for group in ("feature", "scaling", "offsets"):
            step = getattr(self, group)
            if isinstance(step, bool) or not isinstance(step, numbers.Real):
                raise ValueError(f"q0 of '{group}' must be a number, got {step!r}")
            if not (math.isfinite(step) and step > 0):
                raise ValueError(f"q0 of '{group}' must be finite and positive, got {step!r}")

    def q0(self, group: str) -> float:
        """The base step of ``group`` ("feature", "scaling" or "offsets")."""
        if group not in ("feature", "scaling", "offsets"):
            raise KeyError(f"no base step for attribute group '{group}'")
        return float(getattr(self, group))


def adaptive_step(q0: float, r: Tensor) -> Tensor:
    """Adaptive step ``q0 * (1 + tanh(r))`` (docs/method.md §3), in ``(0, 2 * q0)``, shaped as
    ``r``."""
    return q0 * (1.0 + torch.tanh(r))


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def quantize(x: Tensor, step: Tensor | float, mode: QuantMode) -> Tensor:
    """Quantize ``x`` to the grid ``step * Z``.

    Args:
        x: values, any shape.
        step: positive step, broadcastable to ``x`` (e.g. ``[N, 1]`` against ``[N, C]``).
        mode: "noise" adds U(-step/2, step/2) (training); "round" returns
            ``step * round(x / step)`` with a straight-through gradient to ``x`` and ``step``.

    Returns:
        The quantized values, shape of ``x`` broadcast with ``step``.
    """
    if mode == "noise":
        return x + (torch.rand_like(x) - 0.5) * step
    if mode == "round":
        return step * round_ste(x / step)
    raise ValueError(f"unknown quantization mode '{mode}' (expected 'noise' or 'round')")


def to_symbols(x: Tensor, step: Tensor | float) -> Tensor:
    """Integer symbols ``round(x / step)`` (int64, no gradient) that the entropy coder transmits."""
    return torch.round(x.detach() / step).to(torch.int64)
