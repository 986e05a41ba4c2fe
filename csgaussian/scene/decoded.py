"""What a receiver holds after decoding a stream: the scene, its semantics if sent, and notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..semantics.layer import SemanticLayer
from .scaffold import ScaffoldModel


@dataclass
class Scene:
    """A decoded scene.

    ``semantics`` is None for a base-only scene (a file without, or cut before, its semantic
    layer, or decoded with ``base_only``); ``notes`` say why, one line each.
    """

    model: ScaffoldModel
    semantics: SemanticLayer | None = None
    notes: list[str] = field(default_factory=list)
