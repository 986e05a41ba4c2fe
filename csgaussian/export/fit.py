"""Fit a view-independent 3DGS scene (SH colours) to a decoded Scaffold-GS model.

Scaffold-GS spawns its neural Gaussians per view: opacity, colour, scale and rotation come
from MLPs of the view, and a slot whose opacity is <= 0 in a view is not drawn there: the model
hides Gaussians view by view. Means do not depend on the view (``x + O_k * l[0:3]``,
docs/method.md §1). The export keeps one Gaussian per anchor slot drawn in at least one of its
views, at its fixed mean. Its views are the capture's cameras the stream holds (the viewpoints
the model was trained for, docs/format.md), cameras between neighbouring capture cameras (where
a capture's test views are) and an orbit around the anchors (16 capture cameras alone let the
fit overfit their viewpoints: benchmarks/results/export/).

1. Closed form from the views, each view's sample of a slot weighed by the slot's blending
   weight in the decoded model's render of that view (its pixels' ``T * alpha`` summed: a view
   in which it is hidden behind others, or not drawn, says nothing of its look): opacity and
   log-scales as weighted means, the rotation as the principal eigenvector of the weighted
   ``sum q q^T`` (the average that ignores the sign of q), and SH coefficients by ridge least
   squares on the slot's per-view colours against their view directions. These are sums over
   pixels, so ``analysis_size`` views (smaller than the fit's) serve.
2. Hidden Gaussians out: a static scene cannot hide a Gaussian in some views only, so each
   view's render of the export weighs every Gaussian (its blending weight summed over the
   pixels); a Gaussian whose weight in the views that hide it exceeds ``prune_ratio`` times its
   weight in the views that draw it would be fog there, and is dropped (``prune_passes`` times,
   the weights recomputed after each pass).
3. ``fit_iterations`` Adam steps on SH coefficients, opacity logits, log-scales and rotations:
   the plain 3DGS SH rasterizer against the decoded model's renders of the same views (L1),
   the views in a shuffled order each pass, every learning rate decaying exponentially to
   ``lr_final_fraction`` of itself by the last step. Each step draws the export over a random
   background colour: viewers draw their own background (most black), so the export must be
   opaque wherever the decoded model's picture is, its learned backdrop included. The first
   ``low_res_share`` of the steps render ``low_res_size`` views (a quarter of the pixels: the
   coarse fit is as good and several times cheaper), the rest ``image_size`` views for the
   detail.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from ..progress import TrainProgress
from ..render import rasterize_gaussians
from ..render.projection import RasterConfig
from ..render.sh import rasterize_sh, sh_basis, sh_coefficient_count
from ..scene.rendering import render_view
from ..scene.scaffold import ScaffoldModel
from ..types import Camera
from .cameras import OrbitSampler, between_cameras

HIDDEN_SLOT_WEIGHT = 1e-6
"""Share of its opacity added to a slot's blending weight in each view, so that the weighted
means of a slot hidden behind others in every view are defined (and as good as unweighted)."""


@dataclass(frozen=True)
class ExportConfig:
    """The SH export. The views, the pruning, the ridge, the step count, the resolutions and the
    learning rates are ours, measured on kitchen (benchmarks/export.py,
    benchmarks/results/export/): the rates are 10x 3DGS's (``arguments/__init__.py``: feature
    0.0025 with rest / 20, scaling 0.005, rotation 0.001; opacity 0.05 as 3DGS) because the fit
    has a thousand steps from a close start, not 30,000 from a point cloud."""

    sh_degree: int = 3
    """Degree of the exported SH colours (3: the 48 colour values of a standard 3DGS PLY)."""
    fit_iterations: int = 900
    """Adam steps after the closed form (0: the closed form alone)."""
    low_res_share: float = 0.75
    """Share of the fit's steps on ``low_res_size`` views (module doc, 3)."""
    low_res_size: int = 64
    """Largest side of the views of the fit's first steps, pixels."""
    analysis_size: int = 64
    """Largest side of the views of the closed form and the pruning, pixels."""
    prune_passes: int = 1
    """Passes of step 2 (module doc); 0 keeps every drawn slot."""
    prune_ratio: float = 2.0
    """A Gaussian is dropped when its weight in the views that hide it exceeds this times its
    weight in the views that draw it."""
    n_views: int = 32
    """Orbit cameras added to the capture cameras."""
    n_between_views: int = 32
    """Cameras between neighbouring capture cameras added to them (none without two)."""
    between_neighbours: int = 3
    """Each capture camera's cameras lead to one of its this many nearest."""
    between_range: tuple[float, float] = (0.25, 0.75)
    """Share of the way from a capture camera to its neighbour, drawn uniformly in this range."""
    image_size: int = 128
    """Largest side of the fit's views, pixels (capture cameras are scaled down to it)."""
    fov_deg: float = 50.0
    """Field of view of the orbit cameras."""
    radius_range: tuple[float, float] = (1.1, 1.6)
    """Orbit camera distances from the anchors' centroid, in units of their ``radius_quantile``
    distance from it."""
    radius_quantile: float = 0.9
    """Quantile of the anchors' distances that sets the scene's radius (ignores stray anchors)."""
    elevation_deg: tuple[float, float] = (0.0, 90.0)
    """Elevation band of the orbit cameras about +Z (a +Z-up scene seen from above, as the
    Blender-layout scenes are)."""
    sh_ridge: float = 0.05
    """Ridge weight, per colour sample, on the non-DC coefficients of the closed-form SH fit."""
    lr_dc: float = 0.025
    lr_rest: float = 0.00125
    lr_opacity: float = 0.05
    lr_scale: float = 0.05
    lr_rotation: float = 0.01
    lr_final_fraction: float = 0.1
    """Every learning rate decays exponentially to this fraction of itself by the last step."""
    seed: int = 0
    """Seed of the cameras between capture cameras and of the order the fit visits the views."""
    near_plane: float = 0.2
    """Gaussians nearer the camera than this are not drawn by the fit's renders, as the
    standard 3DGS renderers that will show the export cull them (INRIA ``forward.cu``)."""


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
    """Per-active-slot sums over the views."""

    n_drawn: Tensor  # [S] views in which the slot is drawn
    means: Tensor  # [S, 3]
    weight: Tensor  # [S] sum of the samples' weights (blending weights, module doc 1)
    opacity: Tensor  # [S] weighted sum of opacities
    log_scales: Tensor  # [S, 3] weighted sum of log-scales
    qq: Tensor  # [S, 4, 4] weighted sum of q q^T
    ata: Tensor  # [S, M, M] weighted normal equations of the SH fit
    atc: Tensor  # [S, M, 3]
    drawn_rows: list[Tensor]  # per view, the rows of the slots it draws


