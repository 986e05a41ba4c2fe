"""Numba kernels of the tile rasterizer: binning, forward compositing, hand-written backward.

All arrays are float32 numpy arrays on the CPU. Per-Gaussian data is packed as ``geom [N, 7]``
(the ``GEOM_*`` columns: mean x and y, conic a, b, c, opacity, skip power) and ``feats [N, F]``
(colour channels then camera depth). ``skip_power`` is a value below which the Gaussian's alpha
is certainly under ``alpha_min``: such pairs count as no contribution without changing the
result (3DGS semantics are re-checked exactly on all other pairs).

Each tile (one ``prange`` iteration) is composited Gaussian by Gaussian over arrays of its pixels
(``tile_size`` columns times its rows, flattened), visiting only the rows where the Gaussian's
ellipse ``power >= skip_power`` crosses the tile (:func:`_reached_pixels`).
The innermost loops run over pixels with branch-free bodies (:mod:`csgaussian.render.simd`), so
LLVM vectorises them; every pixel still composites its Gaussians in depth order with the same
float32 operations as a per-pixel loop. Forward: a pixel stops before the Gaussian that would
bring its transmittance below ``t_min`` (3DGS), and the tile stops once all its pixels have.

The backward pass is the 3DGS back-to-front recurrence, run the same way. Each Gaussian's
gradient is summed over the tile's pixels and written once into the tile's own row of a
per-intersection array, so no atomics are needed; :func:`reduce_by_gaussian` sums rows per
Gaussian afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from csgaussian.render.simd import exp, reassoc_add, select

# Columns of ``geom``.
GEOM_MEAN_X, GEOM_MEAN_Y, GEOM_CONIC_A, GEOM_CONIC_B, GEOM_CONIC_C = range(5)
GEOM_OPACITY, GEOM_SKIP_POWER = 5, 6
REACH_MARGIN_PX = 1.0
"""Pixels added on every side of the region a Gaussian is evaluated on (float rounding)."""
# Columns of the per-intersection gradient array before the feature gradients.
GRAD_MEAN_X, GRAD_MEAN_Y, GRAD_CONIC_A, GRAD_CONIC_B, GRAD_CONIC_C, GRAD_OPACITY = range(6)
N_GEOM_GRADS = 6


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
def _tile_layout(
    t: int, tiles_x: int, tile_size: int, height: int, width: int
) -> tuple[int, int, int, int, np.ndarray, np.ndarray]:
    """Tile ``t``'s corner ``x0, y0``, its ``rows`` and ``cols`` inside the image, and its pixel
    centres ``xs, ys [rows * tile_size]`` (row-major, whole tile rows: the columns beyond
    ``cols`` are padding the kernels mark terminated)."""
    x0 = (t % tiles_x) * tile_size
    y0 = (t // tiles_x) * tile_size
    rows = min(tile_size, height - y0)
    cols = min(tile_size, width - x0)
    xs = np.empty(rows * tile_size, np.float32)
    ys = np.empty(rows * tile_size, np.float32)
    half = np.float32(0.5)
    for r in range(rows):
        for c in range(tile_size):
            xs[r * tile_size + c] = np.float32(x0 + c) + half
            ys[r * tile_size + c] = np.float32(y0 + r) + half
    return x0, y0, rows, cols, xs, ys


@njit(cache=True, inline="always")
def _reached_pixels(mx, my, a, b, c, skip, x0, y0, rows, tile_size):
    """Flat pixel range ``[p0, p1)`` of the tile rows (``rows`` of them from pixel row ``y0``,
    columns from ``x0``) where the Gaussian can pass the skip test ``power >= skip``.

    That region is the ellipse ``q = a dx^2 + 2 b dx dy + c dy^2 <= P = -2 skip``
    (``dx = mx - x``, ``dy = my - y``). Its extent in ``dy`` over the tile's columns is reached
    either at its top or bottom point (``|dy| = sqrt(P a / det)``, ``dx = -+ b dy / a``) when that
    point lies over the columns, or where the outer columns cut it
    (``dy = (-b dx +- sqrt(c P - det dx^2)) / c``). Computed in float64 and widened by
    ``REACH_MARGIN_PX`` on every side, so that no pixel whose float32 power passes the test is
    left out; a degenerate conic covers the whole tile. Unsigned, so that numba indexes without
    negative-index wraparound (which keeps LLVM from vectorising).
    """
    P = -2.0 * np.float64(skip)
    if not P > 0.0:  # power <= 0: no pixel passes
        return np.uintp(0), np.uintp(0)
    a, b, c = np.float64(a), np.float64(b), np.float64(c)
    det = a * c - b * b
    if not (det > 0.0 and a > 0.0 and c > 0.0):
        return np.uintp(0), np.uintp(rows * tile_size)
    u_lo = np.float64(mx) - (x0 + tile_size - 0.5 + REACH_MARGIN_PX)  # dx over the columns
    u_hi = np.float64(mx) - (x0 + 0.5 - REACH_MARGIN_PX)
    h = np.sqrt(P * a / det)
    u_top = -b * h / a
    dy_hi, dy_lo = -np.inf, np.inf
    if u_lo <= u_top <= u_hi:
        dy_hi = h
    if u_lo <= -u_top <= u_hi:
        dy_lo = -h
    for u in (u_lo, u_hi):
        disc = c * P - det * u * u
        if disc >= 0.0:
            root = np.sqrt(disc)
            dy_hi = max(dy_hi, (-b * u + root) / c)
            dy_lo = min(dy_lo, (-b * u - root) / c)
    if not dy_hi >= dy_lo:  # the ellipse misses the columns
        return np.uintp(0), np.uintp(0)
    top = np.ceil(my - dy_hi - 0.5 - REACH_MARGIN_PX) - y0  # pixel row centres are y + 0.5
    bottom = np.floor(my - dy_lo - 0.5 + REACH_MARGIN_PX) - y0 + 1
    r0 = min(max(top, 0.0), rows)  # clamped as floats: any reach clips to the tile
    r1 = min(max(bottom, r0), rows)
    return np.uintp(r0) * np.uintp(tile_size), np.uintp(r1) * np.uintp(tile_size)


@njit(cache=True, error_model="numpy")
def _forward_tile(
    t, ranges, ids, geom, feats, tile_size, tiles_x, alpha_min, alpha_max, t_min,
    out, t_final, last,
):  # fmt: skip
    """Composite tile ``t`` into ``out``, ``t_final`` and ``last`` (see :func:`forward_kernel`).

    Per pixel: ``T`` is the transmittance, negated once the pixel has terminated (pixels beyond
    the image start terminated); ``n_used`` the count of Gaussians up to its last contributor.
    """
    height, width, n_feat = out.shape
    start = ranges[t]
    n = ranges[t + 1] - start
    if n == 0:
        return
    one, zero = np.float32(1.0), np.float32(0.0)
    x0, y0, rows, cols, xs, ys = _tile_layout(t, tiles_x, tile_size, height, width)
    n_pix = rows * tile_size
    T = np.empty(n_pix, np.float32)
    for p in range(n_pix):
        T[p] = one if p % tile_size < cols else -one
    acc = np.zeros((n_feat, n_pix), np.float32)
    n_used = np.zeros(n_pix, np.int32)
    weight = np.empty(n_pix, np.float32)
    stopped = np.empty(n_pix, np.int32)
    n_alive = rows * cols
    half = np.float32(0.5)
    for k in range(n):
        g = ids[start + k]
        mx, my = geom[g, GEOM_MEAN_X], geom[g, GEOM_MEAN_Y]
        a, b, c = geom[g, GEOM_CONIC_A], geom[g, GEOM_CONIC_B], geom[g, GEOM_CONIC_C]
        opacity, skip = geom[g, GEOM_OPACITY], geom[g, GEOM_SKIP_POWER]
        p0, p1 = _reached_pixels(mx, my, a, b, c, skip, x0, y0, rows, tile_size)
        used_k = np.int32(k + 1)
        for p in range(p0, p1):
            dx = mx - xs[p]
            dy = my - ys[p]
            power = -half * (a * dx * dx + c * dy * dy) - b * dx * dy
            alpha = min(alpha_max, opacity * exp(max(power, skip)))
            T_p = T[p]
            t_next = T_p * (one - alpha)
            hit = (T_p > zero) & (power >= skip) & (alpha >= alpha_min)
            stop = hit & (t_next < t_min)
            use = hit & (t_next >= t_min)
            weight[p] = select(use, alpha * T_p, zero)
            T[p] = select(use, t_next, select(stop, -T_p, T_p))
            n_used[p] = max(n_used[p], select(use, used_k, np.int32(0)))
            stopped[p] = select(stop, np.int32(1), np.int32(0))
        for f in range(n_feat):
            value = feats[g, f]
            acc_f = acc[f]
            for p in range(p0, p1):
                acc_f[p] += weight[p] * value
        n_stopped = np.int32(0)
        for p in range(p0, p1):
            n_stopped += stopped[p]
        n_alive -= n_stopped
        if n_alive == 0:
            break
    for r in range(rows):
        for col in range(cols):
            p = r * tile_size + col
            for f in range(n_feat):
                out[y0 + r, x0 + col, f] = acc[f, p]
            t_final[y0 + r, x0 + col] = abs(T[p])
            last[y0 + r, x0 + col] = n_used[p]


@njit(parallel=True, cache=True, error_model="numpy")
def forward_kernel(
    ranges: np.ndarray,  # [T + 1] int64
    tile_order: np.ndarray,  # [T] int64 permutation of the tiles (see tile_work_order)
    ids: np.ndarray,  # [I] int32
    geom: np.ndarray,  # [N, 7] float32 (GEOM_* columns)
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
    out = np.zeros((height, width, feats.shape[1]), np.float32)
    t_final = np.ones((height, width), np.float32)
    last = np.zeros((height, width), np.int32)
    for i in prange(tile_order.shape[0]):
        _forward_tile(
            tile_order[i], ranges, ids, geom, feats, tile_size, tiles_x, alpha_min, alpha_max,
            t_min, out, t_final, last,
        )  # fmt: skip
    return out, t_final, last


@njit(cache=True, error_model="numpy")
def _backward_tile(
    t, ranges, ids, geom, feats, background, t_final, last, grad_feats, grad_alpha, tile_size,
    tiles_x, alpha_min, alpha_max, grads,
):  # fmt: skip
    """Gradients of tile ``t``'s intersections into their rows of ``grads`` (see
    :func:`backward_kernel`).

    Three passes over the pixels a Gaussian reaches: its alpha, the transmittance in front of
    it and the weight (``alpha`` is 0 and ``1 - alpha`` is 1 where it does not contribute, so
    the updates below leave those pixels exactly unchanged); per feature channel, its gradient
    and the colour behind it; then the geometry gradients.
    """
    height, width, n_feat = grad_feats.shape
    start = ranges[t]
    if ranges[t + 1] == start:
        return
    one, zero, half = np.float32(1.0), np.float32(0.0), np.float32(0.5)
    x0, y0, rows, cols, xs, ys = _tile_layout(t, tiles_x, tile_size, height, width)
    n_pix = rows * tile_size
    T = np.ones(n_pix, np.float32)  # transmittance in front of the current Gaussian
    grad_t = np.zeros(n_pix, np.float32)  # dL/d(alpha) * T_final
    n_used = np.zeros(n_pix, np.int32)
    grad_f = np.zeros((n_feat, n_pix), np.float32)
    behind = np.empty((n_feat, n_pix), np.float32)  # colour of everything behind, over T
    k_end = 0
    for r in range(rows):
        for col in range(tile_size):
            p = r * tile_size + col
            behind[:, p] = background
            if col < cols:
                t_end = t_final[y0 + r, x0 + col]
                T[p] = t_end
                grad_t[p] = grad_alpha[y0 + r, x0 + col] * t_end
                n_used[p] = last[y0 + r, x0 + col]
                k_end = max(k_end, n_used[p])
                grad_f[:, p] = grad_feats[y0 + r, x0 + col]
    alpha_c = np.empty(n_pix, np.float32)  # alpha where the Gaussian contributes, else 0
    keep = np.empty(n_pix, np.float32)  # 1 - alpha where it contributes, else 1
    weight = np.empty(n_pix, np.float32)
    o_gauss = np.empty(n_pix, np.float32)
    gauss = np.empty(n_pix, np.float32)
    contributes = np.empty(n_pix, np.int32)
    grad_a = np.empty(n_pix, np.float32)  # dL/d(alpha), the colour part first
    for k in range(k_end - 1, -1, -1):
        g = ids[start + k]
        mx, my = geom[g, GEOM_MEAN_X], geom[g, GEOM_MEAN_Y]
        a, b, c = geom[g, GEOM_CONIC_A], geom[g, GEOM_CONIC_B], geom[g, GEOM_CONIC_C]
        opacity, skip = geom[g, GEOM_OPACITY], geom[g, GEOM_SKIP_POWER]
        p0, p1 = _reached_pixels(mx, my, a, b, c, skip, x0, y0, rows, tile_size)
        k32 = np.int32(k)
        for p in range(p0, p1):
            dx = mx - xs[p]
            dy = my - ys[p]
            power = -half * (a * dx * dx + c * dy * dy) - b * dx * dy
            gauss_p = exp(max(power, skip))
            o_g = opacity * gauss_p
            alpha = min(alpha_max, o_g)
            hit = (k32 < n_used[p]) & (power >= skip) & (alpha >= alpha_min)
            keep_p = select(hit, one - alpha, one)
            T_p = T[p] / keep_p
            T[p] = T_p
            alpha_c[p] = select(hit, alpha, zero)
            keep[p] = keep_p
            weight[p] = select(hit, alpha * T_p, zero)
            contributes[p] = select(hit & (o_g <= alpha_max), np.int32(1), np.int32(0))
            o_gauss[p] = o_g
            gauss[p] = gauss_p
            grad_a[p] = zero
        row = start + k
        for f in range(n_feat):
            value = feats[g, f]
            behind_f, grad_ff = behind[f], grad_f[f]
            total = zero
            for p in range(p0, p1):
                grad_fp = grad_ff[p]
                total = reassoc_add(total, weight[p] * grad_fp)
                grad_a[p] += (value - behind_f[p]) * grad_fp
                behind_f[p] = alpha_c[p] * value + keep[p] * behind_f[p]
            grads[row, N_GEOM_GRADS + f] = total
        sum_o = sum_mx = sum_my = sum_a = sum_b = sum_c = zero
        for p in range(p0, p1):
            # clamped alpha (o_g > alpha_max): no gradient to opacity or shape
            use = contributes[p] != 0
            dx = mx - xs[p]
            dy = my - ys[p]
            dl_dalpha = grad_a[p] * T[p] + grad_t[p] / keep[p]
            dl_dpower = dl_dalpha * o_gauss[p]
            sum_o = reassoc_add(sum_o, select(use, dl_dalpha * gauss[p], zero))
            sum_mx = reassoc_add(sum_mx, select(use, dl_dpower * (-a * dx - b * dy), zero))
            sum_my = reassoc_add(sum_my, select(use, dl_dpower * (-c * dy - b * dx), zero))
            sum_a = reassoc_add(sum_a, select(use, dl_dpower * (-half * dx * dx), zero))
            sum_b = reassoc_add(sum_b, select(use, dl_dpower * (-dx * dy), zero))
            sum_c = reassoc_add(sum_c, select(use, dl_dpower * (-half * dy * dy), zero))
        grads[row, GRAD_OPACITY] = sum_o
        grads[row, GRAD_MEAN_X] = sum_mx
        grads[row, GRAD_MEAN_Y] = sum_my
        grads[row, GRAD_CONIC_A] = sum_a
        grads[row, GRAD_CONIC_B] = sum_b
        grads[row, GRAD_CONIC_C] = sum_c


@njit(parallel=True, cache=True, error_model="numpy")
def backward_kernel(
    ranges: np.ndarray,  # [T + 1] int64
    tile_order: np.ndarray,  # [T] int64 permutation of the tiles (see tile_work_order)
    ids: np.ndarray,  # [I] int32
    geom: np.ndarray,  # [N, 7] float32 (GEOM_* columns)
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
    grads = np.zeros((ids.shape[0], N_GEOM_GRADS + grad_feats.shape[2]), np.float32)
    for i in prange(tile_order.shape[0]):
        _backward_tile(
            tile_order[i], ranges, ids, geom, feats, background, t_final, last, grad_feats,
            grad_alpha, tile_size, tiles_x, alpha_min, alpha_max, grads,
        )  # fmt: skip
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
