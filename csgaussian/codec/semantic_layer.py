"""The semantic layer of a stream (METHOD §5, §6): everything a receiver needs to query.

Sections, all in the container's "semantic" layer, after the base layer:

- ``semantic_meta``: zlib JSON: layer version, field and rate configs, text-space id, sizes;
- ``semantic_mlp``: the feature MLP, int8-coded (as the renderer MLPs);
- ``semantic_hyperprior``: hyperprior MLP #2, int10-coded (as MLP #1);
- ``semantic``: the latents ŝ, coded with MLP #2's per-value Gaussians (``CodedGroup``);
- ``semantic_codebook``: coarse and fine centres (float16) and the fine centres' validity flags;
- ``semantic_language``: the leaf -> entry index and the language table (int8 rows).

The layer carries its own version: a reader that does not know it still decodes the base layer
and says so. Every count that sizes an allocation is checked against the metadata bounds and
the base layer before use.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict

import numpy as np
import torch

from ..dataclass_io import dataclass_from_dict
from ..scene.scaffold import ScaffoldModel
from ..semantics.codebook import Codebook
from ..semantics.field import (
    SEMANTIC_GROUP,
    SemanticConfig,
    SemanticEntropyModel,
    SemanticField,
    SemanticRateConfig,
)
from ..semantics.layer import SemanticLayer
from .container import StreamError
from .flags import decode_flags, encode_flags
from .hyperprior import hyperprior_params, pack_hyperprior, unpack_hyperprior
from .weights import pack_tensors, unpack_tensors

SEMANTIC_LAYER_VERSION = 1
"""Version of the semantic layer's sections; readers decode only versions they know."""
SECTIONS = (
    "semantic_meta",
    "semantic_mlp",
    "semantic_hyperprior",
    SEMANTIC_GROUP,
    "semantic_codebook",
    "semantic_language",
)
FIELD_WEIGHTS = "int8"
"""Feature MLP storage (as the renderer MLPs)."""
CENTRE_DTYPE = "float16"
"""Codebook centres: a few hundred values; float16 keeps leaf assignment stable."""
LANGUAGE_WEIGHTS = "int8"
"""Language table rows at 8 bits per value (SEGMENTATION §5)."""
META_LIMIT = 1 << 14
LIMITS = {
    "semantic.latent_dim": 64,
    "semantic.feature_dim": 64,
    "semantic.hidden_dim": 1024,
    "rate.inr.n_freqs": 24,
    "rate.inr.mlp.width": 1024,
    "rate.inr.mlp.depth": 16,
    "codebook.n_coarse": 1024,
    "codebook.n_fine": 64,
    "language_dim": 4096,
    "n_entries": 32767,
}
"""Upper bounds on the metadata fields that size allocations (all are at least 1, but
``n_entries``: a layer whose leaves matched no mask has an empty language table)."""
_LEAF_COUNT = struct.Struct("<I")
_BLOB_LEN = struct.Struct("<I")


def _field_positions(model: ScaffoldModel) -> torch.Tensor:
    return model.grid.unit_cube(model.anchor_cells)


def _params(entropy_template: SemanticEntropyModel, state: dict, model: ScaffoldModel) -> dict:
    context = model.features.detach() if entropy_template.rate.conditional else None
    return hyperprior_params(entropy_template.hyperprior, state, _field_positions(model), context)[
        SEMANTIC_GROUP
    ]


def encode_semantic_field(
    model: ScaffoldModel, field: SemanticField, entropy: SemanticEntropyModel
) -> tuple[dict[str, bytes], float, SemanticField]:
    """Code the latents, the feature MLP and MLP #2 of a trained field.

    Returns the payloads by section name, the estimated bits of the latents and the field as
    the decoder will rebuild it (quantized latents, int8 MLP): fit the codebook on that one.
    """
    with torch.no_grad():
        mlp_blob = pack_tensors(field.mlp.state_dict(), FIELD_WEIGHTS)
        hyper_blob = pack_hyperprior(entropy.hyperprior)
        params = _params(entropy, unpack_hyperprior(hyper_blob, entropy.hyperprior), model)
        group = entropy.hyperprior.groups[SEMANTIC_GROUP]
        coded = group.compress(field.latents.detach(), params)
        decoded = SemanticField(field.n_anchors, field.config)
        decoded.mlp.load_state_dict(unpack_tensors(mlp_blob))
        decoded.latents.data[:] = coded.values
    payloads = {
        "semantic_mlp": mlp_blob,
        "semantic_hyperprior": hyper_blob,
        SEMANTIC_GROUP: coded.payload,
    }
    return payloads, coded.estimated_bits, decoded.eval()


