"""Open-vocabulary segmentation scores: mask IoU, targets from instance maps, protocol reports.

Every number names its protocol (docs/method.md §10); see :data:`PROTOCOLS`. The
selection protocols and LangSplat's relevancy protocol score a binary predicted mask per
(annotated view, query text) against the ground truth with :func:`mask_iou`; mIoU is the mean
over (view, query) and acc the share of those with IoU > :data:`ACC_IOU`. 3D-OVS's closed-set
protocol scores the per-pixel argmax over the class list (:func:`argmax_ious`). Scores are
fractions in ``[0, 1]`` (papers print them as percentages).

Ground truth comes from the instance maps of the test views (the kitchen layout, see
:mod:`csgaussian.types`): instance id ``i`` is ``class_names[i - 1]``, 0 is background.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from csgaussian.data.common import fail, read_json
from csgaussian.semantics.encoders import RELEVANCY_NEGATIVES, RELEVANCY_TEMPERATURE
from csgaussian.semantics.query import SILHOUETTE_ALPHA, VISIBLE_SHARE
from csgaussian.types import View

# Accuracy threshold: a (view, query) counts as correct when IoU > 0.25, strictly
# (OpenGaussian b70dcc6 LERF-OVS evaluation, docs/method.md §10).
ACC_IOU = 0.25

# "langsplat_relevancy" (LangSplat d70edb8 eval/evaluate_iou_loc.py, after LERF; docs/method.md
# §10): relevancy against canonical negatives at softmax temperature 10, averaged half-and-half
# with its 30x30 box-filtered copy, min-max normalised, stretched to [-1, 1] and clipped to [0, 1],
# thresholded at 0.4 (eval.sh --mask_thresh), then a 7x7 majority filter (its ``smooth``).
RELEVANCY_BOX = 30
RELEVANCY_THRESHOLD = 0.4
MAJORITY_RADIUS = 3

PROTOCOLS: dict[str, str] = {
    "3d_selection": (
        "OpenGaussian's protocol (docs/method.md §10): for each (view, query) only the selected "
        f"Gaussians are rendered; predicted mask = silhouette alpha > {SILHOUETTE_ALPHA}; IoU with "
        "the ground-truth mask (0 when the union is empty), so occluded parts of the selection "
        f"count against it; mIoU = mean over (view, query), acc = share with IoU > {ACC_IOU}."
    ),
    "visible_selection": (
        "Ours (docs/method.md §10): the full scene is rendered; predicted mask = pixels whose "
        f"rendered weight comes mostly (share > {VISIBLE_SHARE}) from the selected Gaussians, so "
        "occluded parts of the selection do not count against it; IoU, mIoU and acc as in "
        "3d_selection."
    ),
    "langsplat_relevancy": (
        "LangSplat's 2D protocol (docs/method.md §10): per pixel the rendered language feature "
        "f (the blend of the leaves' language rows), relevancy = min over the negatives "
        f"{', '.join(RELEVANCY_NEGATIVES)} of softmax({RELEVANCY_TEMPERATURE:g} * [cos(f, q), "
        f"cos(f, neg)])[0]; averaged with its {RELEVANCY_BOX}x{RELEVANCY_BOX} box-filtered copy, "
        "min-max normalised, mapped to 2x - 1 and clipped to [0, 1], predicted where > "
        f"{RELEVANCY_THRESHOLD}, then a {2 * MAJORITY_RADIUS + 1}x{2 * MAJORITY_RADIUS + 1} "
        "majority filter; IoU, mIoU and acc as in 3d_selection. Not comparable with the "
        "selection protocols."
    ),
    "3dovs_argmax": (
        "3D-OVS's closed-set protocol (docs/method.md §10): every pixel takes the class whose "
        "text has the highest cosine with its rendered language feature; per view, IoU of each "
        "annotated class; miou = mean over classes, then over views; acc = share of "
        f"(view, class) with IoU > {ACC_IOU}."
    ),
}


def mask_iou(pred: Tensor, gt: Tensor) -> float:
    """Intersection over union of two bool ``[H, W]`` masks; 0.0 when the union is empty.

    The empty-union convention is OpenGaussian's: nothing predicted where nothing is annotated
    scores 0, not 1.
    """
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(
            f"masks must be [H, W] of one shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if pred.dtype != torch.bool or gt.dtype != torch.bool:
        raise ValueError(f"masks must be bool tensors, got {pred.dtype} and {gt.dtype}")
    union = int((pred | gt).sum())
    if union == 0:
        return 0.0
    return int((pred & gt).sum()) / union


def summarize(ious: Sequence[float]) -> dict[str, float | int | None]:
    """``{"miou": mean, "acc": share with IoU > ACC_IOU, "n": count}``; None, None, 0 if empty."""
    values = [float(v) for v in ious]
    for v in values:
        if not 0.0 <= v <= 1.0:  # also rejects NaN
            raise ValueError(f"IoU must lie in [0, 1], got {v}")
    if not values:
        return {"miou": None, "acc": None, "n": 0}
    n = len(values)
    return {
        "miou": math.fsum(values) / n,
        "acc": sum(v > ACC_IOU for v in values) / n,
        "n": n,
    }


@dataclass
class SegmentationTarget:
    """One scored item: a query text for a class in one annotated test view."""

    view_index: int  # position in the test views
    view_name: str
    class_name: str
    query: str
    gt: Tensor  # [H, W] bool ground-truth mask of the class in this view


def _view_name(view: View) -> str:
    return view.camera.name or view.image_path.stem


def instance_targets(
    test_views: list[View],
    class_names: list[str],
    queries: dict[str, list[str]] | None,
    present_only: bool = True,
) -> list[SegmentationTarget]:
    """Targets for every (test view, class, query text), ground truth from the instance maps.

    Args:
        test_views: annotated views; each needs ``instance`` (int64 ``[H, W]``, 0 = background,
            ``i`` = ``class_names[i - 1]``).
        class_names: the scene's class list.
        queries: texts per class (from :func:`read_queries`); classes missing from it are not
            evaluated. None = each class name is its own single query.
        present_only: skip (view, class) pairs whose ground truth is empty, as OpenGaussian
            scores only the classes annotated in a frame. With False such pairs stay as targets
            with an empty mask, so any predicted pixel there scores 0 (and so does an empty
            prediction, by the empty-union convention).

    Returns:
        Targets ordered by view, then class-list order, then query order.
    """
    if queries is None:
        queries = {name: [name] for name in class_names}
    unknown = sorted(set(queries) - set(class_names))
    if unknown:
        raise ValueError(f"queries name classes not in the scene's class list: {unknown}")
    targets: list[SegmentationTarget] = []
    for index, view in enumerate(test_views):
        name = _view_name(view)
        if view.instance is None:
            raise ValueError(f"test view {name} has no instance map")
        instance = view.instance
        if instance.ndim != 2:
            raise ValueError(f"test view {name}: instance map must be [H, W]")
        if instance.numel() and (int(instance.min()) < 0 or int(instance.max()) > len(class_names)):
            raise ValueError(
                f"test view {name}: instance ids must lie in [0, {len(class_names)}] "
                f"(0 = background, i = class i)"
            )
        for k, class_name in enumerate(class_names):
            if class_name not in queries:
                continue
            gt = instance == k + 1  # [H, W] bool
            if present_only and not bool(gt.any()):
                continue
            for text in queries[class_name]:
                targets.append(SegmentationTarget(index, name, class_name, text, gt))
    return targets


def read_queries(path: Path, class_names: list[str]) -> dict[str, list[str]]:
    """Read a ``--queries FILE``: a JSON object ``{class name: [query text, ...]}``.

    Each class maps to one or more texts (e.g. paraphrases); every text is scored as its own
    (view, query) item. Classes the file omits are not evaluated. Texts are stripped of
    surrounding white space.

    Returns:
        The texts per class, keys in the order of ``class_names``.

    Raises:
        DataError: one line naming the file and the problem.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise fail(path, f"queries must be a JSON object, got {type(data).__name__}")
    if not data:
        raise fail(path, "queries name no class")
    known = set(class_names)
    for class_name, texts in data.items():
        if class_name not in known:
            raise fail(path, f"class '{class_name}' is not in the scene's class list")
        if not isinstance(texts, list) or not texts:
            raise fail(path, f"class '{class_name}': value must be a non-empty list of strings")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise fail(path, f"class '{class_name}': every query must be a non-empty string")
        stripped = [t.strip() for t in texts]
        if len(set(stripped)) != len(stripped):
            raise fail(path, f"class '{class_name}': duplicate query text")
    return {name: [t.strip() for t in data[name]] for name in class_names if name in data}


