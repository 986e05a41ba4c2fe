"""Numba kernels of the tile rasterizer: binning, forward compositing, hand-written backward.

All arrays are float32 numpy arrays on the CPU. Per-Gaussian data is packed as
``geom [N, 7] = (mean_x, mean_y, conic_a, conic_b, conic_c, opacity, skip_power)`` and
``feats [N, F]`` (colour channels then camera depth). ``skip_power`` is a value below which the
Gaussian's alpha is certainly under ``alpha_min``: such pairs skip the ``exp`` without changing
the result (3DGS semantics are re-checked exactly on all other pairs).

The backward pass is the 3DGS back-to-front recurrence. Each tile (one ``prange`` iteration)
writes the gradient of every one of its intersections into its own rows of a per-intersection
array, so no atomics are needed; :func:`reduce_by_gaussian` sums rows per Gaussian afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Columns of the per-intersection gradient array before the feature gradients.
GRAD_MEAN_X, GRAD_MEAN_Y, GRAD_CONIC_A, GRAD_CONIC_B, GRAD_CONIC_C, GRAD_OPACITY = range(6)
N_GEOM_GRADS = 6
# float32 padding around each tile's scratch accumulator: 64 bytes = one cache line, so two
# threads never write the same line in their innermost loops (no false sharing).
PAD = 16


@njit(cache=True)
def bin_intersections(
    rects: np.ndarray,  # [N, 4] int64 half-open tile rectangles (x0, y0, x1, y1)
    order: np.ndarray,  # [M] int64 Gaussian ids sorted front to back
    n_tiles: int,
    tiles_x: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of (tile, Gaussian) pairs by tile, depth order kept inside each tile.

    Returns ``tile_ranges [n_tiles + 1]`` (int64 offsets) and ``ids [I]`` (int32 Gaussian ids).
    """
    counts = np.zeros(n_tiles + 1, np.int64)
    for i in range(order.shape[0]):
        g = order[i]
        for ty in range(rects[g, 1], rects[g, 3]):
            for tx in range(rects[g, 0], rects[g, 2]):
                counts[ty * tiles_x + tx + 1] += 1
    ranges = np.cumsum(counts)
    fill = ranges[:-1].copy()
    ids = np.empty(ranges[-1], np.int32)
    for i in range(order.shape[0]):
        g = order[i]
        for ty in range(rects[g, 1], rects[g, 3]):
            for tx in range(rects[g, 0], rects[g, 2]):
                t = ty * tiles_x + tx
                ids[fill[t]] = g
                fill[t] += 1
    return ranges, ids


@njit(cache=True, inline="always")
def _gather(ids, start, n, geom, feats):
    """Copy one tile's Gaussians into contiguous arrays ``[n, 7]`` and ``[n, F]``."""
    lg = np.empty((n, geom.shape[1]), np.float32)
    lf = np.empty((n, feats.shape[1]), np.float32)
    for k in range(n):
        g = ids[start + k]
        lg[k, :] = geom[g, :]
        lf[k, :] = feats[g, :]
    return lg, lf


