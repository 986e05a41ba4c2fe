"""Remove the object a text names."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Operation


@dataclass(frozen=True)
class Remove(Operation):
    """Remove the object ``text`` names."""

    code = "remove"
    order = 10
    label = "Remove"
    help = "remove the object TEXT names (repeatable; edits apply in the order given)"
    effect = "remove"

    @staticmethod
    def apply(gaussians, chosen, edit):
        return gaussians.subset(~chosen)
