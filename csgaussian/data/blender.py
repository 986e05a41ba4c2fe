"""NeRF / Blender-synthetic layout: ``transforms_{train,test}.json`` plus image folders.

``frames[].transform_matrix`` is camera-to-world in OpenGL axes (camera looks down -Z, +Y up);
we flip the camera's Y and Z axes to OpenCV and invert to a world-to-camera ``viewmat``.
Optional ``instance/<split>_XXX.png`` maps (0 = background, ``i`` = line ``i`` of
``segmentations/classes.txt``) are read when present (the kitchen layout).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from csgaussian.data.common import (
    bounds_from_cameras,
    check_finite,
    check_rotation,
    estimate_background,
    fail,
    find_image,
    image_header,
    intrinsics,
    load_view,
    read_json,
    require,
    viewmat_from_c2w,
)
from csgaussian.data.masks import read_class_names
from csgaussian.types import Camera, Dataset, View

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips the camera's Y and Z axes


def _number(meta: dict, key: str, path: Path) -> float | None:
    """Optional finite number ``meta[key]``."""
    if key not in meta:
        return None
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(path, f"'{key}' must be a finite number, got {value!r}")
    return float(value)


def _intrinsics(meta: dict, width: int, height: int, path: Path) -> torch.Tensor:
    """``K`` [3, 3] from ``camera_angle_x`` or ``fl_x``; optional ``camera_angle_y``, ``fl_y``,
    ``cx``, ``cy`` (defaults: square pixels, principal point at the image centre)."""
    fx = _number(meta, "fl_x", path)
    if fx is None:
        angle_x = _number(meta, "camera_angle_x", path)
        if angle_x is None:
            raise fail(path, "missing required key 'camera_angle_x'")
        if not 0.0 < angle_x < math.pi:
            raise fail(path, f"camera_angle_x must be in (0, pi), got {angle_x}")
        fx = 0.5 * width / math.tan(0.5 * angle_x)
    fy = _number(meta, "fl_y", path)
    angle_y = _number(meta, "camera_angle_y", path)
    if fy is None and angle_y is not None:
        if not 0.0 < angle_y < math.pi:
            raise fail(path, f"camera_angle_y must be in (0, pi), got {angle_y}")
        fy = 0.5 * height / math.tan(0.5 * angle_y)
    fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise fail(path, "focal length must be positive")
    cx = _number(meta, "cx", path)
    cy = _number(meta, "cy", path)
    return intrinsics(fx, fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy)


def _pose(frame: dict, index: int, path: Path) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` of frame ``index``."""
    raw = require(frame, "transform_matrix", path, f"frame {index}: ")
    try:
        c2w = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(path, f"frame {index}: transform_matrix is not a numeric matrix") from None
    if c2w.shape not in ((4, 4), (3, 4)):
        raise fail(path, f"frame {index}: transform_matrix must be 4x4, got {c2w.shape}")
    check_finite(c2w, path, f"frame {index} transform_matrix")
    check_rotation(c2w[:3, :3], path, f"frame {index}: transform_matrix")
    full = np.eye(4)
    full[:3] = c2w[:3]
    return full @ OPENGL_TO_OPENCV


def _instance_path(root: Path, split: str, image_path: Path) -> Path:
    """``instance/<split>_<digits>.png`` for an image named ``..._<digits>``."""
    match = re.search(r"(\d+)$", image_path.stem)
    key = match.group(1) if match else image_path.stem
    return root / "instance" / f"{split}_{key}.png"


def _load_split(
    root: Path, json_path: Path, split: str, downscale: int, class_names: list[str] | None
) -> list[View]:
    """Views of one ``transforms_<split>.json``; ``class_names`` None = no instance maps."""
    meta = read_json(json_path)
    frames = require(meta, "frames", json_path)
    if not isinstance(frames, list) or not frames:
        raise fail(json_path, "'frames' must be a non-empty list")
    expected_size = None
    if "w" in meta or "h" in meta:
        width, height = _number(meta, "w", json_path), _number(meta, "h", json_path)
        if width is None or height is None:
            raise fail(json_path, "give both 'w' and 'h' or neither")
        expected_size = (int(width), int(height))
    views = []
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise fail(json_path, f"frame {index} is not an object")
        file_path = require(frame, "file_path", json_path, f"frame {index}: ")
        c2w = _pose(frame, index, json_path)
        image_path = find_image(root / str(file_path))
        if expected_size is None:
            expected_size = image_header(image_path)[:2]
        width, height = expected_size
        camera = Camera(
            viewmat_from_c2w(c2w),
            _intrinsics(meta, width, height, json_path),
            width,
            height,
            name=image_path.stem,
        )
        instance = None
        if class_names is not None:
            instance = _instance_path(root, split, image_path)
        views.append(
            load_view(
                camera,
                image_path,
                downscale,
                white_background=True,
                instance_path=instance,
                n_classes=len(class_names or []),
            )
        )
    return views


def load_blender(root: Path, downscale: int = 1, load_instances: bool = True) -> Dataset:
    """Load a NeRF/Blender-layout scene.

    Images with alpha are composited onto white (the NeRF-synthetic convention) and the scene
    background is then white; otherwise, when instance maps mark a near-constant backdrop, the
    background is its median colour. Bounds come from the cameras (see
    :func:`~csgaussian.data.common.bounds_from_cameras`): there is no point cloud.

    Args:
        root: folder with ``transforms_train.json`` and ``transforms_test.json`` (or ``_val``).
        downscale: integer image reduction factor.
        load_instances: read ``instance/`` maps when the folder exists.
    """
    classes_path = root / "segmentations" / "classes.txt"
    with_instances = load_instances and (root / "instance").is_dir()
    if with_instances and not classes_path.is_file():
        raise fail(classes_path, "file is missing (it names the ids of instance/)")
    class_names = read_class_names(classes_path) if classes_path.is_file() else []
    names = class_names if with_instances else None
    train = _load_split(root, root / "transforms_train.json", "train", downscale, names)
    test: list[View] = []
    for split in ("test", "val"):
        path = root / f"transforms_{split}.json"
        if path.is_file():
            test = _load_split(root, path, split, downscale, names)
            break
    has_alpha = image_header(train[0].image_path)[2]
    background = torch.ones(3) if has_alpha else estimate_background(train)
    return Dataset(
        root=root,
        train=train,
        test=test,
        bounds=bounds_from_cameras([v.camera for v in train + test]),
        class_names=class_names,
        background=background,
        layout="blender",
    )