def semantic_sections(
    field_payloads: dict[str, bytes], layer: SemanticLayer, rate: SemanticRateConfig
) -> list[tuple[str, bytes]]:
    """All sections of the layer, in stream order; ``layer`` holds the decoder-side field."""
    codebook = layer.codebook
    meta = {
        "version": SEMANTIC_LAYER_VERSION,
        "semantic": asdict(layer.field.config),
        "rate": asdict(rate),
        "text_space": layer.text_space,
        "language_dim": int(layer.language.shape[1]),
        "n_entries": int(layer.language.shape[0]),
        "codebook": {
            "n_coarse": int(codebook.fine.shape[0]),
            "n_fine": int(codebook.fine.shape[1]),
            "position_weight": float(codebook.position_weight),
        },
    }
    centres = pack_tensors({"coarse": codebook.coarse, "fine": codebook.fine}, CENTRE_DTYPE)
    codebook_blob = (
        _BLOB_LEN.pack(len(centres)) + centres + encode_flags(codebook.fine_valid.numpy())
    )
    entries = layer.leaf_entry.numpy().astype("<i2")
    table = pack_tensors({"language": layer.language}, LANGUAGE_WEIGHTS)
    language_blob = _LEAF_COUNT.pack(len(entries)) + entries.tobytes() + table
    return [
        ("semantic_meta", zlib.compress(json.dumps(meta).encode(), level=9)),
        ("semantic_mlp", field_payloads["semantic_mlp"]),
        ("semantic_hyperprior", field_payloads["semantic_hyperprior"]),
        (SEMANTIC_GROUP, field_payloads[SEMANTIC_GROUP]),
        ("semantic_codebook", codebook_blob),
        ("semantic_language", language_blob),
    ]


def decode_semantic_layer(
    sections: dict[str, bytes], model: ScaffoldModel
) -> tuple[SemanticLayer | None, list[str]]:
    """The semantic layer over the decoded base ``model``; (None, notes) for a layer version
    this build does not know. Raises StreamError on a malformed layer."""
    meta = _read_meta(sections)
    if meta["version"] != SEMANTIC_LAYER_VERSION:
        note = (
            f"semantic layer version {meta['version']} is not known to this build (it reads "
            f"{SEMANTIC_LAYER_VERSION}): decoded the base layer only"
        )
        return None, [note]
    missing = [name for name in SECTIONS if name not in sections]
    if missing:
        raise StreamError(f"semantic layer lacks section(s) {', '.join(missing)}")
    try:
        config = SemanticConfig(**meta["semantic"])
        rate = dataclass_from_dict(SemanticRateConfig, meta["rate"])
    except (TypeError, ValueError) as err:
        raise StreamError(f"bad semantic metadata ({type(err).__name__}: {err})") from None
    field = SemanticField(model.n_anchors, config)
    entropy = SemanticEntropyModel(config, rate, model.config.feature_dim)
    try:
        mlp_shapes = {k: v.shape for k, v in field.mlp.state_dict().items()}
        field.mlp.load_state_dict(unpack_tensors(sections["semantic_mlp"], mlp_shapes))
        state = unpack_hyperprior(sections["semantic_hyperprior"], entropy.hyperprior)
        params = _params(entropy, state, model)
    except RuntimeError as err:
        message = f"semantic weights do not fit the metadata ({err})".splitlines()[0]
        raise StreamError(message) from None
    group = entropy.hyperprior.groups[SEMANTIC_GROUP]
    with torch.no_grad():
        field.latents.data[:] = group.decompress(sections[SEMANTIC_GROUP], params)
    codebook = _read_codebook(sections["semantic_codebook"], meta, config.feature_dim)
    entries, language = _read_language(sections["semantic_language"], meta, codebook.n_leaves)
    layer = SemanticLayer(field.eval(), codebook, language, entries, meta["text_space"])
    return layer, []


