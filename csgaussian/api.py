"""The Python API under the CLI: train, render, evaluate, export and the demo."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .codec.container import StreamError
from .codec.stream import MIN_SLOT_SHARE, EncodedScene, decode_scene, encode_scene
from .data import load_scene
from .data.synthetic import ensure_demo_scene
from .entropy.anchors import AnchorEntropyModel
from .eval.metrics import evaluate_images, load_lpips
from .fileio import atomic_write, write_bytes_atomic
from .ply import write_gaussians_ply
from .render import RasterConfig
from .scene.scaffold import NeuralGaussians, ScaffoldModel
from .train.checkpoint import (
    CHECKPOINT_NAME,
    RUN_INFO_NAME,
    SCENE_NAME,
    RunError,
    load_torch,
    model_from_state,
    read_run_info,
    save_torch,
    scene_state,
    write_run_info,
)
from .train.config import TrainConfig
from .train.config import preset as preset_config
from .train.loop import Trainer, TrainResult, render_view
from .train.progress import TrainProgress
from .types import Camera, SceneData

SPLITS = ("train", "test")


def train(
    data: str | Path,
    run_dir: str | Path,
    preset: str = "quick",
    iterations: int | None = None,
    resume: bool = False,
    downscale: int = 1,
    lambda_rate: float | None = None,
    hyperprior: str | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train a Scaffold-GS scene from the dataset at ``data`` into ``run_dir``.

    ``lambda_rate`` (default: the preset's) weighs the rate term; 0 trains plain Scaffold-GS
    without quantization (the uncompressed baseline). ``hyperprior`` is "inr" (default) or
    "hashgrid". With ``resume`` the run continues from its last checkpoint with the settings it
    was started with, read from the run directory.
    """
    run_dir = Path(run_dir)
    if resume:
        info = read_run_info(run_dir)
    elif (run_dir / CHECKPOINT_NAME).is_file():
        raise RunError(
            f"{run_dir}: already holds a run; continue it with --resume or use a new directory"
        )
    else:
        info = {
            "data": str(Path(data).resolve()),
            "downscale": downscale,
            "preset": preset,
            "iterations": iterations,
            "lambda_rate": lambda_rate,
            "hyperprior": hyperprior,
        }
    config = training_config(info)
    scene = load_scene(info["data"], downscale=info["downscale"], load_instances=False)
    if not resume:
        write_run_info(run_dir, info)
    trainer = Trainer(scene, config, run_dir)
    with TrainProgress(config.iterations, quiet=quiet) as progress:
        return trainer.train(resume=resume, progress=progress)


def training_config(info: dict[str, Any]) -> TrainConfig:
    """The configuration a run's settings (``run.json``) stand for."""
    config = preset_config(info["preset"], info.get("iterations"))
    lambda_rate, hyperprior = info.get("lambda_rate"), info.get("hyperprior")
    if lambda_rate is not None and lambda_rate < 0:
        raise ValueError(f"--lambda must be >= 0, got {lambda_rate}")
    if lambda_rate == 0:
        return replace(config, rate=None)
    rate = config.rate
    if lambda_rate is not None:
        rate = replace(rate, lambda_rate=lambda_rate)
    if hyperprior is not None:
        rate = replace(rate, hyperprior=hyperprior)
    return replace(config, rate=rate)


STREAM_SUFFIX = ".csg"


def load_model(source: str | Path) -> ScaffoldModel:
    """The scene of a run directory, a ``scene.pt`` file, or a decoded ``.csg`` stream."""
    source = Path(source)
    if source.suffix == STREAM_SUFFIX:
        return decode(source)
    return load_trained(source)[0]


def load_trained(source: str | Path) -> tuple[ScaffoldModel, AnchorEntropyModel | None]:
    """The trained scene of a run directory (or ``scene.pt``) and its entropy model, if any."""
    source = Path(source)
    path = source / SCENE_NAME if source.is_dir() else source
    if source.is_dir() and not path.is_file():
        raise RunError(f"{source}: no trained scene yet ({SCENE_NAME} missing; train or --resume)")
    model, entropy = model_from_state(load_torch(path), path)
    model.eval()
    return model, entropy