@njit(parallel=True, cache=True, error_model="numpy")
def forward_kernel(
    ranges: np.ndarray,  # [T + 1] int64
    tile_order: np.ndarray,  # [T] int64 permutation of the tiles (see tile_work_order)
    ids: np.ndarray,  # [I] int32
    geom: np.ndarray,  # [N, 7] float32
    feats: np.ndarray,  # [N, F] float32
    width: int,
    height: int,
    tile_size: int,
    tiles_x: int,
    alpha_min: np.float32,
    alpha_max: np.float32,
    t_min: np.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front-to-back compositing per tile.

    Returns accumulated features ``[H, W, F]`` (no background), final transmittance ``[H, W]``
    and the per-pixel count of visited intersections up to the last contributor ``[H, W]`` int32.
    """
    n_feat = feats.shape[1]
    out = np.zeros((height, width, n_feat), np.float32)
    t_final = np.ones((height, width), np.float32)
    last = np.zeros((height, width), np.int32)
    half, one = np.float32(0.5), np.float32(1.0)
    scratch = np.zeros((ranges.shape[0] - 1, n_feat + 2 * PAD), np.float32)
    for i in prange(tile_order.shape[0]):
        t = tile_order[i]
        start = ranges[t]
        n = ranges[t + 1] - start
        lg, lf = _gather(ids, start, n, geom, feats)
        x0 = (t % tiles_x) * tile_size
        y0 = (t // tiles_x) * tile_size
        acc = scratch[t, PAD : PAD + n_feat]
        for py in range(y0, min(y0 + tile_size, height)):
            fy = np.float32(py) + half
            for px in range(x0, min(x0 + tile_size, width)):
                fx = np.float32(px) + half
                acc[:] = 0
                T = one
                n_used = 0
                for k in range(n):
                    dx = lg[k, 0] - fx
                    dy = lg[k, 1] - fy
                    power = -half * (lg[k, 2] * dx * dx + lg[k, 4] * dy * dy) - lg[k, 3] * dx * dy
                    if power < lg[k, 6]:
                        continue
                    alpha = min(alpha_max, lg[k, 5] * np.exp(power))
                    if alpha < alpha_min:
                        continue
                    t_next = T * (one - alpha)
                    if t_next < t_min:
                        break
                    w = alpha * T
                    for c in range(n_feat):
                        acc[c] += w * lf[k, c]
                    T = t_next
                    n_used = k + 1
                out[py, px, :] = acc
                t_final[py, px] = T
                last[py, px] = n_used
    return out, t_final, last


@njit(parallel=True, cache=True, error_model="numpy")
def backward_kernel(
    ranges: np.ndarray,  # [T + 1] int64
    tile_order: np.ndarray,  # [T] int64 permutation of the tiles (see tile_work_order)
    ids: np.ndarray,  # [I] int32
    geom: np.ndarray,  # [N, 7] float32
    feats: np.ndarray,  # [N, F] float32
    background: np.ndarray,  # [F] float32 (0 for the depth channel)
    t_final: np.ndarray,  # [H, W] float32
    last: np.ndarray,  # [H, W] int32
    grad_feats: np.ndarray,  # [H, W, F] float32 dL/d(accumulated features)
    grad_alpha: np.ndarray,  # [H, W] float32 dL/d(alpha)
    tile_size: int,
    tiles_x: int,
    alpha_min: np.float32,
    alpha_max: np.float32,
) -> np.ndarray:
    """Back-to-front gradients per intersection: ``[I, 6 + F]`` (see the ``GRAD_*`` columns).

    With ``acc`` the colour of everything behind a Gaussian (background included, divided by the
    transmittance in front of it), ``dC/dalpha_j = T_j (c_j - acc_j)`` and
    ``d(1 - T_final)/dalpha_j = T_final / (1 - alpha_j)``.
    """
    height, width, n_feat = grad_feats.shape
    grads = np.zeros((ids.shape[0], N_GEOM_GRADS + n_feat), np.float32)
    half, one = np.float32(0.5), np.float32(1.0)
    scratch = np.zeros((ranges.shape[0] - 1, n_feat + 2 * PAD), np.float32)
    for i in prange(tile_order.shape[0]):
        t = tile_order[i]
        start = ranges[t]
        n = ranges[t + 1] - start
        lg, lf = _gather(ids, start, n, geom, feats)
        x0 = (t % tiles_x) * tile_size
        y0 = (t // tiles_x) * tile_size
        acc = scratch[t, PAD : PAD + n_feat]
        for py in range(y0, min(y0 + tile_size, height)):
            fy = np.float32(py) + half
            for px in range(x0, min(x0 + tile_size, width)):
                fx = np.float32(px) + half
                acc[:] = background
                t_end = t_final[py, px]
                T = t_end
                g_a = grad_alpha[py, px]
                for k in range(last[py, px] - 1, -1, -1):
                    dx = lg[k, 0] - fx
                    dy = lg[k, 1] - fy
                    power = -half * (lg[k, 2] * dx * dx + lg[k, 4] * dy * dy) - lg[k, 3] * dx * dy
                    if power < lg[k, 6]:
                        continue
                    gauss = np.exp(power)
                    o_g = lg[k, 5] * gauss
                    alpha = min(alpha_max, o_g)
                    if alpha < alpha_min:
                        continue
                    one_minus = one - alpha
                    T = T / one_minus
                    w = alpha * T
                    row = start + k
                    dl_dalpha = np.float32(0.0)
                    for c in range(n_feat):
                        g_c = grad_feats[py, px, c]
                        grads[row, N_GEOM_GRADS + c] += w * g_c
                        dl_dalpha += (lf[k, c] - acc[c]) * g_c
                        acc[c] = alpha * lf[k, c] + one_minus * acc[c]
                    if o_g > alpha_max:
                        continue  # clamped alpha: no gradient to opacity or shape
                    dl_dalpha = dl_dalpha * T + g_a * t_end / one_minus
                    grads[row, GRAD_OPACITY] += dl_dalpha * gauss
                    dl_dpower = dl_dalpha * o_g
                    a, b, c2 = lg[k, 2], lg[k, 3], lg[k, 4]
                    grads[row, GRAD_MEAN_X] += dl_dpower * (-a * dx - b * dy)
                    grads[row, GRAD_MEAN_Y] += dl_dpower * (-c2 * dy - b * dx)
                    grads[row, GRAD_CONIC_A] += dl_dpower * (-half * dx * dx)
                    grads[row, GRAD_CONIC_B] += dl_dpower * (-dx * dy)
                    grads[row, GRAD_CONIC_C] += dl_dpower * (-half * dy * dy)
    return grads


def tile_work_order(ranges: np.ndarray, n_threads: int) -> np.ndarray:
    """Tile permutation ``[T]`` that balances numba's static split of a ``prange`` over threads.

    ``prange`` hands each thread one contiguous block of iterations; tiles sorted by decreasing
    intersection count are dealt round-robin, so every block gets a similar share of the work.
    """
    step = max(1, n_threads)
    by_work = np.argsort(-np.diff(ranges), kind="stable")
    return np.concatenate([by_work[k::step] for k in range(step)])


@njit(cache=True)
def reduce_by_gaussian(ids: np.ndarray, grads: np.ndarray, n: int) -> np.ndarray:
    """Sum per-intersection rows ``[I, K]`` into per-Gaussian rows ``[n, K]``."""
    out = np.zeros((n, grads.shape[1]), np.float32)
    for i in range(ids.shape[0]):
        g = ids[i]
        for k in range(grads.shape[1]):
            out[g, k] += grads[i, k]
    return out
