"""Helpers shared by the dataset parsers: files, images, checks, views, splits and bounds.

Pixel convention (shared with COLMAP and the renderer): pixel ``(row i, column j)`` covers the
continuous square ``[j, j + 1] x [i, i + 1]``, its centre is ``(j + 0.5, i + 0.5)``; a principal
point at ``(W / 2, H / 2)`` is the image centre. Under this convention resizing an image by
``s`` scales ``K[:2]`` by exactly ``s`` (what :meth:`Camera.scaled` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from csgaussian.types import Camera, DataError, View, label_dtype, pixels_to_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


@dataclass(frozen=True)
class PointBoundsConfig:
    """Robust bounds of a point cloud (ours: percentiles drop stray SfM points)."""

    low_percentile: float = 1.0  # per-axis lower percentile of the points
    high_percentile: float = 99.0  # per-axis upper percentile
    padding: float = 0.1  # added on each side, as a fraction of the largest side


@dataclass(frozen=True)
class BackgroundConfig:
    """When background pixels (instance 0) count as a constant backdrop colour (ours)."""

    max_std: float = 0.05  # per-channel standard deviation below which the backdrop is constant


def fail(path: Path, problem: str) -> DataError:
    """A one-line :class:`DataError` ``"<path>: <problem>"``."""
    return DataError(f"{path}: {' '.join(problem.split())}")


def read_json(path: Path) -> Any:
    """Parse a JSON file, raising :class:`DataError` when missing or malformed."""
    if not path.is_file():
        raise fail(path, "file is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise fail(path, f"malformed JSON ({err})") from None


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise fail(path, f"cannot read text file ({err})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def require(mapping: dict, key: str, path: Path, where: str = "") -> Any:
    """``mapping[key]``, or a :class:`DataError` naming the missing key."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise fail(path, f"{where}missing required key '{key}'")
    return mapping[key]


def check_finite(values: np.ndarray, path: Path, what: str) -> None:
    """Raise :class:`DataError` if ``values`` holds a NaN or an infinity."""
    if not np.all(np.isfinite(values)):
        raise fail(path, f"{what} has a NaN or inf")


def check_rotation(R: np.ndarray, path: Path, what: str, tol: float = 1e-2) -> None:
    """Raise :class:`DataError` unless ``R`` ([3, 3]) is a rotation up to ``tol``."""
    if np.abs(R @ R.T - np.eye(3)).max() > tol or np.linalg.det(R) < 0:
        raise fail(path, f"{what} is not a rotation (orthonormal, det +1)")


def viewmat_from_c2w(c2w: np.ndarray) -> torch.Tensor:
    """World->camera ``[4, 4]`` float32 from a camera->world ``[3|4, 4]`` matrix (OpenCV axes)."""
    R = c2w[:3, :3]
    t = c2w[:3, 3]
    view = np.eye(4)
    view[:3, :3] = R.T
    view[:3, 3] = -R.T @ t
    return torch.tensor(view, dtype=torch.float32)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """Pinhole matrix ``[3, 3]`` float32."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def find_image(path: Path) -> Path:
    """``path`` itself, or ``path`` plus an image suffix; DataError when neither exists."""
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    raise fail(path, f"image file is missing (also tried {', '.join(IMAGE_SUFFIXES[:3])})")


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` sorted by name."""
    if not folder.is_dir():
        raise fail(folder, "image folder is missing")
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES and p.is_file())


def image_header(path: Path) -> tuple[int, int, bool]:
    """``(width, height, has_alpha)`` of an image file, read from its header only."""
    if not path.is_file():
        raise fail(path, "image file is missing")
    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            return im.width, im.height, has_alpha
    except (OSError, SyntaxError, ValueError) as err:
        raise fail(path, f"unreadable or corrupt image ({err})") from None


