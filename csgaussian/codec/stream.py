"""The csgaussian stream: a trained scene to bytes and back (METHOD §3, §6).

Base layer, in order: ``meta`` (zlib-compressed JSON: shapes, lattice, entropy-model config),
``positions`` (octree), ``masks`` (offset masks, one probability per offset slot), ``renderer``
(the three MLPs and the background, int8-coded), ``hyperprior`` (MLP #1, int10-coded), then
``feature``, ``scaling`` and ``offsets`` coded with the hyperprior's per-symbol Gaussians. The
decoder needs this file and nothing else.

Both sides derive every coding distribution from the same inputs: the decoded lattice cells, the
decoded hyperprior weights, evaluated in float64, then snapped by
:func:`csgaussian.codec.attributes.snap_distribution_params`.
"""

from __future__ import annotations

import copy
import json
import struct
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..entropy.anchors import GROUP_PARAMETERS, AnchorEntropyModel, RateConfig, offset_channels
from ..entropy.hyperprior import AttributeHyperprior, to_symbol_units
from ..scene.scaffold import AnchorGrid, ScaffoldConfig, ScaffoldModel
from ..train.config import dataclass_from_dict
from .attributes import decode_gaussian, encode_gaussian, estimate_bits
from .container import StreamError, read_container, write_container
from .flags import decode_flags, encode_flags
from .octree import MAX_POINTS, canonical_order, decode_positions, encode_positions
from .weights import pack_tensors, unpack_tensors

RENDERER_WEIGHTS = "int8"
"""Storage of the renderer MLPs (ours): 255 levels per row, entropy-coded, about half of float16's
bytes; kitchen test PSNR moves by -0.04 dB against float16 (measured). The encoder renders with
the decoded weights too, so decoded images match."""
HYPERPRIOR_WEIGHTS = "int10"
"""Storage of the hyperprior MLP (ours): the coding distributions and the quantization steps come
from the decoded weights on both sides. Kitchen, lambda 0.004 (measured): float16 8.4 KB; int10
5.9 KB, attribute bits +0.3 KB, test PSNR within 0.05 dB; int8 4.9 KB but the steps move enough
to cost 0.28 dB."""
META_LIMIT = 1 << 16
"""Most bytes the decompressed metadata may take (bounds a zlib bomb)."""
MIN_SLOT_SHARE = 0.005
"""An offset slot used by fewer than this share of the anchors is dropped at encoding (ours).
Each slot has its own output rows in the renderer MLPs and hyperprior head, about 0.5 KB in the
stream however few Gaussians use it. Kitchen, lambda 0.003 (measured): six of the ten slots
serve 0 to 57 of 6,975 anchors; dropping the five under 0.5% (0 to 24 users each) takes the
stream from 112.8 to 110.1 KB and the test PSNR from 38.014 to 37.988 dB; 1% also drops the
57-anchor slot (109.3 KB, 37.964 dB)."""
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


def _coding_params(
    coder: AnchorEntropyModel, hyperprior_state: dict[str, torch.Tensor], model: ScaffoldModel
) -> dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]]:
    """Per group: step ``[N, 1]`` (float64), means and scales ``[N, C]`` in symbol units.

    ``coder`` is a float64 entropy model for ``model``; it receives the decoded hyperprior weights.
    """
    coder.hyperprior.load_state_dict({k: v.double() for k, v in hyperprior_state.items()})
    with torch.no_grad():
        params = coder.hyperprior.params(model.grid.unit_cube(model.anchor_cells))
    out = {}
    for group, p in params.items():
        step, mean, scale = to_symbol_units(p, coder.config.quant.q0(group))
        out[group] = (step, mean.numpy(), scale.numpy())
    return out


def pack_hyperprior(hyperprior: AttributeHyperprior) -> bytes:
    """Hyperprior weights: HYPERPRIOR_WEIGHTS tensors, then the sign-only tables as flags."""
    state = hyperprior.state_dict()
    binary = hyperprior.binary_parameters()
    dense = pack_tensors({k: v for k, v in state.items() if k not in binary}, HYPERPRIOR_WEIGHTS)
    flags = encode_flags(np.concatenate([state[k].numpy().ravel() >= 0 for k in binary] or [[]]))
    return struct.pack("<I", len(dense)) + dense + flags


