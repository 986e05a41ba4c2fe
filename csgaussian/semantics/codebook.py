"""OpenGaussian's two-level codebook, fitted deterministically (docs/method.md §5).

Coarse k-means on the joint vector ``[feature, position_weight * xyz]``, then fine k-means on the
feature alone inside each coarse cluster. Leaf id = ``coarse * k2 + fine``. The sender fits; the
centres go into the stream and the receiver only calls :func:`assign_leaves` (nearest centre, no
k-means).

Determinism: k-means++ draws one uniform per centre from a seeded ``torch.Generator`` and inverts a
float64 cumulative sum; distances use ``torch.cdist`` without the matrix-product shortcut (each
distance is a serial sum, so neither chunking nor the thread count changes a bit); cluster sums
are float64 ``index_add_`` / ``bincount``. Empty clusters keep their previous centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 22
"""Distance-matrix entries per chunk (16 MB in float32, about 64 MB with cdist's buffers)."""


@dataclass(frozen=True)
class CodebookConfig:
    """Sizes and schedule of the two-level k-means."""

    n_coarse: int = 16
    """Coarse clusters k1. OpenGaussian: 64; ours 16 (small scenes)."""
    n_fine: int = 4
    """Fine clusters k2 per coarse cluster. OpenGaussian: at most 10; ours 4."""
    position_weight: float = 0.5
    """Scale of xyz in the coarse joint space [feature, w * xyz]. OpenGaussian: 0.5."""
    iterations: int = 30
    """Maximum Lloyd iterations per k-means (stops early at convergence). Ours."""
    seed: int = 0
    """Seed of the k-means++ initialisation. Ours."""


@dataclass
class Codebook:
    """Fitted centres; all fields but ``labels`` are what a receiver needs."""

    coarse: Tensor
    """``[k1, D + 3]`` centres in the joint space ``[feature, position_weight * xyz]``."""
    fine: Tensor
    """``[k1, k2, D]`` feature centres per coarse cluster (zeros where invalid)."""
    fine_valid: Tensor
    """``[k1, k2]`` bool; a coarse cluster with fewer distinct points than k2 has fewer centres."""
    position_weight: float = 0.5
    """Scale of xyz in the joint space (needed by the receiver to assign)."""
    labels: Tensor | None = None
    """``[G]`` int64 leaf ids of the training points at the end of the fit; not transmitted."""

    @property
    def n_leaves(self) -> int:
        """Number of leaf ids ``k1 * k2`` (some may be invalid)."""
        return int(self.fine_valid.shape[0] * self.fine_valid.shape[1])


def _distances(x: Tensor, centres: Tensor) -> Tensor:
    """``[n, k]`` Euclidean distances, computed pairwise (bit-stable under chunking and threads)."""
    return torch.cdist(x, centres, compute_mode="donot_use_mm_for_euclid_dist")


def _nearest(x: Tensor, centres: Tensor, valid: Tensor | None = None) -> Tensor:
    """Index of the nearest (valid) centre per row, first index on ties.

    Args:
        x: ``[n, C]`` points.
        centres: ``[k, C]`` centres.
        valid: optional ``[k]`` bool; invalid centres are never chosen.

    Returns:
        ``[n]`` int64.
    """
    n, k = x.shape[0], centres.shape[0]
    out = torch.empty(n, dtype=torch.long, device=x.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, k))
    for start in range(0, n, step):
        d = _distances(x[start : start + step], centres)
        if valid is not None:
            d = d.masked_fill(~valid, float("inf"))
        out[start : start + step] = d.argmin(dim=1)
    return out


def _min_sq_distance(x: Tensor, centre: Tensor) -> Tensor:
    """``[n]`` float64 squared distance of each row of ``x`` to one centre ``[C]``."""
    return _distances(x, centre[None]).squeeze(1).double().square()


def _draw(mass: Tensor, generator: torch.Generator) -> int:
    """Index drawn with probability proportional to ``mass`` ``[n]`` (float64, sum > 0)."""
    cumulative = torch.cumsum(mass, dim=0)
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    target = torch.tensor([u * cumulative[-1].item()], dtype=torch.float64, device=mass.device)
    index = torch.searchsorted(cumulative, target, right=True)
    return min(int(index.item()), mass.shape[0] - 1)


def _kmeans_pp(x: Tensor, k: int, weights: Tensor, generator: torch.Generator) -> Tensor:
    """Weighted k-means++ seeding; stops early when every point already sits on a centre.

    Args:
        x: ``[n, C]`` points, ``n >= 1``.
        k: wanted centres.
        weights: ``[n]`` float64 non-negative; all-zero falls back to uniform.
        generator: seeded CPU generator.

    Returns:
        ``[k', C]`` centres, ``1 <= k' <= k``, distinct rows of ``x``.
    """
    prior = weights if bool((weights > 0).any()) else torch.ones_like(weights)
    chosen = [_draw(prior, generator)]
    d2 = _min_sq_distance(x, x[chosen[0]])
    for _ in range(1, k):
        mass = prior * d2
        if not bool((mass > 0).any()):
            break
        i = _draw(mass, generator)
        chosen.append(i)
        d2 = torch.minimum(d2, _min_sq_distance(x, x[i]))
    return x[chosen].clone()


