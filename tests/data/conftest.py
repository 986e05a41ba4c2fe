"""Fixtures for the data tests: the shared datasets, and builders of tiny scenes in tmp_path.

The builders are handed out as fixtures (``make_blender`` etc.) so test modules need no imports
from here."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).parents[3] / "shared" / "data"


def shared_scene(name: str) -> Path:
    """``<repo>/../shared/data/<name>``, or skip the test when it is absent."""
    root = SHARED_DATA / name
    if not root.is_dir():
        pytest.skip(f"{root} is absent (clone the shared data beside the repository)")
    return root


@pytest.fixture
def kitchen() -> Path:
    return shared_scene("kitchen")


@pytest.fixture
def kitchen_colmap() -> Path:
    return shared_scene("kitchen_colmap")


def _write_image(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> None:
    """A random image of ``mode`` at ``path``."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode).save(path)


def _make_blender(root: Path, width: int = 8, height: int = 6, mode: str = "RGB") -> Path:
    """Two train and one test frame, cameras 3 units from the origin looking at it."""
    for split, count in (("train", 2), ("test", 1)):
        frames = []
        for k in range(count):
            angle = 0.7 * k + (1.0 if split == "test" else 0.0)
            c2w = _opengl_look_at(np.array([3 * math.cos(angle), 3 * math.sin(angle), 1.0]))
            frames.append({"file_path": f"./{split}/r_{k:03d}", "transform_matrix": c2w.tolist()})
            _write_image(root / split / f"r_{k:03d}.png", width, height, mode, seed=k)
        meta = {"camera_angle_x": 0.8, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return root


def _opengl_look_at(center: np.ndarray) -> np.ndarray:
    """Camera-to-world [4, 4] in OpenGL axes (-Z forward, +Y up) looking at the origin."""
    back = center / np.linalg.norm(center)
    right = np.cross((0.0, 0.0, 1.0), back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, center
    return c2w


def _make_colmap_text(
    root: Path,
    n_images: int = 9,
    width: int = 8,
    height: int = 6,
    model: str = "PINHOLE",
    params: str = "7 7 4 3",
) -> Path:
    """A text COLMAP model of ``n_images`` translated cameras and three points."""
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text(f"# Camera list\n1 {model} {width} {height} {params}\n")
    lines = ["# Image list"]
    for k in range(n_images):
        lines += [f"{k + 1} 1 0 0 0 {0.1 * k} 0 4 1 im_{k:02d}.png", ""]
        _write_image(root / "images" / f"im_{k:02d}.png", width, height, seed=k)
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    (sparse / "points3D.txt").write_text(
        "# 3D point list\n1 0 0 0 255 0 0 0.5 1 0\n2 1 1 1 0 255 0 0.5\n3 -1 0 2 0 0 255 0.5\n"
    )
    return root


def _write_colmap_binary(text_dir: Path, out_dir: Path) -> None:
    """Our own writer: convert a text model (cameras/images/points3D.txt) to the binary format."""
    model_ids = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4}

    def rows(name: str) -> list[list[str]]:
        lines = (text_dir / name).read_text().splitlines()
        return [line.split() for line in lines if not line.startswith("#")]

    out_dir.mkdir(parents=True, exist_ok=True)
    cams = [r for r in rows("cameras.txt") if r]
    blob = struct.pack("<Q", len(cams))
    for r in cams:
        blob += struct.pack("<iiQQ", int(r[0]), model_ids[r[1]], int(r[2]), int(r[3]))
        blob += struct.pack(f"<{len(r) - 4}d", *map(float, r[4:]))
    (out_dir / "cameras.bin").write_bytes(blob)
    image_rows = rows("images.txt")
    headers = []
    k = 0
    while k < len(image_rows):
        if image_rows[k]:
            headers.append((image_rows[k], image_rows[k + 1] if k + 1 < len(image_rows) else []))
            k += 2
        else:
            k += 1
    blob = struct.pack("<Q", len(headers))
    for r, points2d in headers:
        blob += struct.pack("<i7di", int(r[0]), *map(float, r[1:8]), int(r[8]))
        blob += r[9].encode() + b"\x00" + struct.pack("<Q", len(points2d) // 3)
        for j in range(0, len(points2d) - 2, 3):
            x, y, pid = points2d[j : j + 3]
            blob += struct.pack("<ddq", float(x), float(y), int(pid))
    (out_dir / "images.bin").write_bytes(blob)
    points = [r for r in rows("points3D.txt") if r]
    blob = struct.pack("<Q", len(points))
    for r in points:
        track = r[8:]
        blob += struct.pack(
            "<Q3d3Bd", int(r[0]), *map(float, r[1:4]), *map(int, r[4:7]), float(r[7])
        )
        blob += struct.pack("<Q", len(track) // 2)
        blob += struct.pack(f"<{len(track)}i", *map(int, track))
    (out_dir / "points3D.bin").write_bytes(blob)


def _make_llff(
    root: Path,
    c2w_opencv: list[np.ndarray],
    width: int = 8,
    height: int = 6,
    focal: float = 7.0,
    near: float = 1.0,
    far: float = 5.0,
) -> Path:
    """An LLFF scene: encode OpenCV camera-to-world matrices as poses_bounds.npy rows."""
    rows = []
    for k, c2w in enumerate(c2w_opencv):
        pose = np.zeros((3, 5))
        pose[:, 0] = c2w[:3, 1]  # down
        pose[:, 1] = c2w[:3, 0]  # right
        pose[:, 2] = -c2w[:3, 2]  # back
        pose[:, 3] = c2w[:3, 3]
        pose[:, 4] = (height, width, focal)
        rows.append(np.concatenate([pose.ravel(), [near, far]]))
        _write_image(root / "images" / f"{k:03d}.png", width, height, seed=k)
    np.save(root / "poses_bounds.npy", np.array(rows))
    return root


@pytest.fixture
def write_image() -> Callable:
    return _write_image


@pytest.fixture
def make_blender() -> Callable:
    return _make_blender


@pytest.fixture
def make_colmap_text() -> Callable:
    return _make_colmap_text


@pytest.fixture
def write_colmap_binary() -> Callable:
    return _write_colmap_binary


@pytest.fixture
def make_llff() -> Callable:
    return _make_llff