def protocol_report(per_target: list[tuple[SegmentationTarget, float]]) -> dict[str, object]:
    """Aggregate per-target IoUs under one protocol.

    Returns:
        ``{"miou", "acc", "n"}`` over all (view, query) items (see :func:`summarize`),
        ``"per_class"``: ``{class: mean IoU}`` with classes sorted by name, and ``"per_query"``:
        ``[{"view", "class", "query", "iou"}, ...]`` sorted by view index, class, query.
    """
    by_class: dict[str, list[float]] = {}
    for target, iou in per_target:
        by_class.setdefault(target.class_name, []).append(float(iou))
    report: dict[str, object] = dict(summarize([float(iou) for _, iou in per_target]))
    report["per_class"] = {name: summarize(by_class[name])["miou"] for name in sorted(by_class)}
    ordered = sorted(
        per_target, key=lambda item: (item[0].view_index, item[0].class_name, item[0].query)
    )
    report["per_query"] = [
        {"view": t.view_name, "class": t.class_name, "query": t.query, "iou": float(iou)}
        for t, iou in ordered
    ]
    return report


def relevancy(features: Tensor, query: Tensor, negatives: Tensor) -> Tensor:
    """LERF/LangSplat relevancy of ``query`` per pixel: min over the negatives of the softmax
    probability of the query in the pair (query, negative) at temperature 10.

    Args:
        features: ``[H, W, D]`` per-pixel features (any norm; zero rows have cosine 0).
        query: ``[D]`` text feature; negatives: ``[J, D]``.

    Returns:
        ``[H, W]`` in (0, 1).
    """
    unit = F.normalize(features, dim=-1)
    pos = unit @ F.normalize(query, dim=0)  # [H, W]
    neg = unit @ F.normalize(negatives, dim=1).T  # [H, W, J]
    pair = torch.softmax(
        RELEVANCY_TEMPERATURE * torch.stack([pos[..., None].expand_as(neg), neg], -1), -1
    )
    return pair[..., 0].min(dim=-1).values


