"""One rate-bearing attribute group: its training likelihood and its codec halves
(docs/method.md §3).

CompressAI's pattern (``GaussianConditional``): one small class holds what a coded group is
(name, channels, base step) and both of its uses, side by side:

- ``forward``: quantize (noise or straight-through rounding) at the adaptive step and price the
  values with the hyperprior's Gaussians (training, the rate term);
- ``compress`` / ``decompress``: the same distributions in symbol units, snapped and handed to the
  entropy coder (the codec).

The colour groups of stage 1 (f, l, O) and the semantic latent of stage 3 are instances of it;
the hyperprior that predicts their parameters does not know which is which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..types import StreamError
from .coder import decode_gaussian, encode_gaussian, estimate_bits
from .likelihood import discretized_gaussian_bits
from .quantize import QuantMode, adaptive_step, quantize


@dataclass
class GroupParams:
    """Entropy parameters of one attribute group for N anchors."""

    mean: Tensor  # [N, C]
    scale: Tensor  # [N, C], positive
    r: Tensor  # [N, 1], step modifier: step = q0 * (1 + tanh(r))


@dataclass
class GroupOutput:
    """What ``CodedGroup.forward`` returns."""

    x_hat: Tensor  # [N, C] quantized values
    step: Tensor  # [N, 1]
    bits: Tensor  # [N, C]
    params: GroupParams


@dataclass
class CompressedGroup:
    """What ``CodedGroup.compress`` returns: the payload and what the decoder will rebuild."""

    payload: bytes
    estimated_bits: float  # from the snapped distributions (``estimate_bits``)
    values: Tensor  # [N, C] float32 dequantized values, zero where not coded


@dataclass(frozen=True)
class CodedGroup:
    """An attribute group coded with per-value Gaussians from a hyperprior.

    Args:
        name: the group's name (also its stream section).
        channels: values per anchor.
        q0: base quantization step; the step is ``q0 * (1 + tanh(r))``.
    """

    name: str
    channels: int
    q0: float

    def forward(self, values: Tensor, params: GroupParams, mode: QuantMode) -> GroupOutput:
        """Quantize ``values`` ([N, C]) and price them under ``params``."""
        step = adaptive_step(self.q0, params.r)  # [N, 1]
        x_hat = quantize(values, step, mode)
        bits = discretized_gaussian_bits(x_hat, params.mean, params.scale, step)
        return GroupOutput(x_hat, step, bits, params)

    def symbol_params(self, params: GroupParams) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """Step ``[N, 1]`` and mean, scale ``[N, C]`` in symbol units (divided by the step).

        Run the hyperprior in float64 on both sides (docs/method.md §7) so that the coder's snapping
        (``csgaussian.entropy.coder.snap_distribution_params``) sees equal values.
        """
        step = adaptive_step(self.q0, params.r)
        return step, (params.mean / step).numpy(), (params.scale / step).numpy()

    def compress(
        self, values: Tensor, params: GroupParams, selected: np.ndarray | None = None
    ) -> CompressedGroup:
        """Round ``values`` ([N, C]) to their steps and entropy-code the ``selected`` ones.

        ``selected`` ([N, C] bool, default all) marks the values that are transmitted (the
        offsets of masked slots are not); the others decode as zero.
        """
        step, mean, scale = self.symbol_params(params)
        symbols = torch.round(values.double().reshape(mean.shape) / step).numpy().astype(np.int64)
        selected = np.ones(mean.shape, dtype=bool) if selected is None else selected
        coded = symbols[selected]
        payload = encode_gaussian(coded.astype(np.int32), mean[selected], scale[selected])
        estimated = estimate_bits(coded, mean[selected], scale[selected])
        symbols[~selected] = 0
        return CompressedGroup(payload, estimated, dequantize(symbols, step))

    def decompress(
        self, payload: bytes, params: GroupParams, selected: np.ndarray | None = None
    ) -> Tensor:
        """Inverse of :meth:`compress` given the same ``params``; ``[N, C]`` float32."""
        step, mean, scale = self.symbol_params(params)
        selected = np.ones(mean.shape, dtype=bool) if selected is None else selected
        symbols = np.zeros(mean.shape, dtype=np.int64)
        try:
            symbols[selected] = decode_gaussian(payload, mean[selected], scale[selected])
        except ValueError as err:  # distributions from corrupt weights (NaN, huge means)
            raise StreamError(f"cannot decode section '{self.name}' ({err})") from None
        return dequantize(symbols, step)


def dequantize(symbols: np.ndarray, step: Tensor) -> Tensor:
    """Values ``symbols * step`` ([N, C] int, [N, 1] float64) as float32: both sides use this."""
    values = torch.from_numpy(symbols.astype(np.float64)).view(step.shape[0], -1) * step
    return values.float()