def _update(x: Tensor, labels: Tensor, centres: Tensor, weights: Tensor) -> Tensor:
    """Weighted means of the clusters; a cluster with no weight keeps its centre. ``[k, C]``."""
    k = centres.shape[0]
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    step = max(1, _CHUNK_ELEMENTS // x.shape[1])
    for start in range(0, x.shape[0], step):
        rows = slice(start, start + step)
        sums.index_add_(0, labels[rows], x[rows].double() * weights[rows, None])
    mass = torch.bincount(labels, weights=weights, minlength=k)  # [k] float64
    filled = mass > 0
    means = (sums / mass.clamp_min(1e-300)[:, None]).to(centres.dtype)
    return torch.where(filled[:, None], means, centres)


def _kmeans(
    x: Tensor, k: int, weights: Tensor, iterations: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Seeded weighted k-means (k-means++ then Lloyd).

    Args:
        x: ``[n, C]`` points, ``n >= 1``.
        k: wanted clusters.
        weights: ``[n]`` float64 point weights.
        iterations: maximum Lloyd iterations.
        generator: seeded CPU generator.

    Returns:
        ``([k', C] centres, [n] labels)``; labels are the nearest centre of each point.
    """
    centres = _kmeans_pp(x, k, weights, generator)
    labels = _nearest(x, centres)
    for _ in range(iterations):
        updated = _update(x, labels, centres, weights)
        if torch.equal(updated, centres):
            break
        centres = updated
        relabelled = _nearest(x, centres)
        converged = torch.equal(relabelled, labels)
        labels = relabelled
        if converged:
            break
    return centres, labels


def _joint(features: Tensor, positions: Tensor, position_weight: float) -> Tensor:
    """``[G, D + 3]`` coarse-space vectors ``[feature, position_weight * xyz]``."""
    return torch.cat([features, position_weight * positions.to(features.dtype)], dim=1)


def _check(features: Tensor, positions: Tensor) -> None:
    if features.dim() != 2 or positions.shape != (features.shape[0], 3):
        raise ValueError(
            f"features [G, D] and positions [G, 3] expected, got {tuple(features.shape)} "
            f"and {tuple(positions.shape)}"
        )


def fit_codebook(
    features: Tensor,
    positions: Tensor,
    config: CodebookConfig | None = None,
    weights: Tensor | None = None,
) -> Codebook:
    """Fit the two-level codebook on the training points.

    Args:
        features: ``[G, D]`` instance features.
        positions: ``[G, 3]`` positions.
        config: sizes, iterations and seed; defaults to :class:`CodebookConfig`.
        weights: optional ``[G]`` non-negative point weights (weighted means and seeding).

    Returns:
        The codebook; ``labels`` holds the training points' leaf ids, which
        :func:`assign_leaves` reproduces from the centres.
    """
    cfg = config if config is not None else CodebookConfig()
    _check(features, positions)
    if features.shape[0] == 0:
        raise ValueError("cannot fit a codebook on zero points")
    if cfg.n_coarse < 1 or cfg.n_fine < 1:
        raise ValueError("n_coarse and n_fine must be at least 1")
    features = features.detach()
    n_points, dim = features.shape
    if weights is None:
        w = torch.ones(n_points, dtype=torch.float64, device=features.device)
    else:
        if weights.shape != (n_points,) or not bool(torch.isfinite(weights).all()):
            raise ValueError("weights must be [G] and finite")
        if bool((weights < 0).any()):
            raise ValueError("weights must be non-negative")
        w = weights.detach().to(device=features.device, dtype=torch.float64)

    joint = _joint(features, positions.detach(), cfg.position_weight)
    coarse_gen = torch.Generator().manual_seed(cfg.seed)
    coarse, coarse_labels = _kmeans(joint, cfg.n_coarse, w, cfg.iterations, coarse_gen)

    k1, k2 = coarse.shape[0], cfg.n_fine
    fine = features.new_zeros(k1, k2, dim)
    valid = torch.zeros(k1, k2, dtype=torch.bool, device=features.device)
    labels = torch.empty(n_points, dtype=torch.long, device=features.device)
    for c in range(k1):
        members = torch.nonzero(coarse_labels == c).squeeze(1)
        if members.numel() == 0:  # a centre nobody is nearest to: one leaf at its feature part
            fine[c, 0] = coarse[c, :dim]
            valid[c, 0] = True
            continue
        fine_gen = torch.Generator().manual_seed(cfg.seed + 1 + c)
        centres, fine_labels = _kmeans(features[members], k2, w[members], cfg.iterations, fine_gen)
        fine[c, : centres.shape[0]] = centres
        valid[c, : centres.shape[0]] = True
        labels[members] = c * k2 + fine_labels
    return Codebook(
        coarse=coarse,
        fine=fine,
        fine_valid=valid,
        position_weight=cfg.position_weight,
        labels=labels,
    )


def assign_leaves(codebook: Codebook, features: Tensor, positions: Tensor) -> Tensor:
    """Leaf id per point: nearest coarse centre, then nearest valid fine centre inside it.

    Args:
        codebook: fitted or decoded codebook.
        features: ``[G, D]`` instance features.
        positions: ``[G, 3]`` positions.

    Returns:
        ``[G]`` int64 leaf ids ``coarse * k2 + fine``.
    """
    _check(features, positions)
    features = features.detach()
    joint = _joint(features, positions.detach(), codebook.position_weight)
    coarse = _nearest(joint, codebook.coarse.to(joint))
    k1, k2 = codebook.fine_valid.shape
    fine = codebook.fine.to(features)
    valid = codebook.fine_valid.to(features.device)
    labels = torch.empty_like(coarse)
    for c in range(k1):
        members = torch.nonzero(coarse == c).squeeze(1)
        if members.numel() == 0:
            continue
        labels[members] = c * k2 + _nearest(features[members], fine[c], valid[c])
    return labels
