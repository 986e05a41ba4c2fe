"""Keep only the object a text names."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Operation


@dataclass(frozen=True)
class Extract(Operation):
    """Keep only the object ``text`` names."""

    code = "extract"
    order = 20
    label = "Extract (keep only)"
    help = "keep only the object TEXT names"
    effect = "extract"

    @staticmethod
    def apply(gaussians, chosen, edit):
        return gaussians.subset(chosen)
