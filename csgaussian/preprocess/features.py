"""LangSplat's ``language_features/`` layout: the one reader and writer of per-view mask files.

Per image, with ``stem`` = the image file name cut at its first dot:

- ``<stem>_s.npy``: float32 ``[4, H, W]``, one plane per level of :data:`LEVELS`, integer-valued
  GLOBAL mask ids (level L's ids follow all masks of levels < L), -1 = no mask;
- ``<stem>_f.npy``: float32 ``[N_total, D]``, row ``g`` = unit-norm language feature of global
  id ``g``.

A mask can be overwritten by later ones and keep no pixel; readers drop such masks. Files made at
another resolution than the images are resized to it (nearest neighbour), as LangSplat's SAM maps
are often made from the full-size images while training uses a downscaled copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from csgaussian.data.common import fail
from csgaussian.fileio import atomic_write

LEVELS = ("default", "subpart", "part", "whole")  # plane order of ``_s.npy``


@dataclass
class ViewMasks:
    """The masks of one view at one level."""

    stem: str
    ids: np.ndarray  # [H, W] local mask id 0..M-1, -1 = no mask; int8/16/32 (mask_id_dtype)
    features: np.ndarray  # [M, D] float32, row m = language feature of mask m


def mask_id_dtype(n_masks: int) -> np.dtype:
    """The smallest of int8, int16 and int32 holding the local ids ``-1..n_masks - 1``: stages
    2-3 keep every training view's ids in memory, at 1 or 2 bytes a pixel instead of 8."""
    for dtype in (np.int8, np.int16):
        if n_masks - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int32)


def view_stem(image_path: str | os.PathLike[str]) -> str:
    """The stem that names a view's feature files: the image file name cut at its first dot."""
    return Path(image_path).name.split(".", 1)[0]


def _paths(folder: Path, stem: str) -> tuple[Path, Path]:
    """``(<stem>_s.npy, <stem>_f.npy)`` in ``folder``."""
    return folder / f"{stem}_s.npy", folder / f"{stem}_f.npy"


def _level_index(level: str) -> int:
    if level not in LEVELS:
        raise ValueError(f"unknown mask level {level!r}; choose one of {', '.join(LEVELS)}")
    return LEVELS.index(level)


def write_view(
    out_dir: str | os.PathLike[str],
    stem: str,
    levels_ids: list[np.ndarray],
    level_features: list[np.ndarray],
) -> None:
    """Write one view's ``_s.npy`` / ``_f.npy`` pair, each file atomically.

    Args:
        out_dir: the ``language_features`` folder (created when missing).
        stem: the view's :func:`view_stem`.
        levels_ids: per level of :data:`LEVELS`, int ``[H, W]`` local ids 0..M_L-1, -1 = none.
        level_features: per level, ``[M_L, D]`` unit-norm features of its masks.

    Raises:
        ValueError: not four levels, mismatched shapes or ids outside 0..M_L-1.
    """
    if len(levels_ids) != len(LEVELS) or len(level_features) != len(LEVELS):
        raise ValueError(f"need ids and features for each of the {len(LEVELS)} levels {LEVELS}")
    shape = np.shape(levels_ids[0])
    dim = np.shape(level_features[0])[-1]
    planes, offset = [], 0
    for level, ids, feats in zip(LEVELS, levels_ids, level_features, strict=True):
        ids = np.asarray(ids)
        if ids.shape != shape or len(shape) != 2:
            raise ValueError(f"level {level}: ids must be [H, W] {shape}, got {ids.shape}")
        if np.ndim(feats) != 2 or np.shape(feats)[1] != dim:
            raise ValueError(f"level {level}: features must be [M, {dim}], got {np.shape(feats)}")
        if ids.size and (ids.min() < -1 or ids.max() >= len(feats)):
            raise ValueError(f"level {level}: ids must lie in -1..{len(feats) - 1}")
        planes.append(np.where(ids >= 0, ids + offset, -1))
        offset += len(feats)
    seg = np.stack(planes).astype(np.float32)  # [4, H, W]
    features = np.concatenate(level_features).astype(np.float32)  # [N_total, D]
    seg_path, feat_path = _paths(Path(out_dir), stem)
    atomic_write(feat_path, lambda handle: np.save(handle, features))
    atomic_write(seg_path, lambda handle: np.save(handle, seg))


