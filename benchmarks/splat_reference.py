"""An independent 3DGS renderer to score exported PLY files as any 3DGS viewer would draw them.

Written from the published conventions only, importing nothing from ``csgaussian`` outside the
command line part, so that a convention shared by mistake between our PLY writer and our own
rasterizer shows up here: the INRIA ``point_cloud.ply`` layout (``gaussian_model.py::save_ply`` /
``load_ply`` of graphdeco-inria/gaussian-splatting) and the renderer of Kerbl et al. 2023
("3D Gaussian Splatting for Real-Time Radiance Field Rendering", sections 4 and 6; its CUDA code
``cuda_rasterizer/forward.cu``, cited below as *forward.cu*).

Usage:
    python benchmarks/splat_reference.py PLY DATA [--split test] [--stream X.csg] [--downscale N]

Prints the mean PSNR of the PLY's renders against the dataset's images (and, with ``--stream``,
against the stream's own renders) and ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyParseError
from torch import Tensor

# Real SH constants of degrees 0-3 (3DGS ``utils/sh_utils.py``, the same in forward.cu).
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
      0.5462742152960396)  # fmt: skip
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip
NEAR_Z = 0.2
"""forward.cu ``in_frustum``: Gaussians with view depth ``<= 0.2`` are culled."""
LOW_PASS = 0.3
"""forward.cu ``computeCov2D``: added to the 2D covariance's diagonal (one pixel's low-pass)."""
FOV_CLAMP = 1.3
"""forward.cu ``computeCov2D``: the Jacobian is taken at ``x/z`` clamped to 1.3 tan(fov / 2)."""
ALPHA_MIN, ALPHA_MAX, T_MIN = 1 / 255, 0.99, 1e-4
"""forward.cu ``renderCUDA`` (paper section 6 and appendix C): skip alpha < 1/255, clamp alpha
at 0.99, stop a pixel before a Gaussian that would bring its transmittance below 1e-4."""
TILE = 16
"""forward.cu ``BLOCK_X = BLOCK_Y``: a Gaussian is drawn in the tiles its 3-sigma box touches."""
CHUNK = 1024
"""Gaussians composited at once per tile (bounds memory at 256 x CHUNK floats)."""
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip
"""The INRIA ``save_ply`` properties a 3DGS PLY must have (normals are optional)."""


@dataclass
class Splats:
    """Activated 3DGS Gaussians, float64."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] w, x, y, z, unit
    scales: Tensor  # [N, 3]
    opacities: Tensor  # [N]
    sh: Tensor  # [N, M, 3] M = (degree + 1)^2, coefficient-major


def read_3dgs_ply(path: str | Path) -> Splats:
    """Read an INRIA ``point_cloud.ply`` (``save_ply``): the ``vertex`` properties ``x y z``,
    ``f_dc_0..2``, ``f_rest_*``, ``opacity`` (logit), ``scale_0..2`` (log) and ``rot_0..3``
    (``w x y z``, normalised on load as ``build_rotation`` does). ``f_rest_*`` is channel-major:
    for degree ``d`` the first ``(d + 1)^2 - 1`` are red's higher coefficients, then green's,
    then blue's (``load_ply`` reshapes to ``[N, 3, M - 1]``); the degree follows from their
    count. Other properties (normals, extra columns) are ignored."""
    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        raise ValueError(f"{path}: PLY has no vertex element")
    vertex = ply["vertex"]
    names = {p.name for p in vertex.properties}
    missing = sorted(set(REQUIRED) - names)
    if missing:
        raise ValueError(f"{path}: PLY vertex lacks {', '.join(missing)}")

    def cols(keys: list[str]) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[k], np.float64) for k in keys], 1))

    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    m = n_rest // 3 + 1
    if n_rest % 3 or m not in (1, 4, 9, 16):
        raise ValueError(f"{path}: {n_rest} f_rest_* properties is not SH degree 0-3")
    dc = cols([f"f_dc_{i}" for i in range(3)])
    rest = cols([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else dc[:, :0]
    sh = torch.cat([dc[:, :, None], rest.reshape(len(dc), 3, m - 1)], 2).transpose(1, 2)
    q = cols([f"rot_{i}" for i in range(4)])
    return Splats(
        means=cols(["x", "y", "z"]),
        quats=q / q.norm(dim=1, keepdim=True),
        scales=cols([f"scale_{i}" for i in range(3)]).exp(),
        opacities=torch.sigmoid(cols(["opacity"])[:, 0]),
        sh=sh.contiguous(),
    )


def sh_rgb(sh: Tensor, dirs: Tensor) -> Tensor:
    """forward.cu ``computeColorFromSH``: ``max(0, sum_k c_k Y_k(d) + 0.5)`` at unit ``dirs``."""
    x, y, z = dirs.unbind(1)
    xx, yy, zz = x * x, y * y, z * z
    basis = [torch.full_like(x, C0), -C1 * y, C1 * z, -C1 * x,
             C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z,
             C2[4] * (xx - yy),
             C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
             C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy),
             C3[5] * z * (xx - yy), C3[6] * x * (xx - 3 * yy)]  # fmt: skip
    Y = torch.stack(basis[: sh.shape[1]], 1)  # [N, M]
    return (torch.einsum("nm,nmc->nc", Y, sh) + 0.5).clamp_min(0.0)


def rotation(q: Tensor) -> Tensor:
    """3DGS ``build_rotation``: the matrix of the unit quaternion ``(w, x, y, z)``."""
    w, x, y, z = q.unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], 1).reshape(-1, 3, 3)  # fmt: skip


