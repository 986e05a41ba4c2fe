"""The optional ``cameras`` section of the base layer: a few camera poses of the capture.

A receiver has the stream and no dataset; the poses let it look at the scene (and fit an export
to it) from viewpoints the model was trained for, instead of guessing an orbit around the
anchors. The encoder keeps at most :data:`MAX_CAMERAS` training cameras spread over the capture
(farthest-point order of their centres, from the first).

Layout (little-endian): ``count u16``, then per camera ``width u16, height u16``, the world ->
camera rotation matrix ``float32 x9`` (row-major, OpenCV axes), the translation ``float32 x3``
and ``fx, fy, cx, cy float32 x4``: 68 bytes a camera, 16 cameras in 1,090 bytes.

Compatibility: a stream without the section is byte for byte what earlier builds wrote (the
golden stream has none). Builds before this section refuse a stream that has it ("unexpected
section(s) cameras in the base layer"): their base layer accepts no section it does not know.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from ..types import Camera
from .container import StreamError

SECTION = "cameras"
MAX_CAMERAS = 16
"""Poses kept at most (about 0.8 KB)."""
_COUNT = struct.Struct("<H")
_CAMERA = np.dtype([("size", "<u2", 2), ("rotation", "<f4", 9), ("t", "<f4", 3), ("k", "<f4", 4)])
ORTHONORMAL_TOLERANCE = 1e-3
"""Largest ``|R R^T - I|`` entry a decoded rotation may have (float32 rounding is ~1e-7)."""


def spread_cameras(cameras: list[Camera], count: int = MAX_CAMERAS) -> list[Camera]:
    """At most ``count`` of ``cameras``, spread over their centres (greedy farthest point from
    the first camera; ties go to the earlier camera)."""
    if len(cameras) <= count:
        return list(cameras)
    centers = torch.stack([c.center for c in cameras]).double()
    chosen = [0]
    distance = (centers - centers[0]).norm(dim=1)
    for _ in range(count - 1):
        pick = int(distance.argmax())
        chosen.append(pick)
        distance = torch.minimum(distance, (centers - centers[pick]).norm(dim=1))
    return [cameras[i] for i in sorted(chosen)]


def encode_cameras(cameras: list[Camera]) -> bytes:
    """The section's payload for ``cameras`` (at most :data:`MAX_CAMERAS`)."""
    if not 0 < len(cameras) <= MAX_CAMERAS:
        raise ValueError(f"the cameras section holds 1..{MAX_CAMERAS} cameras, got {len(cameras)}")
    rows = np.zeros(len(cameras), _CAMERA)
    for row, camera in zip(rows, cameras, strict=True):
        view = camera.viewmat.double().numpy()
        K = camera.K.double().numpy()
        row["size"] = (camera.width, camera.height)
        row["rotation"] = view[:3, :3].reshape(9)
        row["t"] = view[:3, 3]
        row["k"] = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    return _COUNT.pack(len(cameras)) + rows.tobytes()


def decode_cameras(payload: bytes) -> list[Camera]:
    """The cameras of a section's payload; raises StreamError on a malformed one."""
    if len(payload) < _COUNT.size:
        raise StreamError("cameras section: truncated count")
    (count,) = _COUNT.unpack_from(payload)
    if not 0 < count <= MAX_CAMERAS or len(payload) != _COUNT.size + count * _CAMERA.itemsize:
        raise StreamError(f"cameras section: {len(payload)} bytes do not hold {count} cameras")
    rows = np.frombuffer(payload, _CAMERA, offset=_COUNT.size)
    values = np.concatenate([rows["rotation"], rows["t"], rows["k"]], axis=1)
    if not np.isfinite(values).all():
        raise StreamError("cameras section: a pose or intrinsic is not finite")
    if (rows["size"] == 0).any() or (rows["k"][:, :2] <= 0).any():
        raise StreamError("cameras section: a camera has no pixels or a focal length <= 0")
    rotations = rows["rotation"].astype(np.float64).reshape(-1, 3, 3)
    gram = rotations @ rotations.transpose(0, 2, 1)
    if (np.abs(gram - np.eye(3)).max(axis=(1, 2)) > ORTHONORMAL_TOLERANCE).any():
        raise StreamError("cameras section: a rotation matrix is not orthonormal")
    cameras = []
    for row, rotation in zip(rows, rotations, strict=True):
        view = np.eye(4)
        view[:3, :3] = rotation
        view[:3, 3] = row["t"]
        fx, fy, cx, cy = row["k"].astype(np.float64)
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        width, height = (int(v) for v in row["size"])
        cameras.append(
            Camera(torch.from_numpy(view).float(), torch.from_numpy(K).float(), width, height)
        )
    return cameras
