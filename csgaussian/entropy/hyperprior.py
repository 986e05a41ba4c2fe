"""Position-conditioned hyperpriors: anchor position -> Gaussian entropy parameters
(docs/method.md §3).

``AttributeHyperprior`` holds what both peers share: a trunk MLP on top of a position encoding and
one linear head per attribute group producing the mean, scale and step modifier ``r``. The INR
hyperprior of the paper uses a sin/cos positional embedding (``INRHyperprior``); the HAC-style peer
uses a multi-resolution hash grid (``csgaussian.entropy.hashgrid.HashGridHyperprior``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csgaussian.entropy.conditional import CodedGroup, GroupOutput, GroupParams
from csgaussian.entropy.quantize import QuantMode


@dataclass(frozen=True)
class MLPConfig:
    """Trunk MLP shared by both hyperpriors (ours, docs/method.md §3: "compact MLP #1")."""

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
        groups: the coded groups whose parameters it predicts (one head each).
        mlp: trunk configuration.
    """

    def __init__(
        self,
        encoder: nn.Module,
        groups: Sequence[CodedGroup],
        mlp: MLPConfig,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.groups = {g.name: g for g in groups}
        self.scale_min = mlp.scale_min
        self.context_dim = context_dim
        layers: list[nn.Module] = []
        dim = int(encoder.out_dim) + context_dim
        for _ in range(mlp.depth):
            layers += [nn.Linear(dim, mlp.width), nn.ReLU()]
            dim = mlp.width
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(dim, 2 * g.channels + 1) for name, g in self.groups.items()}
        )

    def params(self, positions: Tensor, context: Tensor | None = None) -> dict[str, GroupParams]:
        """Entropy parameters per group for anchors at ``positions`` ([N, 3] in [-1, 1]^3).

        ``context`` ([N, context_dim]) is what else both sides know about each anchor (the
        decoded colour feature, for the conditional semantic prior of supp B.2); it joins the
        position encoding at the trunk's input.
        """
        encoded = self.encoder(positions)
        if self.context_dim:
            if context is None or context.shape != (positions.shape[0], self.context_dim):
                raise ValueError(f"this hyperprior needs a [N, {self.context_dim}] context")
            encoded = torch.cat([encoded, context.to(encoded)], dim=1)
        h = self.trunk(encoded)  # [N, width]
        out: dict[str, GroupParams] = {}
        for g, group in self.groups.items():
            c = group.channels
            raw = self.heads[g](h)  # [N, 2C + 1]
            out[g] = GroupParams(
                mean=raw[:, :c],
                scale=F.softplus(raw[:, c : 2 * c]) + self.scale_min,
                r=raw[:, 2 * c :],
            )
        return out

    def forward(
        self,
        positions: Tensor,
        values_by_group: dict[str, Tensor],
        mode: QuantMode,
        context: Tensor | None = None,
    ) -> dict[str, GroupOutput]:
        """Quantize each group's values and return their likelihoods and bits.

        Args:
            positions: [N, 3] normalised anchor positions.
            values_by_group: group -> [N, C_g] values (a subset of the configured groups).
            mode: "noise" (training) or "round" (evaluation / encoding).
        """
        params = self.params(positions, context)
        return {g: self.groups[g].forward(x, params[g], mode) for g, x in values_by_group.items()}

    def zero_unused_channels(self, group: str, in_use: Tensor) -> None:
        """Zero the mean and scale rows of ``group``'s head for channels not ``in_use`` ([C]).

        For channels that are never coded (offsets of dropped slots): the codec stores a zero
        row in two bytes, and no coded symbol's distribution changes.
        """
        c = self.groups[group].channels
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
    """INR hyperprior (ours, docs/method.md §3)."""

    n_freqs: int = 8
    """Embedding frequencies 2^0 pi ... 2^(n-1) pi; 8 resolves ~1/256 of the scene extent."""
    mlp: MLPConfig = field(default_factory=lambda: MLPConfig(width=16))
    """Width 16: a wider MLP saves fewer attribute bits than its weights cost (measured:
    benchmarks/results/notes/measurements.md#inr-width)."""


class INRHyperprior(AttributeHyperprior):
    """The paper's INR hyperprior: positional embedding + compact MLP (docs/method.md §3)."""

    def __init__(
        self, groups: Sequence[CodedGroup], config: INRConfig | None = None, context_dim: int = 0
    ) -> None:
        config = config or INRConfig()
        super().__init__(PositionalEmbedding(config.n_freqs), groups, config.mlp, context_dim)
