"""Text-driven edits (supp C.2): requests that name an object, resolved into scene edits.

Each request is answered by a query on the decoded scene (:func:`csgaussian.semantics.query.
select`) when it is made; the resulting :class:`csgaussian.scene.edits.SceneEdit` keeps the
selected anchor slots, which is what a stream stores and every renderer replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..scene.decoded import Scene
from ..scene.edits import EditKind, SceneEdit, quantize_color
from .encoders import TextEncoder
from .query import QueryConfig, QueryError, select


@dataclass(frozen=True)
class Remove:
    """Remove the object ``text`` names."""

    text: str


@dataclass(frozen=True)
class Extract:
    """Keep only the object ``text`` names."""

    text: str


@dataclass(frozen=True)
class Duplicate:
    """Add a copy of the object ``text`` names, moved by ``offset`` (world units); the original
    stays."""

    text: str
    offset: tuple[float, float, float]


@dataclass(frozen=True)
class Recolor:
    """Give the object ``text`` names the hue of ``color`` (RGB in [0, 1], or ``#RRGGBB``),
    keeping its luminance."""

    text: str
    color: tuple[float, float, float] | str


EditRequest = Remove | Extract | Duplicate | Recolor
_KINDS: dict[type, EditKind] = {
    Remove: "remove",
    Extract: "extract",
    Duplicate: "duplicate",
    Recolor: "recolor",
}


def parse_color(color: tuple[float, float, float] | str) -> tuple[float, float, float]:
    """RGB in [0, 1] from ``#RRGGBB`` (or a 3-tuple in [0, 1]); ValueError otherwise."""
    if isinstance(color, str):
        text = color.removeprefix("#")
        if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise ValueError(f"colour {color!r} is not #RRGGBB")
        return quantize_color([int(text[i : i + 2], 16) / 255 for i in (0, 2, 4)])
    values = tuple(float(c) for c in color)
    if len(values) != 3 or not all(0.0 <= c <= 1.0 for c in values):
        raise ValueError(f"colour {color!r} is not three values in [0, 1]")
    return quantize_color(values)


def parse_offset(offset: Sequence[float] | str) -> tuple[float, float, float]:
    """Three finite numbers from ``"X,Y,Z"`` or a sequence; ValueError otherwise."""
    parts = offset.split(",") if isinstance(offset, str) else list(offset)
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        raise ValueError(f"offset {offset!r} is not X,Y,Z") from None
    if len(values) != 3 or not all(abs(v) < 1e9 for v in values):
        raise ValueError(f"offset {offset!r} is not three finite numbers X,Y,Z")
    return (values[0], values[1], values[2])


def resolve(
    scene: Scene,
    requests: Sequence[EditRequest],
    encoder: TextEncoder | None = None,
    config: QueryConfig = QueryConfig(),  # noqa: B008 (frozen dataclass)
) -> list[SceneEdit]:
    """Answer each request's query on ``scene`` and return the edits, in order.

    Raises:
        QueryError: the scene has no semantic layer, or a text matches nothing (an edit of
            nothing is refused rather than stored).
        ValueError: a malformed colour or offset.
    """
    if len(requests) and scene.semantics is not None:
        leaves = scene.semantics.slot_leaves(scene.model)
    else:
        leaves = None
    edits = []
    for request in requests:
        selection = select(scene, request.text, encoder, config, slot_leaves=leaves)
        if not selection.matched or not selection.n_gaussians:
            raise QueryError(
                f"edit '{_KINDS[type(request)]} {request.text}': the text matches no object "
                f"({selection.scores_note()})"
            )
        edits.append(from_slots(request, selection.slots))
    return edits


def from_slots(request: EditRequest, slots: torch.Tensor) -> SceneEdit:
    """The edit ``request`` asks for, acting on ``slots`` ([N, K] bool)."""
    kind = _KINDS[type(request)]
    offset = parse_offset(request.offset) if isinstance(request, Duplicate) else (0.0, 0.0, 0.0)
    color = parse_color(request.color) if isinstance(request, Recolor) else (0.0, 0.0, 0.0)
    return SceneEdit(kind, slots.clone(), request.text, offset, color)
