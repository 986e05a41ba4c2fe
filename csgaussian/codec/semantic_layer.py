"""The semantic layer of a stream (docs/format.md §6): everything a receiver needs to query.

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

import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..scene.scaffold import ScaffoldConfig, ScaffoldModel
from ..semantics.codebook import Codebook
from ..semantics.field import (
    SEMANTIC_GROUP,
    SemanticConfig,
    SemanticEntropyModel,
    SemanticField,
    SemanticRateConfig,
)
from ..semantics.layer import SemanticLayer
from . import budget, schema
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
"""Language table rows at 8 bits per value (docs/method.md §5)."""
META_LIMIT = 1 << 14
"""Most bytes the decompressed semantic metadata may take (bounds a zlib bomb)."""
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


def transmitted_codebook(codebook: Codebook) -> Codebook:
    """The codebook as the receiver decodes it (centres rounded to ``CENTRE_DTYPE``): the
    sender associates leaves with masks through this one, so both assign the same leaves."""
    dtype = getattr(torch, CENTRE_DTYPE)
    return Codebook(
        coarse=codebook.coarse.to(dtype).float(),
        fine=codebook.fine.to(dtype).float(),
        fine_valid=codebook.fine_valid,
        position_weight=codebook.position_weight,
    )


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
    meta_text = schema.writable_json(meta, schema.SEMANTIC_META, "cannot encode this layer")
    return [
        ("semantic_meta", zlib.compress(meta_text.encode(), level=9)),
        ("semantic_mlp", field_payloads["semantic_mlp"]),
        ("semantic_hyperprior", field_payloads["semantic_hyperprior"]),
        (SEMANTIC_GROUP, field_payloads[SEMANTIC_GROUP]),
        ("semantic_codebook", codebook_blob),
        ("semantic_language", language_blob),
    ]


@dataclass(frozen=True)
class SemanticMeta:
    """The semantic layer's metadata: its version and, for a known version, every field
    validated against :data:`csgaussian.codec.schema.SEMANTIC_META`."""

    version: int
    config: SemanticConfig | None = None
    rate: SemanticRateConfig | None = None
    text_space: str = ""
    language_dim: int = 0
    n_entries: int = 0
    n_coarse: int = 0
    n_fine: int = 0
    position_weight: float = 0.0

    @property
    def known(self) -> bool:
        """Whether this build reads the layer's version."""
        return self.version == SEMANTIC_LAYER_VERSION

    @property
    def note(self) -> str:
        return (
            f"semantic layer version {self.version} is not known to this build (it reads "
            f"{SEMANTIC_LAYER_VERSION}): decoded the base layer only"
        )

    def memory(self, n_anchors: int, scaffold: ScaffoldConfig) -> dict[str, int]:
        """Bytes decoding the layer needs over ``n_anchors`` anchors (``budget``)."""
        assert self.config is not None and self.rate is not None
        return budget.semantic_memory(
            self.config,
            self.rate,
            n_anchors,
            scaffold,
            (self.n_coarse, self.n_fine),
            (self.n_entries, self.language_dim),
        )


def read_semantic_meta(sections: dict[str, bytes], layers: dict[str, str]) -> SemanticMeta:
    """The layer's metadata; for a known version, also checks that the layer holds exactly its
    sections. Raises StreamError on malformed metadata or sections."""
    if "semantic_meta" not in sections or layers.get("semantic_meta") != "semantic":
        raise StreamError("semantic layer lacks its metadata section")
    meta = schema.read_json_meta(sections["semantic_meta"], META_LIMIT, "semantic metadata")
    version = meta.get("version") if isinstance(meta, dict) else None
    if type(version) is not int:
        raise StreamError("semantic metadata has no integer version")
    if version != SEMANTIC_LAYER_VERSION:
        return SemanticMeta(version)
    names = [name for name, layer in layers.items() if layer == "semantic"]
    missing = [name for name in SECTIONS if name not in names]
    if missing:
        raise StreamError(f"semantic layer lacks section(s) {', '.join(missing)}")
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise StreamError(f"unexpected section(s) {', '.join(unknown)} in the semantic layer")
    fields = schema.parse(meta, schema.SEMANTIC_META, "bad semantic metadata")
    codebook = fields["codebook"]
    return SemanticMeta(
        version,
        fields["semantic"],
        fields["rate"],
        fields["text_space"],
        fields["language_dim"],
        fields["n_entries"],
        codebook["n_coarse"],
        codebook["n_fine"],
        codebook["position_weight"],
    )


def decode_semantic_layer(
    sections: dict[str, bytes], model: ScaffoldModel, meta: SemanticMeta
) -> SemanticLayer:
    """The semantic layer over the decoded base ``model``, from its validated ``meta`` (of a
    known version). Raises StreamError on a malformed layer."""
    config, rate = meta.config, meta.rate
    assert config is not None and rate is not None, "decode only a known layer version"
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
        latents = group.decompress(sections[SEMANTIC_GROUP], params)
        if not torch.isfinite(latents).all():
            raise StreamError(f"section '{SEMANTIC_GROUP}' decodes to values beyond float32")
        field.latents.data[:] = latents
    codebook = _read_codebook(sections["semantic_codebook"], meta, config.feature_dim)
    entries, language = _read_language(sections["semantic_language"], meta, codebook.n_leaves)
    return SemanticLayer(field.eval(), codebook, language, entries, meta.text_space)


def _read_codebook(blob: bytes, meta: SemanticMeta, feature_dim: int) -> Codebook:
    k1, k2 = meta.n_coarse, meta.n_fine
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
        position_weight=meta.position_weight,
    )


def _read_language(
    blob: bytes, meta: SemanticMeta, n_leaves: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n_entries, dim = meta.n_entries, meta.language_dim
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
