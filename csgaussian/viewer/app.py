"""The viser page: the client's camera drives server-side renders shown as its background image.

The base layer is decoded and shown first; the full stream (semantic layer) is decoded in the
background, then the query and edit controls are enabled. For a base-only file they stay off and
the panel says why. Each client gets the latest frame for its latest camera (a render in flight
is not queued behind stale cameras).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import viser
import viser.transforms as vtf

from ..scene.decoded import Scene
from ..semantics.edits import Duplicate, Extract, Recolor, Remove
from ..semantics.query import QueryError, Selection
from ..types import Camera
from .session import ViewerConfig, ViewerSession, pinhole

VISER_VERSION = "1.1.1"
"""The viser release this module is written against (pinned in the ``viewer`` extra)."""


INITIAL_VIEW_DIRECTION = (1.0, -1.0, 0.8)
"""From the scene centre towards the first camera (z up, as viser's default scene)."""


class Viewer:
    """A running viewer over one stream."""

    def __init__(
        self,
        source: Path,
        decode: Callable[[bool], Scene],
        host: str = "127.0.0.1",
        port: int = 8080,
        config: ViewerConfig = ViewerConfig(),  # noqa: B008
    ) -> None:
        self.session = ViewerSession(decode(True), source, config)
        self.frames_sent = 0
        self.last_camera: Camera | None = None
        self.last_selection: Selection | None = None
        self.last_frame: np.ndarray | None = None
        self.last_error = ""
        """The camera and highlighted selection of the last frame sent."""
        self.last_frame_seconds = float("nan")
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self._wake: dict[int, threading.Event] = {}
        self._stopped = threading.Event()
        self._actions = threading.Lock()
        self._place_initial_camera()
        self._build_gui()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self.ready = threading.Event()
        threading.Thread(target=self._decode_semantics, args=(decode,), daemon=True).start()

    def _place_initial_camera(self) -> None:
        """Look at the anchors' median from outside their bulk (a stream holds no cameras)."""
        anchors = self.session.scene.model.anchors
        centre = anchors.median(dim=0).values
        spread = (anchors.quantile(0.9, dim=0) - anchors.quantile(0.1, dim=0)).norm()
        direction = np.array(INITIAL_VIEW_DIRECTION) / np.linalg.norm(INITIAL_VIEW_DIRECTION)
        self.server.initial_camera.look_at = centre.numpy().astype(np.float64)
        self.server.initial_camera.position = centre.numpy() + direction * float(spread)

    def _build_gui(self) -> None:
        gui = self.server.gui
        self.status = gui.add_markdown("Decoding the semantic layer…")
        self.query_text = gui.add_text("Query", "", disabled=True, hint="object to highlight")
        self.query_button = gui.add_button("Highlight", disabled=True)
        self.remove_button = gui.add_button("Remove", disabled=True)
        self.extract_button = gui.add_button("Extract (keep only)", disabled=True)
        self.color = gui.add_rgb("Colour", (32, 64, 255), disabled=True)
        self.recolor_button = gui.add_button("Recolour", disabled=True)
        self.offset = gui.add_vector3("Offset", (0.3, 0.0, 0.0), step=0.05, disabled=True)
        self.duplicate_button = gui.add_button("Duplicate", disabled=True)
        self.undo_button = gui.add_button("Undo", disabled=True)
        self.save_path = gui.add_text("Save as", str(self._default_output()), disabled=True)
        self.save_button = gui.add_button("Save .csg", disabled=True)
        self.query_text.on_update(lambda _: self._run(self._query))
        self.query_button.on_click(lambda _: self._run(self._query))
        self.remove_button.on_click(lambda _: self._run(lambda: self._edit(Remove)))
        self.extract_button.on_click(lambda _: self._run(lambda: self._edit(Extract)))
        self.recolor_button.on_click(lambda _: self._run(lambda: self._edit(Recolor)))
        self.duplicate_button.on_click(lambda _: self._run(lambda: self._edit(Duplicate)))
        self.undo_button.on_click(lambda _: self._run(self._undo))
        self.save_button.on_click(lambda _: self._run(self._save))

    def _default_output(self) -> Path:
        source = self.session.source
        return source.with_name(f"{source.stem}-edited{source.suffix}")

    def _controls(self) -> list:
        return [
            self.query_text, self.query_button, self.remove_button, self.extract_button,
            self.color, self.recolor_button, self.offset, self.duplicate_button,
            self.undo_button, self.save_path, self.save_button,
        ]  # fmt: skip

    def _decode_semantics(self, decode: Callable[[bool], Scene]) -> None:
        if self.session.why_no_query():  # base-only decode: try the whole stream
            try:
                self.session.upgrade(decode(False))
            except ValueError as err:
                self.status.content = f"Semantic layer not decoded: {err}"
                self.ready.set()
                return
        reason = self.session.why_no_query()
        for control in self._controls():
            control.disabled = bool(reason)
        self.status.content = (
            f"Queries off: {reason}" if reason else "Semantic layer decoded: type a query."
        )
        self.ready.set()
        self.refresh()

    def _run(self, action: Callable[[], str]) -> None:
        """Run a GUI action, show its outcome, and render new frames if the picture changed."""
        with self._actions:  # one at a time: the last keystroke's query reads the final text
            before = (_highlighted(self.session.selection), len(self.session.edits))
            try:
                self.status.content = action()
            except (QueryError, ValueError, OSError) as err:
                self.status.content = f"{err}"
            changed = (_highlighted(self.session.selection), len(self.session.edits)) != before
        if changed:
            self.refresh()  # typing a query re-renders only when the highlight changes

    def _query(self) -> str:
        selection = self.session.query(self.query_text.value)
        if not selection.matched:
            return f"'{selection.text}' matches nothing (best score {selection.best_score:.2f})"
        return f"'{selection.text}': {selection.n_gaussians} Gaussians highlighted"

    def _edit(self, kind: type) -> str:
        text = self.query_text.value
        if kind is Recolor:
            request = Recolor(text, tuple(c / 255 for c in self.color.value))
        elif kind is Duplicate:
            request = Duplicate(text, tuple(float(v) for v in self.offset.value))
        else:
            request = kind(text)
        edit = self.session.apply(request)
        return f"{edit.kind} '{text}' ({len(self.session.edits)} edits)"

    def _undo(self) -> str:
        edit = self.session.undo()
        return "nothing to undo" if edit is None else f"undid {edit.kind} '{edit.text}'"

    def _save(self) -> str:
        report = self.session.save(self.save_path.value)
        return f"saved {self.save_path.value} ({report['output_bytes']} bytes)"

    def refresh(self) -> None:
        """Render a new frame for every client."""
        for event in list(self._wake.values()):
            event.set()

    def _connect(self, client: viser.ClientHandle) -> None:
        wake = threading.Event()
        client.camera.on_update(lambda _: self._camera_moved(client.client_id, wake))
        threading.Thread(target=self._render_loop, args=(client, wake), daemon=True).start()

    def _camera_moved(self, client_id: int, wake: threading.Event) -> None:
        self._wake[client_id] = wake  # listed from its first camera on: refresh() can render it
        wake.set()

    def _disconnect(self, client: viser.ClientHandle) -> None:
        wake = self._wake.pop(client.client_id, None)
        if wake is not None:
            wake.set()

    def _render_loop(self, client: viser.ClientHandle, wake: threading.Event) -> None:
        while not self._stopped.is_set():
            if not wake.wait(timeout=0.5):
                continue
            wake.clear()
            if client.client_id not in self._wake:  # disconnected
                return
            try:
                self._send_frame(client)
            except Exception as err:  # a frame that fails must not end the client's frames
                self.last_error = f"frame not rendered ({type(err).__name__}: {err})"
                self.status.content = self.last_error

    def _send_frame(self, client: viser.ClientHandle) -> None:
        """Render the client's current camera and send the frame as its background image."""
        camera = client.camera
        c2w = np.eye(4)
        c2w[:3, :3] = vtf.SO3(camera.wxyz).as_matrix()
        c2w[:3, 3] = camera.position
        view = pinhole(c2w, camera.fov, camera.aspect, self.session.config.max_side)
        started = time.perf_counter()
        frame, selection = self.session.frame(view)
        self.last_frame_seconds = time.perf_counter() - started
        client.scene.set_background_image(frame, format="jpeg", jpeg_quality=90)
        self.last_camera, self.last_selection, self.last_frame = view, selection, frame
        self.frames_sent += 1

    def stop(self) -> None:
        """Stop serving."""
        self._stopped.set()
        self.server.stop()


def _highlighted(selection: Selection | None) -> tuple[int, ...]:
    """The codebook leaves a selection highlights (what a frame shows of it)."""
    return () if selection is None else tuple(selection.leaves)
