"""What one viewer client does, without a browser: render a camera, highlight a query, edit,
undo, save.

Frames come from our rasterizer on the decoded scene for each requested camera (the
view-dependent MLPs evaluated per view), with the session's edits applied through the same
:class:`csgaussian.scene.edits.SceneEdit` list a stream stores, so a saved file renders the same.

Every client is untrusted (docs: README, "Edits and the viewer"): each action re-checks here,
on the server, that it is allowed now (a semantic layer, the text, the edit and Gaussian limits),
whatever the page's controls show. A session is one client's: its selection, edits and undo
belong to that client; the decoded scene is shared and never modified. The save target is fixed
when the viewer starts (:class:`SaveTarget`), never named by a client.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..codec.budget import check_edits_fit
from ..codec.files import save_edited
from ..codec.schema import EDIT_OP_TEXT, MAX_EDITS
from ..scene.decoded import Scene
from ..scene.edits import SceneEdit
from ..scene.rendering import render_view
from ..semantics.edit_requests import EditRequest, from_slots
from ..semantics.query import (
    VISIBLE_SHARE,
    QueryError,
    Selection,
    highlight,
    require_semantics,
    select,
)
from ..types import Camera

MAX_QUERY_CHARS = EDIT_OP_TEXT
"""Longest query text a client may send: what an edit stores (``codec.schema.EDIT_OP_TEXT``)."""


@dataclass(frozen=True)
class ViewerConfig:
    """Viewer settings and the limits a client cannot pass (ours)."""

    max_side: int = 512
    """Longer side of a server-rendered frame in pixels (the issue's 512 x 512 target)."""
    highlight_color: tuple[float, float, float] = (1.0, 0.2, 0.1)
    """Tint of the selected object's pixels (half-way, as ``csgaussian query``)."""
    max_edits: int = MAX_EDITS
    """Most edits a session holds: what a stream's edit layer may store."""
    max_memory: int | None = None
    """Memory limit in bytes that the Gaussians after a session's edits must fit (each
    ``duplicate`` copies its selection); None: the decoder's limit. The same bound as a decoded
    stream's edits (:func:`csgaussian.codec.budget.check_edits_fit`)."""
    max_clients: int = 8
    """Most browser clients served at once (each holds its own edits and splats)."""
    max_pending_actions: int = 4
    """Most GUI actions one client may have waiting; more are refused (a flooding client)."""
    client_splats: bool = True
    """Send the scene to the browser as splats that it draws while the camera moves (False:
    every frame is rendered on the server)."""
    refine_delay: float = 0.3
    """Seconds the camera must rest before the server's exact render replaces the splats."""
    splat_views: int = 16
    """Orbit views added to the capture cameras in the export's closed form that gives the
    browser's splats their values."""
    splat_bulk_share: float = 0.5
    """For a stream without capture cameras: splats farther from the anchors' median than this
    share of the anchors are not sent, as the orbit's closed form makes the background shell a
    fog over the scene (kitchen: with 0.75 the objects showed faintly through it, with 0.5
    clearly); 1.0 sends them all."""
    max_message_bytes: int = 1 << 20
    """Largest websocket message a client may send (viser's own limit is 50 MB)."""


def pinhole(c2w: np.ndarray, fov_y: float, aspect: float, max_side: int) -> Camera:
    """A camera from a camera-to-world ``c2w`` [4, 4] (OpenCV axes, as viser's client camera),
    vertical field of view ``fov_y`` (radians) and ``aspect`` (width / height).

    Raises:
        ValueError: a pose that is not finite and rigid, a field of view outside (0, pi) or an
            aspect that is not a positive finite number (a client sends what it likes).
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
        raise ValueError("bad camera: the pose is not a finite 4 x 4 matrix")
    rotation = c2w[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3):
        raise ValueError("bad camera: the pose's rotation is not orthonormal")
    if not (math.isfinite(fov_y) and 1e-3 < fov_y < math.pi - 1e-3):
        raise ValueError(f"bad camera: field of view {fov_y!r} is not in (0, pi)")
    if not (math.isfinite(aspect) and 1e-3 < aspect < 1e3):
        raise ValueError(f"bad camera: aspect {aspect!r} is not a positive number")
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


def check_query_text(text: object) -> str:
    """``text`` if it is a query a client may send; ValueError naming the problem otherwise."""
    if not isinstance(text, str):
        raise ValueError("the query is not text")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"the query has {len(text)} characters (at most {MAX_QUERY_CHARS})")
    if not text.isprintable():
        raise ValueError("the query holds control or unprintable characters")
    return text


class SaveTarget:
    """The one file a viewer may write, fixed when it starts.

    It never is the source, its folder must exist (none is created), and an existing file is
    overwritten only when it is this viewer's own output (a regular file holding exactly the
    bytes its last save wrote: an inode number alone is reused by a file made in its place), so
    nothing else on disk is ever replaced.
    """

    SUFFIX = ".edited"
    """Inserted before the source's extension for the default target (``NAME.edited.csg``)."""

    def __init__(self, source: Path, path: Path | None = None) -> None:
        self.source = Path(source)
        if path is None:
            path = self._free_default()
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ValueError(f"save target {self.path}: its folder does not exist")
        if self.path.exists():
            if self.path.resolve() == self.source.resolve() or self.path.samefile(self.source):
                raise ValueError(f"save target {self.path}: it is the source stream")
            raise ValueError(f"save target {self.path}: exists (the viewer never overwrites)")
        if self.path.resolve() == self.source.resolve():
            raise ValueError(f"save target {self.path}: it is the source stream")
        self._written: bytes | None = None
        """SHA-256 of what the last save wrote."""
        self._lock = threading.Lock()

    def _free_default(self) -> Path:
        """``NAME.edited.csg`` beside the source, numbered if taken (``NAME.edited-2.csg``)."""
        source = self.source
        stem = f"{source.stem}{self.SUFFIX}"
        candidate = source.with_name(f"{stem}{source.suffix}")
        number = 2
        while candidate.exists() or candidate.is_symlink():
            candidate = source.with_name(f"{stem}-{number}{source.suffix}")
            number += 1
        return candidate

    def write(self, scene: Scene) -> dict[str, Any]:
        """Write the source stream with ``scene``'s edits to the target (atomically)."""
        with self._lock:
            if os.path.lexists(self.path) and self._digest() != self._written:
                raise ValueError(
                    f"not saved: {self.path} was made or changed by someone else since the "
                    "viewer started (not the viewer's output)"
                )
            report = save_edited(scene, self.source, self.path)
            self._written = self._digest()
            return report

    def _digest(self) -> bytes | None:
        """SHA-256 of the target when it is a regular file (not a link), else None."""
        if not stat.S_ISREG(self.path.lstat().st_mode):
            return None
        return hashlib.sha256(self.path.read_bytes()).digest()


