"""The stage-1 training loop: colour optimisation of a Scaffold-GS scene, resumable."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..dataclass_io import matches_saved
from ..entropy.anchors import AnchorEntropyModel
from ..entropy.quantize import QuantMode
from ..eval.metrics import psnr
from ..progress import TrainProgress
from ..render.ssim import ssim_loss_term
from ..scene.anchor_ops import AnchorDensifier
from ..scene.io import (
    CHECKPOINT_NAME,
    SCENE_NAME,
    RunError,
    load_torch,
    model_from_state,
    save_torch,
    scene_state,
)
from ..scene.rendering import render_view
from ..scene.scaffold import AnchorGrid, ScaffoldModel, scaffold_from_points
from ..types import Dataset, View
from .config import TrainConfig


@dataclass
class StepStats:
    """What one iteration reports."""

    loss: float
    psnr: float  # of the training view
    n_gaussians: int
    bits_per_value: float | None  # rate of the anchors in view, once the rate term is on


@dataclass
class TrainResult:
    """What a finished training reports."""

    iterations: int
    seconds: float
    n_anchors: int
    n_gaussians: int
    train_psnr: float
    scene_path: Path


def initial_model(scene: Dataset, config: TrainConfig, generator: torch.Generator) -> ScaffoldModel:
    """Anchors from the dataset's point cloud, else uniform random points inside the bounds.

    Random points stay inside the dataset's bounds (where the cameras look); the anchor lattice
    reaches further, so that anchors can grow where the images ask for them.
    """
    grid = AnchorGrid.covering(
        scene.bounds, config.voxel_size_fraction * scene.extent, config.grid_margin
    )
    if scene.points is not None and scene.points.shape[0] > 0:
        points = scene.points.float()
    else:
        lo, hi = scene.bounds[0], scene.bounds[1]
        points = lo + torch.rand(config.random_init_points, 3, generator=generator) * (hi - lo)
    model = scaffold_from_points(points, grid, config.scaffold)
    model.background.data[:] = torch.logit(scene.background.clamp(0.01, 0.99))
    return model


def exponential_lr(initial: float, final: float, step: int, total: int) -> float:
    """Log-linear interpolation from ``initial`` to ``final`` over ``total`` steps (3DGS)."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return math.exp((1 - t) * math.log(initial) + t * math.log(final))


def build_optimizer(
    model: ScaffoldModel, entropy: AnchorEntropyModel | None, config: TrainConfig, radius: float
) -> torch.optim.Adam:
    lr = config.lr
    groups = [
        {"name": "features", "params": [model.features], "lr": lr.features},
        {"name": "offsets", "params": [model.offsets], "lr": lr.offsets * radius},
        {"name": "mask_logits", "params": [model.mask_logits], "lr": lr.mask},
        {"name": "log_scaling", "params": [model.log_scaling], "lr": lr.scaling},
        {
            "name": "opacity_mlp",
            "params": list(model.opacity_mlp.parameters()),
            "lr": lr.opacity_mlp,
        },
        {"name": "color_mlp", "params": list(model.color_mlp.parameters()), "lr": lr.color_mlp},
        {"name": "cov_mlp", "params": list(model.cov_mlp.parameters()), "lr": lr.cov_mlp},
        {"name": "background", "params": [model.background], "lr": lr.background},
    ]
    if entropy is not None:
        groups.append({"name": "hyperprior", "params": list(entropy.parameters()), "lr": 0.0})
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def update_learning_rates(
    optimizer: torch.optim.Optimizer, config: TrainConfig, radius: float, step: int
) -> None:
    """Scaffold-GS decays for offsets and the opacity/colour/covariance MLPs."""
    lr = config.lr
    decayed = {
        "offsets": (lr.offsets * radius, lr.offsets_final * radius),
        "opacity_mlp": (lr.opacity_mlp, lr.opacity_mlp_final),
        "color_mlp": (lr.color_mlp, lr.color_mlp_final),
        "cov_mlp": (lr.cov_mlp, lr.cov_mlp_final),
    }
    if config.rate is not None:
        decayed["hyperprior"] = (config.rate.lr, config.rate.lr_final)
    for group in optimizer.param_groups:
        if group["name"] in decayed:
            start, end = decayed[group["name"]]
            group["lr"] = exponential_lr(start, end, step, config.iterations)


def color_loss(
    model: ScaffoldModel,
    image: Tensor,
    target: Tensor,
    scales: Tensor,
    config: TrainConfig,
    use_mask: bool,
) -> Tensor:
    """The stage-1 distortion loss of docs/method.md §3 without its rate term."""
    w = config.loss
    loss = (1 - w.ssim) * (image - target).abs().mean() + w.ssim * ssim_loss_term(image, target)
    if scales.numel():
        loss = loss + w.volume * scales.prod(dim=1).mean()
    if use_mask:
        loss = loss + w.mask * torch.sigmoid(model.mask_logits).mean()
    return loss


