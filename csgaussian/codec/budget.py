"""What decoding a stream will allocate, known from its metadata before anything is allocated.

A few hundred bytes of metadata and a few bytes of entropy-coded payload can describe a large
scene (a dense 64^3 block of anchors codes its positions in 29 bytes; a constant flag column or a
sharply predicted symbol costs nothing), so the bytes of a file do not bound what it decodes to.
Instead the decoder computes, from the validated metadata, the memory each step will need (the
anchors' attributes, the octree's working arrays, the float64 hyperprior evaluation, the networks
and hash tables, the semantic layer, the renderer's activations at first use) and refuses a file
whose peak exceeds a limit (``DEFAULT_MAX_MEMORY``, or the caller's ``max_memory``). The peak is
what the decoded scene holds plus the largest step's working set; the per-element constants are
measured peaks rounded up (the measurements:
benchmarks/results/notes/measurements.md#decoder-memory); ``tests/codec/test_budget.py`` checks
the estimate stays above the measured peaks.

Counts the format itself limits are refused by name before the estimate: network weights beyond
what one weights blob may hold (``MAX_CODED_VALUES``), hash-table signs beyond one flags payload
(``MAX_FLAGS``).

Edits multiply Gaussians: a duplicate adds a copy of every Gaussian at its selected slots, and a
copy keeps its slot, so 64 "duplicate everything" edits (what one edit layer may hold) make
2^64 copies of each. :func:`check_edits_fit` counts, from the slot flags alone, the most
Gaussians one view can hold while the edits apply in order, and refuses an edit list whose
rendering would exceed the limit. The decoder, :func:`csgaussian.api.edit` and the viewer's live
edits all call it, before anything is rendered.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..entropy.anchors import RateConfig
from ..entropy.hashgrid import level_sizes
from ..scene.operations import operation
from ..scene.scaffold import ScaffoldConfig, ScaffoldModel
from ..semantics.field import SemanticConfig, SemanticRateConfig
from .container import StreamError
from .flags import MAX_FLAGS
from .weights import MAX_CODED_VALUES

if TYPE_CHECKING:
    from ..scene.edits import SceneEdit

DEFAULT_MAX_MEMORY = 4 << 30
"""Decoding refuses a file that needs more than 4 GiB (kitchen needs about 0.1 GiB)."""
_LIMIT: ContextVar[int] = ContextVar("csgaussian_max_memory", default=DEFAULT_MAX_MEMORY)

FLOAT32, FLOAT64 = 4, 8
# Bytes per element of each step's working set (measured peaks, rounded up; see module docstring).
OCTREE_BYTES_PER_NODE = 4096
"""Octree decoding: the neighbour and plane-fit arrays of one level ([n, 27, 3] int64 and co)."""
CODER_BYTES_PER_SYMBOL = 8 * 20
"""Decoding one coded group: mean, scale, snapped copies, centres, indices, symbols (float64 /
int64 arrays, about 20 per coded value, for the largest group)."""
HASH_LEVEL_BYTES_PER_ANCHOR = 1024
"""One hash-grid level's corner indices, weights and hashes ([N, 8, 3] int64 / float64)."""
NETWORK_BYTES_PER_VALUE = 64
"""A coded network weight: template, decoded float32, symbols, float64 copy for evaluation."""
TABLE_BYTES_PER_VALUE = 32
"""A hash-table entry: template, deep copy, float64 copy, decoded sign, its flag."""
TENSOR_BYTES_PER_VALUE = 32
"""A codebook centre or language value: decoded float32, float64 and normalised copies."""


def resolve_limit(max_memory: int | None) -> int:
    """The memory limit in bytes: ``max_memory`` if given, else the current default."""
    limit = _LIMIT.get() if max_memory is None else max_memory
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"max_memory must be a positive number of bytes, got {limit!r}")
    return limit