class ViewerSession:
    """One client's view of a decoded scene: its edits, undo and current highlight.

    ``scene`` is shared between sessions and never modified. Embedding a query and rendering run
    outside the session's lock, which only guards the selection and the edit list.
    """

    def __init__(
        self,
        scene: Scene,
        source: Path,
        config: ViewerConfig = ViewerConfig(),  # noqa: B008
        target: SaveTarget | None = None,
    ):
        self.scene = scene
        self.source = Path(source)
        self.config = config
        self.target = target
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

    def upgrade(self, scene: Scene, slot_leaves: torch.Tensor | None = None) -> None:
        """Swap in the fully decoded scene (same base layer, now with semantics); the slots'
        codebook leaves may be given when another session computed them."""
        with self._lock:
            self.scene = scene
            self._leaves = slot_leaves

    def slot_leaves(self) -> torch.Tensor:
        """The codebook leaf of every anchor slot (computed once)."""
        scene = self.scene
        require_semantics(scene)
        if self._leaves is None:
            self._leaves = scene.semantics.slot_leaves(scene.model)
        return self._leaves

    def query(self, text: str) -> Selection:
        """Select the object ``text`` names and highlight it (empty text clears it)."""
        text = check_query_text(text)
        if not text.strip():
            with self._lock:
                self.selection = None
            raise QueryError("empty query: highlight cleared")
        scene = self.scene
        selection = select(scene, text, slot_leaves=self.slot_leaves())  # outside the lock
        with self._lock:
            self.selection = selection if selection.matched else None
        return selection

    def apply(self, request: EditRequest) -> SceneEdit:
        """Apply ``request`` to the highlighted selection (queried with its text if needed).

        Raises:
            ValueError: no semantic layer, a bad text, colour or offset, or an edit over the
                session's limits (edit count, Gaussians after the edits).
        """
        require_semantics(self.scene)
        check_query_text(request.text)
        if len(self.edits) >= self.config.max_edits:
            raise ValueError(f"edit refused: at most {self.config.max_edits} edits")
        selection = self.selection
        if selection is None or selection.text != request.text:
            selection = self.query(request.text)
        if not selection.matched or not selection.n_gaussians:
            raise QueryError(f"'{request.text}' matches no object")
        edit = from_slots(request, selection.slots)
        with self._lock:
            edits = [*self.edits, edit]
            if len(edits) > self.config.max_edits:
                raise ValueError(f"edit refused: at most {self.config.max_edits} edits")
            check_edits_fit(self.scene.model, edits, self.config.max_memory)  # StreamError
            self.edits = edits
        return edit

    def undo(self) -> SceneEdit | None:
        """Drop this session's last edit (None when there is none; the stream's own edits stay)."""
        with self._lock:
            if len(self.edits) <= len(self.scene.edits):
                return None
            edit = self.edits[-1]
            self.edits = self.edits[:-1]
            return edit

    def edited_scene(self) -> Scene:
        """The scene with the session's edits."""
        scene = self.scene
        with self._lock:
            edits = list(self.edits)
        return replace(scene, notes=list(scene.notes), edits=edits)

    def save(self) -> dict[str, Any]:
        """Write the source stream with the session's edits to the viewer's save target.

        Raises:
            ValueError: no save target, no semantic layer (the controls are off), no edit made
                in this session, or a target that is no longer the viewer's own output.
        """
        if self.target is None:
            raise ValueError("not saved: this viewer has no save target")
        require_semantics(self.scene)
        if len(self.edits) <= len(self.scene.edits):
            raise ValueError("not saved: no edit made in this viewer")
        return self.target.write(self.edited_scene())

    @torch.no_grad()
    def frame(self, camera: Camera) -> tuple[np.ndarray, Selection | None]:
        """The edited scene from ``camera`` with the selection tinted (``[H, W, 3]`` uint8),
        and that selection."""
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
