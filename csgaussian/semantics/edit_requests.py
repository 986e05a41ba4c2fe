"""Text-driven edits (supp C.2): requests that name an object, resolved into scene edits.

Each request is answered by a query on the decoded scene (:func:`csgaussian.semantics.query.
select`) when it is made; the resulting :class:`csgaussian.scene.edits.SceneEdit` keeps the
selected anchor slots, which is what a stream stores and every renderer replays.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..scene.decoded import Scene
from ..scene.edits import SceneEdit
from ..scene.operations import Operation
from ..scene.operations.duplicate import Duplicate, parse_offset
from ..scene.operations.extract import Extract
from ..scene.operations.recolor import Recolor, parse_color
from ..scene.operations.remove import Remove
from .encoders import TextEncoder
from .query import QueryConfig, QueryError, select

EditRequest = Operation
"""A request is an edit operation (:mod:`csgaussian.scene.operations`): its text and
parameters."""


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
                f"edit '{request.code} {request.text}': the text matches no object "
                f"({selection.scores_note()})"
            )
        edits.append(from_slots(request, selection.slots))
    return edits


def from_slots(request: EditRequest, slots: torch.Tensor) -> SceneEdit:
    """The edit ``request`` asks for, acting on ``slots`` ([N, K] bool)."""
    return SceneEdit(request.code, slots.clone(), request.text, **request.stored())


__all__ = [
    "Duplicate",
    "EditRequest",
    "Extract",
    "Recolor",
    "Remove",
    "from_slots",
    "parse_color",
    "parse_offset",
    "resolve",
]