@contextmanager
def memory_limit(max_memory: int) -> Iterator[None]:
    """Within the block, decoding without an explicit ``max_memory`` uses this limit."""
    token = _LIMIT.set(resolve_limit(max_memory))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _mlp_values(d_in: int, width: int, depth: int, outputs: list[int]) -> int:
    """Weights and biases of a trunk of ``depth`` layers of ``width`` with one head per output."""
    values, dim = 0, d_in
    for _ in range(depth):
        values += dim * width + width
        dim = width
    return values + sum(dim * out + out for out in outputs)


def renderer_values(config: ScaffoldConfig) -> int:
    """Weights of the opacity, colour and covariance MLPs and the background."""
    d, h, k = config.mlp_input_dim, config.hidden_dim, config.n_offsets
    return 3 * (d * h + h) + sum(h * out + out for out in (k, 3 * k, 7 * k)) + 3


def _check_count(what: str, count: int, limit: int, fields: str) -> None:
    if count > limit:
        raise StreamError(f"{what} would hold {count} values, over the format's {limit} ({fields})")


@dataclass
class Need:
    """Bytes a decoding needs: ``held`` from allocation to the end (the scene, its networks) and
    ``working`` per step, freed when the step ends (only the largest counts at once)."""

    held: dict[str, int] = field(default_factory=dict)
    working: dict[str, int] = field(default_factory=dict)

    def __or__(self, other: Need) -> Need:
        return Need(self.held | other.held, self.working | other.working)

    @property
    def total(self) -> int:
        """The peak: everything held plus the largest step."""
        return sum(self.held.values()) + max(self.working.values(), default=0)


def base_memory(config: ScaffoldConfig, rate: RateConfig, n_anchors: int) -> Need:
    """Bytes decoding the base layer (and rendering it once) needs.

    Raises:
        StreamError: a network or hash table larger than its section's format can hold.
    """
    f, k, n = config.feature_dim, config.n_offsets, n_anchors
    channels = [f, 6, 3 * k]
    heads = [2 * c + 1 for c in channels]
    renderer = renderer_values(config)
    _check_count("the renderer MLPs", renderer, MAX_CODED_VALUES, "scaffold sizes")
    if rate.hyperprior == "hashgrid":
        mlp = rate.hashgrid.mlp
        _, sizes = level_sizes(rate.hashgrid)
        encoded = rate.hashgrid.n_levels * rate.hashgrid.n_features
        table_values = sum(sizes) * rate.hashgrid.n_features
        _check_count("the hash-grid sign tables", table_values, MAX_FLAGS, "rate.hashgrid")
        encoder = HASH_LEVEL_BYTES_PER_ANCHOR + FLOAT64 * 2 * encoded
    else:
        mlp = rate.inr.mlp
        encoded = 3 + 6 * rate.inr.n_freqs
        table_values = 0
        encoder = FLOAT64 * (3 * encoded)
    hyperprior = _mlp_values(encoded, mlp.width, mlp.depth, heads)
    _check_count("the hyperprior MLP", hyperprior, MAX_CODED_VALUES, "rate")
    h = config.hidden_dim
    return Need(
        held={
            "anchors": n * (FLOAT32 * (3 + f + 6 + 4 * k) + 2 * 8 * 3 + k + 16),
            "coding distributions": n * FLOAT64 * (sum(heads) + sum(channels)),
            "networks": NETWORK_BYTES_PER_VALUE * (renderer + hyperprior),
            "hash tables": TABLE_BYTES_PER_VALUE * table_values,
        },
        working={
            "positions": n * OCTREE_BYTES_PER_NODE,
            "hyperprior": n * (encoder + FLOAT64 * 2 * mlp.width),
            "attributes": n * CODER_BYTES_PER_SYMBOL * max(channels),
            "rendering": n * FLOAT32 * 2 * (config.mlp_input_dim + 2 * h + 11 * k),
        },
    )


