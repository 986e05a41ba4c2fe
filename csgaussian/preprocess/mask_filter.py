"""Post-processing of automatic SAM masks, vectorised: box NMS, LangSplat's mask NMS and the
per-level id map.

LangSplat (d70edb8 preprocess.py ``mask_nms``) compares every pair of masks in a Python double
loop (minutes per image); here every pairwise intersection is one matrix product of the
flattened masks, and every criterion a matrix expression over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MaskNmsConfig:
    """LangSplat's ``masks_update(..., iou_thr=0.8, score_thr=0.7, inner_thr=0.5)`` and the
    containment tests of its ``mask_nms`` (0.5 and 0.85 of a mask's area); the score of a mask
    is stability x predicted IoU."""

    iou_thr: float = 0.8
    score_thr: float = 0.7
    inner_thr: float = 0.5
    inside: float = 0.85  # share of the smaller mask inside the larger: it is "inner"
    outside: float = 0.5  # share of the larger mask covered below this: it is "outer"
    fallback: int = 3  # a criterion that keeps no mask keeps the best this many instead


def pairwise_overlap(masks: Tensor) -> tuple[Tensor, Tensor]:
    """``(intersection [N, N], area [N])`` pixel counts of bool masks ``[N, H, W]``."""
    flat = masks.reshape(masks.shape[0], -1).float()
    inter = flat @ flat.T
    return inter, inter.diagonal().clone()


def mask_nms(masks: Tensor, scores: Tensor, config: MaskNmsConfig = MaskNmsConfig()) -> Tensor:  # noqa: B008
    """Indices (into ``masks``, best score first) of the masks LangSplat's filter keeps.

    A mask is dropped when a better-scored mask overlaps it with IoU > ``iou_thr``, when its
    score is at most ``score_thr``, or when it is nested in / around a better-scored mask
    (1 - product of the two coverage shares > 1 - ``inner_thr``). As in LangSplat, the "lower"
    nesting test also sees the first super-diagonal (its ``tril(..., diagonal=1)``).

    Args:
        masks: bool ``[N, H, W]``; scores: ``[N]``.
    """
    if masks.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    scores, order = scores.float().sort(descending=True)
    inter, area = pairwise_overlap(masks[order])
    area = area.clamp(min=1.0)
    union = area[:, None] + area[None, :] - inter
    iou = (inter / union.clamp(min=1.0)).triu(diagonal=1)
    share_i = inter / area[:, None]  # [i, j]: share of mask i covered by j
    share_j = inter / area[None, :]  # [i, j]: share of mask j covered by i
    nested = 1 - share_i * share_j
    upper_pairs = torch.ones_like(inter, dtype=torch.bool).triu()
    j_inside = (share_i < config.outside) & (share_j >= config.inside) & upper_pairs
    i_inside = (share_i >= config.inside) & (share_j < config.outside) & upper_pairs
    inner = torch.where(j_inside, nested, 0.0) + torch.where(i_inside, nested, 0.0).T
    keep_iou = iou.max(dim=0).values <= config.iou_thr
    keep_score = scores > config.score_thr
    keep_upper = inner.triu(diagonal=1).max(dim=0).values <= 1 - config.inner_thr
    keep_lower = inner.tril(diagonal=1).max(dim=0).values <= 1 - config.inner_thr
    best = torch.arange(min(config.fallback, len(scores)))
    for keep in (keep_score, keep_upper, keep_lower):
        if not keep.any():
            keep[best] = True
    return order[keep_iou & keep_score & keep_upper & keep_lower]


def mask_boxes(masks: Tensor) -> Tensor:
    """``[N, 4]`` float boxes ``x0, y0, x1, y1`` (inclusive pixel bounds) of non-empty masks."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # [N, H], [N, W]
    h, w = masks.shape[1:]
    y = torch.arange(h)
    x = torch.arange(w)
    y0 = torch.where(rows, y, h).amin(1)
    y1 = torch.where(rows, y, -1).amax(1)
    x0 = torch.where(cols, x, w).amin(1)
    x1 = torch.where(cols, x, -1).amax(1)
    return torch.stack([x0, y0, x1, y1], 1).float()


def box_nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Greedy NMS (SAM's ``box_nms_thresh``): indices kept, best score first. The IoU matrix is
    computed at once; the greedy sweep suppresses with whole rows."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    lo = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (hi - lo + 1).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2] + 1).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for k in range(len(order)):
        if not suppressed[k]:
            suppressed[k + 1 :] |= iou[k, k + 1 :] > threshold
    return order[~suppressed]


def id_map(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Local ids ``[H, W]`` (-1 = none) with larger masks painted first, so a smaller mask shows
    over the larger one it lies on; masks left without a pixel are dropped and ids compacted.

    Returns:
        ``(ids [H, W] int64, kept [M])``: ``kept`` = indices into ``masks`` of ids 0..M-1.
    """
    order = masks.flatten(1).sum(1).argsort(descending=True, stable=True)
    if len(order):
        last = len(order) - 1 - masks[order].flip(0).to(torch.uint8).argmax(0)  # last painter
        top = torch.where(masks.any(0), last, -1)
    else:
        top = torch.full(masks.shape[1:], -1)
    used = torch.unique(top[top >= 0])
    local = torch.full((len(order) + 1,), -1, dtype=torch.long)
    local[used + 1] = torch.arange(len(used))
    return local[top + 1], order[used]
