"""The built-in demo scene: procedural objects ray-cast in numpy, written in kitchen's layout.

``generate_scene`` writes ``transforms_{train,test}.json`` (``camera_angle_x``, OpenGL
camera-to-world ``transform_matrix``), ``train|test/r_XXX.png``, ``instance/<split>_XXX.png``,
``segmentations/classes.txt``, ``segmentations/XXX/<name>.png`` (test views) and a README, so
that :func:`csgaussian.data.load_scene` reads it like ``shared/data/kitchen``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from csgaussian.data.common import intrinsics
from csgaussian.data.synthetic_geometry import Primitive, default_objects, trace
from csgaussian.types import Camera

FORMAT_VERSION = 1  # bump when the generated files change, so cached scenes are regenerated
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the synthetic scene (ours; camera distance and FOV mirror kitchen)."""

    width: int = 128  # image width in pixels
    height: int = 128  # image height in pixels
    n_train: int = 48  # training views on a jittered ring
    n_test: int = 8  # test views, between the training azimuths
    seed: int = 0  # camera jitter
    camera_angle_x: float = 0.8726646  # horizontal field of view, radians (kitchen's 50 degrees)
    radius: float = 3.0  # camera distance to the look-at point
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.2)  # point all cameras aim at
    min_elevation_deg: float = 20.0  # lowest camera elevation above the floor plane
    max_elevation_deg: float = 60.0  # highest camera elevation
    samples_per_axis: int = 2  # supersampling of the colour image (2 -> 4 rays per pixel)
    light_direction: tuple[float, float, float] = (0.5, 0.3, 0.8)  # towards the sun
    ambient: float = 0.35  # share of light that reaches shadowed / back-facing surfaces
    sky: tuple[float, float, float] = (0.62, 0.74, 0.9)  # background colour

    def __post_init__(self) -> None:
        counts = (self.width, self.height, self.n_train, self.n_test, self.samples_per_axis)
        if min(counts) < 1:
            raise ValueError(f"SyntheticConfig sizes and counts must be >= 1, got {counts}")
        if not self.min_elevation_deg <= self.max_elevation_deg < 90:
            raise ValueError("SyntheticConfig needs min_elevation_deg <= max_elevation_deg < 90")


@dataclass
class RenderedView:
    """Output of :func:`render_ground_truth`."""

    rgb: np.ndarray  # [H, W, 3] float64 in [0, 1]
    instance: np.ndarray  # [H, W] int64, 0 = sky, i = object i - 1 of default_objects()
    depth: np.ndarray  # [H, W] float64 z-depth along the optical axis, inf = sky


def look_at_camera(
    center: np.ndarray, target: np.ndarray, config: SyntheticConfig, name: str = ""
) -> Camera:
    """Pinhole camera at ``center`` aiming at ``target`` with +Z up (OpenCV axes)."""
    forward = (target - center) / np.linalg.norm(target - center)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # world -> camera rows
    view = np.eye(4)
    view[:3, :3] = R
    view[:3, 3] = -R @ center
    fx = 0.5 * config.width / math.tan(0.5 * config.camera_angle_x)
    K = intrinsics(fx, fx, config.width / 2, config.height / 2)
    return Camera(torch.tensor(view, dtype=torch.float32), K, config.width, config.height, name)


def _ring(azimuths: np.ndarray, elevations: np.ndarray, config: SyntheticConfig) -> list[Camera]:
    target = np.asarray(config.look_at)
    cams = []
    for k, (az, el) in enumerate(zip(azimuths, elevations, strict=True)):
        offset = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cams.append(look_at_camera(target + config.radius * offset, target, config, f"r_{k:03d}"))
    return cams


def scene_cameras(config: SyntheticConfig) -> tuple[list[Camera], list[Camera]]:
    """Train and test cameras; deterministic for ``config.seed``."""
    rng = np.random.default_rng(config.seed)
    low, high = np.radians(config.min_elevation_deg), np.radians(config.max_elevation_deg)
    step = 2 * np.pi / config.n_train
    train_az = np.arange(config.n_train) * step + rng.uniform(-0.4, 0.4, config.n_train) * step
    train = _ring(train_az, rng.uniform(low, high, config.n_train), config)
    test_az = (np.arange(config.n_test) + 0.5) * 2 * np.pi / config.n_test
    test_el = np.where(
        np.arange(config.n_test) % 2 == 0, 0.7 * low + 0.3 * high, 0.3 * low + 0.7 * high
    )
    return train, _ring(test_az, test_el, config)


