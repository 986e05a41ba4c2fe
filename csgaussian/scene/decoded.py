"""What a receiver holds after decoding a stream: the scene, its semantics if sent, its edits,
and notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..types import Camera
from .edits import SceneEdit, apply_edits
from .scaffold import NeuralGaussians, ScaffoldModel

if TYPE_CHECKING:  # annotations only: semantics sits above scene (docs/architecture.md)
    from ..semantics.layer import SemanticLayer
    from .rendering import GaussianEdit


@dataclass
class Scene:
    """A decoded scene.

    ``semantics`` is None for a base-only scene (a file without, or cut before, its semantic
    layer, or decoded with ``base_only``); ``edits`` are the stream's edit list, applied in order
    to every view (:meth:`edit_hook`); ``notes`` say what was left out and why, one line each;
    ``cameras`` are capture poses the stream holds (its optional ``cameras`` section; empty
    without it): viewpoints the model was trained for.
    """

    model: ScaffoldModel
    semantics: SemanticLayer | None = None
    notes: list[str] = field(default_factory=list)
    edits: list[SceneEdit] = field(default_factory=list)
    cameras: list[Camera] = field(default_factory=list)

    def edit_hook(self) -> GaussianEdit | None:
        """The ``edit=`` of :func:`csgaussian.scene.rendering.render_view` that renders the scene
        with its edits (None without edits)."""
        if not self.edits:
            return None
        edits = list(self.edits)

        def hook(gaussians: NeuralGaussians) -> NeuralGaussians:
            return apply_edits(gaussians, edits)

        return hook
