"""Plain data records shared by every part of csgaussian.

Conventions (used everywhere, so that no module converts twice):
- Cameras are pinhole, world-to-camera ``viewmat`` in OpenCV axes (x right, y down, z forward).
- Images are ``float32`` tensors ``[H, W, 3]`` in ``[0, 1]``, on the CPU after loading. A
  :class:`View` keeps its pixels as read (8-bit files as ``uint8``) and makes that float image
  when asked (:attr:`View.image`), so that a capture's views cost what their files hold.
- Instance maps are integer tensors ``[H, W]`` of the smallest type that holds the ids
  (:func:`label_dtype`): 0 = background, ``i`` = ``class_names[i - 1]``.
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


PIXEL_MAX = {torch.uint8: 255.0, torch.uint16: 65535.0}
"""The value of full intensity per integer pixel type; float pixels are in ``[0, 1]`` already."""


def pixels_to_image(pixels: Tensor) -> Tensor:
    """The float32 ``[H, W, 3]`` image in ``[0, 1]`` of stored pixels (see :class:`View`).

    Integer pixels are divided by their type's full value (``uint8 / 255`` gives exactly the
    float32 values of reading an 8-bit file as float and dividing there); four channels are RGBA
    composited onto white. Float pixels are returned as they are (not copied).
    """
    scale = PIXEL_MAX.get(pixels.dtype)
    image = pixels if scale is None else pixels.float() / scale
    if image.shape[-1] == 4:
        alpha = image[..., 3:]
        image = image[..., :3] * alpha + (1.0 - alpha)
    return image


def label_dtype(largest: int) -> torch.dtype:
    """The smallest of uint8, int16 and int32 holding the ids ``0..largest``."""
    if largest <= torch.iinfo(torch.uint8).max:
        return torch.uint8
    if largest <= torch.iinfo(torch.int16).max:
        return torch.int16
    return torch.int32


@dataclass
class View:
    """One posed image with optional instance masks.

    ``pixels`` is the image as stored: ``[H, W, 3]`` ``uint8`` for 8-bit files, ``uint16`` for
    16-bit greyscale, ``[H, W, 4]`` ``uint8`` RGBA to be composited onto white (the Blender
    layout's alpha images), or ``float32`` in ``[0, 1]`` (float files, and images area-averaged
    by ``--downscale``, which 8 bits cannot hold; at a quarter of the pixels or fewer they cost
    no more than the full-size 8-bit image). Read :attr:`image` where a float image is needed.
    """

    camera: Camera
    pixels: Tensor  # [H, W, 3 | 4] uint8, uint16 or float32 (see above)
    image_path: Path
    instance: Tensor | None = None  # [H, W] uint8 / int16 / int32 (label_dtype), 0 = background

    @property
    def image(self) -> Tensor:
        """The float32 ``[H, W, 3]`` image in ``[0, 1]``: a new tensor per call for integer
        pixels, so read it once per use and let it go (:func:`pixels_to_image`)."""
        return pixels_to_image(self.pixels)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image, without converting it."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


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
