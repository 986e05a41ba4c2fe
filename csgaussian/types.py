"""Plain data records shared by every part of csgaussian.

Conventions (used everywhere, so that no module converts twice):
- Cameras are pinhole, world-to-camera ``viewmat`` in OpenCV axes (x right, y down, z forward).
- Images are ``float32`` tensors ``[H, W, 3]`` in ``[0, 1]``, on the CPU after loading.
- Instance maps are ``int64`` tensors ``[H, W]``: 0 = background, ``i`` = ``class_names[i - 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor


class DataError(ValueError):
    """Bad input data; the message is one line naming the file and the problem."""


class StreamError(ValueError):
    """A malformed, truncated or corrupted csgaussian stream; the message is one line."""


@dataclass
class Camera:
    """A pinhole camera."""

    viewmat: Tensor  # [4, 4] world -> camera, OpenCV axes
    K: Tensor  # [3, 3] intrinsics in pixels
    width: int
    height: int
    name: str = ""

    @property
    def center(self) -> Tensor:
        """Camera centre in world coordinates, ``[3]``."""
        R = self.viewmat[:3, :3]
        t = self.viewmat[:3, 3]
        return -R.T @ t

    def scaled(self, factor: float) -> Camera:
        """The same camera for an image resized by ``factor`` (e.g. 0.5 for ``--downscale 2``)."""
        K = self.K.clone()
        K[:2] *= factor
        return Camera(
            viewmat=self.viewmat,
            K=K,
            width=max(1, round(self.width * factor)),
            height=max(1, round(self.height * factor)),
            name=self.name,
        )


@dataclass
class View:
    """One posed image with optional instance masks."""

    camera: Camera
    image: Tensor  # [H, W, 3] float32 in [0, 1]
    image_path: Path
    instance: Tensor | None = None  # [H, W] int64, 0 = background


@dataclass
class Dataset:
    """What a dataset parser returns: views, optional point cloud, bounds and object names."""

    root: Path
    train: list[View]
    test: list[View]
    bounds: Tensor  # [2, 3] axis-aligned min / max of the scene content, world units
    class_names: list[str] = field(default_factory=list)
    points: Tensor | None = None  # [P, 3] initial point cloud (e.g. COLMAP points3D)
    point_colors: Tensor | None = None  # [P, 3] in [0, 1]
    background: Tensor = field(default_factory=lambda: torch.zeros(3))  # [3] colour behind all
    layout: str = ""  # "blender", "colmap" or "llff"

    @property
    def extent(self) -> float:
        """Diagonal length of the scene bounds."""
        return float((self.bounds[1] - self.bounds[0]).norm())
