"""A receiver's operations on a whole ``.csg`` file: decoding it, its bytes per layer, and saving
it with an edit list (the base and semantic layers copied byte for byte). ``csgaussian.api``
re-exports them; the viewer saves through here, so it never imports the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import write_bytes_atomic
from ..scene.decoded import Scene
from .budget import resolve_limit
from .container import StreamError, read_container, read_stream, section_layers
from .edit_layer import edit_summary
from .stream import decode_scene, with_edits


def layer_bytes(data: bytes) -> dict[str, int]:
    """Bytes per layer of a stream; the container's header counts to the base layer. An
    ``edit`` entry is there when the stream has an edit layer."""
    layers = section_layers(data)
    sections = read_container(data, partial_ok=True)
    sizes = {"semantic": 0}
    for name, payload in sections.items():
        if layers[name] != "base":
            sizes[layers[name]] = sizes.get(layers[name], 0) + len(payload)
    return {"base": len(data) - sum(sizes.values()), **sizes}


def read_stream_file(stream_path: str | Path) -> bytes:
    """A ``.csg`` file's bytes, header first and bounded by the memory limit
    (:func:`csgaussian.codec.container.read_stream`)."""
    return read_stream(stream_path, resolve_limit(None))


def save_edited(scene: Scene, source: str | Path, out_path: str | Path) -> dict[str, Any]:
    """Write the stream ``source`` with ``scene``'s edit list as ``out_path`` (atomically); the
    base and semantic layers are copied byte for byte. Returns sizes and the edits."""
    source = Path(source)
    try:
        data = read_stream_file(source)
        edited = with_edits(data, scene.edits)
    except StreamError as err:
        raise StreamError(f"{source}: {err}") from None
    write_bytes_atomic(out_path, edited)
    return {
        "input_bytes": len(data),
        "output_bytes": len(edited),
        "edit_layer_bytes": layer_bytes(edited).get("edit", 0),
        "edits": edit_summary(scene.edits),
    }


def decode(stream_path: str | Path, base_only: bool = False) -> Scene:
    """Decode a ``.csg`` file (both layers unless ``base_only``); errors name the file."""
    stream_path = Path(stream_path)
    try:
        return decode_scene(read_stream_file(stream_path), base_only=base_only)
    except StreamError as err:
        raise StreamError(f"{stream_path}: {err}") from None
