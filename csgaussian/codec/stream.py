"""The csgaussian stream: a trained scene to bytes and back (docs/format.md §3).

Base layer, in order: ``meta`` (zlib-compressed JSON: shapes, lattice, entropy-model config),
``positions`` (octree), ``masks`` (offset masks, one probability per offset slot), ``renderer``
(the three MLPs and the background, int8-coded), ``hyperprior`` (MLP #1, int10-coded), then
``feature``, ``scaling`` and ``offsets`` coded with the hyperprior's per-symbol Gaussians, and
optionally ``cameras`` (a few capture poses, :mod:`csgaussian.codec.cameras`). The decoder needs
this file and nothing else.

Both sides derive every coding distribution from the same inputs: the decoded lattice cells, the
decoded hyperprior weights, evaluated in float64, then snapped by
:func:`csgaussian.entropy.coder.snap_distribution_params`.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..entropy.anchors import GROUP_PARAMETERS, AnchorEntropyModel, RateConfig, offset_channels
from ..scene.decoded import Scene
from ..scene.edits import SceneEdit
from ..scene.scaffold import AnchorGrid, ScaffoldConfig, ScaffoldModel
from ..types import Camera
from . import budget, schema
from .cameras import MAX_CAMERAS, decode_cameras, encode_cameras, spread_cameras
from .cameras import SECTION as CAMERAS_SECTION
from .container import (
    StreamError,
    optional_sections,
    read_container,
    section_layers,
    skipped_sections,
    write_container,
)
from .edit_layer import SECTION as EDIT_SECTION
from .edit_layer import decode_edits, encode_edit_layer, read_edit_meta
from .flags import decode_flags, encode_flags
from .hyperprior import hyperprior_params, pack_hyperprior, unpack_hyperprior
from .octree import canonical_order, decode_positions, encode_positions, positions_header
from .semantic_layer import SECTIONS as SEMANTIC_SECTIONS
from .semantic_layer import decode_semantic_layer, read_semantic_meta
from .weights import pack_tensors, unpack_tensors

RENDERER_WEIGHTS = "int8"
"""Storage of the renderer MLPs (ours): 255 levels per row, entropy-coded, about half of float16's
bytes, at the test PSNR of float16 (benchmarks/results/notes/measurements.md#renderer-weights). The
encoder renders with the decoded weights too, so decoded images match."""
META_LIMIT = 1 << 16
"""Most bytes the decompressed metadata may take (bounds a zlib bomb)."""
MIN_SLOT_SHARE = 0.005
"""An offset slot used by fewer than this share of the anchors is dropped at encoding (ours).
Each slot has its own output rows in the renderer MLPs and hyperprior head, about 0.5 KB in the
stream however few Gaussians use it (measured:
benchmarks/results/notes/measurements.md#min-slot-share)."""
MASK_LOGIT = 20.0
"""Decoded mask logits: +-20 reproduces M exactly (sigmoid far from the threshold)."""
RENDERER_PREFIXES = ("opacity_mlp.", "color_mlp.", "cov_mlp.", "background")


@dataclass
class EncodedScene:
    """A stream and what it is made of."""

    data: bytes = field(repr=False)
    section_bytes: dict[str, int]
    estimated_bits: dict[str, float]  # per coded attribute group, from the snapped distributions
    model: ScaffoldModel = field(
        repr=False
    )  # the encoder-side quantized model: what the decoder will rebuild


def _renderer_state(model: ScaffoldModel) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(RENDERER_PREFIXES)}


def slots_in_use(keep: torch.Tensor, min_share: float) -> torch.Tensor:
    """Offset slots ``[K]`` that at least ``min_share`` of the anchors (and at least one) use,
    given the per-anchor mask ``keep`` ``[N, K]``."""
    users = keep.sum(dim=0)
    return (users > 0) & (users >= min_share * keep.shape[0])


def encode_scene(
    model: ScaffoldModel,
    entropy: AnchorEntropyModel,
    min_slot_share: float = MIN_SLOT_SHARE,
    cameras: Sequence[Camera] = (),
    max_cameras: int = MAX_CAMERAS,
) -> EncodedScene:
    """Quantize and entropy-code ``model`` with its trained ``entropy`` model (the base layer).

    Offset slots used by fewer than ``min_slot_share`` of the anchors are dropped (0 keeps every
    slot some anchor uses); the renderer and hyperprior rows of unused slots are sent as zeros.
    ``cameras`` (the capture's, e.g. the training views') add the optional ``cameras`` section
    with at most ``max_cameras`` of them spread over the capture (none: no section).
    """
    if not 0.0 <= min_slot_share < 1.0:
        raise ValueError(f"min_slot_share must lie in [0, 1), got {min_slot_share}")
    if not 0 <= max_cameras <= MAX_CAMERAS:
        raise ValueError(f"max_cameras must lie in 0..{MAX_CAMERAS}, got {max_cameras}")
    with torch.no_grad():
        keep = model.active_slots()  # [N, K]
        in_use = slots_in_use(keep, min_slot_share)
        keep &= in_use
        alive = keep.any(dim=1)  # an anchor whose offsets are all masked is dropped
        if not alive.any():
            raise ValueError("no anchor has an offset left to encode (all masked or dropped)")
        cells = model.anchor_cells[alive].numpy().astype(np.uint16)
        order = torch.from_numpy(canonical_order(cells).astype(np.int64))
        ids = alive.nonzero().squeeze(1)[order]
        coded = ScaffoldModel(model.anchor_cells[ids], model.grid, model.config)
        coded.load_state_dict(_renderer_state(model), strict=False)
        coded.zero_unused_slot_outputs(in_use)
        renderer_blob = pack_tensors(_renderer_state(coded), RENDERER_WEIGHTS)
        coded.load_state_dict(unpack_tensors(renderer_blob), strict=False)
        hyperprior = copy.deepcopy(entropy.hyperprior)
        hyperprior.zero_unused_channels("offsets", offset_channels(in_use[None])[0])
        hyper_blob = pack_hyperprior(hyperprior)
        positions = coded.grid.unit_cube(coded.anchor_cells)
        params = hyperprior_params(hyperprior, unpack_hyperprior(hyper_blob, hyperprior), positions)
        mask = keep[ids]  # [N, K]

        payloads: dict[str, bytes] = {}
        estimated: dict[str, float] = {}
        for name, group in hyperprior.groups.items():
            attribute = getattr(coded, GROUP_PARAMETERS[name])
            values = getattr(model, GROUP_PARAMETERS[name]).detach()[ids]
            selected = _coded_entries(name, mask, params[name].mean.shape)
            out = group.compress(values.reshape(len(ids), -1), params[name], selected)
            payloads[name], estimated[name] = out.payload, out.estimated_bits
            attribute.data[:] = out.values.view(attribute.shape)
        coded.mask_logits.data[:] = torch.where(mask, MASK_LOGIT, -MASK_LOGIT)

    meta = {
        "format": "csgaussian",
        "n_anchors": len(ids),
        "scaffold": asdict(model.config),
        "grid": asdict(model.grid),
        "rate": asdict(entropy.config),
    }
    meta_text = schema.writable_json(meta, schema.BASE_META, "cannot encode this model")
    sections = [
        ("meta", zlib.compress(meta_text.encode(), level=9)),
        ("positions", encode_positions(cells[order.numpy()])),
        ("masks", encode_flags(mask.numpy())),
        ("renderer", renderer_blob),
        ("hyperprior", hyper_blob),
        *((group, payloads[group]) for group in hyperprior.groups),
    ]
    stored = spread_cameras(list(cameras), max_cameras)
    if stored:
        sections.append((CAMERAS_SECTION, encode_cameras(stored)))
    data = write_container(sections, optional=OPTIONAL_SECTIONS & {n for n, _ in sections})
    coded.eval()
    return EncodedScene(data, {n: len(p) for n, p in sections}, estimated, coded)


def _coded_entries(group: str, mask: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean ``shape``: which symbols are transmitted (offsets only where the mask is on)."""
    if group == "offsets":
        return offset_channels(mask).numpy()
    return np.ones(shape, dtype=bool)


def decode_scene(data: bytes, base_only: bool = False, max_memory: int | None = None) -> Scene:
    """Rebuild the scene from a stream alone; raises StreamError on anything malformed.

    The base layer is always decoded. The semantic layer is decoded unless ``base_only``; a file
    cut inside it, or one whose semantic layer this build does not know, decodes as a base-only
    scene whose ``notes`` say why. The edit layer (:mod:`csgaussian.codec.edit_layer`) is read
    in either case (its selections need no semantics); a cut or unknown one is left out, noted.
    The optional ``cameras`` section becomes ``Scene.cameras``; optional sections this build
    does not know are skipped, noted (docs/format.md §2.1).

    Every metadata field is checked against its schema (:mod:`csgaussian.codec.schema`) and the
    memory the decoding needs is computed from them before anything is allocated: a file that
    needs more than ``max_memory`` bytes (default :data:`budget.DEFAULT_MAX_MEMORY`, or the
    limit set by :func:`budget.memory_limit`) is refused, and so is an edit list whose
    Gaussians (duplicates included) would need more to render
    (:func:`budget.check_edits_fit`), before the base layer is decoded.
    """
    limit = budget.resolve_limit(max_memory)
    sections, layers, notes = _known_sections(data, read_container(data, partial_ok=True))
    meta = _read_meta(sections, layers)
    semantic_names = [n for n, layer in layers.items() if layer == "semantic"]
    need = budget.base_memory(meta.config, meta.rate, meta.n_anchors)
    semantic_meta = None
    if base_only and semantic_names:
        notes.append("semantic layer skipped (base only)")
    elif any(name not in sections for name in semantic_names):
        notes.append("semantic layer truncated: decoded the base layer only")
    elif semantic_names:
        semantic_meta = read_semantic_meta(sections, layers)
        if semantic_meta.known:
            need = need | semantic_meta.memory(meta.n_anchors, meta.config)
        else:
            notes.append(semantic_meta.note)
    edit_meta, edit_notes = read_edit_meta(sections, layers, meta.n_anchors, meta.config.n_offsets)
    notes += edit_notes
    if edit_meta is not None:
        need = need | edit_meta.memory()
    budget.check_memory(need, limit)
    mask = torch.from_numpy(
        decode_flags(sections["masks"], (meta.n_anchors, meta.config.n_offsets))
    )
    edits = [] if edit_meta is None else decode_edits(sections, edit_meta)
    budget.check_edits_fit(mask, edits, limit, held=sum(need.held.values()))
    cameras = decode_cameras(sections[CAMERAS_SECTION]) if CAMERAS_SECTION in sections else []
    model = _decode_base(sections, meta, mask)
    semantics = None
    if semantic_meta is not None and semantic_meta.known:
        semantics = decode_semantic_layer(sections, model, semantic_meta)
    return Scene(model, semantics, notes, edits, cameras)


def with_edits(data: bytes, edits: list[SceneEdit]) -> bytes:
    """The stream ``data`` with its edit layer replaced by ``edits`` (none: no edit layer).

    The base and semantic layers' sections (optional ones included, with their optional bit)
    are copied through byte for byte; nothing is re-encoded. The stream must be whole (edits are
    appended after its last layer).
    """
    sections = read_container(data)
    layers = section_layers(data)
    meta = _read_meta(*_known_sections(data, sections)[:2])
    kept = [(name, payload) for name, payload in sections.items() if layers[name] != "edit"]
    kept_layers = {name: layers[name] for name, _ in kept}
    optional = optional_sections(data) & set(kept_layers)
    if edits:
        payload = encode_edit_layer(edits, meta.n_anchors, meta.config.n_offsets)
        kept.append((EDIT_SECTION, payload))
        kept_layers[EDIT_SECTION] = "edit"
    return write_container(kept, kept_layers, optional)


def without_cameras(data: bytes) -> bytes:
    """The stream ``data`` without its optional ``cameras`` section (if any); every other
    section is copied byte for byte, with its optional bit."""
    sections = read_container(data)
    if CAMERAS_SECTION not in sections:
        return data
    layers = section_layers(data)
    kept = [(name, payload) for name, payload in sections.items() if name != CAMERAS_SECTION]
    optional = optional_sections(data) - {CAMERAS_SECTION}
    return write_container(kept, {n: layers[n] for n, _ in kept}, optional)


def _known_sections(
    data: bytes, sections: dict[str, bytes]
) -> tuple[dict[str, bytes], dict[str, str], list[str]]:
    """``sections`` and their layers without the optional sections this build does not know
    (docs/format.md §2.1), and a note naming those; a known section whose optional bit is wrong
    is refused (StreamError)."""
    skipped = skipped_sections(data, KNOWN_SECTIONS)
    layers = {n: layer for n, layer in section_layers(data).items() if n not in skipped}
    notes = [f"skipped unknown optional section(s) {', '.join(sorted(skipped))}"] if skipped else []
    return {n: p for n, p in sections.items() if n not in skipped}, layers, notes


def _decode_base(sections: dict[str, bytes], meta: BaseMeta, mask: torch.Tensor) -> ScaffoldModel:
    """The base layer's model, with its decoded offset ``mask`` ``[N, K]``."""
    config, grid, rate, n_anchors = meta.config, meta.grid, meta.rate, meta.n_anchors
    cells = torch.from_numpy(decode_positions(sections["positions"]).astype(np.int64))
    if cells.shape[0] != n_anchors:
        raise StreamError(f"positions hold {cells.shape[0]} anchors, metadata says {n_anchors}")
    model = ScaffoldModel(cells, grid, config)
    try:
        renderer_shapes = {k: v.shape for k, v in _renderer_state(model).items()}
        model.load_state_dict(unpack_tensors(sections["renderer"], renderer_shapes), strict=False)
        hyperprior = AnchorEntropyModel(model, rate).hyperprior
        state = unpack_hyperprior(sections["hyperprior"], hyperprior)
        params = hyperprior_params(hyperprior, state, grid.unit_cube(cells))
    except RuntimeError as err:
        raise StreamError(
            f"network weights do not fit the metadata ({err})".splitlines()[0]
        ) from None
    with torch.no_grad():
        for name, group in hyperprior.groups.items():
            attribute = getattr(model, GROUP_PARAMETERS[name])
            selected = _coded_entries(name, mask, params[name].mean.shape)
            values = group.decompress(sections[name], params[name], selected)
            if not torch.isfinite(values).all():
                raise StreamError(f"section '{name}' decodes to values beyond float32")
            attribute.data[:] = values.view(attribute.shape)
        model.mask_logits.data[:] = torch.where(mask, MASK_LOGIT, -MASK_LOGIT)
    model.eval()
    return model


BASE_SECTIONS = ("meta", "positions", "masks", "renderer", "hyperprior", *GROUP_PARAMETERS)
"""The base layer's required sections: a stream of this format version holds these, the
optional ones of :data:`OPTIONAL_SECTIONS` it has, and base sections this build does not know
only when they are optional (skipped)."""
OPTIONAL_SECTIONS = frozenset({CAMERAS_SECTION})
"""The optional sections this build knows (written with the container's optional bit)."""
KNOWN_SECTIONS: dict[str, bool] = {
    **dict.fromkeys((*BASE_SECTIONS, *SEMANTIC_SECTIONS, EDIT_SECTION), False),
    **dict.fromkeys(OPTIONAL_SECTIONS, True),
}
"""Every section name this build reads -> whether it is optional."""


@dataclass(frozen=True)
class BaseMeta:
    """The base layer's validated metadata."""

    config: ScaffoldConfig
    grid: AnchorGrid
    rate: RateConfig
    n_anchors: int


def _read_meta(sections: dict[str, bytes], layers: dict[str, str]) -> BaseMeta:
    """The base metadata, checked against its schema and the other sections' headers."""
    missing = [name for name in BASE_SECTIONS if name not in sections]
    if missing:
        raise StreamError(f"stream lacks section(s) {', '.join(missing)}")
    misplaced = [name for name in BASE_SECTIONS if layers.get(name) != "base"]
    if misplaced:
        raise StreamError(f"base section(s) {', '.join(misplaced)} outside the base layer")
    known = (*BASE_SECTIONS, *OPTIONAL_SECTIONS)
    unknown = [n for n, layer in layers.items() if layer == "base" and n not in known]
    if unknown:
        raise StreamError(f"unexpected section(s) {', '.join(unknown)} in the base layer")
    misplaced = [n for n in OPTIONAL_SECTIONS if n in layers and layers[n] != "base"]
    if misplaced:
        raise StreamError(f"base section(s) {', '.join(misplaced)} outside the base layer")
    meta = schema.read_json_meta(sections["meta"], META_LIMIT, "stream metadata")
    if not isinstance(meta, dict) or meta.get("format") != "csgaussian":
        raise StreamError("stream metadata is not csgaussian's")
    fields = schema.parse(meta, schema.BASE_META, "bad stream metadata")
    n_points, depth = positions_header(sections["positions"])
    if n_points != fields["n_anchors"]:
        raise StreamError(f"positions hold {n_points} anchors, metadata says {fields['n_anchors']}")
    if depth > fields["grid"].depth:
        raise StreamError(
            f"positions span depth {depth}, beyond the metadata's grid.depth {fields['grid'].depth}"
        )
    return BaseMeta(fields["scaffold"], fields["grid"], fields["rate"], fields["n_anchors"])