def encode(
    source: str | Path, stream_path: str | Path, min_slot_share: float = MIN_SLOT_SHARE
) -> EncodedScene:
    """Compress a run trained with the rate term into one ``.csg`` file (written atomically).

    Offset slots used by fewer than ``min_slot_share`` of the anchors are dropped (0 keeps all).
    """
    model, entropy = load_trained(source)
    if entropy is None:
        raise RunError(f"{source}: trained without the rate term (--lambda 0); nothing to encode")
    encoded = encode_scene(model, entropy, min_slot_share)
    write_bytes_atomic(stream_path, encoded.data)
    return encoded


def decode(stream_path: str | Path) -> ScaffoldModel:
    """Decode a ``.csg`` file; errors name the file."""
    stream_path = Path(stream_path)
    try:
        data = stream_path.read_bytes()
    except OSError as err:
        raise StreamError(f"{stream_path}: cannot read ({err.strerror})") from None
    try:
        return decode_scene(data)
    except StreamError as err:
        raise StreamError(f"{stream_path}: {err}") from None


def decode_to(stream_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Decode a stream into ``out_dir``: ``scene.pt`` (renderable) and a 3DGS ``scene.ply``."""
    out_dir = Path(out_dir)
    model = decode(stream_path)
    save_torch(out_dir / SCENE_NAME, scene_state(model, None))
    g = static_gaussians(model, _default_eye(model))
    write_gaussians_ply(out_dir / "scene.ply", g.means, g.scales, g.quats, g.opacities, g.colors)
    return {"n_anchors": model.n_anchors, "ply_gaussians": int(g.means.shape[0])}


def _scene_for(source: Path, data: str | Path | None, load_instances: bool = False) -> SceneData:
    if data is None:
        if not (source.is_dir() and (source / RUN_INFO_NAME).is_file()):
            raise RunError(f"{source}: give the dataset path (a scene file holds no cameras)")
        info = read_run_info(source)
        return load_scene(info["data"], downscale=info["downscale"], load_instances=load_instances)
    run_info = source / RUN_INFO_NAME
    downscale = read_run_info(source)["downscale"] if run_info.is_file() else 1
    return load_scene(data, downscale=downscale, load_instances=load_instances)


@torch.no_grad()
def render_camera(model: ScaffoldModel, camera: Camera) -> torch.Tensor:
    """Render ``camera``: ``[H, W, 3]`` in [0, 1]."""
    return render_view(model, camera, RasterConfig())[0].clamp(0, 1)


def render(
    source: str | Path, out_dir: str | Path, split: str = "test", data: str | Path | None = None
) -> list[Path]:
    """Render every view of ``split`` to PNG files in ``out_dir``; returns their paths."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    source, out_dir = Path(source), Path(out_dir)
    model = load_model(source)
    scene = _scene_for(source, data)
    paths = []
    for index, view in enumerate(getattr(scene, split)):
        image = render_camera(model, view.camera)
        path = out_dir / f"{split}_{index:03d}.png"
        save_png(path, image)
        paths.append(path)
    return paths


def save_png(path: Path, image: torch.Tensor) -> None:
    """Write ``[H, W, 3]`` in [0, 1] as an 8-bit PNG, atomically."""
    pixels = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    atomic_write(
        path, lambda handle: Image.fromarray(np.ascontiguousarray(pixels)).save(handle, "PNG")
    )


def evaluate(
    source: str | Path, data: str | Path | None = None, lpips_weights: str | Path | None = None
) -> dict[str, Any]:
    """PSNR, SSIM, LPIPS (null unless its weights are on disk) and sizes on the test views."""
    source = Path(source)
    model = load_model(source)
    scene = _scene_for(source, data)
    started = time.perf_counter()
    preds, counts = [], []
    with torch.no_grad():
        for view in scene.test:
            image, _, gaussians, _ = render_view(model, view.camera, RasterConfig())
            preds.append(image.clamp(0, 1))
            counts.append(gaussians.means.shape[0])
    seconds = time.perf_counter() - started
    metrics = evaluate_images(preds, [view.image for view in scene.test], load_lpips(lpips_weights))
    n_gaussians = sum(counts) / max(len(counts), 1)
    return {
        "psnr": metrics["psnr"],
        "ssim": metrics["ssim"],
        "lpips": metrics["lpips"],
        "n_test_views": len(scene.test),
        "n_anchors": model.n_anchors,
        "n_gaussians": round(n_gaussians),
        "seconds": seconds,
        "render_ms_per_view": 1000 * seconds / max(len(scene.test), 1),
        "per_view_psnr": metrics["per_view"]["psnr"],
    }


@torch.no_grad()
def static_gaussians(model: ScaffoldModel, eye: torch.Tensor) -> NeuralGaussians:
    """All anchors' Gaussians evaluated for one viewpoint ``eye`` ([3]): a plain 3DGS scene."""
    return model.spawn(torch.arange(model.n_anchors), eye)


def export(source: str | Path, ply_path: str | Path) -> int:
    """Write the scene as a standard 3DGS PLY; returns the number of Gaussians.

    Scaffold-GS colours and shapes depend on the view; the export evaluates the MLPs from the
    mean training-camera centre when the run's dataset is readable, else from the scene's
    anchor centroid lifted by its extent.
    """
    source = Path(source)
    model = load_model(source)
    try:
        scene = _scene_for(source, None)
        eye = torch.stack([view.camera.center for view in scene.train]).mean(0)
    except (RunError, ValueError):
        eye = _default_eye(model)
    g = static_gaussians(model, eye)
    write_gaussians_ply(Path(ply_path), g.means, g.scales, g.quats, g.opacities, g.colors)
    return int(g.means.shape[0])


def _default_eye(model: ScaffoldModel) -> torch.Tensor:
    """A viewpoint above the anchors' centroid at the scene's extent (no cameras known)."""
    extent = (model.anchors.max(0).values - model.anchors.min(0).values).norm()
    return model.anchors.mean(0) + torch.tensor([0.0, 0.0, 1.0]) * extent


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2).encode()
    write_bytes_atomic(path, text)


