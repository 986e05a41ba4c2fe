"""Position-conditioned hyperpriors: anchor position -> Gaussian entropy parameters (METHOD §3).

``AttributeHyperprior`` holds what both peers share: a trunk MLP on top of a position encoding and
one linear head per attribute group producing the mean, scale and step modifier ``r``. The INR
hyperprior of the paper uses a sin/cos positional embedding (``INRHyperprior``); the HAC-style peer
uses a multi-resolution hash grid (``csgaussian.entropy.hashgrid.HashGridHyperprior``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csgaussian.entropy.likelihood import discretized_gaussian_bits
from csgaussian.entropy.quantize import QuantizationConfig, QuantMode, adaptive_step, quantize

DEFAULT_GROUPS: dict[str, int] = {"feature": 50, "scaling": 6, "offsets": 30}
"""Channels per attribute group of a Scaffold-GS anchor (METHOD §1: f in R^50, l in R^6, K=10)."""


@dataclass
class GroupParams:
    """Entropy parameters of one attribute group for N anchors."""

    mean: Tensor  # [N, C]
    scale: Tensor  # [N, C], positive
    r: Tensor  # [N, 1], step modifier: step = q0 * (1 + tanh(r))


@dataclass
class GroupOutput:
    """What ``AttributeHyperprior.forward`` returns for one attribute group."""

    x_hat: Tensor  # [N, C] quantized values
    step: Tensor  # [N, 1]
    bits: Tensor  # [N, C]
    params: GroupParams


def to_symbol_units(params: GroupParams, q0: float) -> tuple[Tensor, Tensor, Tensor]:
    """What the entropy coder needs for one group: step [N, 1], mean and scale [N, C] divided by
    the step (symbol units). Run the hyperprior in float64 on both sides (METHOD §6) so that the
    coder's snapping (``csgaussian.codec.attributes.snap_distribution_params``) sees equal values.
    """
    step = adaptive_step(q0, params.r)
    return step, params.mean / step, params.scale / step


@dataclass(frozen=True)
class MLPConfig:
    """Trunk MLP shared by both hyperpriors (ours, METHOD §3: "compact MLP #1")."""

    width: int = 32
    """Hidden width (the hash grid's; the INR narrows it, see ``INRConfig.mlp``)."""
    depth: int = 2
    """Number of hidden layers."""
    scale_min: float = 1e-6
    """Added to softplus(scale logits); the likelihood bounds scales further (per step)."""


class AttributeHyperprior(nn.Module):
    """Shared trunk and heads over a position encoding ``encoder: [N, 3] -> [N, D]``.

    Args:
        encoder: module mapping normalised positions in [-1, 1]^3 to features, with attribute
            ``out_dim``.
        groups: attribute group name -> channel count.
        mlp: trunk configuration.
        quant: base steps per group.
    """

    def __init__(
        self,
        encoder: nn.Module,
        groups: dict[str, int],
        mlp: MLPConfig,
        quant: QuantizationConfig,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.groups = dict(groups)
        self.quant = quant
        self.scale_min = mlp.scale_min
        layers: list[nn.Module] = []
        dim = int(encoder.out_dim)
        for _ in range(mlp.depth):
            layers += [nn.Linear(dim, mlp.width), nn.ReLU()]
            dim = mlp.width
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({g: nn.Linear(dim, 2 * c + 1) for g, c in self.groups.items()})

    def params(self, positions: Tensor) -> dict[str, GroupParams]:
        """Entropy parameters per group for anchors at ``positions`` ([N, 3] in [-1, 1]^3)."""
        h = self.trunk(self.encoder(positions))  # [N, width]
        out: dict[str, GroupParams] = {}
        for g, c in self.groups.items():
            raw = self.heads[g](h)  # [N, 2C + 1]
            out[g] = GroupParams(
                mean=raw[:, :c],
                scale=F.softplus(raw[:, c : 2 * c]) + self.scale_min,
                r=raw[:, 2 * c :],
            )
        return out

    def forward(
        self, positions: Tensor, values_by_group: dict[str, Tensor], mode: QuantMode
    ) -> dict[str, GroupOutput]:
        """Quantize each group's values and return their likelihoods and bits.

        Args:
            positions: [N, 3] normalised anchor positions.
            values_by_group: group -> [N, C_g] values (a subset of the configured groups).
            mode: "noise" (training) or "round" (evaluation / encoding).
        """
        params = self.params(positions)
        out: dict[str, GroupOutput] = {}
        for g, x in values_by_group.items():
            p = params[g]
            step = adaptive_step(self.quant.q0(g), p.r)  # [N, 1]
            x_hat = quantize(x, step, mode)
            bits = discretized_gaussian_bits(x_hat, p.mean, p.scale, step)
            out[g] = GroupOutput(x_hat, step, bits, p)
        return out

    def zero_unused_channels(self, group: str, in_use: Tensor) -> None:
        """Zero the mean and scale rows of ``group``'s head for channels not ``in_use`` ([C]).

        For channels that are never coded (offsets of dropped slots): the codec stores a zero
        row in two bytes, and no coded symbol's distribution changes.
        """
        c = self.groups[group]
        unused = ~in_use.bool()
        step_rows = torch.zeros(self.heads[group].out_features - 2 * c, dtype=torch.bool)
        rows = torch.cat([unused, unused, step_rows])
        with torch.no_grad():
            self.heads[group].weight[rows] = 0.0
            self.heads[group].bias[rows] = 0.0

    def binary_parameters(self) -> list[str]:
        """Names of parameters used only through their sign (coded as one flag per entry)."""
        return []

    def num_parameters(self) -> int:
        """Number of scalar parameters (transmitted in the stream)."""
        return sum(p.numel() for p in self.parameters())


class PositionalEmbedding(nn.Module):
    """``[x, sin(2^k pi x), cos(2^k pi x)]`` for k < n_freqs, per coordinate.

    Input [N, 3] in [-1, 1]^3; output [N, 3 + 6 * n_freqs].
    """

    def __init__(self, n_freqs: int) -> None:
        super().__init__()
        self.n_freqs = n_freqs
        self.out_dim = 3 + 6 * n_freqs
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        ang = (x[:, :, None] * self.freqs.to(x.dtype)).flatten(1)  # [N, 3 * n_freqs]
        return torch.cat([x, torch.sin(ang), torch.cos(ang)], dim=1)


@dataclass(frozen=True)
class INRConfig:
    """INR hyperprior (ours; METHOD §3 leaves frequencies, depth and width to us)."""

    n_freqs: int = 8
    """Embedding frequencies 2^0 pi ... 2^(n-1) pi; 8 resolves ~1/256 of the scene extent."""
    mlp: MLPConfig = field(default_factory=lambda: MLPConfig(width=16))
    """Width 16 (measured, kitchen, quick preset, lambda 0.004, weights then stored as float16):
    its 8.4 KB of weights against width 32's 17.3 KB cost 4.8 KB more attribute bits: stream
    113.1 KB at 37.67 dB against 117.1 KB at 37.44 dB. Refitted on fixed attributes, width 64
    priced them at 85.6 KB with 37.7 KB of weights, width 32 at 90.5 KB with 17.0 KB."""


class INRHyperprior(AttributeHyperprior):
    """The paper's INR hyperprior: positional embedding + compact MLP (METHOD §3)."""

    def __init__(
        self,
        groups: dict[str, int] | None = None,
        config: INRConfig | None = None,
        quant: QuantizationConfig | None = None,
    ) -> None:
        config = config or INRConfig()
        super().__init__(
            PositionalEmbedding(config.n_freqs),
            groups if groups is not None else DEFAULT_GROUPS,
            config.mlp,
            quant or QuantizationConfig(),
        )
