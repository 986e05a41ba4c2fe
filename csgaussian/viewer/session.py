"""What the viewer does, without a browser: render a camera, highlight a query, edit, undo, save.

Frames come from our rasterizer on the decoded scene for each requested camera (the
view-dependent MLPs evaluated per view), with the session's edits applied through the same
:class:`csgaussian.scene.edits.SceneEdit` list a stream stores, so a saved file renders the same.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..codec.budget import check_edits_fit
from ..codec.files import save_edited
from ..scene.decoded import Scene
from ..scene.edits import SceneEdit
from ..scene.rendering import render_view
from ..semantics.edits import EditRequest, from_slots
from ..semantics.query import (
    VISIBLE_SHARE,
    QueryError,
    Selection,
    highlight,
    require_semantics,
    select,
)
from ..types import Camera


@dataclass(frozen=True)
class ViewerConfig:
    """Viewer settings (ours)."""

    max_side: int = 512
    """Longer side of a rendered frame in pixels (the issue's 512 x 512 target)."""
    highlight_color: tuple[float, float, float] = (1.0, 0.2, 0.1)
    """Tint of the selected object's pixels (half-way, as ``csgaussian query``)."""


def pinhole(c2w: np.ndarray, fov_y: float, aspect: float, max_side: int) -> Camera:
    """A camera from a camera-to-world ``c2w`` [4, 4] (OpenCV axes, as viser's client camera),
    vertical field of view ``fov_y`` (radians) and ``aspect`` (width / height)."""
    if aspect >= 1:
        width, height = max_side, max(1, round(max_side / aspect))
    else:
        width, height = max(1, round(max_side * aspect)), max_side
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor(
        [[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32
    )
    viewmat = torch.from_numpy(np.linalg.inv(c2w)).float()
    return Camera(viewmat=viewmat, K=K, width=width, height=height)


class ViewerSession:
    """A decoded scene, the edits made in the viewer and the current highlight."""

    def __init__(self, scene: Scene, source: Path, config: ViewerConfig = ViewerConfig()):  # noqa: B008
        self.scene = scene
        self.source = source
        self.config = config
        self.edits: list[SceneEdit] = list(scene.edits)
        self.selection: Selection | None = None
        self._leaves: torch.Tensor | None = None
        self._lock = threading.Lock()

    @property
    def can_query(self) -> bool:
        return self.scene.semantics is not None

    def why_no_query(self) -> str:
        """Why the query controls are off (empty when they are on)."""
        if self.can_query:
            return ""
        return "; ".join(self.scene.notes) or "this stream has no semantic layer"

    def upgrade(self, scene: Scene) -> None:
        """Swap in the fully decoded scene (same base layer, now with semantics)."""
        with self._lock:
            self.scene = scene
            self._leaves = None

    def query(self, text: str) -> Selection:
        """Select the object ``text`` names and highlight it (empty text clears it)."""
        with self._lock:
            if not text.strip():
                self.selection = None
                raise QueryError("empty query: highlight cleared")
            require_semantics(self.scene)
            if self._leaves is None:
                self._leaves = self.scene.semantics.slot_leaves(self.scene.model)
            selection = select(self.scene, text, slot_leaves=self._leaves)
            self.selection = selection if selection.matched else None
            return selection

    def apply(self, request: EditRequest) -> SceneEdit:
        """Apply ``request`` to the highlighted selection (queried with its text if needed)."""
        if self.selection is None or self.selection.text != request.text:
            self.query(request.text)
        if self.selection is None or not self.selection.n_gaussians:
            raise QueryError(f"'{request.text}' matches no object")
        with self._lock:
            edit = from_slots(request, self.selection.slots)
            check_edits_fit(self.scene.model, [*self.edits, edit])
            self.edits.append(edit)
            return edit

    def undo(self) -> SceneEdit | None:
        """Drop the last edit (None when there is none)."""
        with self._lock:
            return self.edits.pop() if self.edits else None

    def edited_scene(self) -> Scene:
        """The scene with the session's edits."""
        scene = self.scene
        return Scene(scene.model, scene.semantics, list(scene.notes), list(self.edits))

    def save(self, path: str | Path) -> dict[str, Any]:
        """Write the source stream with the session's edits to ``path``."""
        return save_edited(self.edited_scene(), self.source, path)

    @torch.no_grad()
    def frame(self, camera: Camera) -> tuple[np.ndarray, Selection | None]:
        """The edited scene from ``camera`` with the selection tinted (``[H, W, 3]`` uint8),
        and that selection."""
        with self._lock:
            scene, selection = self.edited_scene(), self.selection
        slots = None if selection is None else selection.slots
        extra = None
        if slots is not None:
            extra = lambda g: g.at_slots(slots).float()[:, None]  # noqa: E731
        out = render_view(scene.model, camera, edit=scene.edit_hook(), extra=extra)
        image = out.image.clamp(0, 1)
        if out.extra is not None:
            visible = out.extra[..., 0] > VISIBLE_SHARE  # as render_selection's mask
            image = highlight(image, visible, self.config.highlight_color)
        return (image * 255 + 0.5).to(torch.uint8).numpy(), selection