def export_views(model: ScaffoldModel, cameras: list[Camera], config: ExportConfig) -> list[Camera]:
    """The views of the export: ``cameras`` (the capture's) scaled to ``image_size``,
    ``n_between_views`` between them, then an orbit of ``n_views`` cameras around the anchors
    (a few capture cameras alone let the fit overfit their viewpoints)."""
    sampler = OrbitSampler.around(
        model.anchors,
        config.radius_quantile,
        radius_range=config.radius_range,
        elevation_deg=config.elevation_deg,
        size=config.image_size,
        fov_deg=config.fov_deg,
    )
    capture = resized(cameras, config.image_size)
    between = between_cameras(
        capture,
        config.n_between_views,
        config.between_neighbours,
        config.between_range,
        torch.Generator().manual_seed(config.seed),
    )
    return capture + between + sampler.spiral(config.n_views)


def describe_views(n_capture: int, config: ExportConfig) -> str:
    """The export's views in words, for its report (``export_views``'s counts)."""
    between = config.n_between_views if n_capture >= 2 else 0
    return f"{n_capture} capture cameras + {between} between them + {config.n_views} orbit"


def resized(views: list[Camera], size: int) -> list[Camera]:
    """``views`` with their largest side scaled down to ``size`` pixels (never up)."""
    return [v.scaled(min(1.0, size / max(v.width, v.height))) for v in views]


