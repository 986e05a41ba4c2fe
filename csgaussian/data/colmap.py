"""COLMAP layout: ``sparse/0/`` (text or binary) with ``images/``, optional LERF-OVS ``label/``.

Poses in ``images.txt``/``images.bin`` are already world-to-camera in OpenCV axes. Lens
distortion (SIMPLE_RADIAL, RADIAL, OPENCV) is ignored with one warning per scene: the images
are used as if they were undistorted pinhole images.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from csgaussian.data.colmap_io import ColmapCamera, ColmapImage, read_model
from csgaussian.data.common import (
    bounds_from_cameras,
    bounds_from_points,
    check_finite,
    every_nth_is_test,
    fail,
    image_folder,
    intrinsics,
    load_view,
    read_lines,
)
from csgaussian.data.masks import load_lerf_labels
from csgaussian.types import Camera, Dataset

PINHOLE_PARAMS = {  # model -> number of leading parameters (f | fx fy, cx, cy) before distortion
    "SIMPLE_PINHOLE": 3,
    "PINHOLE": 4,
    "SIMPLE_RADIAL": 3,
    "RADIAL": 3,
    "OPENCV": 4,
}


def qvec_to_rotation(q: np.ndarray) -> np.ndarray:
    """Rotation ``[3, 3]`` of a quaternion ``[4]`` (w, x, y, z; normalised here)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _camera(image: ColmapImage, cam: ColmapCamera, path: Path) -> Camera:
    """Our pinhole :class:`Camera` for one registered image."""
    p = cam.params
    if cam.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        K = intrinsics(p[0], p[0], p[1], p[2])
    else:
        K = intrinsics(p[0], p[1], p[2], p[3])
    check_finite(np.concatenate([image.qvec, image.tvec]), path, f"pose of {image.name}")
    if np.linalg.norm(image.qvec) < 1e-8:
        raise fail(path, f"pose of {image.name} has a zero quaternion")
    view = np.eye(4)
    view[:3, :3] = qvec_to_rotation(image.qvec)
    view[:3, 3] = image.tvec
    return Camera(
        torch.tensor(view, dtype=torch.float32), K, cam.width, cam.height, name=image.name
    )


def _test_names(root: Path, names: list[str]) -> set[str]:
    """Held-out names: ``test_frames.txt`` if present, else every 8th image by name."""
    listing = root / "test_frames.txt"
    if not listing.is_file():
        return {
            n for n, is_test in zip(names, every_nth_is_test(len(names)), strict=True) if is_test
        }
    listed = read_lines(listing)
    unknown = sorted(set(listed) - set(names))
    if unknown:
        raise fail(listing, f"lists {unknown[0]} which is not a registered image")
    return set(listed)


def load_colmap(root: Path, downscale: int = 1, load_instances: bool = True) -> Dataset:
    """Load a COLMAP scene; ``load_instances`` is accepted for symmetry (no instance maps here).

    Images are sorted by name; the point cloud becomes ``points``/``point_colors`` and the bounds
    are its 1-99 % percentiles padded by 10 % of the largest side (camera heuristic if empty).
    ``class_names`` are the sorted LERF-OVS categories of ``label/`` when present.
    """
    sparse = root / "sparse" / "0"
    model = read_model(sparse)
    distorted = sorted(
        {
            c.model
            for c in model.cameras.values()
            if c.model in PINHOLE_PARAMS and np.any(c.params[PINHOLE_PARAMS[c.model] :] != 0)
        }
    )
    unsupported = sorted({c.model for c in model.cameras.values()} - set(PINHOLE_PARAMS))
    if unsupported:
        raise fail(
            model.cameras_file, f"unsupported camera model {unsupported[0]} (pinhole-like only)"
        )
    if distorted:
        warnings.warn(
            f"{model.cameras_file}: ignoring lens distortion of {', '.join(distorted)} cameras",
            stacklevel=2,
        )
    folder, prescaled = image_folder(root, downscale)
    images = sorted(model.images, key=lambda im: im.name)
    test_names = _test_names(root, [im.name for im in images])
    train, test = [], []
    for image in images:
        if image.camera_id not in model.cameras:
            raise fail(model.images_file, f"{image.name} uses unknown camera {image.camera_id}")
        camera = _camera(image, model.cameras[image.camera_id], model.images_file)
        view = load_view(camera, folder / image.name, downscale, prescaled=prescaled)
        (test if image.name in test_names else train).append(view)
    if not train:
        raise fail(sparse, "no training images")
    check_finite(model.xyz, model.points_file, "a point position")
    if len(model.xyz):
        bounds = bounds_from_points(model.xyz)
        points = torch.tensor(model.xyz, dtype=torch.float32)
        colors = torch.tensor(model.rgb, dtype=torch.float32) / 255.0
    else:
        bounds, points, colors = bounds_from_cameras([v.camera for v in train + test]), None, None
    labels = root / "label"
    class_names = (
        sorted({c for masks in load_lerf_labels(root).values() for c in masks})
        if labels.is_dir()
        else []
    )
    return Dataset(
        root=root,
        train=train,
        test=test,
        bounds=bounds,
        class_names=class_names,
        points=points,
        point_colors=colors,
        layout="colmap",
    )
