"""Spherical-harmonic colours (3DGS) and the plain 3DGS renderer that evaluates them per view.

A Gaussian's colour seen along the unit direction ``d`` (from the camera centre to its mean) is
``max(0, sum_k c_k Y_k(d) + 0.5)`` with the real SH basis ``Y_k`` of degree <= 3 in the order and
sign convention of 3DGS (``utils/sh_utils.py``), which every 3DGS viewer and PLY file uses.

Two evaluations of ``sum_k c_k Y_k(d)``, as gsplat pairs a fast op with a torch twin:
:func:`eval_sh_torch` is plain torch (the reference, autograd through coefficients and
directions); ``backend="numba"`` is a fused kernel with a hand-written backward for the
coefficients (directions are constants there: the export keeps means fixed).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from csgaussian.render.projection import RasterConfig, RasterError
from csgaussian.render.rasterize import RenderOutput, rasterize_gaussians
from csgaussian.types import Camera

MAX_SH_DEGREE = 3
# Real SH constants of 3DGS's utils/sh_utils.py (degrees 0-3).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)  # fmt: skip
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip


def sh_coefficient_count(degree: int) -> int:
    """Coefficients per channel of SH degree ``degree``: ``(degree + 1)^2``."""
    return (degree + 1) ** 2


def sh_degree_of(n_coeffs: int) -> int:
    """The degree with ``n_coeffs`` coefficients per channel (1, 4, 9 or 16)."""
    degree = math.isqrt(n_coeffs) - 1
    if sh_coefficient_count(degree) != n_coeffs or not 0 <= degree <= MAX_SH_DEGREE:
        raise RasterError(f"{n_coeffs} SH coefficients per channel is not a degree 0-3 set")
    return degree


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """Real SH basis ``[N, (degree + 1)^2]`` at unit directions ``dirs`` ([N, 3])."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh_torch(coeffs: Tensor, dirs: Tensor) -> Tensor:
    """``sum_k c_k Y_k(d)``: ``[N, 3]`` from ``coeffs`` [N, M, 3] and unit ``dirs`` [N, 3]."""
    basis = sh_basis(dirs, sh_degree_of(coeffs.shape[1]))  # [N, M]
    return torch.einsum("nm,nmc->nc", basis, coeffs)


@njit(cache=True, inline="always")
def _basis_into(out: np.ndarray, x: float, y: float, z: float, m: int) -> None:
    out[0] = SH_C0
    if m > 1:
        out[1], out[2], out[3] = -SH_C1 * y, SH_C1 * z, -SH_C1 * x
    if m > 4:
        xx, yy, zz = x * x, y * y, z * z
        out[4] = SH_C2[0] * x * y
        out[5] = SH_C2[1] * y * z
        out[6] = SH_C2[2] * (2 * zz - xx - yy)
        out[7] = SH_C2[3] * x * z
        out[8] = SH_C2[4] * (xx - yy)
        if m > 9:
            out[9] = SH_C3[0] * y * (3 * xx - yy)
            out[10] = SH_C3[1] * x * y * z
            out[11] = SH_C3[2] * y * (4 * zz - xx - yy)
            out[12] = SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy)
            out[13] = SH_C3[4] * x * (4 * zz - xx - yy)
            out[14] = SH_C3[5] * z * (xx - yy)
            out[15] = SH_C3[6] * x * (xx - 3 * yy)


@njit(parallel=True, cache=True)
def _sh_forward(coeffs: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    n, m, c = coeffs.shape
    out = np.zeros((n, c), np.float32)
    for i in prange(n):
        basis = np.empty(m, np.float32)
        _basis_into(basis, dirs[i, 0], dirs[i, 1], dirs[i, 2], m)
        for k in range(m):
            for ch in range(c):
                out[i, ch] += basis[k] * coeffs[i, k, ch]
    return out


@njit(parallel=True, cache=True)
def _sh_backward(grad_out: np.ndarray, dirs: np.ndarray, m: int) -> np.ndarray:
    n, c = grad_out.shape
    grad = np.empty((n, m, c), np.float32)
    for i in prange(n):
        basis = np.empty(m, np.float32)
        _basis_into(basis, dirs[i, 0], dirs[i, 1], dirs[i, 2], m)
        for k in range(m):
            for ch in range(c):
                grad[i, k, ch] = basis[k] * grad_out[i, ch]
    return grad


class _ShNumba(torch.autograd.Function):
    """Fused SH evaluation (float32 numba); gradient to the coefficients only."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, coeffs: Tensor, dirs: Tensor) -> Tensor:
        dirs_np = np.ascontiguousarray(dirs.detach().to("cpu", torch.float32).numpy())
        coeffs_np = np.ascontiguousarray(coeffs.detach().to("cpu", torch.float32).numpy())
        ctx.dirs = dirs_np
        ctx.meta = (coeffs.shape[1], coeffs.device, coeffs.dtype)
        return torch.from_numpy(_sh_forward(coeffs_np, dirs_np)).to(coeffs.device, coeffs.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor):
        m, device, dtype = ctx.meta
        grad_np = np.ascontiguousarray(grad_out.detach().to("cpu", torch.float32).numpy())
        grad = torch.from_numpy(_sh_backward(grad_np, ctx.dirs, m)).to(device, dtype)
        return grad, None


def eval_sh(
    coeffs: Tensor,  # [N, M, 3], M = (degree + 1)^2
    dirs: Tensor,  # [N, 3] unit
    backend: Literal["numba", "torch"] = "numba",
) -> Tensor:
    """``sum_k c_k Y_k(d)`` ``[N, 3]``; ``numba`` passes no gradient to ``dirs``."""
    sh_degree_of(coeffs.shape[1])
    if backend == "torch":
        return eval_sh_torch(coeffs, dirs)
    if backend == "numba":
        return _ShNumba.apply(coeffs, dirs)
    raise RasterError(f"eval_sh: unknown backend {backend!r}")


def sh_colors(
    means: Tensor, coeffs: Tensor, eye: Tensor, backend: Literal["numba", "torch"] = "numba"
) -> Tensor:
    """3DGS colours ``[N, 3]`` seen from the point ``eye`` ([3]): ``max(0, SH(d) + 0.5)``."""
    dirs = torch.nn.functional.normalize(means - eye.to(means), dim=1)
    return torch.clamp_min(eval_sh(coeffs, dirs, backend) + 0.5, 0.0)


def rasterize_sh(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] (w, x, y, z)
    scales: Tensor,  # [N, 3] activated
    opacities: Tensor,  # [N] in [0, 1]
    coeffs: Tensor,  # [N, M, 3] SH coefficients
    camera: Camera,
    background: Tensor | None = None,  # [3]
    config: RasterConfig = RasterConfig(),  # noqa: B008 (frozen dataclass)
    backend: Literal["numba", "torch"] | None = None,
) -> RenderOutput:
    """A plain 3DGS render: SH colours evaluated for ``camera``, then rasterized.

    ``backend`` (default ``config.backend``) picks both the SH evaluation and the compositor
    (fast path or torch reference).
    """
    backend = config.backend if backend is None else backend
    colors = sh_colors(means, coeffs, camera.center, backend)
    return rasterize_gaussians(
        means, quats, scales, opacities, colors, camera, background, config, backend
    )