def render(
    g: Splats,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Tensor,
    near: float = NEAR_Z,
) -> Tensor:
    """Render ``[H, W, 3]`` float64 for a world->camera ``viewmat`` (OpenCV axes: x right, y down,
    z forward) and pinhole ``K``; pixel ``(x, y)`` is sampled at ``(x + 0.5, y + 0.5)``.

    Paper section 4 / forward.cu ``preprocessCUDA``: covariance ``R S S^T R^T`` (eq. 6),
    projected with the EWA Jacobian ``J`` of the pinhole map (eq. 5, Zwicker et al. 2002),
    ``Sigma' = J W Sigma W^T J^T + 0.3 I``; radius ``ceil(3 sqrt(lambda_max))``. Section 6 /
    ``renderCUDA``: per pixel, Gaussians in view-depth order, ``alpha = min(0.99, o exp(-d^T
    Sigma'^-1 d / 2))``, front-to-back ``C += c alpha T; T *= 1 - alpha``, plus ``T`` times the
    background at the end. ``near``: the culling depth (3DGS's 0.2 unless told; gsplat's
    default is 0.01).
    """
    viewmat, K = torch.as_tensor(viewmat).double(), torch.as_tensor(K).double()
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    p = g.means @ R.T + t
    z = p[:, 2].clamp_min(near)
    eye = -R.T @ t
    colors = sh_rgb(g.sh, torch.nn.functional.normalize(g.means - eye, dim=1))

    lim_x, lim_y = FOV_CLAMP * 0.5 * width / fx, FOV_CLAMP * 0.5 * height / fy
    tx = (p[:, 0] / z).clamp(-lim_x, lim_x) * z
    ty = (p[:, 1] / z).clamp(-lim_y, lim_y) * z
    J = torch.zeros(len(z), 2, 3, dtype=torch.float64)
    J[:, 0, 0], J[:, 0, 2] = fx / z, -fx * tx / z**2
    J[:, 1, 1], J[:, 1, 2] = fy / z, -fy * ty / z**2
    M = R @ rotation(g.quats) * g.scales[:, None, :]  # W R S
    cov = J @ M @ M.transpose(1, 2) @ J.transpose(1, 2) + LOW_PASS * torch.eye(2).double()
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] ** 2
    conic = torch.stack([cov[:, 1, 1], -cov[:, 0, 1], cov[:, 0, 0]], 1) / det[:, None]
    mid = 0.5 * (cov[:, 0, 0] + cov[:, 1, 1])
    radius = torch.ceil(3 * torch.sqrt(mid + torch.sqrt((mid**2 - det).clamp_min(0.1))))
    mean2d = torch.stack([fx * p[:, 0] / z + cx, fy * p[:, 1] / z + cy], 1)

    tiles = (math.ceil(width / TILE), math.ceil(height / TILE))
    lo, hi = tile_rect(mean2d, radius, tiles)
    keep = (p[:, 2] > near) & (det > 0) & ((hi - lo) > 0).all(1)
    order = torch.argsort(p[:, 2].masked_fill(~keep, math.inf), stable=True)[: int(keep.sum())]
    lo, hi = lo[order], hi[order]
    image = torch.empty(height, width, 3, dtype=torch.float64)
    bg = torch.as_tensor(background).double()
    for ty in range(tiles[1]):
        for tx in range(tiles[0]):
            ys = torch.arange(ty * TILE, min((ty + 1) * TILE, height))
            xs = torch.arange(tx * TILE, min((tx + 1) * TILE, width))
            pix = torch.cartesian_prod(ys, xs).flip(1).double() + 0.5  # [P, 2] (x, y) centres
            hit = (lo[:, 0] <= tx) & (hi[:, 0] > tx) & (lo[:, 1] <= ty) & (hi[:, 1] > ty)
            ids = order[hit]
            rgb, T = composite(pix, mean2d[ids], conic[ids], g.opacities[ids], colors[ids])
            tile = (rgb + T[:, None] * bg).reshape(len(ys), len(xs), 3)
            image[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] = tile
    return image