class Trainer:
    """Owns the model, optimizer, densifier and checkpoints of one run directory."""

    def __init__(self, scene: Dataset, config: TrainConfig, run_dir: Path) -> None:
        self.scene = scene
        self.config = config
        self.run_dir = run_dir
        self.radius = scene.extent / 2
        torch.manual_seed(config.seed)  # network initialisation and quantization noise
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = initial_model(scene, config, self.generator)
        self.entropy = self._entropy_model()
        self.optimizer = build_optimizer(self.model, self.entropy, config, self.radius)
        self.densifier = AnchorDensifier(config.densify)
        self.densifier.reset(self.model.n_anchors, config.scaffold.n_offsets)
        self.iteration = 0
        self.elapsed = 0.0  # training seconds so far, across resumptions
        self.order: list[int] = []

    def _entropy_model(self) -> AnchorEntropyModel | None:
        if self.config.rate is None:
            return None
        return AnchorEntropyModel(self.model, self.config.rate)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def save_checkpoint(self) -> None:
        save_torch(
            self.checkpoint_path,
            {
                "iteration": self.iteration,
                "elapsed": self.elapsed,
                "scene": scene_state(self.model, self.entropy),
                "optimizer": self.optimizer.state_dict(),
                "densifier": self.densifier.state_dict(),
                "order": list(self.order),
                "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "config": self.config.to_dict(),
            },
        )

    def load_checkpoint(self) -> None:
        """Continue exactly where the last checkpoint left off."""
        state = load_torch(self.checkpoint_path)
        if not matches_saved(self.config, state.get("config")):
            raise RunError(f"{self.checkpoint_path}: was written with another configuration")
        self.model, self.entropy = model_from_state(state["scene"], self.checkpoint_path)
        self.optimizer = build_optimizer(self.model, self.entropy, self.config, self.radius)
        self.optimizer.load_state_dict(state["optimizer"])
        self.densifier.load_state_dict(state["densifier"])
        self.iteration = state["iteration"]
        self.elapsed = state["elapsed"]
        self.order = list(state["order"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])

    def next_view(self) -> View:
        """Views in a fresh random order each epoch (3DGS)."""
        if not self.order:
            n = len(self.scene.train)
            self.order = torch.randperm(n, generator=self.generator).tolist()
        return self.scene.train[self.order.pop()]

    def step(self) -> StepStats:
        """One iteration of stage 1."""
        cfg = self.config
        self.iteration += 1
        update_learning_rates(self.optimizer, cfg, self.radius, self.iteration)
        view = self.next_view()
        use_mask = self.iteration >= cfg.mask_start
        pricing = cfg.rate_start is not None and self.iteration >= cfg.rate_start
        mode: QuantMode = "round" if pricing and self.iteration >= cfg.round_start else "noise"
        rendered = render_view(
            self.model, view.camera, cfg.raster, use_mask, self.entropy if pricing else None, mode
        )
        image, gaussians, rate = rendered.image, rendered.gaussians, rendered.rate
        target = view.image  # float32, made from the stored pixels for this step
        loss = color_loss(self.model, image, target, gaussians.scales, cfg, use_mask)
        if rate is not None:
            loss = loss + cfg.rate.lambda_rate * rate.bits_per_value
        densifying = self.densifier.active(self.iteration)
        if densifying:
            rendered.raster.means2d.retain_grad()
        loss.backward()
        if densifying and rendered.raster.means2d.grad is not None:
            visible = torch.zeros(self.model.n_anchors, dtype=torch.bool)
            visible[gaussians.anchor_index] = True
            self.densifier.accumulate(
                gaussians,
                visible,
                rendered.raster.means2d.grad,
                rendered.raster.radii,
                view.camera.width,
                view.camera.height,
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if densifying and self.iteration % cfg.densify.interval == 0:
            self.densifier.step(self.model, self.optimizer)
        return StepStats(
            loss=loss.item(),
            psnr=psnr(image.detach(), target),
            n_gaussians=int(gaussians.means.shape[0]),
            bits_per_value=None if rate is None else rate.bits_per_value.item(),
        )

    def train(self, resume: bool = False, progress: TrainProgress | None = None) -> TrainResult:
        """Run to ``config.iterations``, writes ``scene.pt`` at the end."""
        if resume:
            self.load_checkpoint()
        cfg = self.config
        started = time.perf_counter() - self.elapsed
        recent: list[StepStats] = []
        bar = progress or TrainProgress(cfg.iterations, quiet=True)
        with torch_threads(cfg.torch_threads), bar:
            bar.start_at(self.iteration)
            while self.iteration < cfg.iterations:
                recent = (recent + [self.step()])[-cfg.log_every :]
                if self.iteration % cfg.log_every == 0 or self.iteration == cfg.iterations:
                    bar.update(self.iteration, **_progress_fields(recent, self.model.n_anchors))
                if self.iteration % cfg.checkpoint_every == 0:
                    self.elapsed = time.perf_counter() - started
                    self.save_checkpoint()
        self.elapsed = time.perf_counter() - started
        self.save_checkpoint()
        scene_path = self.run_dir / SCENE_NAME
        save_torch(scene_path, scene_state(self.model, self.entropy))
        return TrainResult(
            iterations=self.iteration,
            seconds=self.elapsed,
            n_anchors=self.model.n_anchors,
            n_gaussians=recent[-1].n_gaussians if recent else 0,
            train_psnr=sum(r.psnr for r in recent) / max(len(recent), 1),
            scene_path=scene_path,
        )


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _progress_fields(recent: list[StepStats], n_anchors: int) -> dict[str, float | int]:
    """Means over the last logging window, for the progress display."""
    fields: dict[str, float | int] = {
        "loss": sum(r.loss for r in recent) / len(recent),
        "psnr": sum(r.psnr for r in recent) / len(recent),
        "gaussians": recent[-1].n_gaussians,
        "anchors": n_anchors,
    }
    priced = [r.bits_per_value for r in recent if r.bits_per_value is not None]
    if priced:
        fields["bits"] = sum(priced) / len(priced)
    return fields
