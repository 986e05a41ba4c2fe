"""Edits a receiver applies to the decoded neural Gaussians of a selection (issue 10, supp C.2).

An edit names its selection by anchor slot (``[N, K]`` bool, as a query resolves it), so it acts
on the Gaussians each view spawns from those slots: every view, the viewer and the stored file
agree, and no text encoder is needed to replay it. Edits apply in order; a copy made by
``duplicate`` keeps its slot, so a later edit of the same object acts on the copy too. What each
kind of edit does is its operation's (:mod:`csgaussian.scene.operations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from .operations import operation
from .operations.recolor import COLOR_LEVELS, LUMA_WEIGHTS, luma, quantize_color, recolor
from .scaffold import NeuralGaussians


@dataclass
class SceneEdit:
    """One edit, resolved: what it does and to which anchor slots.

    ``offset`` (world units) is used by ``duplicate``, ``color`` (RGB in [0, 1]) by ``recolor``
    (both are stored in every edit record, docs/format.md §7); ``params`` holds the numbers
    other operations store (their ``Operation.params``); ``text`` records the query that chose
    the slots (informative only).
    """

    kind: str
    slots: Tensor  # [N, K] bool
    text: str = ""
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    params: dict[str, float] = field(default_factory=dict)
    n_selected: int = field(init=False)

    def __post_init__(self) -> None:
        operation(self.kind)
        self.n_selected = int(self.slots.sum())


def apply_edit(gaussians: NeuralGaussians, edit: SceneEdit) -> NeuralGaussians:
    """The Gaussians of one view after ``edit``."""
    return operation(edit.kind).apply(gaussians, gaussians.at_slots(edit.slots), edit)


def apply_edits(gaussians: NeuralGaussians, edits: Sequence[SceneEdit]) -> NeuralGaussians:
    """The Gaussians of one view after ``edits``, in order."""
    for edit in edits:
        gaussians = apply_edit(gaussians, edit)
    return gaussians


__all__ = [
    "COLOR_LEVELS",
    "LUMA_WEIGHTS",
    "SceneEdit",
    "apply_edit",
    "apply_edits",
    "luma",
    "quantize_color",
    "recolor",
]