def tile_rect(mean2d: Tensor, radius: Tensor, tiles: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """forward.cu ``getRect``: the tiles ``[lo, hi)`` (x, y) touched by the square of half-side
    ``radius`` around the mean, in its pixel coordinates (pixel centres at integers, i.e. ours
    minus 0.5): ``lo = floor((m - r) / 16)``, ``hi = floor((m + r + 15) / 16)``, within the grid."""
    m, r = mean2d - 0.5, radius[:, None]
    lo = ((m - r) / TILE).floor().clamp_min(0)
    hi = ((m + r + TILE - 1) / TILE).floor().clamp_min(0)
    return lo, torch.minimum(hi, torch.tensor(tiles, dtype=hi.dtype))


def composite(
    pix: Tensor, mean2d: Tensor, conic: Tensor, opacity: Tensor, colors: Tensor
) -> tuple[Tensor, Tensor]:
    """forward.cu ``renderCUDA`` for pixels ``pix`` [P, 2] and depth-sorted Gaussians, densely in
    chunks: colour ``[P, 3]`` and final transmittance ``[P]``. A Gaussian whose alpha would take
    ``T`` below ``T_MIN`` ends the pixel, unblended. Transmittance is accumulated as a sum of
    logs (no float underflow to subnormals, which are slow on a CPU)."""
    log_t = torch.zeros(len(pix), dtype=torch.float64)
    done = torch.zeros(len(pix), dtype=torch.bool)
    out = torch.zeros(len(pix), 3, dtype=torch.float64)
    for s in range(0, len(mean2d), CHUNK):
        d = mean2d[None, s : s + CHUNK] - pix[:, None]  # [P, G, 2]
        a, b, c = conic[s : s + CHUNK].unbind(1)
        power = -0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) - b * d[..., 0] * d[..., 1]
        alpha = (opacity[s : s + CHUNK] * power.clamp_min(-30).exp()).clamp_max(ALPHA_MAX)
        alpha = alpha.masked_fill((power > 0) | (alpha < ALPHA_MIN), 0.0)
        log_after = log_t[:, None] + torch.cumsum(torch.log1p(-alpha), 1)  # T after each one
        live = (log_after >= math.log(T_MIN)) & ~done[:, None]  # a prefix: T only decreases
        log_before = torch.cat([log_t[:, None], log_after[:, :-1]], 1)
        out += (alpha * log_before.exp() * live) @ colors[s : s + CHUNK]
        log_t = torch.where(live, log_after, math.inf).amin(1).minimum(log_t)  # last live one
        done |= log_after[:, -1] < math.log(T_MIN)
        if bool(done.all()):
            break
    return out, log_t.exp()


def _mean_psnr(images: list[Tensor], targets: list[Tensor]) -> float:
    """Mean over views of ``-10 log10(MSE)`` of images clamped to ``[0, 1]``."""
    mse = [
        ((a.clamp(0, 1).double() - b.clamp(0, 1).double()) ** 2).mean()
        for a, b in zip(images, targets, strict=True)
    ]
    return float(sum(-10 * torch.log10(m) for m in mse) / len(mse))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ply", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--stream", type=Path, help="also score against this stream's renders")
    parser.add_argument("--downscale", type=int, default=1)
    parser.add_argument("--background", type=float, nargs=3, help="default: the dataset's")
    parser.add_argument("--near", type=float, default=NEAR_Z, help="culling depth (3DGS: 0.2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from csgaussian import api  # the CLI only: cameras, images and the stream's renders
    from csgaussian.data import load_scene

    try:
        data = load_scene(args.data, downscale=args.downscale, load_instances=False)
        splats = read_3dgs_ply(args.ply)
        model = api.load_model(args.stream) if args.stream else None
    except (OSError, ValueError, PlyParseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    views = data.train if args.split == "train" else data.test
    cams = [v.camera for v in views]
    bg = torch.tensor(args.background) if args.background else data.background
    started = time.perf_counter()
    renders = [render(splats, c.viewmat, c.K, c.width, c.height, bg, args.near) for c in cams]
    seconds = (time.perf_counter() - started) / len(views)
    images = [v.image for v in views]
    scores = {"ply_vs_images": _mean_psnr(renders, images)}
    if model is not None:  # after our renders: numba's idle worker threads would slow them
        with torch.no_grad():
            decoded = [api.render_camera(model, c) for c in cams]
        scores["stream_vs_images"] = _mean_psnr(decoded, images)
        scores["ply_vs_stream"] = _mean_psnr(renders, decoded)
    result = {"ply": str(args.ply), "gaussians": len(splats.means), "split": args.split}
    result["near"] = args.near
    result |= {f"psnr_{key}": round(value, 3) for key, value in scores.items()}
    result |= {"views": len(views), "seconds_per_view": round(seconds, 3)}
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