def _box_mean(image: Tensor, size: int) -> Tensor:
    """Mean over a ``size`` x ``size`` window (reflected borders, as OpenCV's filter2D)."""
    before, after = size // 2, size - 1 - size // 2
    grid = image[None, None]
    pad_h = min(before, image.shape[0] - 1), min(after, image.shape[0] - 1)
    pad_w = min(before, image.shape[1] - 1), min(after, image.shape[1] - 1)
    grid = F.pad(grid, (pad_w[0], pad_w[1], pad_h[0], pad_h[1]), mode="reflect")
    kernel = (pad_h[0] + pad_h[1] + 1, pad_w[0] + pad_w[1] + 1)
    return F.avg_pool2d(grid, kernel, stride=1)[0, 0]


def majority_filter(mask: Tensor, radius: int = MAJORITY_RADIUS) -> Tensor:
    """Each pixel takes the majority value of its ``(2r+1)^2`` window cropped at the borders;
    ties go to False (LangSplat's ``smooth``)."""
    grid = mask.float()[None, None]
    share = F.avg_pool2d(grid, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)[
        0, 0
    ]
    return share > 0.5


def relevancy_mask(relevancy_map: Tensor, box: int = RELEVANCY_BOX) -> Tensor:
    """LangSplat's predicted mask ``[H, W]`` bool from a relevancy map ``[H, W]``."""
    blended = 0.5 * (_box_mean(relevancy_map, box) + relevancy_map)
    shifted = blended - blended.min()
    normalised = shifted / (shifted.max() + 1e-9)
    stretched = (2 * normalised - 1).clamp(0, 1)
    return majority_filter(stretched > RELEVANCY_THRESHOLD)


def argmax_ious(features: Tensor, class_texts: Tensor, gt: dict[int, Tensor]) -> dict[int, float]:
    """3D-OVS closed-set IoUs of one view.

    Args:
        features: ``[H, W, D]`` rendered language features.
        class_texts: ``[C, D]`` text features of the class list.
        gt: ``{class index: bool [H, W]}`` for the classes annotated in the view.

    Returns:
        ``{class index: IoU}`` of ``argmax == class`` against each annotated mask.
    """
    scores = F.normalize(features, dim=-1) @ F.normalize(class_texts, dim=1).T  # [H, W, C]
    label = scores.argmax(dim=-1)
    return {k: mask_iou(label == k, mask) for k, mask in gt.items()}


def argmax_report(per_view: list[dict[str, float]]) -> dict[str, object]:
    """3D-OVS aggregate: mean over classes per view, then over views; acc over (view, class)."""
    view_means = [math.fsum(v.values()) / len(v) for v in per_view if v]
    every = [iou for v in per_view for iou in v.values()]
    by_class: dict[str, list[float]] = {}
    for view in per_view:
        for name, iou in view.items():
            by_class.setdefault(name, []).append(iou)
    return {
        "miou": math.fsum(view_means) / len(view_means) if view_means else None,
        "acc": summarize(every)["acc"],
        "n": len(every),
        "per_class": {name: summarize(by_class[name])["miou"] for name in sorted(by_class)},
    }
