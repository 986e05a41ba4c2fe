"""OpenGaussian's instance-feature losses for one view (docs/method.md §4).

Everything is a scatter over the per-pixel mask id (``index_add_`` / ``bincount``): no
``[masks, H, W]`` or ``[masks, Gaussians]`` tensor is ever built, so a 512 x 512 view with hundreds
of masks costs a few ``[pixels, D]`` buffers and one ``[masks, masks]`` matrix.

- cohesion (OpenGaussian Eq. 1): per mask, the mean over its pixels of ``||F(p) - mu_m||``,
  averaged over masks;
- separation (OpenGaussian Eq. 2): ``sum_{m != n} w_mn / (||mu_m - mu_n||^2 + 1) / (N (N - 1))``
  with rank weights that favour the closest pairs;
- total = separation + cohesion_weight * cohesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MaskLossConfig:
    """Weights and thresholds of the instance-feature losses."""

    cohesion_weight: float = 0.1
    """Weight of the cohesion term in the total. OpenGaussian: 0.1 (0.01 on one scene)."""
    alpha_threshold: float = 0.7
    """Mask means use only pixels whose rendered alpha exceeds this. OpenGaussian: 0.7."""
    separation_low: float = 0.1
    """Separation weight of the farthest pair of a row (rank 0). OpenGaussian: 0.1."""
    separation_high: float = 1.0
    """Separation weight of the closest pair of a row. OpenGaussian: 1.0."""
    late_threshold: float = 0.9
    """Late in training, separation weights below this drop to the low value. OpenGaussian: 0.9."""


@dataclass
class MaskLosses:
    """The losses of one view; the tensors are scalars attached to the feature map's graph."""

    cohesion: Tensor
    """Mean over masks of the mean pixel distance to the mask mean, ``[]``."""
    separation: Tensor
    """Rank-weighted mean inverse squared distance between mask means, ``[]``."""
    total: Tensor
    """``separation + cohesion_weight * cohesion``, ``[]``."""
    n_masks: int
    """Number of distinct masks with at least one pixel in the view."""


def separation_weights(inverse: Tensor, config: MaskLossConfig, late: bool = False) -> Tensor:
    """OpenGaussian's rank weights of a matrix of pair affinities.

    Each row is ranked in ascending order of ``inverse`` (ties broken by column index), the
    diagonal holding 0 and so ranking first; rank ``r`` weighs
    ``low + (high - low) * r / (N - 1)``, so the row's weights span ``[low, high]`` and the
    closest pair weighs ``high``. When ``late``, weights below ``late_threshold`` become ``low``.

    Args:
        inverse: ``[N, N]`` affinities ``1 / (d^2 + 1)`` with a zero diagonal, ``N >= 2``.
        config: the weight range and late threshold.
        late: apply the late-training cut.

    Returns:
        ``[N, N]`` weights (no gradient).
    """
    n = inverse.shape[0]
    order = torch.argsort(inverse.detach(), dim=1, stable=True)
    rank = torch.argsort(order, dim=1, stable=True).to(inverse.dtype)
    low, high = config.separation_low, config.separation_high
    weights = low + (high - low) * rank / (n - 1)
    if late:
        weights = torch.where(weights < config.late_threshold, low, weights)
    return weights


def separation_loss(means: Tensor, config: MaskLossConfig, late: bool = False) -> Tensor:
    """Rank-weighted inter-mask separation (OpenGaussian Eq. 2).

    Args:
        means: ``[N, D]`` mask mean features.
        config: weights of the rank ramp.
        late: apply the late-training cut of the weights.

    Returns:
        ``[]`` the loss; an attached zero when ``N < 2``.
    """
    n = means.shape[0]
    if n < 2:
        return means.sum() * 0.0
    sq = (means[:, None, :] - means[None, :, :]).square().sum(-1)  # [N, N]
    eye = torch.eye(n, dtype=torch.bool, device=means.device)
    inverse = (1.0 / (sq + 1.0)).masked_fill(eye, 0.0)
    weights = separation_weights(inverse, config, late)
    return (inverse * weights).sum() / (n * (n - 1))


def mask_losses(
    features: Tensor,
    alpha: Tensor | None,
    mask_ids: Tensor,
    config: MaskLossConfig | None = None,
    late: bool = False,
) -> MaskLosses:
    """Cohesion and separation losses of one rendered view against its masks.

    Args:
        features: ``[H, W, D]`` rendered instance-feature map.
        alpha: ``[H, W, 1]`` or ``[H, W]`` rendered alpha; mask means use the pixels with
            alpha > ``config.alpha_threshold`` (all the mask's pixels when it has none of those).
            ``None``: every pixel counts.
        mask_ids: ``[H, W]`` int64 mask id per pixel, -1 = no mask; ids need not be contiguous.
        config: loss weights; defaults to :class:`MaskLossConfig`.
        late: late in training (separation weights below ``late_threshold`` drop to the low value).

    Returns:
        The losses; all zero (attached to ``features``) when the view has no mask pixel.
    """
    cfg = config if config is not None else MaskLossConfig()
    if features.dim() != 3 or mask_ids.shape != features.shape[:2]:
        raise ValueError(
            f"features [H, W, D] and mask_ids [H, W] expected, got {tuple(features.shape)} "
            f"and {tuple(mask_ids.shape)}"
        )
    dim = features.shape[-1]
    flat = features.reshape(-1, dim)
    ids = mask_ids.reshape(-1).to(device=features.device, dtype=torch.long)
    pixels = torch.nonzero(ids >= 0).squeeze(1)  # [P]
    if pixels.numel() == 0:
        zero = features.sum() * 0.0
        return MaskLosses(cohesion=zero, separation=zero, total=zero, n_masks=0)

    _, inverse = torch.unique(ids[pixels], return_inverse=True)  # [P] in 0..M-1
    n_masks = int(inverse.max().item()) + 1
    feats = flat[pixels]  # [P, D]

    if alpha is None:
        use = torch.ones_like(inverse, dtype=torch.bool)
    else:
        if alpha.numel() != ids.numel():
            raise ValueError(f"alpha {tuple(alpha.shape)} does not match the {ids.numel()} pixels")
        opaque = alpha.detach().reshape(-1).to(features.device)[pixels] > cfg.alpha_threshold
        n_opaque = torch.bincount(inverse[opaque], minlength=n_masks)  # [M]
        use = opaque | (n_opaque[inverse] == 0)  # masks with no opaque pixel use all of them

    members = inverse[use]
    counts = torch.bincount(members, minlength=n_masks).to(features.dtype)  # [M], all >= 1
    sums = features.new_zeros(n_masks, dim).index_add_(0, members, feats[use])
    means = sums / counts[:, None]  # [M, D]

    distance = torch.linalg.vector_norm(feats - means[inverse], dim=1)  # [P]
    sizes = torch.bincount(inverse, minlength=n_masks).to(features.dtype)
    per_mask = features.new_zeros(n_masks).index_add_(0, inverse, distance) / sizes
    cohesion = per_mask.mean()
    separation = separation_loss(means, cfg, late)
    total = separation + cfg.cohesion_weight * cohesion
    return MaskLosses(cohesion=cohesion, separation=separation, total=total, n_masks=n_masks)