def semantic_memory(
    config: SemanticConfig,
    rate: SemanticRateConfig,
    n_anchors: int,
    scaffold: ScaffoldConfig,
    codebook: tuple[int, int],
    language: tuple[int, int],
) -> Need:
    """Bytes decoding the semantic layer (and computing its slot features once) needs.

    ``codebook``: (coarse, fine) cluster counts; ``language``: (entries, dimension).
    """
    d, n, k = config.latent_dim, n_anchors, scaffold.n_offsets
    context = scaffold.feature_dim if rate.conditional else 0
    encoded = 3 + 6 * rate.inr.n_freqs
    mlp = rate.inr.mlp
    hyperprior = _mlp_values(encoded + context, mlp.width, mlp.depth, [2 * d + 1])
    field_values = (d + 3) * config.hidden_dim + config.hidden_dim
    field_values += config.hidden_dim * config.feature_dim + config.feature_dim
    _check_count("the semantic hyperprior MLP", hyperprior, MAX_CODED_VALUES, "semantic rate")
    _check_count("the semantic feature MLP", field_values, MAX_CODED_VALUES, "semantic sizes")
    k1, k2 = codebook
    entries, dim = language
    centres = k1 * (config.feature_dim + 3) + k1 * k2 * config.feature_dim
    slot = d + 3 + 2 * config.hidden_dim + 2 * config.feature_dim
    return Need(
        held={
            "semantic latents": n * (FLOAT32 * d + FLOAT64 * (2 * (2 * d + 1) + d)),
            "semantic networks": NETWORK_BYTES_PER_VALUE * (hyperprior + field_values),
            "codebook": TENSOR_BYTES_PER_VALUE * centres + 16 * k1 * k2,
            "language table": TENSOR_BYTES_PER_VALUE * entries * dim + 16 * k1 * k2,
        },
        working={
            "semantic hyperprior": n * FLOAT64 * (3 * encoded + 2 * context + 2 * mlp.width),
            "semantic coding": n * CODER_BYTES_PER_SYMBOL * d,
            "slot features": n * k * FLOAT32 * 2 * slot,
        },
    )


EDIT_BYTES_PER_SLOT = 16
"""One edit's selection: the decoded flag (bool), its coder's int32 symbol and float64 P(1)."""


def edit_memory(n_edits: int, n_anchors: int, n_offsets: int) -> Need:
    """Bytes decoding an edit list of ``n_edits`` selections over ``[n_anchors, n_offsets]``
    slots needs (the selections are held; one is decoded at a time)."""
    slots = n_anchors * n_offsets
    return Need(
        held={"edit selections": n_edits * slots},
        working={"edit decoding": slots * EDIT_BYTES_PER_SLOT},
    )


EDIT_TEXT_SHOWN = 40
"""Characters of an edit's text quoted in a refusal."""
GAUSSIAN_BYTES = 1024
"""Rendering one spawned Gaussian after the edits in a frame of up to the viewer's 512 x 512: its
record (14 float32 and 2 int64 values), the copies ``apply_edit`` makes on the way, and the
rasterizer's per-Gaussian arrays and tile intersections (a measured peak, rounded up;
``tests/codec/test_budget.py`` checks it stays above the measurement). Larger frames need more
per Gaussian (more tile intersections); the count it multiplies is an upper bound (every
active slot drawn in one view)."""


