"""EWA projection of 3D Gaussians to screen space, in plain torch (autograd by torch).

Shared by both rasterizer backends, so that they differ only in the compositing. Conventions
follow 3DGS (Kerbl et al. 2023) and gsplat: OpenCV camera axes, pixel ``(x, y)`` has its centre
at ``(x + 0.5, y + 0.5)`` in the same units as ``K``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from csgaussian.types import Camera


class RasterError(ValueError):
    """Bad input to the rasterizer; the message is one line naming the problem."""


@dataclass(frozen=True)
class RasterConfig:
    """Rasterizer hyper-parameters (defaults from 3DGS, Kerbl et al. 2023, and gsplat)."""

    tile_size: int = 16
    """Tile edge in pixels."""
    near_plane: float = 0.01
    """Gaussians with camera-space z at or below this are culled."""
    eps2d: float = 0.3
    """Low-pass added to the 2D covariance diagonal (3DGS)."""
    alpha_min: float = 1 / 255
    """Contributions below are skipped (3DGS)."""
    alpha_max: float = 0.99
    """Alpha clamp (3DGS)."""
    transmittance_min: float = 1e-4
    """Early termination: stop before a Gaussian that would bring T below this (3DGS)."""
    radius_sigmas: float = 3.0
    """Tile footprint radius in standard deviations of the larger 2D axis."""
    backend: str = "numba"
    """Compositor every render uses: ``"numba"`` (the CPU tile rasterizer) or ``"torch"`` (the
    dense reference, any device). docs/backend.md maps a gsplat CUDA backend onto this seam."""


# Extra field of view, as a fraction of the image half-width, inside which the EWA Jacobian uses
# the true position; beyond it the position is clamped (3DGS/gsplat use 0.3, i.e. 1.3 x tan(fov)).
FOV_CLAMP_MARGIN = 0.3


REACH_MARGIN = 1.0
"""Pixels added to :func:`alpha_reach` (float rounding of positions, conics and the log)."""


@dataclass
class Projected:
    """Screen-space Gaussians; culled entries have ``radii == 0`` and finite dummy values."""

    means2d: Tensor  # [N, 2] pixels
    conics: Tensor  # [N, 3] inverse 2D covariance (a, b, c) of [[a, b], [b, c]]
    depths: Tensor  # [N] camera-space z
    radii: Tensor  # [N] int32, 0 = culled


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices of (w, x, y, z) quaternions, normalised first. ``[N, 4] -> [N, 3, 3]``."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariance ``R S S^T R^T``. ``quats [N, 4], scales [N, 3] -> [N, 3, 3]``."""
    M = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3] = R diag(s)
    return M @ M.transpose(1, 2)


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    camera: Camera,
    config: RasterConfig,
) -> Projected:
    """Project Gaussians with the EWA splatting approximation (Zwicker et al. 2002, 3DGS eq. 5).

    Culls Gaussians behind the near plane, with a non-positive 2D determinant, or whose footprint
    lies entirely outside the image.
    """
    dtype, device = means.dtype, means.device
    viewmat = camera.viewmat.to(device=device, dtype=dtype)
    K = camera.K.to(device=device, dtype=dtype)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    Rv, tv = viewmat[:3, :3], viewmat[:3, 3]

    p = means @ Rv.T + tv  # [N, 3] camera space
    z_ok = p[:, 2] > config.near_plane
    z = torch.where(z_ok, p[:, 2], torch.ones_like(p[:, 2]))  # safe divisor for culled entries
    x, y = p[:, 0], p[:, 1]

    # EWA Jacobian of the perspective map, position clamped slightly outside the frustum (gsplat).
    tan_x, tan_y = 0.5 * camera.width / fx, 0.5 * camera.height / fy
    lim_x_pos = (camera.width - cx) / fx + FOV_CLAMP_MARGIN * tan_x
    lim_x_neg = cx / fx + FOV_CLAMP_MARGIN * tan_x
    lim_y_pos = (camera.height - cy) / fy + FOV_CLAMP_MARGIN * tan_y
    lim_y_neg = cy / fy + FOV_CLAMP_MARGIN * tan_y
    tx = z * torch.minimum(torch.maximum(x / z, -lim_x_neg), lim_x_pos)
    ty = z * torch.minimum(torch.maximum(y / z, -lim_y_neg), lim_y_pos)
    zeros = torch.zeros_like(z)
    J = torch.stack(
        [fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(-1, 2, 3)  # [N, 2, 3]

    cov_cam = Rv @ covariance_3d(quats, scales) @ Rv.T  # [N, 3, 3]
    cov2d = J @ cov_cam @ J.transpose(1, 2)  # [N, 2, 2]
    a = cov2d[:, 0, 0] + config.eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + config.eps2d
    det = a * c - b * b
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)  # [N, 3]

    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)  # [N, 2]

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam_max = mid + torch.sqrt((mid * mid - det).clamp_min(0.0))
        radius = torch.ceil(config.radius_sigmas * torch.sqrt(lam_max.clamp_min(0.0)))
        mx, my = means2d[:, 0], means2d[:, 1]
        on_screen = (
            (mx + radius > 0)
            & (mx - radius < camera.width)
            & (my + radius > 0)
            & (my - radius < camera.height)
        )
        valid = z_ok & det_ok & on_screen & torch.isfinite(radius)
        radii = torch.where(valid, radius, torch.zeros_like(radius)).to(torch.int32)

    return Projected(means2d=means2d, conics=conics, depths=p[:, 2], radii=radii)