@torch.no_grad()
def _collect(
    model: ScaffoldModel, views: list[Camera], degree: int, raster: RasterConfig
) -> tuple[Tensor, _SlotStats]:
    """Sum the per-slot statistics over the Gaussians each view spawns, weighed by their blending
    weights in its render. Returns the ``[N, K]`` map of active slots to rows (-1 elsewhere) and
    the sums."""
    active = model.active_slots()
    rows = torch.full(active.shape, -1, dtype=torch.int64)
    n = int(active.sum())
    rows[active] = torch.arange(n)
    m = sh_coefficient_count(degree)
    stats = _SlotStats(
        torch.zeros(n), torch.zeros(n, 3), torch.zeros(n), torch.zeros(n), torch.zeros(n, 3),
        torch.zeros(n, 4, 4), torch.zeros(n, m, m), torch.zeros(n, m, 3), [],
    )  # fmt: skip
    for camera in views:
        g = model.spawn(model.visible_anchors(camera).nonzero().squeeze(1), camera.center)
        row = rows[g.anchor_index, g.offset_index]
        blend = _blend_weights(g.means, g.quats, g.scales, g.opacities, camera, raster)
        w = blend + HIDDEN_SLOT_WEIGHT * g.opacities
        dirs = torch.nn.functional.normalize(g.means - camera.center, dim=1)
        basis = sh_basis(dirs, degree)  # [G, M]
        stats.drawn_rows.append(row)
        stats.n_drawn.index_add_(0, row, torch.ones_like(w))
        stats.means[row] = g.means
        stats.weight.index_add_(0, row, w)
        stats.opacity.index_add_(0, row, w * g.opacities)
        stats.log_scales.index_add_(0, row, w[:, None] * g.scales.clamp_min(1e-12).log())
        stats.qq.index_add_(0, row, w[:, None, None] * g.quats[:, :, None] * g.quats[:, None, :])
        weighted = w[:, None] * basis
        stats.ata.index_add_(0, row, weighted[:, :, None] * basis[:, None, :])
        stats.atc.index_add_(0, row, weighted[:, :, None] * (g.colors - 0.5)[:, None, :])
    return rows, stats


def _blend_weights(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    camera: Camera,
    raster: RasterConfig,
) -> Tensor:
    """``[N]`` each Gaussian's blending weight ``T * alpha`` summed over ``camera``'s pixels."""
    ones = torch.ones(len(means), 1, requires_grad=True)
    with torch.enable_grad():
        out = rasterize_gaussians(
            means, quats, scales, opacities, ones, camera, torch.zeros(1), raster
        )
        out.colors.sum().backward()  # d/d(colour_i) = sum over pixels of i's weight
    return ones.grad[:, 0]


def _closed_form(
    model: ScaffoldModel, views: list[Camera], config: ExportConfig
) -> ExportedGaussians:
    """Steps 1 and 2 of the module doc on ``views``."""
    raster = RasterConfig(near_plane=config.near_plane)
    rows, stats = _collect(model, views, config.sh_degree, raster)
    drawn = stats.n_drawn > 0
    anchor_index, offset_index = (rows >= 0).nonzero(as_tuple=True)
    weight = stats.weight[drawn]
    m = stats.ata.shape[1]
    ridge = torch.ones(m)
    ridge[0] = 0.0
    lhs = stats.ata[drawn] + config.sh_ridge * weight[:, None, None] * torch.diag(ridge)
    lhs = lhs + 1e-8 * torch.eye(m)
    sh = torch.linalg.solve(lhs, stats.atc[drawn])
    quats = torch.linalg.eigh(stats.qq[drawn]).eigenvectors[..., -1]  # [S, 4] largest
    opacity = stats.opacity[drawn] / weight
    gaussians = ExportedGaussians(
        means=stats.means[drawn],
        scales=torch.exp(stats.log_scales[drawn] / weight[:, None]),
        quats=quats,
        opacities=opacity.clamp(1e-4, 1 - 1e-4),
        sh=sh,
        anchor_index=anchor_index[drawn],
        offset_index=offset_index[drawn],
    )
    export_row = torch.full((len(drawn),), -1, dtype=torch.int64)
    export_row[drawn] = torch.arange(len(gaussians))
    drawn_in_view = [export_row[r] for r in stats.drawn_rows]
    for _ in range(config.prune_passes):
        keep = _not_hidden(gaussians, views, drawn_in_view, config.prune_ratio, raster)
        if bool(keep.all()):
            break
        gaussians = gaussians.subset(keep)
        new_row = torch.cumsum(keep, 0) - 1
        drawn_in_view = [new_row[r[keep[r]]] for r in drawn_in_view]
    return gaussians