def edited_gaussians(active: np.ndarray, edits: Sequence[SceneEdit], cap: int) -> tuple[int, int]:
    """The most Gaussians one view can hold while ``edits`` apply in order to the active slots
    ``active`` (``[N, K]`` bool), and the number of edits applied when that peak is reached (0:
    before any edit).

    Counted exactly from the slot flags, in Python integers: each active slot holds ``2^d``
    Gaussians after ``d`` duplicates of it, until a removal (or an extract that leaves it out)
    drops it. Stops at the first edit that takes the count above ``cap`` (``< 2^255``) and
    returns that count.

    Raises:
        StreamError: an edit's selection is not a ``[N, K]`` table.
    """
    if cap >= 1 << 255:
        raise ValueError(f"cap must be below 2^255 (doublings are counted in uint8), got {cap}")
    alive = np.array(active, dtype=bool)
    doublings = np.zeros(alive.shape, dtype=np.uint8)  # d per slot; 2^d <= count <= cap
    total = peak = int(alive.sum())
    at = 0
    for index, edit in enumerate(edits, start=1):
        chosen = _selection(edit, alive.shape, index)
        effect = operation(edit.kind).effect
        if effect == "keep":
            continue
        hit = alive & chosen
        counted = _count(doublings[hit])
        if effect == "copy":
            total += counted
            doublings[hit] += 1
        elif effect == "remove":
            total -= counted
            alive &= ~chosen
        else:  # extract
            total = counted
            alive = hit
        if total > peak:
            peak, at = total, index
        if peak > cap:
            break
    return peak, at


def _selection(edit: SceneEdit, shape: tuple[int, ...], index: int) -> np.ndarray:
    slots = edit.slots
    if tuple(slots.shape) != shape or slots.dtype != torch.bool:
        raise StreamError(
            f"edit {index} selects a {slots.dtype} table of shape {tuple(slots.shape)}, the "
            f"scene has {shape[0]} x {shape[1]} anchor slots"
        )
    return slots.numpy()


def _count(doublings: np.ndarray) -> int:
    """``sum(2 ** d)`` over ``doublings``, exactly."""
    return sum(int(n) << d for d, n in enumerate(np.bincount(doublings)) if n)


def check_edits_fit(
    scene: ScaffoldModel | np.ndarray | torch.Tensor,
    edits: Sequence[SceneEdit],
    max_memory: int | None = None,
    held: int | None = None,
) -> int:
    """Refuse (StreamError, one line) ``edits`` whose rendering would exceed the memory limit.

    Args:
        scene: the decoded model, or its active slots ``[N, K]`` bool (before decoding it).
        edits: the whole edit list, in order.
        max_memory: the limit in bytes (default: :func:`resolve_limit`'s).
        held: bytes the scene already holds (default: a model's tensors; 0 for a table).

    Returns:
        The most Gaussians one view holds while the edits apply (:func:`edited_gaussians`).
    """
    limit = resolve_limit(max_memory)
    if isinstance(scene, ScaffoldModel):
        with torch.no_grad():
            active = scene.active_slots().numpy()
        if held is None:
            held = sum(t.nbytes for t in scene.state_dict().values())
    else:
        active = np.asarray(scene, dtype=bool)
    cap = max(limit - (held or 0), 0) // GAUSSIAN_BYTES
    peak, at = edited_gaussians(active, edits, cap)
    if peak <= cap or not edits:
        return peak
    if at:
        edit = edits[at - 1]
        what = f"edit {at} of {len(edits)} ({edit.kind} '{edit.text[:EDIT_TEXT_SHOWN]}')"
    else:
        what = "the scene before its edits"
    raise StreamError(
        f"{what} makes {peak:,} Gaussians per view, about "
        f"{_gib(peak * GAUSSIAN_BYTES + (held or 0))} to render, over the limit of "
        f"{_gib(limit)} (max_memory)"
    )


def check_memory(need: Need, limit: int) -> None:
    """Refuse (StreamError) a decoding whose peak ``need`` exceeds ``limit`` bytes."""
    total = need.total
    if total <= limit:
        return
    parts = {**need.held, **need.working}
    largest = sorted(parts.items(), key=lambda item: -item[1])[:3]
    shown = ", ".join(f"{name} {_gib(size)}" for name, size in largest)
    raise StreamError(
        f"decoding would need about {_gib(total)} ({shown}), over the limit of {_gib(limit)} "
        "(max_memory)"
    )


def _gib(size: int) -> str:
    if size >= 1 << 60:
        return f"{size / (1 << 30):.3g} GiB"
    return f"{size / (1 << 30):.2f} GiB" if size >= 1 << 26 else f"{size / (1 << 20):.1f} MiB"
