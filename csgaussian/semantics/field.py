"""The semantic field: one latent per anchor, decoded to a unit instance feature per Gaussian.

docs/method.md §4 (ours): each anchor carries a latent ``s`` (``latent_dim`` values,
coded in the semantic layer); a small shared MLP maps ``[ŝ, O_k]`` (the latent and the slot's
decoded offset) to the ``feature_dim``-D unit feature of neural Gaussian k. Features do not
depend on the view, so the receiver computes them once per decoded scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy.conditional import CodedGroup, GroupOutput
from ..entropy.hyperprior import INRConfig, INRHyperprior, MLPConfig
from ..entropy.quantize import QuantMode

SEMANTIC_GROUP = "semantic"
"""Name of the coded group (and its stream section) of the latents."""


@dataclass(frozen=True)
class SemanticConfig:
    """Shape of the semantic field (ours, docs/method.md §4)."""

    latent_dim: int = 8
    """d_s, values per anchor in the stream (ablated in benchmarks/semantics.py)."""
    feature_dim: int = 6
    """Instance feature per Gaussian: OpenGaussian's 6-D unit feature."""
    hidden_dim: int = 32
    """Width of the feature MLP's one hidden layer (ours)."""
    latent_init: float = 0.1
    """Latents start uniform in +-latent_init (ours; larger starts cost bits, smaller ones
    collapsed: benchmarks/results/notes/measurements.md#latent-init)."""


@dataclass(frozen=True)
class SemanticRateConfig:
    """Stage 3's rate model for the latents: hyperprior MLP #2 (docs/method.md §5).

    The latent step q0 is ours: with a latent range of a few units, 0.25 leaves features that
    survive rounding (QAT trains at this step from stage 2 on); the adaptive step can move it.
    """

    lambda_rate: float = 0.002
    """lambda_s: weight of the latents' bits per value (ours; swept in the ablations)."""
    q0: float = 0.25
    """Base step of the latents: stage 2 trains them rounded at it (QAT), stage 3 codes them
    at ``q0 * (1 + tanh(r))``."""
    conditional: bool = False
    """Condition the prior on the decoded colour feature f as well as the position (supp B.2's
    ablation; the paper keeps s independent of f)."""
    inr: INRConfig = field(default_factory=lambda: INRConfig(mlp=MLPConfig(width=16)))
    lr: float = 0.005
    """Hyperprior #2 learning rate (as hyperprior #1's, HAC)."""


class SemanticField(nn.Module):
    """Per-anchor latents and the feature MLP (the trainable part of stages 2 and 3)."""

    def __init__(
        self, n_anchors: int, config: SemanticConfig, seed: int = 0, per_slot: int = 0
    ) -> None:
        """``per_slot = K > 0`` makes the OpenGaussian-style baseline of supp Table 2: no latent
        and no MLP, each of the K anchor slots holds its own free ``feature_dim`` feature
        (``latents`` are ``[N, K * feature_dim]``, starting uniform in +-1, the scale of unit
        features). It is trained uncompressed and never coded (benchmarks/table2.py)."""
        super().__init__()
        self.config = config
        self.per_slot = per_slot
        generator = torch.Generator().manual_seed(seed)
        dim = per_slot * config.feature_dim if per_slot else config.latent_dim
        init = torch.rand(n_anchors, dim, generator=generator) * 2 - 1
        self.latents = nn.Parameter(init if per_slot else init * config.latent_init)
        self.mlp = nn.Sequential()
        if not per_slot:
            self.mlp = nn.Sequential(
                nn.Linear(config.latent_dim + 3, config.hidden_dim),
                nn.ReLU(),
                nn.Linear(config.hidden_dim, config.feature_dim),
            )

    @property
    def n_anchors(self) -> int:
        return self.latents.shape[0]

    def features(self, latents: Tensor, offsets: Tensor) -> Tensor:
        """Unit features ``[..., feature_dim]`` from latents ``[..., d_s]`` and offsets
        ``[..., 3]`` (decoded ``O_k``, in units of the anchor scaling)."""
        return F.normalize(self.mlp(torch.cat([latents, offsets], dim=-1)), dim=-1)

    def gaussian_features(self, latents: Tensor, offsets: Tensor, offset_index: Tensor) -> Tensor:
        """Unit features ``[G, feature_dim]`` of Gaussians from their anchors' ``latents``
        ``[G, d]``, their offsets ``[G, 3]`` and slots ``offset_index`` ``[G]``."""
        if self.per_slot:
            free = latents.view(latents.shape[0], -1, self.config.feature_dim)
            return F.normalize(free[torch.arange(free.shape[0]), offset_index], dim=-1)
        return self.features(latents, offsets)

    def slot_features(self, offsets: Tensor, latents: Tensor | None = None) -> Tensor:
        """Features ``[N, K, feature_dim]`` of every anchor slot; ``latents`` default to the
        field's own (pass quantized ones in training)."""
        latents = self.latents if latents is None else latents
        k = offsets.shape[1]
        if self.per_slot:
            return F.normalize(latents.view(-1, k, self.config.feature_dim), dim=-1)
        return self.features(latents[:, None, :].expand(-1, k, -1), offsets)


def latent_group(config: SemanticConfig, rate: SemanticRateConfig) -> CodedGroup:
    """The coded group of the latents."""
    return CodedGroup(SEMANTIC_GROUP, config.latent_dim, rate.q0)


class SemanticEntropyModel(nn.Module):
    """Hyperprior MLP #2: position (and, in the conditional variant, f̂) -> μ, σ, step of s."""

    def __init__(self, config: SemanticConfig, rate: SemanticRateConfig, feature_dim: int) -> None:
        super().__init__()
        self.rate = rate
        context_dim = feature_dim if rate.conditional else 0
        self.hyperprior = INRHyperprior([latent_group(config, rate)], rate.inr, context_dim)

    def forward(
        self, positions: Tensor, latents: Tensor, mode: QuantMode, colour: Tensor | None = None
    ) -> GroupOutput:
        """Quantize ``latents`` ([N, d_s]) of anchors at ``positions`` ([N, 3], unit cube)
        and price them; ``colour`` ([N, F], decoded f) is read in the conditional variant."""
        context = colour if self.rate.conditional else None
        out = self.hyperprior(positions.to(latents), {SEMANTIC_GROUP: latents}, mode, context)
        return out[SEMANTIC_GROUP]
