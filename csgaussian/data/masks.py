"""Segmentation annotations: class lists, 3D-OVS per-class masks and LERF-OVS polygon labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from csgaussian.data.common import fail, read_json, read_label_map, read_lines, require

MASK_THRESHOLD = 127  # 3D-OVS / kitchen masks are 0 / 255; a pixel is in the mask above this


def read_class_names(path: Path) -> list[str]:
    """Object names, one per line of ``classes.txt``; line ``i`` is instance id ``i``."""
    if not path.is_file():
        raise fail(path, "file is missing")
    names = read_lines(path)
    if len(set(names)) != len(names):
        raise fail(path, "duplicate class name")
    return names


def load_segmentation_masks(root: str | Path) -> dict[str, dict[str, Tensor]]:
    """3D-OVS masks ``segmentations/<view>/<class>.png`` (also kitchen's layout).

    Args:
        root: scene folder holding ``segmentations/``.

    Returns:
        ``{view folder name: {class name: bool [H, W]}}``, sorted by view; classes are the mask
        file stems and must appear in ``segmentations/classes.txt`` when that file exists.
    """
    folder = Path(root) / "segmentations"
    if not folder.is_dir():
        raise fail(folder, "segmentation folder is missing")
    classes_path = folder / "classes.txt"
    known = set(read_class_names(classes_path)) if classes_path.is_file() else None
    result: dict[str, dict[str, Tensor]] = {}
    for view_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        masks: dict[str, Tensor] = {}
        for mask_path in sorted(view_dir.glob("*.png")):
            if known is not None and mask_path.stem not in known:
                raise fail(mask_path, f"class '{mask_path.stem}' is not in {classes_path.name}")
            mask = read_label_map(mask_path) > MASK_THRESHOLD  # [H, W]
            masks[mask_path.stem] = torch.from_numpy(mask)
        result[view_dir.name] = masks
    return result


def _rasterise(polygon: object, width: int, height: int, path: Path, where: str) -> np.ndarray:
    """Fill one polygon ``[[x, y], ...]`` (pixel coordinates) into a bool ``[H, W]``."""
    try:
        points = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(path, f"{where}: segmentation is not a list of [x, y] points") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise fail(path, f"{where}: segmentation needs at least 3 [x, y] points")
    if not np.all(np.isfinite(points)):
        raise fail(path, f"{where}: segmentation has a NaN or inf")
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], fill=1, outline=1)
    return np.asarray(canvas) > 0


def load_lerf_labels(root: str | Path) -> dict[str, dict[str, Tensor]]:
    """LERF-OVS labels ``label/*.json`` rasterised to masks (LangSplat's per-frame format).

    Each file holds ``info`` (``name``, ``width``, ``height``) and ``objects[]`` with ``category``
    and ``segmentation`` (one polygon in pixels); polygons of one category are OR-ed.

    Args:
        root: scene folder holding ``label/``.

    Returns:
        ``{image name: {category: bool [H, W]}}``, sorted by file name.
    """
    folder = Path(root) / "label"
    if not folder.is_dir():
        raise fail(folder, "label folder is missing")
    result: dict[str, dict[str, Tensor]] = {}
    for path in sorted(folder.glob("*.json")):
        meta = read_json(path)
        info = require(meta, "info", path)
        name = str(require(info, "name", path, "info: "))
        width, height = (
            require(info, "width", path, "info: "),
            require(info, "height", path, "info: "),
        )
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise fail(path, "info: width and height must be positive integers")
        objects = require(meta, "objects", path)
        if not isinstance(objects, list):
            raise fail(path, "'objects' must be a list")
        masks: dict[str, np.ndarray] = {}
        for k, obj in enumerate(objects):
            category = str(require(obj, "category", path, f"object {k}: "))
            polygon = require(obj, "segmentation", path, f"object {k}: ")
            filled = _rasterise(polygon, width, height, path, f"object {k}")
            masks[category] = masks.get(category, np.zeros_like(filled)) | filled
        result[name] = {c: torch.from_numpy(m) for c, m in masks.items()}
    return result
