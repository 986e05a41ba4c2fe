"""The rate model of stage 1: anchor attributes quantized and priced by a hyperprior
(docs/method.md §3).

Maths only: given a Scaffold-GS model and a set of anchors, quantize f, l and O at the steps the
hyperprior predicts and return their bits. The codec (``csgaussian.codec.stream``) turns the
same distributions into bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from .conditional import CodedGroup
from .hashgrid import HashGridConfig, HashGridHyperprior
from .hyperprior import AttributeHyperprior, INRConfig, INRHyperprior
from .quantize import QuantizationConfig, QuantMode

if TYPE_CHECKING:  # annotations only: scene sits above entropy (docs/architecture.md)
    from ..scene.scaffold import ScaffoldConfig, ScaffoldModel

HyperpriorKind = Literal["inr", "hashgrid"]

GROUP_PARAMETERS = {"feature": "features", "scaling": "log_scaling", "offsets": "offsets"}
"""Attribute group of the hyperprior -> ScaffoldModel parameter it prices."""


@dataclass(frozen=True)
class RateConfig:
    """Rate term of the stage-1 loss.

    Sources: lambda 0.004 is HAC's low-rate point (HAC spans 0.004 ... 0.001); the start at a
    quarter of the iterations is 10k of 40k [supp A.2]; the hyperprior learning rates follow HAC.
    """

    lambda_rate: float = 0.004
    """Weight of the mean bits per coded parameter in the loss."""
    start_fraction: float = 0.25
    """The hyperprior and quantization noise join at this fraction of the iterations [supp]."""
    round_fraction: float = 0.1
    """The last fraction of the iterations quantizes by straight-through rounding instead of
    noise (ours: the renderer MLPs then adapt to exactly the values the decoder will have)."""
    hyperprior: HyperpriorKind = "inr"
    """"inr" (the paper) or "hashgrid" (the HAC-style peer, for comparison)."""
    inr: INRConfig = field(default_factory=INRConfig)
    hashgrid: HashGridConfig = field(default_factory=HashGridConfig)
    quant: QuantizationConfig = field(default_factory=QuantizationConfig)
    lr: float = 0.005
    lr_final: float = 0.00005


def colour_groups(scaffold: ScaffoldConfig, quant: QuantizationConfig) -> list[CodedGroup]:
    """The coded groups of stage 1: f (50), l (6) and the K offsets (3K), in stream order."""
    channels = {"feature": scaffold.feature_dim, "scaling": 6, "offsets": 3 * scaffold.n_offsets}
    return [CodedGroup(name, c, quant.q0(name)) for name, c in channels.items()]


def offset_channels(offset_mask: Tensor) -> Tensor:
    """Per-offset mask ``[V, K]`` -> per coded channel ``[V, 3K]`` (x, y, z of each offset)."""
    return offset_mask.repeat_interleave(3, dim=1)


def build_hyperprior(model: ScaffoldModel, config: RateConfig) -> AttributeHyperprior:
    groups = colour_groups(model.config, config.quant)
    if config.hyperprior == "inr":
        return INRHyperprior(groups, config.inr)
    if config.hyperprior == "hashgrid":
        return HashGridHyperprior(groups, config.hashgrid)
    raise ValueError(f"unknown hyperprior {config.hyperprior!r} (choose inr or hashgrid)")


@dataclass
class QuantizedAnchors:
    """Quantized attributes of a set of anchors and what they cost."""

    attributes: dict[str, Tensor]  # ScaffoldModel parameter name -> [V, ...] quantized values
    bits: Tensor  # scalar, total bits of the coded values
    n_values: Tensor  # scalar, number of coded values (masked offsets excluded)

    @property
    def bits_per_value(self) -> Tensor:
        return self.bits / self.n_values.clamp_min(1)


class AnchorEntropyModel(nn.Module):
    """Hyperprior MLP #1 over anchor positions, pricing f, l and the unmasked offsets."""

    def __init__(self, model: ScaffoldModel, config: RateConfig) -> None:
        super().__init__()
        self.config = config
        self.hyperprior = build_hyperprior(model, config)

    def forward(
        self, model: ScaffoldModel, anchor_ids: Tensor, mode: QuantMode, offset_mask: Tensor
    ) -> QuantizedAnchors:
        """Quantize the attributes of ``anchor_ids`` ([V]) and price them.

        Args:
            model: the scene.
            anchor_ids: anchors to quantize.
            mode: "noise" during training, "round" at evaluation and encoding.
            offset_mask: ``[V, K]`` mask (with its straight-through gradient): masked offsets
                are not transmitted, so they cost nothing.
        """
        positions = model.grid.unit_cube(model.anchor_cells[anchor_ids]).float()
        values = {
            group: getattr(model, name)[anchor_ids].reshape(anchor_ids.shape[0], -1)
            for group, name in GROUP_PARAMETERS.items()
        }
        out = self.hyperprior(positions, values, mode)
        offset_weight = offset_channels(offset_mask)  # [V, 3K]
        bits = out["feature"].bits.sum() + out["scaling"].bits.sum()
        bits = bits + (out["offsets"].bits * offset_weight).sum()
        n_values = (
            out["feature"].bits.numel() + out["scaling"].bits.numel() + offset_weight.detach().sum()
        )
        attributes = {
            name: out[group]
            .x_hat.view_as(values[group])
            .view((anchor_ids.shape[0],) + getattr(model, name).shape[1:])
            for group, name in GROUP_PARAMETERS.items()
        }
        return QuantizedAnchors(attributes, bits, torch.as_tensor(n_values, dtype=bits.dtype))
