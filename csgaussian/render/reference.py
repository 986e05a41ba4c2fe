"""Readable pure-torch dense compositor: the oracle for the fast tile rasterizer.

Every Gaussian is evaluated at every pixel, in depth order, with 3DGS semantics:
``alpha = min(alpha_max, o * exp(-0.5 d^T conic d))``, zero below ``alpha_min``, transmittance by
cumulative product, and early termination before the first Gaussian that would bring the
transmittance below ``transmittance_min`` (that Gaussian and all behind it are left out).
A Gaussian is considered at a pixel only if the pixel's tile lies in the Gaussian's tile
rectangle (:func:`tile_rects`, narrowed by :func:`alpha_reach`), which is exactly the set the
tile rasterizer visits.
Autograd is torch's own; the code is dtype-generic (float64 for gradcheck).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from csgaussian.render.projection import RasterConfig, alpha_reach, tile_rects

# Pixel-Gaussian pairs evaluated per chunk; bounds peak memory of the dense evaluation.
CHUNK_ELEMENTS = 2**22


def _composite_chunk(
    pix: Tensor,  # [P, 2] pixel centres
    pix_tile: Tensor,  # [P, 2] pixel tile indices
    means2d: Tensor,  # [M, 2] depth-sorted, visible only
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    features: Tensor,  # [M, C + 1] colours then depth
    rects: Tensor,  # [M, 4]
    alpha_min: float,
    alpha_max: float,
    t_min: float,
) -> tuple[Tensor, Tensor]:
    """Composite one chunk of pixels. Returns features ``[P, C + 1]`` and final T ``[P]``."""
    d = means2d[None, :, :] - pix[:, None, :]  # [P, M, 2]
    dx, dy = d[..., 0], d[..., 1]
    a, b, c = conics[:, 0], conics[:, 1], conics[:, 2]
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy  # [P, M]
    alpha = torch.clamp(opacities * torch.exp(power), max=alpha_max)
    in_rect = (
        (pix_tile[:, None, 0] >= rects[None, :, 0])
        & (pix_tile[:, None, 0] < rects[None, :, 2])
        & (pix_tile[:, None, 1] >= rects[None, :, 1])
        & (pix_tile[:, None, 1] < rects[None, :, 3])
    )
    alpha = torch.where(in_rect & (alpha >= alpha_min), alpha, torch.zeros_like(alpha))
    t_after = torch.cumprod(1 - alpha, dim=1)  # [P, M] T after each Gaussian
    t_before = torch.cat([torch.ones_like(t_after[:, :1]), t_after[:, :-1]], dim=1)
    included = t_after >= t_min  # monotone: once false, false for all behind
    alpha = torch.where(included, alpha, torch.zeros_like(alpha))
    weights = alpha * t_before  # [P, M]
    return weights @ features, torch.prod(1 - alpha, dim=1)


def composite_dense(
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
    """Dense front-to-back compositing: colours ``[H, W, C]``, alpha and depth ``[H, W, 1]``.

    Colours include ``T_final * background``; depth is ``sum_i w_i z_i`` (not normalised).
    """
    device, dtype = means2d.device, means2d.dtype
    reach = alpha_reach(conics, opacities, config.alpha_min)
    rects = tile_rects(means2d, radii, width, height, config.tile_size, reach)
    visible = torch.nonzero(radii > 0).squeeze(1)
    order = visible[torch.argsort(depths[visible].detach(), stable=True)]
    features = torch.cat([colors, depths[:, None]], dim=1)[order]  # [M, C + 1]

    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    pix_int = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)  # [H*W, 2]
    pix = pix_int.to(dtype) + 0.5
    pix_tile = pix_int // config.tile_size

    chunk = max(1, CHUNK_ELEMENTS // max(1, order.numel()))
    args = (means2d[order], conics[order], opacities[order], features, rects[order])
    consts = (config.alpha_min, config.alpha_max, config.transmittance_min)
    feats, t_final = [], []
    for start in range(0, pix.shape[0], chunk):
        sl = slice(start, start + chunk)
        if torch.is_grad_enabled():
            f, t = checkpoint(
                _composite_chunk, pix[sl], pix_tile[sl], *args, *consts, use_reentrant=False
            )
        else:
            f, t = _composite_chunk(pix[sl], pix_tile[sl], *args, *consts)
        feats.append(f)
        t_final.append(t)
    feat = torch.cat(feats).reshape(height, width, -1)
    t_img = torch.cat(t_final).reshape(height, width, 1)
    out_colors = feat[..., :-1] + t_img * background
    return out_colors, 1 - t_img, feat[..., -1:]
