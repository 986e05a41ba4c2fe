"""Public rasterizer entry point and the tile compositor's autograd Function (numba kernels)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import torch
from torch import Tensor

from csgaussian.render import kernels
from csgaussian.render.projection import (
    RasterConfig,
    RasterError,
    alpha_reach,
    project_gaussians,
    tile_rects,
)
from csgaussian.render.reference import composite_dense
from csgaussian.types import Camera

# Safety margin (in units of the Gaussian exponent) of the exp-skipping test; float32 rounding of
# exp/log is ~1e-6 relative, so pairs within this margin of alpha_min are evaluated exactly.
SKIP_MARGIN = 1e-3


@dataclass
class RenderOutput:
    """What one rasterization returns."""

    colors: Tensor  # [H, W, C] composited channels plus (1 - alpha) * background
    alpha: Tensor  # [H, W, 1]
    depth: Tensor  # [H, W, 1] alpha-weighted camera-space z (sum_i w_i z_i, not normalised)
    means2d: Tensor  # [N, 2] non-leaf; call .retain_grad() before backward for screen gradients
    radii: Tensor  # [N] int32, 0 = culled


def _np32(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


class TileComposite(torch.autograd.Function):
    """Tile-binned front-to-back compositing with a hand-written backward (3DGS)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        means2d: Tensor,  # [N, 2]
        conics: Tensor,  # [N, 3]
        opacities: Tensor,  # [N]
        colors: Tensor,  # [N, C]
        depths: Tensor,  # [N]
        background: Tensor,  # [C]
        radii: Tensor,  # [N] int32
        width: int,
        height: int,
        config: RasterConfig,
    ) -> tuple[Tensor, Tensor, Tensor]:
        n = means2d.shape[0]
        tiles_x = math.ceil(width / config.tile_size)
        tiles_y = math.ceil(height / config.tile_size)
        reach = alpha_reach(conics, opacities, config.alpha_min)
        rects = tile_rects(means2d, radii, width, height, config.tile_size, reach).cpu().numpy()
        depth_np = _np32(depths)
        visible = np.flatnonzero(radii.cpu().numpy() > 0)
        order = visible[np.argsort(depth_np[visible], kind="stable")]
        ranges, ids = kernels.bin_intersections(rects, order, tiles_x * tiles_y, tiles_x)

        opac = _np32(opacities)
        with np.errstate(divide="ignore"):
            skip = np.log(np.float32(config.alpha_min) / opac) - np.float32(SKIP_MARGIN)
        geom = np.concatenate([_np32(means2d), _np32(conics), opac[:, None], skip[:, None]], 1)
        geom = np.ascontiguousarray(geom, dtype=np.float32)
        feats = np.ascontiguousarray(np.concatenate([_np32(colors), depth_np[:, None]], 1))
        tile_order = kernels.tile_work_order(ranges, numba.get_num_threads())
        out, t_final, last = kernels.forward_kernel(
            ranges, tile_order, ids, geom, feats, width, height, config.tile_size, tiles_x,
            np.float32(config.alpha_min), np.float32(config.alpha_max),
            np.float32(config.transmittance_min),
        )  # fmt: skip

        ctx.arrays = (ranges, tile_order, ids, geom, feats, t_final, last)
        ctx.meta = (n, width, height, config, tiles_x)
        device, dtype = means2d.device, means2d.dtype
        out_t = torch.from_numpy(out).to(device=device, dtype=dtype)
        t_img = torch.from_numpy(t_final).to(device=device, dtype=dtype)[..., None]
        ctx.save_for_backward(background, t_img)
        colors_out = out_t[..., :-1] + t_img * background
        return colors_out, 1 - t_img, out_t[..., -1:]

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx,
        grad_colors: Tensor,  # [H, W, C]
        grad_alpha: Tensor,  # [H, W, 1]
        grad_depth: Tensor,  # [H, W, 1]
    ) -> tuple[Tensor | None, ...]:
        ranges, tile_order, ids, geom, feats, t_final, last = ctx.arrays
        n, width, height, config, tiles_x = ctx.meta
        background, t_img = ctx.saved_tensors
        bg_ext = np.concatenate([_np32(background), np.zeros(1, np.float32)])
        grad_feats = np.ascontiguousarray(
            np.concatenate([_np32(grad_colors), _np32(grad_depth)], axis=-1)
        )
        per_isect = kernels.backward_kernel(
            ranges, tile_order, ids, geom, feats, bg_ext, t_final, last, grad_feats,
            np.ascontiguousarray(_np32(grad_alpha)[..., 0]), config.tile_size, tiles_x,
            np.float32(config.alpha_min), np.float32(config.alpha_max),
        )  # fmt: skip
        per_gauss = kernels.reduce_by_gaussian(ids, per_isect, n)
        g = torch.from_numpy(per_gauss).to(device=grad_colors.device, dtype=grad_colors.dtype)
        k = kernels.N_GEOM_GRADS
        grad_bg = (t_img * grad_colors).sum(dim=(0, 1))
        return (
            g[:, kernels.GRAD_MEAN_X : kernels.GRAD_MEAN_Y + 1],
            g[:, kernels.GRAD_CONIC_A : kernels.GRAD_CONIC_C + 1],
            g[:, kernels.GRAD_OPACITY],
            g[:, k:-1],
            g[:, -1],
            grad_bg,
            None,
            None,
            None,
            None,
        )