def _read_meta(sections: dict[str, bytes]) -> dict:
    if "semantic_meta" not in sections:
        raise StreamError("semantic layer lacks its metadata section")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(sections["semantic_meta"], META_LIMIT)
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise StreamError(f"semantic metadata is not one zlib stream of <= {META_LIMIT} bytes")
        meta = json.loads(text.decode())
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise StreamError("semantic metadata is not valid compressed JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("version"), int):
        raise StreamError("semantic metadata has no integer version")
    if meta["version"] != SEMANTIC_LAYER_VERSION:
        return meta
    if not isinstance(meta.get("text_space"), str):
        raise StreamError("semantic metadata: text_space is not a string")
    for key, limit in LIMITS.items():
        value = meta
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        low = 0 if key == "n_entries" else 1
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= limit:
            raise StreamError(f"semantic metadata: {key} = {value!r} is outside {low}..{limit}")
    weight = meta["codebook"].get("position_weight")
    if not isinstance(weight, int | float) or not 0 <= weight < 1e6:
        raise StreamError(f"semantic metadata: codebook.position_weight = {weight!r} is invalid")
    return meta


def _read_codebook(blob: bytes, meta: dict, feature_dim: int) -> Codebook:
    k1, k2 = meta["codebook"]["n_coarse"], meta["codebook"]["n_fine"]
    if len(blob) < _BLOB_LEN.size:
        raise StreamError("truncated semantic codebook")
    (n_centres,) = _BLOB_LEN.unpack_from(blob)
    if n_centres > len(blob) - _BLOB_LEN.size:
        raise StreamError("truncated semantic codebook")
    shapes = {
        "coarse": torch.Size([k1, feature_dim + 3]),
        "fine": torch.Size([k1, k2, feature_dim]),
    }
    centres = unpack_tensors(blob[_BLOB_LEN.size : _BLOB_LEN.size + n_centres], shapes)
    valid = decode_flags(blob[_BLOB_LEN.size + n_centres :], (k1, k2))
    if not all(torch.isfinite(c).all() for c in centres.values()):
        raise StreamError("semantic codebook has non-finite centres")
    if not valid.any(axis=1).all():
        raise StreamError("semantic codebook has a coarse cluster without a fine centre")
    return Codebook(
        coarse=centres["coarse"],
        fine=centres["fine"],
        fine_valid=torch.from_numpy(valid),
        position_weight=float(meta["codebook"]["position_weight"]),
    )


def _read_language(blob: bytes, meta: dict, n_leaves: int) -> tuple[torch.Tensor, torch.Tensor]:
    n_entries, dim = meta["n_entries"], meta["language_dim"]
    if len(blob) < _LEAF_COUNT.size:
        raise StreamError("truncated semantic language section")
    (count,) = _LEAF_COUNT.unpack_from(blob)
    if count != n_leaves:
        raise StreamError(f"semantic language maps {count} leaves, the codebook has {n_leaves}")
    end = _LEAF_COUNT.size + 2 * count
    if end > len(blob):
        raise StreamError("truncated semantic language section")
    entries = np.frombuffer(blob, dtype="<i2", count=count, offset=_LEAF_COUNT.size)
    if np.any(entries < -1) or np.any(entries >= n_entries):
        raise StreamError(f"semantic language: leaf entry outside -1..{n_entries - 1}")
    table = unpack_tensors(blob[end:], {"language": torch.Size([n_entries, dim])})["language"]
    norms = table.norm(dim=1)
    if not torch.isfinite(table).all() or torch.any(norms == 0):
        raise StreamError("semantic language table has zero or non-finite rows")
    return torch.from_numpy(entries.astype(np.int64)), table / norms[:, None]