def _not_hidden(
    g: ExportedGaussians,
    views: list[Camera],
    drawn_in_view: list[Tensor],
    prune_ratio: float,
    raster: RasterConfig,
) -> Tensor:
    """``[S]`` bool: the Gaussians whose blending weight in the views that draw them is at
    least ``1 / prune_ratio`` times their weight in the views that hide them (module doc, 2)."""
    shown = torch.zeros(len(g))
    hidden = torch.zeros(len(g))
    for camera, rows in zip(views, drawn_in_view, strict=True):
        weight = _blend_weights(g.means, g.quats, g.scales, g.opacities, camera, raster)
        is_drawn = torch.zeros(len(g), dtype=torch.bool)
        is_drawn[rows] = True
        shown += torch.where(is_drawn, weight, 0.0)
        hidden += torch.where(is_drawn, 0.0, weight)
    return shown * prune_ratio >= hidden


def fit_export(
    model: ScaffoldModel,
    config: ExportConfig = ExportConfig(),  # noqa: B008 (frozen dataclass)
    quiet: bool = True,
    cameras: list[Camera] | None = None,
) -> ExportedGaussians:
    """The exported scene of ``model`` from the views of ``cameras`` (e.g. ``Scene.cameras``;
    and an orbit): the closed form, then ``fit_iterations`` Adam steps (module doc;
    gradients on even when the caller runs under ``torch.no_grad``)."""
    views = export_views(model, cameras or [], config)
    init = _closed_form(model, resized(views, config.analysis_size), config)
    if config.fit_iterations == 0:
        return init
    with torch.enable_grad():
        return _fit(model, init, views, config, quiet)


def _fit(
    model: ScaffoldModel,
    init: ExportedGaussians,
    views: list[Camera],
    config: ExportConfig,
    quiet: bool,
) -> ExportedGaussians:
    low_res_steps = round(config.fit_iterations * config.low_res_share)
    low_res = resized(views, config.low_res_size) if low_res_steps else []
    with torch.no_grad():
        targets = [render_view(model, camera).image.clamp(0, 1) for camera in views]
        low_res_targets = [render_view(model, camera).image.clamp(0, 1) for camera in low_res]
    params = {
        "dc": init.sh[:, :1].clone().requires_grad_(True),
        "rest": init.sh[:, 1:].clone().requires_grad_(True),
        "opacity": torch.logit(init.opacities).requires_grad_(True),
        "log_scales": init.scales.log().requires_grad_(True),
        "quats": init.quats.clone().requires_grad_(True),
    }
    lrs = (config.lr_dc, config.lr_rest, config.lr_opacity, config.lr_scale, config.lr_rotation)
    optimizer = torch.optim.Adam(
        [{"params": [p], "lr": lr} for p, lr in zip(params.values(), lrs, strict=True)],
        eps=1e-15,
        fused=True,  # one kernel per step instead of a dozen per tensor
    )
    decay = config.lr_final_fraction ** (1.0 / config.fit_iterations)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)
    generator = torch.Generator().manual_seed(config.seed)
    raster = RasterConfig(near_plane=config.near_plane)
    order: list[int] = []
    with TrainProgress(config.fit_iterations, quiet, "export fit") as progress:
        for iteration in range(1, config.fit_iterations + 1):
            if not order:
                order = torch.randperm(len(views), generator=generator).tolist()
            index = order.pop()
            low = iteration <= low_res_steps
            out = rasterize_sh(
                init.means,
                params["quats"],
                params["log_scales"].exp(),
                torch.sigmoid(params["opacity"]),
                torch.cat([params["dc"], params["rest"]], dim=1),
                (low_res if low else views)[index],
                torch.rand(3, generator=generator),  # module doc, 3
                raster,
            )
            loss = (out.colors - (low_res_targets if low else targets)[index]).abs().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if iteration % 10 == 0 or iteration == config.fit_iterations:
                progress.update(iteration, l1=loss.item())
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
