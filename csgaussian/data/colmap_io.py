"""Readers for COLMAP sparse models, text (``*.txt``) and binary (``*.bin``), without pycolmap.

Formats: https://colmap.github.io/format.html (cameras, images, points3D).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csgaussian.data.common import fail

# model id -> (name, number of parameters), from COLMAP's src/colmap/sensor/models.h
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
POINT_MIN_BYTES = 51  # id, xyz, rgb, error, track length
PARAM_COUNT = {name: count for name, count in CAMERA_MODELS.values()}


@dataclass
class ColmapCamera:
    """One COLMAP camera: model name, size and raw parameters."""

    model: str
    width: int
    height: int
    params: np.ndarray  # [n] float64


@dataclass
class ColmapImage:
    """One registered image: world->camera rotation quaternion and translation (OpenCV)."""

    qvec: np.ndarray  # [4] float64, w x y z
    tvec: np.ndarray  # [3] float64
    camera_id: int
    name: str


@dataclass
class ColmapModel:
    """A sparse model; ``xyz``/``rgb`` are empty when ``points3D`` is absent."""

    cameras: dict[int, ColmapCamera]
    images: list[ColmapImage]
    xyz: np.ndarray  # [P, 3] float64
    rgb: np.ndarray  # [P, 3] uint8
    cameras_file: Path  # cameras.txt or cameras.bin
    images_file: Path  # images.txt or images.bin, named in errors about poses
    points_file: Path  # points3D.txt or points3D.bin


def read_model(sparse: Path) -> ColmapModel:
    """Read ``sparse`` (e.g. ``<scene>/sparse/0``) in text form if present, else binary."""
    if (sparse / "cameras.txt").is_file():
        cameras, images, points = (sparse / f"{n}.txt" for n in ("cameras", "images", "points3D"))
        return ColmapModel(
            _read_cameras_text(cameras),
            _read_images_text(images),
            *_read_points_text(points),
            cameras,
            images,
            points,
        )
    if (sparse / "cameras.bin").is_file():
        cameras, images, points = (sparse / f"{n}.bin" for n in ("cameras", "images", "points3D"))
        return ColmapModel(
            _read_cameras_binary(cameras),
            _read_images_binary(images),
            *_read_points_binary(points),
            cameras,
            images,
            points,
        )
    raise fail(sparse, "no cameras.txt or cameras.bin")


def _text_rows(path: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` for every non-comment line, blank lines included."""
    if not path.is_file():
        raise fail(path, "file is missing")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise fail(path, f"cannot read text file ({err})") from None
    return [
        (n + 1, line.strip()) for n, line in enumerate(lines) if not line.lstrip().startswith("#")
    ]


def _numbers(fields: list[str], path: Path, line: int, kind: type = float) -> list:
    """Convert text fields, naming the line on failure."""
    try:
        return [kind(f) for f in fields]
    except ValueError:
        raise fail(path, f"line {line}: expected numbers, got {' '.join(fields)!r}") from None


def _check_camera(camera: ColmapCamera, path: Path, where: str) -> ColmapCamera:
    if camera.model not in PARAM_COUNT:
        raise fail(path, f"{where}: unknown camera model {camera.model}")
    if len(camera.params) != PARAM_COUNT[camera.model]:
        raise fail(
            path,
            f"{where}: {camera.model} needs {PARAM_COUNT[camera.model]} parameters,"
            f" got {len(camera.params)}",
        )
    if camera.width <= 0 or camera.height <= 0:
        raise fail(path, f"{where}: non-positive image size")
    if not np.all(np.isfinite(camera.params)):
        raise fail(path, f"{where}: camera parameters have a NaN or inf")
    return camera


def _read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for line, text in _text_rows(path):
        if not text:
            continue
        fields = text.split()
        if len(fields) < 5:
            raise fail(path, f"line {line}: expected 'ID MODEL WIDTH HEIGHT PARAMS...'")
        cam_id, width, height = _numbers([fields[0], fields[2], fields[3]], path, line, int)
        params = np.array(_numbers(fields[4:], path, line))
        cameras[cam_id] = _check_camera(
            ColmapCamera(fields[1], width, height, params), path, f"line {line}"
        )
    if not cameras:
        raise fail(path, "no cameras")
    return cameras