def _rays(camera: Camera, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World ray origins and unit directions ``[H * W, 3]`` through pixel + ``offsets`` (2,)."""
    K = camera.K.double().numpy()
    view = camera.viewmat.double().numpy()
    v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float64)
    x = (u.ravel() + offsets[0] - K[0, 2]) / K[0, 0]
    y = (v.ravel() + offsets[1] - K[1, 2]) / K[1, 1]
    d = np.stack([x, y, np.ones_like(x)], 1) @ view[:3, :3]  # R^T d_cam
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    origin = -view[:3, :3].T @ view[:3, 3]
    return np.broadcast_to(origin, d.shape), d


def _shade(
    objects: list[Primitive],
    o: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    index: np.ndarray,
    config: SyntheticConfig,
) -> np.ndarray:
    """Lambertian colour ``[R, 3]`` with hard shadows from a directional light, sky on misses."""
    colour = np.tile(np.asarray(config.sky, dtype=np.float64), (len(t), 1))
    light = np.asarray(config.light_direction) / np.linalg.norm(config.light_direction)
    for k, obj in enumerate(objects):
        sel = index == k
        if not sel.any():
            continue
        p = o[sel] + t[sel, None] * d[sel]
        n = obj.normal(p)
        blocked = np.isfinite(trace(objects, p + 1e-4 * n, np.broadcast_to(light, p.shape))[0])
        lit = np.clip(n @ light, 0.0, None) * ~blocked
        colour[sel] = obj.albedo(p) * (config.ambient + (1 - config.ambient) * lit)[:, None]
    return colour


def render_ground_truth(
    camera: Camera, config: SyntheticConfig = SyntheticConfig()
) -> RenderedView:
    """Ray-cast the demo scene for ``camera`` (pixel centres at ``+0.5``)."""
    objects = default_objects()
    shape = (camera.height, camera.width)
    o, d = _rays(camera, np.array([0.5, 0.5]))
    t, index = trace(objects, o, d)
    forward = camera.viewmat[2, :3].double().numpy()
    depth = np.where(index >= 0, t * (d @ forward), np.inf).reshape(shape)
    s = config.samples_per_axis
    rgb = np.zeros((camera.height * camera.width, 3))
    for a in range(s):
        for b in range(s):
            o_s, d_s = _rays(camera, (np.array([a, b]) + 0.5) / s)
            t_s, index_s = trace(objects, o_s, d_s)
            rgb += _shade(objects, o_s, d_s, t_s, index_s, config)
    rgb = np.clip(rgb / s**2, 0.0, 1.0).reshape(*shape, 3)
    return RenderedView(rgb, (index + 1).reshape(shape), depth)


def _c2w_opengl(camera: Camera) -> list[list[float]]:
    view = camera.viewmat.double().numpy()
    c2w = np.eye(4)
    c2w[:3, :3] = view[:3, :3].T
    c2w[:3, 3] = -view[:3, :3].T @ view[:3, 3]
    return (c2w @ OPENGL_FROM_OPENCV).tolist()


def _write_split(
    out: Path, split: str, cameras: list[Camera], config: SyntheticConfig, names: list[str]
) -> None:
    frames = []
    for k, camera in enumerate(cameras):
        view = render_ground_truth(camera, config)
        Image.fromarray(np.round(view.rgb * 255).astype(np.uint8)).save(
            out / split / f"r_{k:03d}.png"
        )
        Image.fromarray(view.instance.astype(np.uint8)).save(
            out / "instance" / f"{split}_{k:03d}.png"
        )
        if split == "test":
            masks = out / "segmentations" / f"{k:03d}"
            masks.mkdir(exist_ok=True)
            for i, name in enumerate(names, start=1):
                Image.fromarray(((view.instance == i) * 255).astype(np.uint8)).save(
                    masks / f"{name}.png"
                )
        frames.append(
            {"file_path": f"./{split}/r_{k:03d}", "transform_matrix": _c2w_opengl(camera)}
        )
    meta = {"camera_angle_x": config.camera_angle_x, "frames": frames}
    (out / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))


README = """# synthetic: the built-in procedural scene of csgaussian

Generated by `csgaussian.data.synthetic.generate_scene` ({config}).
Ray-cast in numpy: {names} on a checkered floor, Lambertian shading, hard shadows, sky colour
background. Same layout as `shared/data/kitchen`: `transforms_{{train,test}}.json` (camera_angle_x,
camera-to-world OpenGL transform_matrix), `train|test/r_XXX.png`, `instance/<split>_XXX.png`
(0 = sky, i = line i of `segmentations/classes.txt`), `segmentations/XXX/<name>.png` (test views).
"""


def generate_scene(out_dir: Path, config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write the synthetic scene into ``out_dir`` (created if needed; files are overwritten).

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    names = [obj.name for obj in default_objects()]
    for folder in ("train", "test", "instance", "segmentations"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (out / "segmentations" / "classes.txt").write_text("\n".join(names) + "\n")
    train, test = scene_cameras(config)
    _write_split(out, "train", train, config, names)
    _write_split(out, "test", test, config, names)
    (out / "README.md").write_text(README.format(config=asdict(config), names=", ".join(names)))
    return out


def ensure_demo_scene(cache_dir: str | Path, config: SyntheticConfig = SyntheticConfig()) -> Path:
    """The synthetic scene under ``cache_dir``, generated once (atomically) per config.

    Generation happens in a temporary folder beside the target, then one ``rename`` publishes
    it; a concurrent winner's copy is kept.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(repr((FORMAT_VERSION, asdict(config))).encode()).hexdigest()[:12]
    target = cache / f"synthetic-{key}"
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=cache))
    try:
        generate_scene(tmp, config)
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target
