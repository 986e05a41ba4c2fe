"""The edit layer of a stream: a receiver's edit list, appended without re-encoding anything.

One section, ``edits``, in the container's "edit" layer (after the base and semantic layers,
whose bytes are copied through unchanged). Payload::

    meta_len u32, meta (zlib JSON, schema.EDIT_META: version, n_anchors, n_offsets, edits[]),
    per edit: sel_len u32, selection (codec.flags payload, [n_anchors, n_offsets] bool)

Each edit stores the anchor slots its query selected when the edit was made, not the query: a
decoder replays it without a text encoder and even without the semantic layer, and every machine
selects the same Gaussians. A selection is a sparse flag table, about ``N K H(p)`` bits (under 1 KB
for kitchen's duck: benchmarks/results/edits/). The layer carries its own version: a reader
that does not know it decodes the scene without edits and says so; a file cut inside the layer
likewise.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..scene.edits import COLOR_LEVELS, SceneEdit
from ..scene.operations import operation
from . import budget, schema
from .container import StreamError
from .flags import decode_flags, encode_flags

EDIT_LAYER_VERSION = 1
"""Version of the edit layer; readers apply only versions they know."""
SECTION = "edits"
META_LIMIT = 1 << 16
"""Most bytes the decompressed edit metadata may take (bounds a zlib bomb)."""
_LEN = struct.Struct("<I")


def encode_edit_layer(edits: Sequence[SceneEdit], n_anchors: int, n_offsets: int) -> bytes:
    """The ``edits`` payload of ``edits`` over a base layer of ``[n_anchors, n_offsets]`` slots."""
    records = []
    for edit in edits:
        if tuple(edit.slots.shape) != (n_anchors, n_offsets):
            raise ValueError(
                f"edit selection of shape {tuple(edit.slots.shape)} does not fit the scene's "
                f"{n_anchors} x {n_offsets} slots"
            )
        text = edit.text.encode("ascii", "backslashreplace").decode()[: schema.EDIT_OP_TEXT]
        records.append(
            {
                "kind": edit.kind,
                "text": "".join(c if c.isprintable() else "?" for c in text),
                "offset": [float(v) for v in edit.offset],
                "color": [round(float(c) * COLOR_LEVELS) for c in edit.color],
                **{p.name: float(edit.params[p.name]) for p in operation(edit.kind).params},
            }
        )
    meta = {
        "version": EDIT_LAYER_VERSION,
        "n_anchors": n_anchors,
        "n_offsets": n_offsets,
        "edits": records,
    }
    text = schema.writable_json(meta, schema.EDIT_META, "cannot store these edits")
    meta_blob = zlib.compress(text.encode(), level=9)
    parts = [_LEN.pack(len(meta_blob)), meta_blob]
    for edit in edits:
        selection = encode_flags(edit.slots.numpy())
        parts += [_LEN.pack(len(selection)), selection]
    return b"".join(parts)


@dataclass(frozen=True)
class EditMeta:
    """The edit layer's validated metadata and where its selections start in the payload."""

    n_anchors: int
    n_offsets: int
    records: list[dict[str, Any]]
    start: int

    def memory(self) -> budget.Need:
        """Bytes decoding the selections needs."""
        return budget.edit_memory(len(self.records), self.n_anchors, self.n_offsets)


def read_edit_meta(
    sections: dict[str, bytes], layers: dict[str, str], n_anchors: int, n_offsets: int
) -> tuple[EditMeta | None, list[str]]:
    """The edit layer's metadata (None without a layer this build applies) and notes about
    edits left out (a cut or unknown layer).

    ``sections`` come from ``read_container(partial_ok=True)``. Raises StreamError on a
    malformed edit layer of a known version, or one that does not fit the base layer's
    ``[n_anchors, n_offsets]`` slots.
    """
    names = [name for name, layer in layers.items() if layer == "edit"]
    if not names:
        return None, []
    if any(name not in sections for name in names):
        return None, ["edit layer truncated: decoded without edits"]
    if names != [SECTION]:
        raise StreamError(f"edit layer holds section(s) {', '.join(names)}, expected '{SECTION}'")
    blob, pos = _read_blob(sections[SECTION], 0, "its metadata")
    meta = schema.read_json_meta(blob, META_LIMIT, "edit metadata")
    version = meta.get("version") if isinstance(meta, dict) else None
    if type(version) is not int:
        raise StreamError("edit metadata has no integer version")
    if version != EDIT_LAYER_VERSION:
        return None, [
            f"edit layer version {version} is not known to this build (it reads "
            f"{EDIT_LAYER_VERSION}): decoded without edits"
        ]
    fields = schema.parse(meta, schema.EDIT_META, "bad edit metadata")
    if (fields["n_anchors"], fields["n_offsets"]) != (n_anchors, n_offsets):
        raise StreamError(
            f"edit list selects among {fields['n_anchors']} x {fields['n_offsets']} anchor "
            f"slots, the base layer has {n_anchors} x {n_offsets}"
        )
    return EditMeta(n_anchors, n_offsets, fields["edits"], pos), []


def decode_edits(sections: dict[str, bytes], meta: EditMeta) -> list[SceneEdit]:
    """The edits of a layer whose metadata ``meta`` was read (and its memory checked)."""
    payload, pos = sections[SECTION], meta.start
    shape = (meta.n_anchors, meta.n_offsets)
    edits = []
    for index, record in enumerate(meta.records):
        blob, pos = _read_blob(payload, pos, f"edit {index + 1}'s selection")
        edits.append(
            SceneEdit(
                kind=record["kind"],
                slots=torch.from_numpy(decode_flags(blob, shape)),
                text=record["text"],
                offset=record["offset"],
                color=tuple(c / COLOR_LEVELS for c in record["color"]),
                params={p.name: record[p.name] for p in operation(record["kind"]).params},
            )
        )
    if pos != len(payload):
        raise StreamError(f"edit layer has {len(payload) - pos} trailing bytes")
    return edits


def _read_blob(payload: bytes, pos: int, what: str) -> tuple[bytes, int]:
    if len(payload) - pos < _LEN.size:
        raise StreamError(f"truncated edit layer: {what} is missing")
    (length,) = _LEN.unpack_from(payload, pos)
    pos += _LEN.size
    if length > len(payload) - pos:
        raise StreamError(f"truncated edit layer: {what} needs {length} bytes")
    return payload[pos : pos + length], pos + length


def edit_summary(edits: Sequence[SceneEdit]) -> list[dict[str, object]]:
    """A JSON-ready record per edit."""
    return [
        {
            "kind": e.kind,
            "text": e.text,
            "gaussians_selected": e.n_selected,
            **operation(e.kind).summary(e),
        }
        for e in edits
    ]
