"""The Python API under the CLI: train, render, evaluate, export and the demo."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data import load_scene
from .data.synthetic import ensure_demo_scene
from .eval.metrics import evaluate_images, load_lpips
from .export import write_gaussians_ply
from .render import rasterize_gaussians
from .scene.scaffold import NeuralGaussians, ScaffoldModel
from .train.checkpoint import (
    SCENE_NAME,
    RunError,
    atomic_write,
    load_torch,
    model_from_state,
    read_run_info,
    write_run_info,
)
from .train.config import preset as preset_config
from .train.loop import Trainer, TrainResult
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
    quiet: bool = False,
) -> TrainResult:
    """Train a Scaffold-GS scene from the dataset at ``data`` into ``run_dir``.

    With ``resume`` the run continues from its last checkpoint with the configuration it was
    started with (``preset``/``iterations`` are then read from the run directory).
    """
    run_dir = Path(run_dir)
    if resume:
        info = read_run_info(run_dir)
        data, downscale = info["data"], info["downscale"]
        config = preset_config(info["preset"], info["iterations"])
    else:
        config = preset_config(preset, iterations)
        info = {
            "data": str(Path(data).resolve()),
            "downscale": downscale,
            "preset": preset,
            "iterations": iterations,
        }
    scene = load_scene(data, downscale=downscale, load_instances=False)
    if not resume:
        write_run_info(run_dir, info)
    trainer = Trainer(scene, config, run_dir)
    with TrainProgress(config.iterations, quiet=quiet) as progress:
        return trainer.train(resume=resume, progress=progress)


def load_model(source: str | Path) -> ScaffoldModel:
    """The trained scene of a run directory (or a ``scene.pt`` file itself)."""
    source = Path(source)
    path = source / SCENE_NAME if source.is_dir() else source
    if source.is_dir() and not path.is_file():
        raise RunError(f"{source}: no trained scene yet ({SCENE_NAME} missing; train or --resume)")
    model = model_from_state(load_torch(path), path)
    model.eval()
    return model


def _scene_for(source: Path, data: str | Path | None, load_instances: bool = False) -> SceneData:
    if data is None:
        if not source.is_dir():
            raise RunError(f"{source}: give the dataset path (the scene file does not hold cameras)")
        info = read_run_info(source)
        return load_scene(info["data"], downscale=info["downscale"], load_instances=load_instances)
    downscale = read_run_info(source)["downscale"] if source.is_dir() else 1
    return load_scene(data, downscale=downscale, load_instances=load_instances)


@torch.no_grad()
def render_camera(model: ScaffoldModel, camera: Camera) -> torch.Tensor:
    """Render ``camera``: ``[H, W, 3]`` in [0, 1]."""
    gaussians = model.neural_gaussians(camera)
    out = rasterize_gaussians(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        gaussians.colors,
        camera,
        background=model.background_color(),
    )
    return out.colors.clamp(0, 1)


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
    atomic_write(path, lambda handle: Image.fromarray(np.ascontiguousarray(pixels)).save(handle, "PNG"))


def evaluate(
    source: str | Path, data: str | Path | None = None, lpips_weights: str | Path | None = None
) -> dict[str, Any]:
    """PSNR, SSIM, LPIPS (null unless its weights are on disk) and sizes on the test views."""
    source = Path(source)
    model = load_model(source)
    scene = _scene_for(source, data)
    started = time.perf_counter()
    preds = [render_camera(model, view.camera) for view in scene.test]
    seconds = time.perf_counter() - started
    metrics = evaluate_images(preds, [view.image for view in scene.test], load_lpips(lpips_weights))
    n_gaussians = sum(
        int(model.neural_gaussians(view.camera).means.shape[0]) for view in scene.test
    ) / max(len(scene.test), 1)
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
        extent = (model.anchors.max(0).values - model.anchors.min(0).values).norm()
        eye = model.anchors.mean(0) + torch.tensor([0.0, 0.0, 1.0]) * extent
    g = static_gaussians(model, eye)
    write_gaussians_ply(Path(ply_path), g.means, g.scales, g.quats, g.opacities, g.colors)
    return int(g.means.shape[0])


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2).encode()
    atomic_write(path, lambda handle: handle.write(text))


def demo(
    out_dir: str | Path = "csgaussian-demo", preset: str = "quick", iterations: int | None = None
) -> dict[str, Any]:
    """The embedded default: generate the built-in scene, train, evaluate, export and render."""
    out_dir = Path(out_dir)
    scene_dir = ensure_demo_scene(out_dir / "scene")
    run_dir = out_dir / "run"
    result = train(scene_dir, run_dir, preset=preset, iterations=iterations)
    report = evaluate(run_dir)
    n_exported = export(run_dir, out_dir / "scene.ply")
    renders = render(run_dir, out_dir / "renders")
    summary = {
        "scene": str(scene_dir),
        "iterations": result.iterations,
        "train_seconds": round(result.seconds, 1),
        "n_anchors": report["n_anchors"],
        "n_gaussians": report["n_gaussians"],
        "test_psnr": round(report["psnr"], 2),
        "test_ssim": round(report["ssim"], 4),
        "lpips": report["lpips"],
        "ply": str(out_dir / "scene.ply"),
        "ply_gaussians": n_exported,
        "renders": f"{len(renders)} PNG in {out_dir / 'renders'}",
    }
    write_json(out_dir / "report.json", summary)
    return summary
