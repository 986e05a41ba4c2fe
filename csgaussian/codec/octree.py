"""Lossless anchor positions: an octree occupancy code on a 16-bit grid (docs/format.md §3.2).

Geometry. Anchors are Scaffold-GS voxel centres; ``voxelize`` maps world positions to integer
voxel indices on a uint16 grid (the caller stores ``origin`` and ``voxel_size``). The octree spans
``[0, 2^D)^3`` with ``D`` the bit length of the largest coordinate, so a 1000-voxel-wide scene costs
10 levels, not 16.

Canonical order. The decoder returns the unique points sorted by Morton code (x the most
significant bit of each triple). ``encode_positions`` accepts any order and duplicates and codes
that canonical set; ``canonical_order(grid)`` returns the indices that take the caller's array to
it (first occurrence of each duplicate), so attributes can be reordered to match.

Occupancy code. Nodes are visited breadth-first in Morton order; each node's 8-bit child
occupancy is coded as 8 binary decisions with constriction's ANS coder (Bernoulli models). A level
is coded slot by slot (``SLOT_ORDER``: even-parity child slots first) over all its nodes, so both
sides work on whole arrays and every decision can look at the slots already decoded in
neighbouring nodes. Context of "child k is occupied": the level, the slot's rank, the children
already found in this node (0-3+), the distance of child k's centre to a plane fitted to the
occupied neighbours (``_plane_buckets``), and a neighbour feature (``_neighbour_feature``: the
node's face neighbours on child k's sides for the first slot, then the already decoded occupied
face / edge neighbours of child k at the child level). Contexts keep integer counts, updated
identically on both sides after chunks of 32, 64, ... 4096 decisions (halved above
``COUNT_LIMIT``) and shrunk towards a level-free back-off context. The last slot of a node with
no child yet is implied and not coded. Everything that feeds a probability is integer or an
exactly rounded IEEE operation on integers, so encoder and decoder agree on any machine.

Payload: ``n_points u32, depth u8, ANS words u32[]``.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable

import constriction
import numpy as np

from csgaussian.codec.container import StreamError

COUNT_LIMIT = 1 << 16
"""Counts of a context are halved when their sum exceeds this (adaptivity vs. precision)."""
BACKOFF_WEIGHT = 4.0
"""Pseudo-count of the level-free back-off estimate in each context's probability."""
MAX_POINTS = 1 << 22
"""Most anchors a stream may hold (bounds the decoder's memory, ~1 GB at the limit)."""
_HEADER = struct.Struct("<IB")
FIRST_CHUNK = 32
MAX_CHUNK = 4096
_NO_PLANE = 6
_N_CTX = 16 * 8 * 4 * 7 * 16  # level, slot rank, children so far (0-3+), plane, neighbours
SLOT_ORDER = (0, 3, 5, 6, 1, 2, 4, 7)
"""Child slots (x, y, z bits) in coding order: even parity first, so that every odd slot finds
its 6 face neighbours at the child level already decoded."""
_SLOT_POS = {k: t for t, k in enumerate(SLOT_ORDER)}
CodeFn = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
_OFFSETS = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=np.int64)
_NB26 = np.array(
    [
        [a, b, c]
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
        for c in (-1, 0, 1)
        if (a, b, c) != (0, 0, 0)
    ],
    dtype=np.int64,
)
_NORMALS = np.array(
    [
        v
        for v in itertools.product(range(-2, 3), repeat=3)
        if math.gcd(*map(abs, v)) == 1 and next(x for x in v if x) > 0
    ],
    dtype=np.int64,
)  # candidate plane normals: primitive integer directions in [-2, 2]^3, one per +-pair
_NORM_SQ = (_NORMALS**2).sum(axis=1)
_NORM_SCALE = math.lcm(*map(int, _NORM_SQ)) // _NORM_SQ  # compare n^T C n / |n|^2 exactly
_NORMAL_FORMS = (
    (_NORMALS[:, :, None] * _NORMALS[:, None, :]).reshape(-1, 9) * _NORM_SCALE[:, None]
).T
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)
_NB27 = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.int64)  # col 13 = self
_FACE_COLS = [4, 22, 10, 16, 12, 14]  # -x, +x, -y, +y, -z, +z in _NB27