def _load(path: Path) -> np.ndarray:
    """A real-valued array from ``path``, or a one-line DataError."""
    if not path.is_file():
        raise fail(path, "file is missing")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise fail(path, f"unreadable .npy file ({err})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        raise fail(path, "expected a numeric .npy array")
    return array


def _check_level_order(seg: np.ndarray, path: Path) -> None:
    """Global ids grow with the level: every id of level L exceeds every id of levels < L."""
    highest = -1
    for level, plane in zip(LEVELS, seg, strict=True):
        used = plane[plane >= 0]
        if not used.size:
            continue
        if used.min() <= highest:
            raise fail(
                path,
                f"level {level} uses mask id {int(used.min())}, which belongs to an earlier "
                f"level (global ids must grow with the level)",
            )
        highest = int(used.max())


def _resize_nearest(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Integer id map ``[h, w]`` resampled to ``size`` = (H, W), nearest neighbour (pixel
    centres, as PIL's NEAREST)."""
    if ids.shape == tuple(size):
        return ids
    grid = torch.from_numpy(ids.astype(np.float32))[None, None]
    return F.interpolate(grid, size=size, mode="nearest-exact")[0, 0].numpy().astype(np.int64)


def read_view(
    features_dir: str | os.PathLike[str],
    stem: str,
    level: str,
    size: tuple[int, int] | None = None,
) -> ViewMasks:
    """Read one view's masks at ``level`` with compact local ids.

    The level's plane is resized to ``size`` when given and different (nearest neighbour);
    then its global ids become local ids 0..M-1 in increasing global order, and masks of the
    level without a pixel (overwritten, or lost in the resize) are dropped.

    Args:
        features_dir: the ``language_features`` folder.
        stem: the view's :func:`view_stem`.
        level: one of :data:`LEVELS`.
        size: ``(H, W)`` of the view's image, or None to keep the file's resolution.

    Raises:
        DataError: a missing or malformed file (one line naming it and the problem).
    """
    index = _level_index(level)
    seg_path, feat_path = _paths(Path(features_dir), stem)
    seg, feats = _load(seg_path), _load(feat_path)
    if seg.ndim != 3 or seg.shape[0] != len(LEVELS) or 0 in seg.shape:
        raise fail(seg_path, f"expected mask ids of shape [4, H, W], got {list(seg.shape)}")
    if feats.ndim != 2 or feats.shape[1] == 0:
        raise fail(feat_path, f"expected features of shape [N, D], got {list(feats.shape)}")
    if not np.all(np.isfinite(seg)) or not np.array_equal(seg, np.round(seg)):
        raise fail(seg_path, "mask ids must be integer-valued")
    if seg.min() < -1:
        raise fail(seg_path, f"mask id {int(seg.min())} is below -1 (the no-mask id)")
    if seg.max() >= len(feats):
        raise fail(
            seg_path, f"mask id {int(seg.max())} but {feat_path.name} has only {len(feats)} rows"
        )
    _check_level_order(seg, seg_path)
    if not np.all(np.isfinite(feats)):
        raise fail(feat_path, "features have a NaN or inf")
    plane = seg[index].astype(np.int64)
    if size is not None:
        plane = _resize_nearest(plane, size)
    present, local = np.unique(plane, return_inverse=True)
    if len(present) and present[0] == -1:
        present, local = present[1:], local - 1
    return ViewMasks(
        stem=stem,
        ids=local.reshape(plane.shape).astype(mask_id_dtype(len(present))),
        features=feats[present].astype(np.float32),
    )


def read_features(
    features_dir: str | os.PathLike[str],
    stems: Iterable[str],
    level: str = "whole",
    sizes: dict[str, tuple[int, int]] | None = None,
) -> dict[str, ViewMasks]:
    """Read the masks of the views named by ``stems`` (matched by file name, never position).

    Args:
        features_dir: the ``language_features`` folder.
        stems: the views' :func:`view_stem`.
        level: one of :data:`LEVELS`.
        sizes: ``{stem: (H, W)}`` of the images; masks at another resolution are resized.

    Returns:
        ``{stem: ViewMasks}``.

    Raises:
        DataError: the folder is missing, views have no files (all such views are named in
            one line), or a file is missing from its pair or malformed (the file is named).
    """
    folder = Path(features_dir)
    _level_index(level)
    if not folder.is_dir():
        raise fail(folder, "language features folder is missing")
    stems = list(dict.fromkeys(stems))
    missing = [s for s in stems if not any(p.is_file() for p in _paths(folder, s))]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        raise fail(folder, f"no features for view(s) {shown} (expected <stem>_s.npy and _f.npy)")
    sizes = sizes or {}
    return {stem: read_view(folder, stem, level, sizes.get(stem)) for stem in stems}
