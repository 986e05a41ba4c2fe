"""LLFF layout: ``poses_bounds.npy`` with ``images/`` (or ``images_<f>/``), 3D-OVS extras.

Each row of ``poses_bounds.npy`` is a 3x5 matrix ``[R | t | hwf]`` flattened row-major, then
``near, far``. The rotation columns are the camera's "down, right, back" axes in world
coordinates; OpenCV wants "right, down, forward" = columns ``(1, 0, -2)``. ``hwf`` is height,
width and focal at the resolution of ``images/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from csgaussian.data.common import (
    check_finite,
    check_rotation,
    every_nth_is_test,
    fail,
    image_folder,
    intrinsics,
    list_images,
    load_view,
    viewmat_from_c2w,
)
from csgaussian.data.masks import read_class_names
from csgaussian.types import Camera, Dataset


def llff_to_opencv_c2w(pose: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` from an LLFF ``[3, 4]`` (down, right, back | t)."""
    c2w = np.eye(4)
    c2w[:3, 0] = pose[:, 1]
    c2w[:3, 1] = pose[:, 0]
    c2w[:3, 2] = -pose[:, 2]
    c2w[:3, 3] = pose[:, 3]
    return c2w


def _read_poses(path: Path) -> np.ndarray:
    """``[N, 17]`` float64 array of ``poses_bounds.npy``."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise fail(path, f"not a readable .npy array ({type(err).__name__})") from None
    if data.ndim != 2 or data.shape[1] != 17 or len(data) == 0:
        raise fail(path, f"expected an [N, 17] array, got shape {list(data.shape)}")
    return data.astype(np.float64)


def _frustum_corners(camera: Camera, near: float, far: float) -> np.ndarray:
    """World points ``[8, 3]``: the image corners at depths ``near`` and ``far``."""
    K_inv = torch.linalg.inv(camera.K.double()).numpy()
    pixels = np.array(
        [[0, 0, 1], [camera.width, 0, 1], [0, camera.height, 1], [camera.width, camera.height, 1]],
        dtype=np.float64,
    )
    rays = pixels @ K_inv.T  # [4, 3] at depth 1
    points_cam = np.concatenate([rays * near, rays * far])  # [8, 3]
    view = camera.viewmat.double().numpy()
    return (points_cam - view[:3, 3]) @ view[:3, :3]  # R^T (x - t)


def load_llff(root: Path, downscale: int = 1, load_instances: bool = True) -> Dataset:
    """Load an LLFF scene; ``load_instances`` is accepted for symmetry (no instance maps here).

    Every 8th image (index % 8 == 0, sorted by name) is a test view. Bounds: the box around all
    camera frusta between each image's near and far depth. ``class_names`` come from
    ``segmentations/classes.txt`` (3D-OVS) when present.
    """
    path = root / "poses_bounds.npy"
    data = _read_poses(path)
    folder, prescaled = image_folder(root, downscale)
    files = list_images(folder)
    if len(files) != len(data):
        raise fail(path, f"{len(data)} poses but {len(files)} images in {folder}")
    cameras, corners = [], []
    for index, (row, image_path) in enumerate(zip(data, files, strict=True)):
        check_finite(row, path, f"row {index}")
        pose = row[:15].reshape(3, 5)
        height, width, focal = pose[:, 4]
        near, far = row[15:]
        if focal <= 0 or height < 1 or width < 1 or not 0 < near < far:
            raise fail(path, f"row {index}: invalid hwf or near/far ({pose[:, 4]}, {row[15:]})")
        check_rotation(pose[:, :3], path, f"row {index}: rotation")
        camera = Camera(
            viewmat_from_c2w(llff_to_opencv_c2w(pose[:, :4])),
            intrinsics(focal, focal, width / 2, height / 2),
            int(round(width)),
            int(round(height)),
            name=image_path.name,
        )
        cameras.append(camera)
        corners.append(_frustum_corners(camera, near, far))
    views = [
        load_view(c, f, downscale, prescaled=prescaled) for c, f in zip(cameras, files, strict=True)
    ]
    is_test = every_nth_is_test(len(views))
    all_corners = np.concatenate(corners)
    classes = root / "segmentations" / "classes.txt"
    return Dataset(
        root=root,
        train=[v for v, t in zip(views, is_test, strict=True) if not t],
        test=[v for v, t in zip(views, is_test, strict=True) if t],
        bounds=torch.tensor(
            np.stack([all_corners.min(0), all_corners.max(0)]), dtype=torch.float32
        ),
        class_names=read_class_names(classes) if classes.is_file() else [],
        layout="llff",
    )