def _spread(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64(0xFFFF)
    for shift, mask in (
        (16, 0x0000FF0000FF),
        (8, 0x00F00F00F00F),
        (4, 0x0C30C30C30C3),
        (2, 0x249249249249),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton_codes(grid: np.ndarray) -> np.ndarray:
    """Morton codes (uint64) of uint16 points [N, 3], x most significant within each triple."""
    g = np.asarray(grid)
    return (
        (_spread(g[:, 0]) << np.uint64(2)) | (_spread(g[:, 1]) << np.uint64(1)) | _spread(g[:, 2])
    )


def _check_grid(grid: np.ndarray) -> np.ndarray:
    g = np.asarray(grid)
    if g.ndim != 2 or g.shape[1] != 3:
        raise ValueError(f"positions must have shape [N, 3], got {list(g.shape)}")
    if g.size and (g.min() < 0 or g.max() > 0xFFFF):
        raise ValueError("positions must lie in the 16-bit grid [0, 65535]")
    if len(g) > MAX_POINTS:
        raise ValueError(f"{len(g)} positions exceed the limit of {MAX_POINTS}")
    return g.astype(np.int64)


def canonical_order(grid: np.ndarray) -> np.ndarray:
    """Indices ``idx`` such that ``grid[idx]`` is what ``decode_positions`` returns.

    Unique points sorted by Morton code; of duplicates the first occurrence is kept.
    """
    codes = morton_codes(_check_grid(grid))
    _, first = np.unique(codes, return_index=True)
    return first


def voxelize(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Scaffold-GS voxelisation: unique ``round(points / voxel_size)`` as a uint16 grid.

    Args:
        points: [P, 3] world positions.
        voxel_size: anchor voxel edge length.

    Returns:
        grid [N, 3] uint16 (unique, in Morton order) and origin [3] float64, with world positions
        ``origin + grid * voxel_size``.
    """
    idx = np.round(np.asarray(points, dtype=np.float64) / voxel_size).astype(np.int64)
    lo = idx.min(axis=0)
    span = idx.max(axis=0) - lo
    if span.max() > 0xFFFF:
        raise ValueError(f"scene spans {int(span.max()) + 1} voxels, the 16-bit grid holds 65536")
    grid = idx - lo
    grid = grid[canonical_order(grid)]
    return grid.astype(np.uint16), lo.astype(np.float64) * voxel_size


def grid_to_unit_cube(grid: np.ndarray, depth: int) -> np.ndarray:
    """Hyperprior input: voxel centres of ``grid`` [N, 3] in the cube ``[0, 2^depth)^3``, mapped
    to [-1, 1]^3.

    ``(2 g + 1) / 2^depth - 1``: exact in float64, so encoder and decoder (which only has the
    decoded grid and the stored depth) feed bit-identical positions to the hyperprior.
    """
    g = np.asarray(grid, dtype=np.float64)
    return (2.0 * g + 1.0) / float(2**depth) - 1.0


def _keys(xyz: np.ndarray) -> np.ndarray:
    return (xyz[:, 0] << 32) | (xyz[:, 1] << 16) | xyz[:, 2]


def _occupied(sorted_keys: np.ndarray, q: np.ndarray, level: int) -> np.ndarray:
    """Whether cells q [..., 3] are occupied nodes of ``level`` (sorted keys ``sorted_keys``)."""
    ok = np.all((q >= 0) & (q < (1 << level)), axis=-1)
    qk = np.where(ok, _keys(q.reshape(-1, 3)).reshape(ok.shape), 0)
    pos = np.minimum(np.searchsorted(sorted_keys, qk), len(sorted_keys) - 1)
    return ok & (sorted_keys[pos] == qk)


class _ContextModel:
    """Adaptive binary contexts shared by encoder and decoder.

    A context's P(1) shrinks its counts towards a back-off context that ignores the level:
    ``(n1 + BACKOFF_WEIGHT * p_b) / (n + BACKOFF_WEIGHT)``, ``p_b = (2 b1 + 1) / (2 b + 2)``.
    Only exactly rounded IEEE operations on integers, so both sides compute identical floats.
    """

    def __init__(self) -> None:
        self.counts = np.zeros((_N_CTX, 2), dtype=np.int64)
        self.backoff = np.zeros((_N_CTX // 16, 2), dtype=np.int64)

    def prob_one(self, ctx: np.ndarray) -> np.ndarray:
        c = self.counts[ctx]
        b = self.backoff[ctx % len(self.backoff)]
        p_b = (2 * b[:, 1] + 1) / (2 * (b[:, 0] + b[:, 1]) + 2)
        return (c[:, 1] + BACKOFF_WEIGHT * p_b) / (c[:, 0] + c[:, 1] + BACKOFF_WEIGHT)

    def update(self, ctx: np.ndarray, bits: np.ndarray) -> None:
        for table, idx in ((self.counts, ctx), (self.backoff, ctx % len(self.backoff))):
            cells, n = np.unique(2 * idx + bits, return_counts=True)
            table.reshape(-1)[cells] += n
            touched = cells // 2
            big = touched[table[touched].sum(axis=1) > COUNT_LIMIT]
            table[big] = (table[big] + 1) // 2


def _plane_buckets(xyz: np.ndarray, level: int, keys: list[np.ndarray]) -> np.ndarray:
    """Per node and child, distance bucket of the child centre to a local plane: [N, 8].

    The plane is fitted (integer least squares over candidate normals) to the node centre and
    the occupied 26-neighbours at the node's level, or else its parent's or grandparent's level,
    the first with at least two. Coordinates are node-relative, in quarters of the node size.
    Buckets 0..5 by distance (<0.5, <1, <1.5, <2, <3, more, in quarters); 6 = no plane.
    """
    n = len(xyz)
    out = np.full((n, 8), _NO_PLANE, dtype=np.int64)
    todo = np.arange(n)
    for j in range(3):  # support from the node's level, its parent's, its grandparent's
        if level - j < 0 or len(todo) == 0:
            break
        sub = xyz[todo]
        occ = _occupied(keys[level - j], (sub >> j)[:, None, :] + _NB26[None], level - j)
        enough = occ.sum(axis=1) >= 2
        idx, sub, occ = todo[enough], sub[enough], occ[enough]
        todo = todo[~enough]
        if len(idx) == 0:
            continue
        pts = (-4 * (sub & ((1 << j) - 1)))[:, None, :] + (4 << j) * _NB26[None] + (2 << j)
        pts = pts * occ[..., None]  # [n, 26, 3]
        m = occ.sum(axis=1) + 1  # [n]
        s = pts.sum(axis=1) + 2  # [n, 3] (node centre = (2, 2, 2))
        q = pts.transpose(0, 2, 1) @ pts + 4  # [n, 3, 3]
        cov = m[:, None, None] * q - s[:, :, None] * s[:, None, :]  # m^2 * covariance
        score = cov.reshape(-1, 9) @ _NORMAL_FORMS  # [n, candidates]
        normal = _NORMALS[np.argmin(score, axis=1)]  # [n, 3]
        nn2 = (normal**2).sum(axis=1)
        centres = 2 * _OFFSETS + 1  # [8, 3]
        dist = np.abs(
            np.einsum("ni,nki->nk", normal, m[:, None, None] * centres[None] - s[:, None])
        )
        lhs = 4 * dist**2
        rhs = (m**2 * nn2)[:, None]
        bucket = np.zeros_like(dist)
        for t in (1, 2, 3, 4, 6):
            bucket += lhs >= t * t * rhs
        out[idx] = bucket
    return out


def _chunks(n: int) -> list[tuple[int, int]]:
    """Batch boundaries: sizes FIRST_CHUNK, doubling up to MAX_CHUNK (counts update between)."""
    out, start, size = [], 0, FIRST_CHUNK
    while start < n:
        out.append((start, min(n, start + size)))
        start, size = start + size, min(MAX_CHUNK, 2 * size)
    return out


def _neighbour_index(xyz: np.ndarray, level: int) -> np.ndarray:
    """Row of each node's 3x3x3 neighbours in ``xyz`` [N, 3] (-1 if empty): [N, 27]."""
    keys = _keys(xyz)
    perm = np.argsort(keys)
    sorted_keys = keys[perm]
    q = xyz[:, None, :] + _NB27[None]  # [N, 27, 3]
    ok = np.all((q >= 0) & (q < (1 << level)), axis=-1)
    qk = np.where(ok, _keys(q.reshape(-1, 3)).reshape(ok.shape), 0)
    pos = np.minimum(np.searchsorted(sorted_keys, qk), len(keys) - 1)
    return np.where(ok & (sorted_keys[pos] == qk), perm[pos], -1)


def _known_neighbours(k: int, t: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """For child slot k coded t-th: (neighbour column, slot) of its face and edge neighbours at
    the child level whose slot is coded before t (known for every node of the level)."""
    face, edge = [], []
    for d in _NB26:
        if np.abs(d).sum() > 2:
            continue
        c = _OFFSETS[k] + d
        slot = int((c[0] & 1) * 4 + (c[1] & 1) * 2 + (c[2] & 1))
        if _SLOT_POS[slot] < t:
            col = int(((c[0] >> 1) + 1) * 9 + ((c[1] >> 1) + 1) * 3 + (c[2] >> 1) + 1)
            (face if np.abs(d).sum() == 1 else edge).append((col, slot))
    return face, edge


_KNOWN = {k: _known_neighbours(k, t) for t, k in enumerate(SLOT_ORDER)}


def _neighbour_feature(
    k: int, t: int, nbr: np.ndarray, occ: np.ndarray, adj: np.ndarray
) -> np.ndarray:
    """Context feature [N] in [0, 16): for the first slot, the node's face neighbours on child
    k's sides (0-3); later, 4 + 3 * min(known occupied face, 3) + min(known occupied edge, 2)."""
    if t == 0:
        return adj
    face, edge = _KNOWN[k]
    counts = []
    for pairs in (face, edge):
        n = np.zeros(len(occ), dtype=np.int64)
        for col, slot in pairs:
            idx = nbr[:, col]
            n += np.where(idx >= 0, (occ[np.maximum(idx, 0)] >> (7 - slot)) & 1, 0)
        counts.append(n)
    return 4 + 3 * np.minimum(counts[0], 3) + np.minimum(counts[1], 2)


def _code_level(
    xyz: np.ndarray, level: int, keys: list[np.ndarray], model: _ContextModel, code: CodeFn
) -> np.ndarray:
    """Code the child occupancy of the nodes ``xyz`` [N, 3] of ``level``; returns it [N].

    ``code(k, probs, sel)`` codes (encoder) or decodes (decoder) the bit of child slot k of the
    nodes ``sel`` with P(1) = ``probs`` and returns the bits.
    """
    plane = _plane_buckets(xyz, level, keys)  # [N, 8] in [0, 7)
    nbr = _neighbour_index(xyz, level)  # [N, 27]
    nb = nbr[:, _FACE_COLS] >= 0  # [N, 6]: -x, +x, -y, +y, -z, +z
    occ = np.zeros(len(xyz), dtype=np.int64)
    pop = np.zeros(len(xyz), dtype=np.int64)
    for t, k in enumerate(SLOT_ORDER):
        dx, dy, dz = _OFFSETS[k]
        adj = nb[:, dx].astype(np.int64) + nb[:, 2 + dy] + nb[:, 4 + dz]  # [N] in [0, 3]
        feat = _neighbour_feature(k, t, nbr, occ, adj)
        ctx = (((level * 8 + t) * 4 + np.minimum(pop, 3)) * 7 + plane[:, k]) * 16 + feat
        last = t == len(SLOT_ORDER) - 1
        sel_all = np.flatnonzero(pop > 0) if last else np.arange(len(xyz))
        bit = np.full(len(xyz), 1 if last else 0, dtype=np.int64)
        for lo, hi in _chunks(len(sel_all)):
            sel = sel_all[lo:hi]
            bits = code(k, model.prob_one(ctx[sel]), sel)
            model.update(ctx[sel], bits)
            bit[sel] = bits
        occ |= bit << (7 - k)
        pop += bit
    return occ


def _children(xyz: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """Child coordinates [M, 3] of nodes ``xyz`` [N, 3] with occupancy ``occ`` [N], Morton order."""
    parent, k = np.nonzero((occ[:, None] >> (7 - np.arange(8))[None]) & 1)
    return 2 * xyz[parent] + _OFFSETS[k]


def encode_positions(grid: np.ndarray) -> bytes:
    """Losslessly code the set of points ``grid`` [N, 3] (uint16 range; any order, duplicates ok).

    ``decode_positions`` returns ``grid[canonical_order(grid)]``.
    """
    g = _check_grid(grid)
    g = g[canonical_order(g)]
    n = len(g)
    depth = int(g.max()).bit_length() if n else 0
    if n == 0 or depth == 0:
        return _HEADER.pack(n, depth)
    model = _ContextModel()
    symbols: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    xyz = np.zeros((1, 3), dtype=np.int64)
    keys: list[np.ndarray] = []
    for level in range(depth):
        keys.append(np.sort(_keys(xyz)))
        child_level = g >> (depth - level - 1)
        uniq = np.unique(morton_codes(child_level))
        parent_idx = np.searchsorted(np.unique(uniq >> np.uint64(3)), uniq >> np.uint64(3))
        occ_true = np.zeros(len(xyz), dtype=np.int64)
        np.bitwise_or.at(occ_true, parent_idx, 1 << (7 - (uniq & np.uint64(7)).astype(np.int64)))

        def step(k: int, p: np.ndarray, sel: np.ndarray, occ_true=occ_true) -> np.ndarray:
            bits = ((occ_true[sel] >> (7 - k)) & 1).astype(np.int32)
            symbols.append(bits)
            probs.append(p)
            return bits

        occ = _code_level(xyz, level, keys, model, step)
        xyz = _children(xyz, occ)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(
        np.concatenate(symbols),
        constriction.stream.model.Bernoulli(perfect=False),
        np.concatenate(probs),
    )
    return _HEADER.pack(n, depth) + coder.get_compressed().astype("<u4").tobytes()


def positions_header(data: bytes) -> tuple[int, int]:
    """The point count and octree depth a positions payload declares (checked for consistency
    with its length, nothing decoded): what the decoder will allocate is known from these.

    Raises:
        StreamError: a header that no ``encode_positions`` output has.
    """
    if len(data) < _HEADER.size:
        raise StreamError(f"truncated positions: header needs {_HEADER.size} bytes, {len(data)}")
    n, depth = _HEADER.unpack_from(data)
    body = len(data) - _HEADER.size
    if n > MAX_POINTS or depth > 16 or body % 4:
        raise StreamError(f"bad positions header (n={n}, depth={depth}, {body} body bytes)")
    if n == 0 or depth == 0:
        if body or (depth == 0 and n > 1) or (n == 0 and depth != 0):
            raise StreamError(f"bad positions header (n={n}, depth={depth})")
    elif n > 8**depth:
        raise StreamError(f"bad positions header: {n} points do not fit an octree of depth {depth}")
    return n, depth


def decode_positions(data: bytes) -> np.ndarray:
    """Inverse of ``encode_positions``: unique points [N, 3] uint16 in Morton order.

    Raises:
        StreamError: malformed or inconsistent payload.
    """
    data = bytes(data)
    n, depth = positions_header(data)
    body = data[_HEADER.size :]
    if n == 0 or depth == 0:
        return np.zeros((n, 3), dtype=np.uint16)
    try:
        coder = constriction.stream.stack.AnsCoder(
            np.frombuffer(body, dtype="<u4").astype(np.uint32)
        )
    except ValueError as e:
        raise StreamError(f"corrupted positions: {e}") from None
    family = constriction.stream.model.Bernoulli(perfect=False)
    model = _ContextModel()
    xyz = np.zeros((1, 3), dtype=np.int64)

    def step(k: int, p: np.ndarray, sel: np.ndarray) -> np.ndarray:
        return np.asarray(coder.decode(family, p), dtype=np.int32)

    keys: list[np.ndarray] = []
    for level in range(depth):
        keys.append(np.sort(_keys(xyz)))
        occ = _code_level(xyz, level, keys, model, step)
        count = int(_POPCOUNT[occ].sum())
        if count > n:  # checked before the children are allocated
            raise StreamError(f"corrupted positions: level {level + 1} has {count} > {n} nodes")
        xyz = _children(xyz, occ)
    if len(xyz) != n or not coder.is_empty():
        raise StreamError(f"corrupted positions: decoded {len(xyz)} points, header says {n}")
    return xyz.astype(np.uint16)