def demo(
    out_dir: str | Path = "csgaussian-demo", preset: str = "quick", iterations: int | None = None
) -> dict[str, Any]:
    """The embedded default: generate the built-in scene, train, encode, decode and evaluate."""
    out_dir = Path(out_dir)
    scene_dir = ensure_demo_scene(out_dir / "scene")
    run_dir = out_dir / "run"
    result = train(scene_dir, run_dir, preset=preset, iterations=iterations)
    trained = evaluate(run_dir)
    stream_path = out_dir / "scene.csg"
    encoded = encode(run_dir, stream_path)
    decoded = evaluate(stream_path, scene_dir)
    n_exported = export(run_dir, out_dir / "scene.ply")
    renders = render(stream_path, out_dir / "renders", data=scene_dir)
    summary = {
        "scene": str(scene_dir),
        "iterations": result.iterations,
        "train_seconds": round(result.seconds, 1),
        "n_anchors": decoded["n_anchors"],
        "n_gaussians": decoded["n_gaussians"],
        "trained_psnr": round(trained["psnr"], 2),
        "decoded_psnr": round(decoded["psnr"], 2),
        "decoded_ssim": round(decoded["ssim"], 4),
        "lpips": decoded["lpips"],
        "stream_bytes": len(encoded.data),
        "stream": str(stream_path),
        "ply": str(out_dir / "scene.ply"),
        "ply_gaussians": n_exported,
        "renders": f"{len(renders)} PNG (decoded scene) in {out_dir / 'renders'}",
    }
    write_json(out_dir / "report.json", summary)
    return summary