Backend = Literal["numba", "torch"]

BACKENDS = {"numba": TileComposite.apply, "torch": composite_dense}
"""Compositors by name: screen-space Gaussians in, ``(colors, alpha, depth)`` out (same
arguments as :class:`TileComposite`); docs/backend.md describes how a gsplat one would fit."""


def _check_inputs(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor
) -> None:
    n = means.shape[0]
    shapes = {
        "means": (means, (n, 3)),
        "quats": (quats, (n, 4)),
        "scales": (scales, (n, 3)),
        "opacities": (opacities, (n,)),
    }
    for name, (x, shape) in shapes.items():
        if tuple(x.shape) != shape:
            raise RasterError(
                f"rasterize_gaussians: {name} has shape {tuple(x.shape)}, want {shape}"
            )
    if colors.dim() != 2 or colors.shape[0] != n or colors.shape[1] < 1:
        raise RasterError(
            f"rasterize_gaussians: colors has shape {tuple(colors.shape)}, want [{n}, C]"
        )


def rasterize_gaussians(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] (w, x, y, z), not necessarily normalised
    scales: Tensor,  # [N, 3] positive, already activated
    opacities: Tensor,  # [N] in [0, 1]
    colors: Tensor,  # [N, C]
    camera: Camera,
    background: Tensor | None = None,  # [C]; None = zeros
    config: RasterConfig = RasterConfig(),  # noqa: B008 (frozen dataclass)
    backend: Backend | None = None,
) -> RenderOutput:
    """Render Gaussians into ``camera``: colours/features, alpha and depth, differentiably.

    ``backend`` (default ``config.backend``): ``"numba"`` is the tile rasterizer (float32, numba
    kernels on CPU copies, results moved back to the input device); ``"torch"`` is the dense
    reference (any dtype or device).
    """
    backend = config.backend if backend is None else backend
    if backend not in BACKENDS:
        raise RasterError(
            f"rasterize_gaussians: unknown backend {backend!r} (choose from {', '.join(BACKENDS)})"
        )
    _check_inputs(means, quats, scales, opacities, colors)
    if background is None:
        background = torch.zeros(colors.shape[1], device=colors.device, dtype=colors.dtype)
    elif tuple(background.shape) != (colors.shape[1],):
        raise RasterError(
            f"rasterize_gaussians: background has shape {tuple(background.shape)}, "
            f"want ({colors.shape[1]},)"
        )
    proj = project_gaussians(means, quats, scales, camera, config)
    args = (proj.means2d, proj.conics, opacities, colors, proj.depths, background, proj.radii)
    size = (camera.width, camera.height)
    out_colors, alpha, depth = BACKENDS[backend](*args, *size, config)
    return RenderOutput(out_colors, alpha, depth, proj.means2d, proj.radii)
