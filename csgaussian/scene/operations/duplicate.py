"""Add a moved copy of the object a text names (the copy keeps its anchor slot, so a later edit
of the same object acts on the copy too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .base import Operation, Value, concat, replaced

OFFSET_LIMIT = 1e9
"""Largest offset component (world units) an edit may store."""


def parse_offset(offset: Sequence[float] | str) -> tuple[float, float, float]:
    """Three finite numbers from ``"X,Y,Z"`` or a sequence; ValueError otherwise."""
    parts = offset.split(",") if isinstance(offset, str) else list(offset)
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        raise ValueError(f"offset {offset!r} is not X,Y,Z") from None
    if len(values) != 3 or not all(abs(v) < OFFSET_LIMIT for v in values):
        raise ValueError(f"offset {offset!r} is not three finite numbers X,Y,Z")
    return (values[0], values[1], values[2])


@dataclass(frozen=True)
class Duplicate(Operation):
    """Add a copy of the object ``text`` names, moved by ``offset`` (world units); the original
    stays."""

    offset: tuple[float, float, float]

    code = "duplicate"
    order = 40
    label = "Duplicate"
    help = "add a copy of the object TEXT names, moved by the following --offset"
    effect = "copy"
    value = Value(
        flag="--offset",
        metavar="X,Y,Z",
        help="world-space offset of the preceding --duplicate",
        control="vector3",
        label="Offset",
        default=(0.3, 0.0, 0.0),
        step=0.05,
    )

    def stored(self):
        return {"offset": parse_offset(self.offset)}

    @classmethod
    def from_value(cls, text, value):
        return cls(text, parse_offset(value))

    @classmethod
    def from_control(cls, text, value):
        return cls(text, tuple(value))

    @staticmethod
    def summary(edit):
        return {"offset": list(edit.offset)}

    @staticmethod
    def apply(gaussians, chosen, edit):
        copy = gaussians.subset(chosen)
        copy.means = copy.means + torch.tensor(edit.offset, dtype=copy.means.dtype)
        return concat(gaussians, copy)

    @classmethod
    def apply_splats(cls, splats, chosen, edit):
        copy = splats.subset(chosen)
        moved = copy.centers + torch.tensor(edit.offset, dtype=copy.centers.dtype)
        return concat(splats, replaced(copy, centers=moved))