def _read_images_text(path: Path) -> list[ColmapImage]:
    rows = _text_rows(path)
    images = []
    index = 0
    while index < len(rows):
        line, text = rows[index]
        if not text:
            index += 1
            continue
        fields = text.split()
        if len(fields) < 10:
            raise fail(path, f"line {line}: expected 'ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'")
        values = _numbers(fields[1:8], path, line)
        camera_id = _numbers([fields[8]], path, line, int)[0]
        name = " ".join(fields[9:])
        images.append(ColmapImage(np.array(values[:4]), np.array(values[4:]), camera_id, name))
        index += 2  # the next line lists the 2D points (possibly empty)
    if not images:
        raise fail(path, "no images")
    return images


def _read_points_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    xyz, rgb = [], []
    for line, text in _text_rows(path):
        if not text:
            continue
        fields = text.split()
        if len(fields) < 8:
            raise fail(path, f"line {line}: expected 'ID X Y Z R G B ERROR TRACK...'")
        xyz.append(_numbers(fields[1:4], path, line))
        rgb.append(_numbers(fields[4:7], path, line, int))
    xyz_arr = np.array(xyz, dtype=np.float64).reshape(-1, 3)
    rgb_arr = np.array(rgb, dtype=np.int64).reshape(-1, 3)
    if np.any((rgb_arr < 0) | (rgb_arr > 255)):
        raise fail(path, "point colour outside 0..255")
    return xyz_arr, rgb_arr.astype(np.uint8)


class _Reader:
    """Sequential ``struct`` reader over a whole binary file; errors name the file and offset."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise fail(path, "file is missing")
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise fail(self.path, f"truncated binary file at byte {self.offset}")
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def skip(self, size: int) -> None:
        if self.offset + size > len(self.data):
            raise fail(self.path, f"truncated binary file at byte {self.offset}")
        self.offset += size

    def string(self) -> str:
        end = self.data.find(b"\x00", self.offset)
        if end < 0:
            raise fail(self.path, f"unterminated string at byte {self.offset}")
        try:
            text = self.data[self.offset : end].decode()
        except UnicodeDecodeError:
            raise fail(self.path, f"invalid image name at byte {self.offset}") from None
        self.offset = end + 1
        return text

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise fail(self.path, f"{len(self.data) - self.offset} trailing bytes")


def _read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    reader = _Reader(path)
    cameras = {}
    for _ in range(reader.read("Q")[0]):
        cam_id, model_id, width, height = reader.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise fail(path, f"camera {cam_id}: unknown camera model id {model_id}")
        name, count = CAMERA_MODELS[model_id]
        params = np.array(reader.read("d" * count))
        cameras[cam_id] = _check_camera(
            ColmapCamera(name, width, height, params), path, f"camera {cam_id}"
        )
    reader.finish()
    if not cameras:
        raise fail(path, "no cameras")
    return cameras


def _read_images_binary(path: Path) -> list[ColmapImage]:
    reader = _Reader(path)
    images = []
    for _ in range(reader.read("Q")[0]):
        values = reader.read("i7di")
        name = reader.string()
        reader.skip(24 * reader.read("Q")[0])  # points2D: x, y (double), point3D id (int64)
        images.append(ColmapImage(np.array(values[1:5]), np.array(values[5:8]), values[8], name))
    reader.finish()
    if not images:
        raise fail(path, "no images")
    return images


def _read_points_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    reader = _Reader(path)
    count = reader.read("Q")[0]
    if count * POINT_MIN_BYTES > len(reader.data):
        raise fail(path, f"header says {count} points, more than the file can hold")
    xyz = np.zeros((count, 3))
    rgb = np.zeros((count, 3), np.uint8)
    for k in range(count):
        values = reader.read("Q3d3Bd")
        xyz[k], rgb[k] = values[1:4], values[4:7]
        reader.skip(8 * reader.read("Q")[0])  # track: image id, point2D index (int32 each)
    reader.finish()
    return xyz, rgb
