"""Fit a view-independent 3DGS scene (SH colours) to a decoded Scaffold-GS model.

Scaffold-GS spawns its neural Gaussians per view: opacity, colour, scale and rotation come
from MLPs of the view, and a slot whose opacity is <= 0 in a view is not drawn there. Means do
not depend on the view (``x + O_k * l[0:3]``, docs/method.md §1). The export therefore keeps one
Gaussian per anchor slot drawn in at least one of the sampled views (a slot never drawn
contributes nothing to any of them), at its fixed mean, and fits the rest:

1. Initial values from the sampled views: opacity = its mean over the views that see the
   anchor (0 where the slot is not drawn: the expected opacity), log-scales averaged, the
   rotation as the principal eigenvector of the opacity-weighted ``sum q q^T`` (the average
   that ignores the sign of q), and SH coefficients by ridge least squares on the slot's
   per-view colours against their view directions.
2. Adam on SH coefficients, opacity logits, log-scales and rotations, rendering with the plain
   3DGS SH rasterizer against renders of the decoded model from the same sampled cameras
   (L1 + D-SSIM, as 3DGS trains), not against any dataset image: the receiver has the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from ..progress import TrainProgress
from ..render.sh import rasterize_sh, sh_basis, sh_coefficient_count
from ..render.ssim import ssim_loss_term
from ..scene.rendering import render_view
from ..scene.scaffold import ScaffoldModel
from ..types import Camera
from .cameras import OrbitSampler


@dataclass(frozen=True)
class ExportConfig:
    """The SH fit. Learning rates and the D-SSIM weight are 3DGS's (``arguments/__init__.py``:
    feature 0.0025 with rest / 20, opacity 0.05, scaling 0.005, rotation 0.001, lambda_dssim
    0.2); the camera sampling and the ridge are ours (kitchen, measured in
    benchmarks/export.py)."""

    sh_degree: int = 3
    """Degree of the exported SH colours (3: the 48 colour values of a standard 3DGS PLY)."""
    fit_iterations: int = 2000
    """Adam steps of the fit; 0 keeps the closed-form initial values (fewer steps leave the
    export under the decoded model: benchmarks/results/notes/measurements.md#export-fit)."""
    n_views: int = 64
    """Cameras whose views give the initial values (the fit then draws a new camera per step
    and renders its target from the decoded model: no view is fitted twice)."""
    image_size: int = 128
    """Width and height of the sampled views, pixels."""
    fov_deg: float = 50.0
    """Field of view of the sampled cameras."""
    radius_range: tuple[float, float] = (1.1, 1.6)
    """Camera distances from the anchors' centroid, in units of their ``radius_quantile``
    distance from it."""
    radius_quantile: float = 0.9
    """Quantile of the anchors' distances that sets the scene's radius (ignores stray anchors)."""
    elevation_deg: tuple[float, float] = (0.0, 90.0)
    """Elevation band of the cameras about +Z. The stream holds no poses, so this assumes a
    +Z-up scene seen from above, as the Blender-layout scenes (kitchen, the built-in scene)
    are; (-90, 90) samples the whole sphere
    (benchmarks/results/notes/measurements.md#export-elevation)."""
    sh_ridge: float = 0.05
    """Ridge weight, per colour sample, on the non-DC coefficients of the initial SH fit."""
    lr_dc: float = 0.0025
    lr_rest: float = 0.000125
    lr_opacity: float = 0.05
    lr_scale: float = 0.005
    lr_rotation: float = 0.001
    lr_final_fraction: float = 0.1
    """Every learning rate decays exponentially to this fraction of itself by the last step
    (ours; 3DGS decays its position rate by 0.01)."""
    ssim_weight: float = 0.2
    seed: int = 0


@dataclass
class ExportedGaussians:
    """A plain 3DGS scene: one Gaussian per exported anchor slot."""

    means: Tensor  # [S, 3]
    scales: Tensor  # [S, 3] activated
    quats: Tensor  # [S, 4] unit (w, x, y, z)
    opacities: Tensor  # [S] in (0, 1)
    sh: Tensor  # [S, M, 3] SH coefficients, M = (degree + 1)^2
    anchor_index: Tensor  # [S] int64
    offset_index: Tensor  # [S] int64

    def subset(self, keep: Tensor) -> ExportedGaussians:
        """The Gaussians where ``keep`` ([S] bool or int64 indices) holds."""
        return ExportedGaussians(*(getattr(self, f.name)[keep] for f in fields(self)))

    def __len__(self) -> int:
        return self.means.shape[0]


@dataclass
class _SlotStats:
    """Per-active-slot sums over the sampled views."""

    n_seen: Tensor  # [S] views in which the slot's anchor is visible
    n_drawn: Tensor  # [S] views in which the slot is drawn
    means: Tensor  # [S, 3]
    opacity: Tensor  # [S] sum of opacities (the SH samples' weights)
    log_scales: Tensor  # [S, 3] sum of log-scales
    qq: Tensor  # [S, 4, 4] opacity-weighted sum of q q^T
    ata: Tensor  # [S, M, M] weighted normal equations of the SH fit
    atc: Tensor  # [S, M, 3]


def camera_sampler(model: ScaffoldModel, config: ExportConfig) -> OrbitSampler:
    """The fit's cameras around the model's anchors."""
    return OrbitSampler.around(
        model.anchors,
        config.radius_quantile,
        radius_range=config.radius_range,
        elevation_deg=config.elevation_deg,
        size=config.image_size,
        fov_deg=config.fov_deg,
    )


@torch.no_grad()
def _collect(model: ScaffoldModel, cameras: list[Camera], degree: int) -> tuple[Tensor, _SlotStats]:
    """Sum the per-slot statistics over the views of ``cameras``. Returns the ``[N, K]`` map
    of active slots to rows (-1 elsewhere) and the sums."""
    active = model.active_slots()
    rows = torch.full(active.shape, -1, dtype=torch.int64)
    n = int(active.sum())
    rows[active] = torch.arange(n)
    m = sh_coefficient_count(degree)
    stats = _SlotStats(
        torch.zeros(n), torch.zeros(n), torch.zeros(n, 3), torch.zeros(n), torch.zeros(n, 3),
        torch.zeros(n, 4, 4), torch.zeros(n, m, m), torch.zeros(n, m, 3),
    )  # fmt: skip
    for camera in cameras:
        out = render_view(model, camera)
        seen = model.visible_anchors(camera)
        stats.n_seen += seen[:, None].expand_as(active)[active].float()
        g = out.gaussians
        row = rows[g.anchor_index, g.offset_index]
        w = g.opacities
        dirs = torch.nn.functional.normalize(g.means - camera.center, dim=1)
        basis = sh_basis(dirs, degree)  # [G, M]
        stats.n_drawn.index_add_(0, row, torch.ones_like(w))
        stats.means[row] = g.means
        stats.opacity.index_add_(0, row, w)
        stats.log_scales.index_add_(0, row, g.scales.clamp_min(1e-12).log())
        stats.qq.index_add_(0, row, w[:, None, None] * g.quats[:, :, None] * g.quats[:, None, :])
        weighted = w[:, None] * basis
        stats.ata.index_add_(0, row, weighted[:, :, None] * basis[:, None, :])
        stats.atc.index_add_(0, row, weighted[:, :, None] * (g.colors - 0.5)[:, None, :])
    return rows, stats


def initial_gaussians(
    model: ScaffoldModel, cameras: list[Camera], config: ExportConfig
) -> ExportedGaussians:
    """The closed-form initial export from the views of ``cameras`` (module doc, 1)."""
    rows, stats = _collect(model, cameras, config.sh_degree)
    drawn = stats.n_drawn > 0
    anchor_index, offset_index = (rows >= 0).nonzero(as_tuple=True)
    count = stats.n_drawn[drawn, None]
    m = stats.ata.shape[1]
    ridge = torch.ones(m)
    ridge[0] = 0.0
    lhs = stats.ata[drawn] + config.sh_ridge * stats.opacity[drawn, None, None] * torch.diag(ridge)
    lhs = lhs + 1e-8 * torch.eye(m)
    sh = torch.linalg.solve(lhs, stats.atc[drawn])
    quats = torch.linalg.eigh(stats.qq[drawn]).eigenvectors[..., -1]  # [S, 4] largest
    opacity = stats.opacity[drawn] / stats.n_seen[drawn].clamp_min(1)
    gaussians = ExportedGaussians(
        means=stats.means[drawn],
        scales=torch.exp(stats.log_scales[drawn] / count),
        quats=quats,
        opacities=opacity.clamp(1e-4, 1 - 1e-4),
        sh=sh,
        anchor_index=anchor_index[drawn],
        offset_index=offset_index[drawn],
    )
    return gaussians


def fit_export(
    model: ScaffoldModel,
    config: ExportConfig = ExportConfig(),
    quiet: bool = True,  # noqa: B008
) -> ExportedGaussians:
    """The exported scene of ``model``: initial values, then ``fit_iterations`` Adam steps
    (gradients on even when the caller runs under ``torch.no_grad``)."""
    with torch.enable_grad():
        return _fit(model, config, quiet)


def _fit(model: ScaffoldModel, config: ExportConfig, quiet: bool) -> ExportedGaussians:
    sampler = camera_sampler(model, config)
    init = initial_gaussians(model, sampler.spiral(config.n_views), config)
    if config.fit_iterations == 0:
        return init
    background = model.background_color().detach()
    params = {
        "dc": init.sh[:, :1].clone().requires_grad_(True),
        "rest": init.sh[:, 1:].clone().requires_grad_(True),
        "opacity": torch.logit(init.opacities).requires_grad_(True),
        "log_scales": init.scales.log().requires_grad_(True),
        "quats": init.quats.clone().requires_grad_(True),
    }
    lrs = (config.lr_dc, config.lr_rest, config.lr_opacity, config.lr_scale, config.lr_rotation)
    optimizer = torch.optim.Adam(
        [{"params": [p], "lr": lr} for p, lr in zip(params.values(), lrs, strict=True)], eps=1e-15
    )
    decay = config.lr_final_fraction ** (1.0 / config.fit_iterations)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)
    generator = torch.Generator().manual_seed(config.seed)
    w = config.ssim_weight
    with TrainProgress(config.fit_iterations, quiet, "export fit") as progress:
        for iteration in range(1, config.fit_iterations + 1):
            camera = sampler.random(generator)
            with torch.no_grad():
                target = render_view(model, camera).image.clamp(0, 1)
            out = rasterize_sh(
                init.means,
                params["quats"],
                params["log_scales"].exp(),
                torch.sigmoid(params["opacity"]),
                torch.cat([params["dc"], params["rest"]], dim=1),
                camera,
                background,
            )
            l1 = (out.colors - target).abs().mean()
            loss = (1 - w) * l1 + w * ssim_loss_term(out.colors, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if iteration % 50 == 0 or iteration == config.fit_iterations:
                progress.update(iteration, l1=l1.item())
    with torch.no_grad():
        return ExportedGaussians(
            means=init.means,
            scales=params["log_scales"].exp(),
            quats=torch.nn.functional.normalize(params["quats"], dim=1),
            opacities=torch.sigmoid(params["opacity"]),
            sh=torch.cat([params["dc"], params["rest"]], dim=1),
            anchor_index=init.anchor_index,
            offset_index=init.offset_index,
        )
