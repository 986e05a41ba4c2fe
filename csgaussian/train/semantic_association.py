"""Training-free 2D-3D association of codebook leaves with the training masks (ours).

In OpenGaussian's spirit (docs/method.md §5) but with one render per training view: the
renderer composites one one-hot channel per leaf, and each pixel's leaf is the one with the
largest summed blending weight; one
``bincount`` over (leaf, mask) pairs then gives every overlap of the view at once. A leaf votes for
the mask that holds most of its pixels when that mask holds at least ``min_overlap`` of them; its
language feature is the mean of the voted masks' features. OpenGaussian instead renders every
cluster separately and scores IoU times feature agreement (> 0.2), which runs out of memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AssociationConfig:
    """Thresholds of the leaf-mask vote."""

    min_overlap: float = 0.5
    """A leaf votes for its best mask when that mask holds at least this share of the leaf's
    dominant pixels in the view. Ours (OpenGaussian: IoU x feature agreement > 0.2)."""
    min_pixels: int = 4
    """A leaf dominating fewer pixels than this in a view casts no vote there. Ours."""
    min_views: int = 2
    """Leaves with fewer votes get no language feature. Ours; OpenGaussian drops leaves matched
    fewer than 5 times, with many more training views than our small scenes."""
    min_alpha: float = 0.5
    """Pixels whose rendered alpha is at most this have no leaf. Ours: a share threshold on the
    leaf's weight instead left early, blended scenes without any leaf."""
    merge_cosine: float = 0.9
    """Leaf language features at least this cosine-close share one table entry. Ours (measured:
    benchmarks/results/notes/measurements.md#merge-cosine)."""


class LeafMaskVotes:
    """Accumulates, over training views, each leaf's votes for masks and their language features.

    Args:
        n_leaves: number of leaf ids L (``Codebook.n_leaves``).
        dim: language-feature dimension D.
        config: vote thresholds; defaults to :class:`AssociationConfig`.
        device: where the tallies live (views are moved there).
    """

    def __init__(
        self,
        n_leaves: int,
        dim: int,
        config: AssociationConfig | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config if config is not None else AssociationConfig()
        self.n_leaves = n_leaves
        self.device = torch.device(device)
        self.sums = torch.zeros(n_leaves, dim, dtype=torch.float64, device=self.device)
        """``[L, D]`` sum of the voted masks' features."""
        self.counts = torch.zeros(n_leaves, dtype=torch.long, device=self.device)
        """``[L]`` number of votes (views where the leaf matched a mask)."""

    def add_view(self, leaf_map: Tensor, mask_ids: Tensor, mask_features: Tensor) -> Tensor:
        """Add the votes of one view.

        Args:
            leaf_map: ``[H, W]`` int64 dominant leaf per pixel, -1 = no leaf.
            mask_ids: ``[H, W]`` int64 mask per pixel, -1 = no mask; indexes ``mask_features``.
            mask_features: ``[M, D]`` language feature per mask.

        Returns:
            ``[L]`` int64 mask each leaf voted for in this view, -1 = no vote.
        """
        if leaf_map.shape != mask_ids.shape:
            raise ValueError(
                f"leaf_map {tuple(leaf_map.shape)} vs mask_ids {tuple(mask_ids.shape)}"
            )
        n_leaves, n_masks = self.n_leaves, mask_features.shape[0]
        leaf = leaf_map.reshape(-1).to(self.device, torch.long)
        mask = mask_ids.reshape(-1).to(self.device, torch.long)
        if bool((leaf >= n_leaves).any()) or bool((mask >= n_masks).any()):
            raise ValueError("leaf or mask id out of range")
        has_leaf = leaf >= 0
        leaf_pixels = torch.bincount(leaf[has_leaf], minlength=n_leaves)  # [L]
        vote = torch.full((n_leaves,), -1, dtype=torch.long, device=self.device)
        if n_masks == 0:
            return vote
        pair = has_leaf & (mask >= 0)
        overlap = torch.bincount(leaf[pair] * n_masks + mask[pair], minlength=n_leaves * n_masks)
        best_pixels, best_mask = overlap.view(n_leaves, n_masks).max(dim=1)  # first max on ties
        share = best_pixels.double() / leaf_pixels.clamp_min(1).double()
        votes = (leaf_pixels >= self.config.min_pixels) & (share >= self.config.min_overlap)
        vote[votes] = best_mask[votes]
        voters = torch.nonzero(votes).squeeze(1)
        table = mask_features.detach().to(self.device, torch.float64)
        self.sums[voters] += table[best_mask[voters]]
        self.counts[voters] += 1
        return vote

    def language(self, config: AssociationConfig | None = None) -> tuple[Tensor, Tensor]:
        """Mean voted language feature per leaf.

        Args:
            config: ``min_views`` source; defaults to the constructor's config.

        Returns:
            ``([L, D] float32 unit-normalised mean features, zero where unmatched,
            [L] bool matched = votes >= min_views)``.
        """
        cfg = config if config is not None else self.config
        matched = self.counts >= cfg.min_views
        mean = self.sums / self.counts.clamp_min(1).double()[:, None]
        features = F.normalize(mean, dim=1) * matched[:, None]
        return features.float(), matched


def dedupe_language(
    features: Tensor, matched: Tensor, merge_cosine: float
) -> tuple[Tensor, Tensor]:
    """Merge near-identical leaf language features into a small table.

    Greedy, in leaf order: a matched leaf joins the first entry whose current feature (the
    normalised mean of its members) has cosine >= ``merge_cosine`` with it, else opens a new entry.

    Args:
        features: ``[L, D]`` leaf language features.
        matched: ``[L]`` bool, leaves that have a feature.
        merge_cosine: merge threshold.

    Returns:
        ``([E, D] unit table, [L] int64 entry per leaf, -1 where unmatched)``.
    """
    dim = features.shape[1]
    unit = F.normalize(features.detach().double(), dim=1)
    index = torch.full((features.shape[0],), -1, dtype=torch.long, device=features.device)
    sums = torch.zeros(0, dim, dtype=torch.float64, device=features.device)  # [E, D]
    table = sums  # [E, D] normalised sums = normalised member means
    for leaf in torch.nonzero(matched).squeeze(1).tolist():
        row = unit[leaf]
        hits = torch.nonzero(table @ row >= merge_cosine).squeeze(1)
        if hits.numel() > 0:
            entry = int(hits[0].item())
            sums[entry] += row
        else:
            entry = sums.shape[0]
            sums = torch.cat([sums, row[None]])
        index[leaf] = entry
        table = F.normalize(sums, dim=1)
    return table.to(features.dtype), index
