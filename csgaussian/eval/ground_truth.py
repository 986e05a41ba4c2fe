"""Segmentation ground truth from the field's layouts, matched to views by image name.

Three sources, picked by what the dataset holds (docs/method.md §10):

- instance maps of the test views (the kitchen / built-in layout), the scene's class list;
- LERF-OVS labels ``label/*.json`` on COLMAP scenes: each label names its image
  (``info.name``); the view with that file stem is scored, whichever split it is in;
- 3D-OVS ``segmentations/<view>/<class>.png`` on LLFF scenes: ``<view>`` is an integer index into
  all images sorted by name.

Masks at another resolution than the views are resized to them (nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from csgaussian.data.common import fail
from csgaussian.data.masks import load_lerf_labels, load_segmentation_masks
from csgaussian.eval.segmentation import SegmentationTarget, instance_targets
from csgaussian.preprocess.features import view_stem
from csgaussian.types import Dataset, View


@dataclass
class GroundTruth:
    """Annotated views and the (view, class, query) items scored on them."""

    source: str  # "instance_maps", "lerf_ovs" or "3dovs"
    views: list[View]  # target.view_index indexes this list
    targets: list[SegmentationTarget]
    class_names: list[str]  # the closed set of the scene (3D-OVS argmax)


def resize_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """A bool ``[h, w]`` mask resampled to ``[height, width]`` (nearest, pixel centres)."""
    if mask.shape == (height, width):
        return mask
    grid = mask.float()[None, None]
    return F.interpolate(grid, size=(height, width), mode="nearest-exact")[0, 0] > 0.5


def _targets_from_masks(
    views: list[View],
    masks: list[dict[str, Tensor]],
    queries: dict[str, list[str]] | None,
) -> list[SegmentationTarget]:
    targets = []
    for index, (view, by_class) in enumerate(zip(views, masks, strict=True)):
        height, width = view.size
        for class_name in sorted(by_class):
            texts = [class_name] if queries is None else queries.get(class_name, [])
            gt = resize_mask(by_class[class_name], height, width)
            if not bool(gt.any()):
                continue
            name = view.camera.name or view.image_path.name
            targets.extend(SegmentationTarget(index, name, class_name, t, gt) for t in texts)
    return targets


def lerf_ground_truth(data: Dataset, queries: dict[str, list[str]] | None = None) -> GroundTruth:
    """LERF-OVS labels of ``data.root/label`` matched to the views by image file stem.

    Raises:
        DataError: a label names an image the scene does not have.
    """
    labels = load_lerf_labels(data.root)
    by_stem = {view_stem(v.image_path): v for v in data.train + data.test}
    views, masks = [], []
    for name, by_class in labels.items():
        view = by_stem.get(view_stem(name))
        if view is None:
            raise fail(data.root / "label", f"a label names image {name}, which the scene lacks")
        views.append(view)
        masks.append(by_class)
    classes = sorted({c for by_class in masks for c in by_class})
    return GroundTruth("lerf_ovs", views, _targets_from_masks(views, masks, queries), classes)


def ovs_ground_truth(data: Dataset, queries: dict[str, list[str]] | None = None) -> GroundTruth:
    """3D-OVS masks of ``data.root/segmentations``; folder ``<i>`` is image ``i`` by name.

    Raises:
        DataError: a folder name that is not an image index of the scene.
    """
    folder = Path(data.root) / "segmentations"
    all_views = sorted(data.train + data.test, key=lambda v: v.image_path.name)
    views, masks = [], []
    for name, by_class in load_segmentation_masks(data.root).items():
        if not name.isdigit() or int(name) >= len(all_views):
            raise fail(folder / name, f"not an image index (the scene has {len(all_views)})")
        views.append(all_views[int(name)])
        masks.append(by_class)
    classes = data.class_names or sorted({c for by_class in masks for c in by_class})
    return GroundTruth("3dovs", views, _targets_from_masks(views, masks, queries), classes)


def ground_truth(data: Dataset, queries: dict[str, list[str]] | None = None) -> GroundTruth | None:
    """The scene's segmentation ground truth, or None when it has none.

    Instance maps on every test view win (the kitchen layout also ships 3D-OVS masks of the
    same views); then LERF-OVS labels; then 3D-OVS segmentations.
    """
    root = Path(data.root)
    if data.test and data.class_names and all(v.instance is not None for v in data.test):
        targets = instance_targets(data.test, data.class_names, queries)
        return GroundTruth("instance_maps", list(data.test), targets, list(data.class_names))
    if (root / "label").is_dir():
        return lerf_ground_truth(data, queries)
    if (root / "segmentations").is_dir():
        return ovs_ground_truth(data, queries)
    return None


def query_texts(gt: GroundTruth) -> list[str]:
    """The distinct query texts of the targets, in first-seen order."""
    return list(dict.fromkeys(t.query for t in gt.targets))
