"""Quality-aware weighting of the semantic objective (docs/method.md §4).

A Gaussian that reconstructs its pixels' colours badly, or barely shows, is an unreliable carrier
of an object's identity: after compression its geometry may be a smear across two objects, and
its feature is then pulled both ways by the masks it overlaps. Each anchor slot gets a weight

    q = exp(-e / (temperature * median e)) * min(1, o / opacity_reference)

where ``e`` is its colour error (the mean absolute RGB error of the pixels it covers, weighted by
its blending weights, accumulated over the training views) and ``o`` its mean opacity where
seen. The weight scales the gradient that the semantic losses send through the slot's rendered
feature (the forward pass is unchanged), so unreliable Gaussians follow the reliable ones of
their anchor instead of steering the shared MLP and latent.

The per-Gaussian sums come from one backward pass of the rasterizer per view: the gradient of
``sum_p e_p C_p`` with respect to a Gaussian's constant colour channel is ``sum_p e_p w_gp``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..render import RasterConfig, rasterize_gaussians
from ..scene.scaffold import NeuralGaussians
from ..types import Camera


@dataclass(frozen=True)
class QualityConfig:
    """Quality-weight formula (ours; measured against no weighting in benchmarks/semantics.py)."""

    temperature: float = 2.0
    """Errors are measured in units of ``temperature`` times the median slot error: a slot at
    the median keeps exp(-1/2) = 0.61 of its gradient, one at 4x the median 0.14."""
    opacity_reference: float = 0.1
    """Mean opacity below which a slot's weight falls linearly."""


class QualityAccumulator:
    """Sums, over training views, each anchor slot's error-weighted and plain blending weights."""

    def __init__(self, n_anchors: int, n_offsets: int) -> None:
        self.n_offsets = n_offsets
        size = n_anchors * n_offsets
        self.error = torch.zeros(size, dtype=torch.float64)
        self.weight = torch.zeros(size, dtype=torch.float64)
        self.opacity = torch.zeros(size, dtype=torch.float64)
        self.seen = torch.zeros(size, dtype=torch.float64)

    def add_view(
        self,
        gaussians: NeuralGaussians,
        camera: Camera,
        image: Tensor,
        target: Tensor,
        raster: RasterConfig,
    ) -> None:
        """Accumulate one view; ``image`` is the decoded scene's render ``[H, W, 3]``."""
        error = (image.detach() - target).abs().mean(dim=-1)  # [H, W]
        probe = torch.ones(gaussians.means.shape[0], 2, requires_grad=True)
        out = rasterize_gaussians(
            gaussians.means.detach(),
            gaussians.quats.detach(),
            gaussians.scales.detach(),
            gaussians.opacities.detach(),
            probe,
            camera,
            config=raster,
        )
        (out.colors[..., 0] * error).sum().add(out.colors[..., 1].sum()).backward()
        slot = gaussians.anchor_index * self.n_offsets + gaussians.offset_index
        grad = probe.grad.double()
        self.error.index_add_(0, slot, grad[:, 0])
        self.weight.index_add_(0, slot, grad[:, 1])
        self.opacity.index_add_(0, slot, gaussians.opacities.detach().double())
        self.seen.index_add_(0, slot, torch.ones_like(slot, dtype=torch.float64))

    def weights(self, config: QualityConfig) -> Tensor:
        """Quality weights ``[N, K]`` in (0, 1]; slots never seen keep 1."""
        covered = self.weight > 1e-8
        q = torch.ones_like(self.weight)
        if covered.any():
            error = self.error[covered] / self.weight[covered]
            scale = config.temperature * error.median().clamp_min(1e-8)
            opacity = self.opacity[covered] / self.seen[covered]
            q[covered] = torch.exp(-error / scale) * (opacity / config.opacity_reference).clamp(
                max=1.0
            )
        return q.float().view(-1, self.n_offsets)


def scale_gradient(x: Tensor, weight: Tensor) -> Tensor:
    """``x`` in the forward pass; its gradient scaled by ``weight`` (broadcast) in the backward."""
    return weight * x + (1 - weight) * x.detach()