def tile_rects(
    means2d: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    tile_size: int,
    reach: Tensor | None = None,
) -> Tensor:
    """Half-open tile rectangle ``(x0, y0, x1, y1)`` touched by each Gaussian's footprint.

    The footprint is the square of half-side ``radii``, narrowed per axis to ``reach`` ([N, 2]
    pixels, see :func:`alpha_reach`) when given. Culled Gaussians get an empty rectangle.
    ``means2d [N, 2], radii [N] -> [N, 4]`` int64. Both backends use this one function, so they
    agree on which Gaussian meets which pixel.
    """
    tiles_x = math.ceil(width / tile_size)
    tiles_y = math.ceil(height / tile_size)
    m = means2d.detach()
    r = radii.to(m.dtype)[:, None]
    if reach is not None:
        r = torch.minimum(r, reach.to(m.dtype))
    lo = torch.floor((m - r) / tile_size).to(torch.int64)
    hi = torch.ceil((m + r) / tile_size).to(torch.int64)
    limit = torch.tensor([tiles_x, tiles_y], device=m.device)
    lo = torch.minimum(lo.clamp_min(0), limit)
    hi = torch.minimum(hi.clamp_min(0), limit)
    empty = (radii <= 0)[:, None]
    lo = torch.where(empty, torch.zeros_like(lo), lo)
    hi = torch.where(empty, torch.zeros_like(hi), hi)
    return torch.cat([lo, hi], dim=-1)


def alpha_reach(conics: Tensor, opacities: Tensor, alpha_min: float) -> Tensor:
    """Per-axis distance ``[N, 2]`` in pixels beyond which a Gaussian's alpha is below
    ``alpha_min``, so that compositing skips it: a bound on the footprint, not a cut.

    ``o exp(-d^T conic d / 2) >= alpha_min`` only inside the ellipse ``d^T conic d <= P``,
    ``P = 2 log(o / alpha_min)``, whose half-extents are ``sqrt(P Sigma_xx)`` and
    ``sqrt(P Sigma_yy)`` (``Sigma = conic^-1``); ``REACH_MARGIN`` pixels are added for float
    rounding. Low-opacity and elongated Gaussians then touch fewer tiles, with the same image.
    """
    with torch.no_grad():
        c = conics.detach().double()
        a, b, cc = c[:, 0], c[:, 1], c[:, 2]
        det = a * cc - b * b
        power = 2 * torch.log(opacities.detach().double().clamp_min(1e-30) / alpha_min)
        power = power.clamp_min(0.0)
        sigma = torch.stack([cc / det, a / det], dim=-1)  # Sigma_xx, Sigma_yy
        reach = torch.sqrt((power[:, None] * sigma).clamp_min(0.0)) + REACH_MARGIN
        return torch.nan_to_num(reach, nan=math.inf, posinf=math.inf).to(conics.dtype)
