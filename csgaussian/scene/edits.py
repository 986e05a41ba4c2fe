"""Edits a receiver applies to the decoded neural Gaussians of a selection (issue 10, supp C.2).

An edit names its selection by anchor slot (``[N, K]`` bool, as a query resolves it), so it acts
on the Gaussians each view spawns from those slots: every view, the viewer and the stored file
agree, and no text encoder is needed to replay it. Edits apply in order; a copy made by
``duplicate`` keeps its slot, so a later edit of the same object acts on the copy too.

Recolouring keeps each Gaussian's luma and takes the target's chroma (BT.601 Y'CbCr, where an RGB
colour is its luma on every channel plus a chroma part): ``c' = clamp(t + (Y(c) - Y(t)), 0, 1)``
with ``Y(rgb) = 0.299 r + 0.587 g + 0.114 b``. The luminance texture stays (up to clamping), the
hue becomes the target's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .scaffold import NeuralGaussians

EditKind = Literal["remove", "extract", "duplicate", "recolor"]
EDIT_KINDS: tuple[EditKind, ...] = ("remove", "extract", "duplicate", "recolor")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma coefficients."""
COLOR_LEVELS = 255
"""Recolour targets are 8-bit RGB (as the edit layer stores them)."""


def quantize_color(color: Sequence[float]) -> tuple[float, float, float]:
    """``color`` (RGB in [0, 1]) as the edit layer stores it (8 bits per channel)."""
    r, g, b = (round(min(max(float(c), 0.0), 1.0) * COLOR_LEVELS) / COLOR_LEVELS for c in color)
    return (r, g, b)


@dataclass
class SceneEdit:
    """One edit, resolved: what it does and to which anchor slots.

    ``offset`` (world units) is used by ``duplicate``, ``color`` (RGB in [0, 1]) by ``recolor``;
    ``text`` records the query that chose the slots (informative only).
    """

    kind: EditKind
    slots: Tensor  # [N, K] bool
    text: str = ""
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    n_selected: int = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise ValueError(f"unknown edit {self.kind!r} (choose from {', '.join(EDIT_KINDS)})")
        self.n_selected = int(self.slots.sum())


def luma(colors: Tensor) -> Tensor:
    """BT.601 luma ``[...]`` of RGB ``[..., 3]``."""
    return colors @ torch.tensor(LUMA_WEIGHTS, dtype=colors.dtype)


def recolor(colors: Tensor, target: Tensor) -> Tensor:
    """``colors`` ``[G, 3]`` with their luma kept and the chroma of ``target`` ``[3]`` (module
    docstring)."""
    target = target.to(colors)
    return (target + (luma(colors) - luma(target))[:, None]).clamp(0.0, 1.0)


def _concat(a: NeuralGaussians, b: NeuralGaussians) -> NeuralGaussians:
    return NeuralGaussians(
        *(torch.cat([getattr(a, name), getattr(b, name)]) for name in a.__dataclass_fields__)
    )


def apply_edit(gaussians: NeuralGaussians, edit: SceneEdit) -> NeuralGaussians:
    """The Gaussians of one view after ``edit``."""
    chosen = gaussians.at_slots(edit.slots)
    if edit.kind == "remove":
        return gaussians.subset(~chosen)
    if edit.kind == "extract":
        return gaussians.subset(chosen)
    if edit.kind == "duplicate":
        copy = gaussians.subset(chosen)
        copy.means = copy.means + torch.tensor(edit.offset, dtype=copy.means.dtype)
        return _concat(gaussians, copy)
    colors = gaussians.colors.clone()
    colors[chosen] = recolor(colors[chosen], torch.tensor(edit.color))
    return NeuralGaussians(**{**vars(gaussians), "colors": colors})


def apply_edits(gaussians: NeuralGaussians, edits: Sequence[SceneEdit]) -> NeuralGaussians:
    """The Gaussians of one view after ``edits``, in order."""
    for edit in edits:
        gaussians = apply_edit(gaussians, edit)
    return gaussians
