"""The optional ``cameras`` section of the base layer: a few camera poses of the capture
(docs/format.md §3.7).

A receiver has the stream and no dataset; the poses let it look at the scene (the viewer's
opening view) and fit an export at viewpoints the model was trained for, instead of guessing an
orbit around the anchors. The encoder keeps at most :data:`MAX_CAMERAS` cameras spread over the
capture (:func:`spread_cameras`).

Layout (little-endian)::

    n_intrinsics u8    1 .. n_cameras
    n_cameras    u8    1 .. MAX_CAMERAS
    intrinsics   n_intrinsics x (width u16, height u16, fx f32, fy f32, cx f32, cy f32)  20 B
    cameras      n_cameras x (intrinsics u8, q f32[4] (w, x, y, z), t f32[3])             29 B

``q`` is the world -> camera rotation as a unit quaternion (``w >= 0``) and ``t`` the translation
(OpenCV axes: ``x_cam = R x_world + t``); cameras that share intrinsics share a table entry (a
capture usually has one), so 16 cameras of one capture take 486 bytes.

The section is optional (the container's optional bit): builds that do not know it skip it.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from ..render.projection import quat_to_rotmat
from ..types import Camera
from .container import StreamError

SECTION = "cameras"
MAX_CAMERAS = 16
"""Cameras the section holds at most (16 of one capture: 486 bytes)."""
MAX_SIDE = 8192
"""Largest width or height of a stored camera: a receiver renders at it, so a forged camera
must not ask for more (8K captures fit)."""
MAX_PIXEL_VALUE = 1e6
"""Largest focal length and principal-point coordinate, in pixels."""
MAX_TRANSLATION = 1e9
"""Largest translation component, world units (the edit layer's offset bound)."""
QUATERNION_TOLERANCE = 1e-4
"""Largest ``| |q| - 1 |`` a decoded quaternion may have (float32 rounding is about 1e-7)."""
ORTHONORMAL_TOLERANCE = 1e-3
"""Largest ``|R R^T - I|`` entry of a rotation the encoder accepts."""
_COUNTS = struct.Struct("<BB")
_INTRINSICS = np.dtype([("size", "<u2", 2), ("k", "<f4", 4)])  # width, height; fx, fy, cx, cy
_POSE = np.dtype([("intrinsics", "u1"), ("q", "<f4", 4), ("t", "<f4", 3)])


def spread_cameras(cameras: list[Camera], count: int = MAX_CAMERAS) -> list[Camera]:
    """At most ``count`` of ``cameras`` spread over the capture, in capture order.

    Greedy farthest-point selection on the camera centres from the first camera (ties go to the
    earlier camera), so the first camera is always kept: deterministic.
    """
    if count <= 0:
        return []
    if len(cameras) <= count:
        return list(cameras)
    centers = torch.stack([c.center for c in cameras]).double()  # [C, 3]
    chosen = [0]
    distance = (centers - centers[0]).norm(dim=1)
    for _ in range(count - 1):
        pick = int(distance.argmax())
        chosen.append(pick)
        distance = torch.minimum(distance, (centers - centers[pick]).norm(dim=1))
    return [cameras[i] for i in sorted(chosen)]


def within_max_side(camera: Camera) -> Camera:
    """``camera``, its image scaled down to at most :data:`MAX_SIDE` pixels a side when larger
    (the same viewpoint and field of view: what the section can hold)."""
    side = max(camera.width, camera.height)
    return camera if side <= MAX_SIDE else camera.scaled(MAX_SIDE / side)


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion (w, x, y, z), ``w >= 0``, of a rotation matrix ``[3, 3]`` (Shepperd's
    method: the largest of the four squared components is taken from the diagonal)."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    largest = int(np.argmax([trace, r[0, 0], r[1, 1], r[2, 2]]))
    if largest == 0:
        w = 0.5 * np.sqrt(1.0 + trace)
        q = [
            w,
            (r[2, 1] - r[1, 2]) / (4 * w),
            (r[0, 2] - r[2, 0]) / (4 * w),
            (r[1, 0] - r[0, 1]) / (4 * w),
        ]
    elif largest == 1:
        x = 0.5 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [
            (r[2, 1] - r[1, 2]) / (4 * x),
            x,
            (r[0, 1] + r[1, 0]) / (4 * x),
            (r[0, 2] + r[2, 0]) / (4 * x),
        ]
    elif largest == 2:
        y = 0.5 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [
            (r[0, 2] - r[2, 0]) / (4 * y),
            (r[0, 1] + r[1, 0]) / (4 * y),
            y,
            (r[1, 2] + r[2, 1]) / (4 * y),
        ]
    else:
        z = 0.5 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [
            (r[1, 0] - r[0, 1]) / (4 * z),
            (r[0, 2] + r[2, 0]) / (4 * z),
            (r[1, 2] + r[2, 1]) / (4 * z),
            z,
        ]
    out = np.asarray(q) / np.linalg.norm(q)
    return -out if out[0] < 0 else out


def encode_cameras(cameras: list[Camera]) -> bytes:
    """The section's payload for ``cameras`` (1 .. :data:`MAX_CAMERAS`, in the stored order;
    larger images scaled down to :data:`MAX_SIDE` first, :func:`within_max_side`).

    Raises:
        ValueError: a count out of range, or a camera the decoder would refuse (not a rotation,
            a size or intrinsic out of bounds).
    """
    if not 0 < len(cameras) <= MAX_CAMERAS:
        raise ValueError(f"the cameras section holds 1..{MAX_CAMERAS} cameras, got {len(cameras)}")
    table: list[tuple[int, int, float, float, float, float]] = []
    poses = np.zeros(len(cameras), _POSE)
    for pose, camera in zip(poses, map(within_max_side, cameras), strict=True):
        view = camera.viewmat.double().numpy()
        K = camera.K.float().double().numpy()
        rotation = view[:3, :3]
        if np.abs(rotation @ rotation.T - np.eye(3)).max() > ORTHONORMAL_TOLERANCE:
            raise ValueError("a camera's world -> camera matrix is not a rotation")
        intrinsics = (camera.width, camera.height, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        if intrinsics not in table:
            table.append(intrinsics)
        pose["intrinsics"] = table.index(intrinsics)
        pose["q"] = rotation_to_quaternion(rotation)
        pose["t"] = view[:3, 3]
    rows = np.zeros(len(table), _INTRINSICS)
    for row, (width, height, *k) in zip(rows, table, strict=True):
        row["size"] = (width, height)
        row["k"] = k
    payload = _COUNTS.pack(len(table), len(cameras)) + rows.tobytes() + poses.tobytes()
    try:
        decode_cameras(payload)
    except StreamError as err:
        raise ValueError(f"cannot store these cameras: {err}") from None
    return payload


def decode_cameras(payload: bytes) -> list[Camera]:
    """The cameras of a section's payload, every field checked before use.

    Raises:
        StreamError: a count out of range or disagreeing with the payload's length, a
            non-finite value, a size outside 1 .. :data:`MAX_SIDE`, a focal length or principal
            point out of bounds, an intrinsics index out of the table, a quaternion that is not
            unit, a translation out of bounds.
    """
    if len(payload) < _COUNTS.size:
        raise StreamError("cameras section: truncated counts")
    n_intrinsics, n_cameras = _COUNTS.unpack_from(payload)
    if not 0 < n_cameras <= MAX_CAMERAS or not 0 < n_intrinsics <= n_cameras:
        raise StreamError(
            f"cameras section: {n_cameras} cameras with {n_intrinsics} intrinsics "
            f"(1..{MAX_CAMERAS} cameras, 1..cameras intrinsics)"
        )
    need = _COUNTS.size + n_intrinsics * _INTRINSICS.itemsize + n_cameras * _POSE.itemsize
    if len(payload) != need:
        raise StreamError(
            f"cameras section: {len(payload)} bytes, {n_cameras} cameras with "
            f"{n_intrinsics} intrinsics take {need}"
        )
    rows = np.frombuffer(payload, _INTRINSICS, n_intrinsics, _COUNTS.size)
    poses = np.frombuffer(payload, _POSE, n_cameras, _COUNTS.size + rows.nbytes)
    k = rows["k"].astype(np.float64)  # [I, 4] fx, fy, cx, cy
    if not np.isfinite(k).all() or (np.abs(k) > MAX_PIXEL_VALUE).any() or (k[:, :2] <= 0).any():
        raise StreamError(
            f"cameras section: an intrinsic is not finite, a focal length is not positive, or "
            f"one is beyond {MAX_PIXEL_VALUE:g} pixels"
        )
    if (rows["size"] < 1).any() or (rows["size"] > MAX_SIDE).any():
        raise StreamError(f"cameras section: a width or height outside 1..{MAX_SIDE}")
    if (poses["intrinsics"] >= n_intrinsics).any():
        raise StreamError("cameras section: an intrinsics index beyond the table")
    q = poses["q"].astype(np.float64)  # [C, 4]
    t = poses["t"].astype(np.float64)  # [C, 3]
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise StreamError("cameras section: a pose is not finite")
    if (np.abs(np.linalg.norm(q, axis=1) - 1.0) > QUATERNION_TOLERANCE).any():
        raise StreamError("cameras section: a rotation quaternion is not of unit length")
    if (np.abs(t) > MAX_TRANSLATION).any():
        raise StreamError(f"cameras section: a translation beyond {MAX_TRANSLATION:g}")
    rotations = quat_to_rotmat(torch.from_numpy(q))  # [C, 3, 3] float64
    cameras = []
    for index, rotation, translation in zip(poses["intrinsics"], rotations, t, strict=True):
        view = torch.eye(4, dtype=torch.float64)
        view[:3, :3] = rotation
        view[:3, 3] = torch.from_numpy(translation)
        fx, fy, cx, cy = k[index]
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        width, height = (int(v) for v in rows["size"][index])
        cameras.append(Camera(view.float(), K.float(), width, height))
    return cameras