def read_pixels(path: Path, white_background: bool = False) -> np.ndarray:
    """Read an image's pixels in the smallest form that keeps them (see :class:`View`).

    8-bit colour and greyscale give ``uint8`` ``[H, W, 3]`` (greyscale as three equal channels);
    with alpha and ``white_background`` (the NeRF-synthetic convention) ``uint8`` RGBA
    ``[H, W, 4]``, composited onto white by :func:`~csgaussian.types.pixels_to_image`, else
    alpha is dropped; 16-bit greyscale ``uint16`` (integer modes clipped to 0..65535); float
    greyscale ``float32`` clipped to ``[0, 1]``.
    """
    if not path.is_file():
        raise fail(path, "image file is missing")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I"):
                grey = np.clip(np.asarray(im), 0, np.iinfo(np.uint16).max).astype(np.uint16)
                return np.repeat(grey[..., None], 3, axis=2)
            if im.mode == "F":
                grey = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
                return np.repeat(grey[..., None], 3, axis=2)
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            if has_alpha and white_background:
                return np.array(im.convert("RGBA"), dtype=np.uint8)
            return np.array(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:
        raise fail(path, f"unreadable or corrupt image ({err})") from None


def read_image(path: Path, white_background: bool = False) -> np.ndarray:
    """Read an image as float32 ``[H, W, 3]`` in ``[0, 1]`` (:func:`read_pixels` converted)."""
    pixels = torch.from_numpy(read_pixels(path, white_background))
    return pixels_to_image(pixels).numpy()


def read_label_map(path: Path) -> np.ndarray:
    """Read a single-channel 8/16-bit label image as int64 ``[H, W]``."""
    if not path.is_file():
        raise fail(path, "label image is missing")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P", "1") and not im.mode.startswith("I"):
                raise fail(path, f"label image must be single-channel, got mode {im.mode}")
            return np.asarray(im if im.mode != "1" else im.convert("L")).astype(np.int64)
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise fail(path, f"unreadable or corrupt image ({err})") from None


def resize_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average ``[H, W, 3]`` to ``[height, width, 3]``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return F.adaptive_avg_pool2d(x, (height, width))[0].permute(1, 2, 0).numpy()


def resize_nearest(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a label map ``[H, W]`` by sampling the source pixel under each new pixel centre."""
    rows = ((np.arange(height) + 0.5) * labels.shape[0] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * labels.shape[1] / width).astype(np.int64)
    return labels[rows[:, None], cols[None, :]]


def load_view(
    camera: Camera,
    image_path: Path,
    downscale: int,
    *,
    prescaled: bool = False,
    white_background: bool = False,
    instance_path: Path | None = None,
    n_classes: int = 0,
) -> View:
    """Read one posed image, check its size against ``camera`` and downscale both.

    Args:
        camera: full-resolution camera.
        image_path: image file.
        downscale: integer factor.
        prescaled: the file is already downscaled (an ``images_<f>`` folder); its size may differ
            from ``camera`` size / ``downscale`` by one pixel and ``K`` follows the actual size.
        white_background: composite alpha onto white.
        instance_path: optional instance map, same size as the image.
        n_classes: largest valid instance id.
    """
    pixels = read_pixels(image_path, white_background)
    height, width = pixels.shape[:2]
    if prescaled:
        if abs(width - camera.width / downscale) > 1 or abs(height - camera.height / downscale) > 1:
            raise fail(
                image_path,
                f"image is {width}x{height} but the camera is {camera.width}x{camera.height}"
                f" / {downscale}",
            )
        K = camera.K.clone()
        K[0] *= width / camera.width
        K[1] *= height / camera.height
        cam = Camera(camera.viewmat, K, width, height, camera.name)
    else:
        if (width, height) != (camera.width, camera.height):
            raise fail(
                image_path,
                f"image is {width}x{height} but the camera is {camera.width}x{camera.height}",
            )
        cam = camera if downscale == 1 else camera.scaled(1.0 / downscale)
        if downscale != 1:
            image = pixels_to_image(torch.from_numpy(pixels)).numpy()
            pixels = resize_area(image, cam.width, cam.height)
    instance = None
    if instance_path is not None:
        labels = read_label_map(instance_path)
        if labels.shape != (height, width):
            raise fail(
                instance_path,
                f"instance map is {labels.shape[1]}x{labels.shape[0]}"
                f" but the image is {width}x{height}",
            )
        if labels.max() > n_classes:
            raise fail(
                instance_path, f"instance id {labels.max()} but classes.txt lists {n_classes} names"
            )
        labels = resize_nearest(labels, cam.width, cam.height)
        instance = torch.from_numpy(np.ascontiguousarray(labels)).to(label_dtype(n_classes))
    return View(cam, torch.from_numpy(np.ascontiguousarray(pixels)), image_path, instance)


def every_nth_is_test(count: int, step: int = 8) -> list[bool]:
    """LLFF/Mip-NeRF hold-out: image ``i`` is a test image when ``i % step == 0``."""
    return [i % step == 0 for i in range(count)]


def bounds_from_points(
    points: np.ndarray, cfg: PointBoundsConfig = PointBoundsConfig()
) -> torch.Tensor:
    """Robust padded axis-aligned bounds ``[2, 3]`` of ``points`` ``[P, 3]``."""
    low = np.percentile(points, cfg.low_percentile, axis=0)
    high = np.percentile(points, cfg.high_percentile, axis=0)
    pad = cfg.padding * float((high - low).max())
    return torch.tensor(np.stack([low - pad, high + pad]), dtype=torch.float32)


def bounds_from_cameras(cameras: list[Camera]) -> torch.Tensor:
    """Bounds ``[2, 3]`` of what a set of inward-looking cameras sees (ours, no point cloud).

    Centre: the least-squares point closest to all optical axes (a tiny ridge towards the camera
    centroid keeps parallel axes solvable). Half-size: the median over cameras of the radius of
    the image diagonal's footprint at the distance of that centre (``distance * tan`` of the
    half-diagonal field of view), so that content around the look-at point fills the cube.
    """
    centres = np.stack([c.center.double().numpy() for c in cameras])  # [N, 3]
    axes = np.stack([c.viewmat[2, :3].double().numpy() for c in cameras])  # [N, 3] forward
    projector = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # [N, 3, 3]
    ridge = 1e-6 * len(cameras)
    A = projector.sum(0) + ridge * np.eye(3)
    b = np.einsum("nij,nj->i", projector, centres) + ridge * centres.mean(0)
    centre = np.linalg.solve(A, b)
    tan_diag = np.array(
        [
            np.hypot(c.width / (2 * float(c.K[0, 0])), c.height / (2 * float(c.K[1, 1])))
            for c in cameras
        ]
    )
    half = float(np.median(np.linalg.norm(centres - centre, axis=1) * tan_diag))
    return torch.tensor(np.stack([centre - half, centre + half]), dtype=torch.float32)


def estimate_background(
    views: list[View], cfg: BackgroundConfig = BackgroundConfig()
) -> torch.Tensor:
    """Backdrop colour ``[3]``: median of the instance-0 pixels when near-constant, else black.

    8-bit RGB views are tallied in a histogram per channel, one view at a time, which gives the
    same median (torch's: the lower of the two middle values) without gathering every
    background pixel of the capture as float (gigabytes at a megapixel times hundreds of views);
    the standard deviation is then computed in float64 from the histogram.
    """
    views = [v for v in views if v.instance is not None]
    if not views:
        return torch.zeros(3)
    if all(v.pixels.dtype == torch.uint8 and v.pixels.shape[-1] == 3 for v in views):
        return _background_from_histogram(views, cfg)
    background = torch.cat([v.image[v.instance == 0] for v in views])  # [M, 3]
    if len(background) < 2 or bool((background.std(0) > cfg.max_std).any()):
        return torch.zeros(3)
    return background.median(0).values


def _background_from_histogram(views: list[View], cfg: BackgroundConfig) -> torch.Tensor:
    """:func:`estimate_background` of 8-bit RGB views from per-channel histograms."""
    levels = 256
    counts = torch.zeros(3, levels, dtype=torch.int64)
    for view in views:
        pixels = view.pixels[view.instance == 0].long()  # [M, 3]
        offsets = torch.arange(3) * levels
        counts += torch.bincount((pixels + offsets).reshape(-1), minlength=3 * levels).view(3, -1)
    n = int(counts[0].sum())
    if n < 2:
        return torch.zeros(3)
    values = torch.arange(levels, dtype=torch.float64) / 255.0
    mean = (counts * values).sum(1) / n
    std = ((counts * (values - mean[:, None]) ** 2).sum(1) / (n - 1)).sqrt()
    if bool((std > cfg.max_std).any()):
        return torch.zeros(3)
    lower_middle = (counts.cumsum(1) > (n - 1) // 2).int().argmax(1)  # first level past it
    return pixels_to_image(lower_middle.to(torch.uint8)[None, None])[0, 0]


def image_folder(root: Path, downscale: int) -> tuple[Path, bool]:
    """``images_<downscale>/`` when it exists (already reduced), else ``images/``."""
    reduced = root / f"images_{downscale}"
    if downscale > 1 and reduced.is_dir():
        return reduced, True
    return root / "images", False