def unpack_hyperprior(blob: bytes, template: AnchorEntropyModel) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_hyperprior`; ``template`` gives the shapes of the sign tables."""
    if len(blob) < 4:
        raise StreamError("truncated hyperprior section")
    (n_dense,) = struct.unpack_from("<I", blob)
    if n_dense > len(blob) - 4:
        raise StreamError("truncated hyperprior section")
    shapes = template.hyperprior.state_dict()
    binary = template.hyperprior.binary_parameters()
    dense_shapes = {k: v.shape for k, v in shapes.items() if k not in binary}
    state = unpack_tensors(blob[4 : 4 + n_dense], dense_shapes)
    n_signs = sum(shapes[name].numel() for name in binary)
    signs = decode_flags(blob[4 + n_dense :], (n_signs, 1)).ravel()
    offset = 0
    for name in binary:
        count = shapes[name].numel()
        chunk = torch.from_numpy(signs[offset : offset + count].copy())
        state[name] = torch.where(chunk, 1.0, -1.0).view(shapes[name].shape)
        offset += count
    return state


def _dequantize(symbols: np.ndarray, step: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Values ``symbols * step`` as float32 ``shape``: the one formula both sides use."""
    values = torch.from_numpy(symbols.astype(np.float64)).view(step.shape[0], -1) * step
    return values.float().view(shape)


def slots_in_use(keep: torch.Tensor, min_share: float) -> torch.Tensor:
    """Offset slots ``[K]`` that at least ``min_share`` of the anchors (and at least one) use,
    given the per-anchor mask ``keep`` ``[N, K]``."""
    users = keep.sum(dim=0)
    return (users > 0) & (users >= min_share * keep.shape[0])


def encode_scene(
    model: ScaffoldModel, entropy: AnchorEntropyModel, min_slot_share: float = MIN_SLOT_SHARE
) -> EncodedScene:
    """Quantize and entropy-code ``model`` with its trained ``entropy`` model.

    Offset slots used by fewer than ``min_slot_share`` of the anchors are dropped (0 keeps every
    slot some anchor uses); the renderer and hyperprior rows of unused slots are sent as zeros.
    """
    if not 0.0 <= min_slot_share < 1.0:
        raise ValueError(f"min_slot_share must lie in [0, 1), got {min_slot_share}")
    with torch.no_grad():
        keep = model.offset_mask(use_mask=True) > 0.5  # [N, K]
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
        coder = AnchorEntropyModel(coded, entropy.config).double()
        params = _coding_params(coder, unpack_hyperprior(hyper_blob, entropy), coded)
        mask = keep[ids]  # [N, K]

        payloads: dict[str, bytes] = {}
        estimated: dict[str, float] = {}
        for group, name in GROUP_PARAMETERS.items():
            step, mean, scale = params[group]
            values = getattr(model, name).detach()[ids].double().reshape(len(ids), -1)
            symbols = torch.round(values / step).numpy().astype(np.int64)
            selected = _coded_entries(group, mask, symbols.shape)
            payloads[group] = encode_gaussian(
                symbols[selected].astype(np.int32), mean[selected], scale[selected]
            )
            estimated[group] = estimate_bits(symbols[selected], mean[selected], scale[selected])
            symbols[~selected] = 0
            getattr(coded, name).data[:] = _dequantize(symbols, step, getattr(coded, name).shape)
        coded.mask_logits.data[:] = torch.where(mask, MASK_LOGIT, -MASK_LOGIT)

    meta = {
        "format": "csgaussian",
        "n_anchors": len(ids),
        "scaffold": asdict(model.config),
        "grid": asdict(model.grid),
        "rate": asdict(entropy.config),
    }
    sections = [
        ("meta", zlib.compress(json.dumps(meta).encode(), level=9)),
        ("positions", encode_positions(cells[order.numpy()])),
        ("masks", encode_flags(mask.numpy())),
        ("renderer", renderer_blob),
        ("hyperprior", hyper_blob),
        *((group, payloads[group]) for group in GROUP_PARAMETERS),
    ]
    data = write_container(sections)
    coded.eval()
    return EncodedScene(data, {n: len(p) for n, p in sections}, estimated, coded)


def _coded_entries(group: str, mask: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean ``shape``: which symbols are transmitted (offsets only where the mask is on)."""
    if group == "offsets":
        return offset_channels(mask).numpy()
    return np.ones(shape, dtype=bool)


def decode_scene(data: bytes) -> ScaffoldModel:
    """Rebuild the scene from a stream alone; raises StreamError on anything malformed."""
    sections = read_container(data, partial_ok=True)
    config, grid, rate, n_anchors = _read_meta(sections)
    cells = torch.from_numpy(decode_positions(sections["positions"]).astype(np.int64))
    if cells.shape[0] != n_anchors:
        raise StreamError(f"positions hold {cells.shape[0]} anchors, metadata says {n_anchors}")
    model = ScaffoldModel(cells, grid, config)
    mask = torch.from_numpy(decode_flags(sections["masks"], (n_anchors, config.n_offsets)))
    try:
        renderer_shapes = {k: v.shape for k, v in _renderer_state(model).items()}
        model.load_state_dict(unpack_tensors(sections["renderer"], renderer_shapes), strict=False)
        coder = AnchorEntropyModel(model, rate).double()
        params = _coding_params(coder, unpack_hyperprior(sections["hyperprior"], coder), model)
    except RuntimeError as err:
        raise StreamError(
            f"network weights do not fit the metadata ({err})".splitlines()[0]
        ) from None
    with torch.no_grad():
        for group, name in GROUP_PARAMETERS.items():
            step, mean, scale = params[group]
            selected = _coded_entries(group, mask, mean.shape)
            symbols = np.zeros(mean.shape, dtype=np.int64)
            try:
                coded = decode_gaussian(sections[group], mean[selected], scale[selected])
            except ValueError as err:  # distributions from corrupt weights (NaN, huge means)
                raise StreamError(f"cannot decode section '{group}' ({err})") from None
            symbols[selected] = coded
            getattr(model, name).data[:] = _dequantize(symbols, step, getattr(model, name).shape)
        model.mask_logits.data[:] = torch.where(mask, MASK_LOGIT, -MASK_LOGIT)
    model.eval()
    return model


META_LIMITS = {
    "n_anchors": MAX_POINTS,
    "scaffold.feature_dim": 1024,
    "scaffold.n_offsets": 64,
    "scaffold.hidden_dim": 1024,
    "grid.depth": 16,
    "rate.inr.n_freqs": 24,
    "rate.inr.mlp.width": 1024,
    "rate.inr.mlp.depth": 16,
    "rate.hashgrid.n_levels": 32,
    "rate.hashgrid.n_features": 16,
    "rate.hashgrid.log2_table_size": 22,
    "rate.hashgrid.mlp.width": 1024,
    "rate.hashgrid.mlp.depth": 16,
}
"""Bounds on metadata fields that size allocations: an untrusted header cannot ask for more."""


def _read_meta(sections: dict[str, bytes]) -> tuple[ScaffoldConfig, AnchorGrid, RateConfig, int]:
    required = ("meta", "positions", "masks", "renderer", "hyperprior", *GROUP_PARAMETERS)
    missing = [name for name in required if name not in sections]
    if missing:
        raise StreamError(f"stream lacks section(s) {', '.join(missing)}")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(sections["meta"], META_LIMIT)
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise StreamError(f"stream metadata is not one zlib stream of <= {META_LIMIT} bytes")
        meta = json.loads(text.decode())
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise StreamError("stream metadata is not valid compressed JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != "csgaussian":
        raise StreamError("stream metadata is not csgaussian's")
    try:
        for key, limit in META_LIMITS.items():
            value = meta
            for part in key.split("."):
                value = value[part]
            if not isinstance(value, int) or not 0 < value <= limit:
                raise ValueError(f"{key} = {value!r} is outside 1..{limit}")
        config = ScaffoldConfig(**meta["scaffold"])
        grid = AnchorGrid(**{**meta["grid"], "origin": tuple(meta["grid"]["origin"])})
        rate = dataclass_from_dict(RateConfig, meta["rate"])
        n_anchors = meta["n_anchors"]
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise StreamError(f"bad stream metadata ({type(err).__name__}: {err})") from None
    return config, grid, rate, n_anchors
