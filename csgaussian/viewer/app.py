"""The viser page: the decoded scene drawn in the browser as splats, refined by the server.

The base layer is decoded before the server starts (a bad file is refused then) and the URL is
printed at once; the page first shows server-rendered frames, then the splats
(:mod:`csgaussian.viewer.splats`) once they are made, which the browser draws while the camera
moves. When the camera rests (``ViewerConfig.refine_delay``) the server's exact render
(Scaffold-GS's view-dependent colours) replaces them, so the picture at rest is the decoded
model; "Refine at rest" and "Splats in the browser" switch either off. The semantic layer is
decoded in the background, then the query and edit controls are enabled.

Every client is untrusted (:mod:`csgaussian.viewer.gate` admits only the page's own origin with
the printed token). Each client has its own panel, session (selection, edits, undo, status) and
splats; its GUI actions run one at a time on its own worker thread (a flood is refused beyond
``max_pending_actions``), off the thread that renders its frames, and every action re-checks on
the server that it is allowed (:class:`csgaussian.viewer.session.ViewerSession`). Saves go to the
one target fixed at start.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import viser
import viser.transforms as vtf

from ..scene.decoded import Scene
from ..scene.operations import OPERATIONS, Value
from ..semantics.query import QueryError, Selection
from ..types import Camera
from .gate import Gate, gated_server
from .opening import opening_view
from .session import SaveTarget, ViewerConfig, ViewerSession, check_query_text, pinhole
from .splats import Splats, edited, highlighted, splats_of

VISER_VERSION = "1.1.1"
"""The viser release this module is written against (pinned in the ``viewer`` extra)."""

LOG = logging.getLogger("csgaussian.viewer")


class Viewer:
    """A running viewer over one stream."""

    def __init__(
        self,
        source: Path,
        decode: Callable[[bool], Scene],
        host: str = "127.0.0.1",
        port: int = 8080,
        config: ViewerConfig = ViewerConfig(),  # noqa: B008
        save: Path | None = None,
    ) -> None:
        self.source = Path(source)
        self.config = config
        self.target = SaveTarget(self.source, save)
        self.scene = decode(True)
        self.slot_leaves: torch.Tensor | None = None
        self.splats: Splats | None = None
        self.gate = Gate(host, config.max_message_bytes)
        self.server = gated_server(self.gate, host, port)
        self.host = host
        self.clients: dict[int, ClientView] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()
        """Set once the semantic layer is decoded (or known to be absent)."""
        self.splats_ready = threading.Event()
        view = opening_view(self.scene)
        self.server.initial_camera.position = view.position
        self.server.initial_camera.look_at = view.look_at
        self.server.initial_camera.up = view.up
        self.server.initial_camera.fov = view.fov
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self._workers = [threading.Thread(target=self._decode_semantics, args=(decode,))]
        if config.client_splats:
            self._workers.append(threading.Thread(target=self._make_splats))
        for worker in self._workers:
            worker.start()

    @property
    def url(self) -> str:
        """The page's address with its token, at the port actually bound."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server.get_port()}{self.gate.path}"

    @property
    def exposed(self) -> bool:
        """Whether the bound address is reachable from other machines."""
        return not self.gate.loopback

    @property
    def frames_sent(self) -> int:
        return sum(client.frames_sent for client in list(self.clients.values()))

    def only_client(self) -> ClientView | None:
        """The one connected client (tests and the benchmark drive a single page)."""
        clients = list(self.clients.values())
        return clients[0] if len(clients) == 1 else None

    def _decode_semantics(self, decode: Callable[[bool], Scene]) -> None:
        scene, note = self.scene, ""
        if scene.semantics is None:  # base-only decode: try the whole stream
            try:
                scene = decode(False)
            except ValueError as err:
                note = f"Semantic layer not decoded: {err}"
        leaves = None
        if scene.semantics is not None:
            leaves = scene.semantics.slot_leaves(scene.model)
        with self._lock:
            self.scene, self.slot_leaves = scene, leaves
            clients = list(self.clients.values())
        for client in clients:
            client.upgrade(scene, leaves, note)
        self.ready.set()

    def _make_splats(self) -> None:
        try:
            splats = splats_of(
                self.scene.model,
                self.scene.cameras,
                self.config.splat_views,
                self.config.splat_bulk_share,
            )
        except Exception as err:  # noqa: BLE001 - server frames stay; say why splats are off
            LOG.warning("viewer: no splats (%s: %s)", type(err).__name__, err)
            return
        with self._lock:
            self.splats = splats
            clients = list(self.clients.values())
        self.splats_ready.set()
        for client in clients:
            client.picture_changed()

    def _connect(self, client: viser.ClientHandle) -> None:
        with self._lock:
            if len(self.clients) >= self.config.max_clients:
                client.gui.add_markdown(
                    f"The viewer serves {self.config.max_clients} pages at most: close one."
                )
                return
            view = ClientView(self, client, self.scene, self.slot_leaves)
            self.clients[client.client_id] = view
        view.start()

    def _disconnect(self, client: viser.ClientHandle) -> None:
        with self._lock:
            view = self.clients.pop(client.client_id, None)
        if view is not None:
            view.close()

    def stop(self) -> None:
        """Stop serving."""
        views = list(self.clients.values())
        for view in views:
            view.close()
        self.server.stop()
        for view in views:
            view.join()
        for worker in self._workers:  # torch must not be mid-call when the interpreter exits
            worker.join()


class ClientView:
    """One browser client: its panel, session, splats, action worker and render thread."""

    def __init__(
        self, viewer: Viewer, client: viser.ClientHandle, scene: Scene, leaves: torch.Tensor | None
    ) -> None:
        self.viewer = viewer
        self.client = client
        self.config = viewer.config
        self.session = ViewerSession(scene, viewer.source, viewer.config, viewer.target)
        if leaves is not None:
            self.session.upgrade(scene, leaves)
        self.frames_sent = 0
        self.last_camera: Camera | None = None
        self.last_selection: Selection | None = None
        self.last_frame: np.ndarray | None = None
        """The camera, highlighted selection and picture of the last server frame sent."""
        self.last_frame_seconds = float("nan")
        self.splats_sent = 0
        self.last_splat_selection: Selection | None = None
        self.last_splat_edits = -1
        """The highlighted selection and edit count of the splats last sent."""
        self.refined = False
        """Whether the server's frame (not the splats) is what the page shows."""
        self._splat_node: viser.GaussianSplatHandle | None = None
        self._moved_at = 0.0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._pending: collections.deque[tuple[str, Callable[[], str]]] = collections.deque()
        self._pending_lock = threading.Lock()
        self._work = threading.Event()
        self._threads = [
            threading.Thread(target=self._render_loop, daemon=True),
            threading.Thread(target=self._action_loop, daemon=True),
        ]
        self._build_gui()

    def _build_gui(self) -> None:
        gui = self.client.gui
        reason = self.session.why_no_query()
        decoding = bool(reason) and not self.viewer.ready.is_set()
        self.status = gui.add_markdown(
            "Decoding the semantic layer…" if decoding else _ready_text(reason)
        )
        off = bool(reason)
        self.query_text = gui.add_text("Query", "", disabled=off, hint="object to highlight")
        self.query_button = gui.add_button("Highlight", disabled=off)
        self.edit_inputs: dict[str, Any] = {}
        self.edit_buttons: dict[str, Any] = {}
        for code, op in OPERATIONS.items():
            if op.value is not None:
                self.edit_inputs[code] = _add_input(gui, op.value, off)
            self.edit_buttons[code] = gui.add_button(op.label, disabled=off)
        self.undo_button = gui.add_button("Undo", disabled=off)
        gui.add_markdown(f"Saves to `{self.viewer.target.path}`")
        self.save_button = gui.add_button("Save .csg", disabled=off)
        self.use_splats = gui.add_checkbox("Splats in the browser", self.config.client_splats)
        self.refine = gui.add_checkbox("Refine at rest", True)
        self.query_text.on_update(lambda _: self.submit("query", self._query))
        self.query_button.on_click(lambda _: self.submit("query", self._query))
        for code, button in self.edit_buttons.items():
            button.on_click(lambda _, code=code: self.submit("edit", lambda: self._edit(code)))
        self.undo_button.on_click(lambda _: self.submit("undo", self._undo))
        self.save_button.on_click(lambda _: self.submit("save", self._save))
        self.use_splats.on_update(lambda _: self.picture_changed())
        self.refine.on_update(lambda _: self.picture_changed())

    def _controls(self) -> list:
        edits = [
            control
            for code in OPERATIONS
            for control in (self.edit_inputs.get(code), self.edit_buttons[code])
            if control is not None
        ]
        return [self.query_text, self.query_button, *edits, self.undo_button, self.save_button]

    def start(self) -> None:
        self.client.camera.on_update(lambda _: self._camera_moved())
        for thread in self._threads:
            thread.start()
        self.picture_changed()

    def close(self) -> None:
        """Stop the client's threads (they end after their current frame or action)."""
        self._closed.set()
        self._wake.set()
        self._work.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def upgrade(self, scene: Scene, leaves: torch.Tensor | None, note: str) -> None:
        """The semantic layer is decoded (or not): enable the controls that apply."""
        self.session.upgrade(scene, leaves)
        reason = self.session.why_no_query()
        for control in self._controls():
            control.disabled = bool(reason)
        self.status.content = note or _ready_text(reason)
        self.picture_changed()

    # Actions: one worker thread per client, off the render path.

    def submit(self, kind: str, action: Callable[[], str]) -> None:
        """Queue a GUI action (a newer query replaces a waiting one; a flood is refused)."""
        with self._pending_lock:
            if kind == "query":
                self._pending = collections.deque(p for p in self._pending if p[0] != "query")
            if len(self._pending) >= self.config.max_pending_actions:
                self.status.content = "busy: action refused (too many waiting)"
                return
            self._pending.append((kind, action))
        self._work.set()

    def _action_loop(self) -> None:
        while not self._closed.is_set():
            if not self._work.wait(timeout=0.5):
                continue
            with self._pending_lock:
                if not self._pending:
                    self._work.clear()
                    continue
                _, action = self._pending.popleft()
            self._run(action)

    def _run(self, action: Callable[[], str]) -> None:
        """Run a GUI action, show its outcome, and update the picture if it changed."""
        session = self.session
        before = (_highlighted(session.selection), len(session.edits))
        try:
            self.status.content = action()
        except (QueryError, ValueError, OSError) as err:
            self.status.content = f"{err}"
        except Exception as err:  # noqa: BLE001 - never a traceback to a client
            LOG.warning("viewer: action failed (%s: %s)", type(err).__name__, err)
            self.status.content = f"failed ({type(err).__name__})"
        if (_highlighted(session.selection), len(session.edits)) != before:
            self.picture_changed()

    def _query_text(self) -> str:
        return check_query_text(self.query_text.value)

    def _query(self) -> str:
        text = self._query_text()
        self.status.content = f"querying '{text}'…"
        selection = self.session.query(text)
        if not selection.matched:
            return f"'{selection.text}' matches nothing (best score {selection.best_score:.2f})"
        return f"'{selection.text}': {selection.n_gaussians} Gaussians highlighted"

    def _edit(self, code: str) -> str:
        text = self._query_text()
        op = OPERATIONS[code]
        if op.value is None:
            request = op(text)
        else:
            request = op.from_control(text, self.edit_inputs[code].value)
        self.status.content = f"{code} '{text}'…"
        edit = self.session.apply(request)
        return f"{edit.kind} '{text}' ({len(self.session.edits)} edits)"

    def _undo(self) -> str:
        edit = self.session.undo()
        return "nothing to undo" if edit is None else f"undid {edit.kind} '{edit.text}'"

    def _save(self) -> str:
        report = self.session.save()
        return f"saved {self.viewer.target.path} ({report['output_bytes']} bytes)"

    # The picture: splats in the browser, the server's frame at rest.

    def splats_on(self) -> bool:
        return self.viewer.splats is not None and bool(self.use_splats.value)

    def picture_changed(self) -> None:
        """The highlight, the edits or a switch changed: resend the splats, then refine."""
        self._wake.set()

    def _camera_moved(self) -> None:
        self._moved_at = time.monotonic()
        if self.refined and self.splats_on():
            self._show_splats(True)
        self._wake.set()

    def _show_splats(self, visible: bool) -> None:
        """Show the splats (and drop the server's frame) or hide them under it."""
        if self._splat_node is None:
            return
        if visible:
            self.client.scene.set_background_image(None)
        self._splat_node.visible = visible
        self.refined = not visible

    def _send_splats(self) -> None:
        """The session's splats (edited, highlighted) to the client when they changed."""
        session = self.session
        selection, edits = session.selection, list(session.edits)
        if self._splat_node is not None and (
            _highlighted(selection) == _highlighted(self.last_splat_selection)
            and len(edits) == self.last_splat_edits
        ):
            return
        splats = edited(self.viewer.splats, edits)
        slots = None if selection is None else selection.slots
        rgbs = highlighted(splats, slots, self.config.highlight_color)
        self._splat_node = self.client.scene.add_gaussian_splats(
            "/splats", **splats.arrays(rgbs), visible=not self.refined
        )
        self.last_splat_selection, self.last_splat_edits = selection, len(edits)
        self.splats_sent += 1

    def _render_loop(self) -> None:
        while not self._closed.is_set():
            if not self._wake.wait(timeout=0.5):
                continue
            self._wake.clear()
            try:
                self._update_picture()
            except ValueError as err:  # a bad camera: say so, keep serving
                self.status.content = f"{err}"
            except Exception as err:  # noqa: BLE001 - a frame that fails must not end the client
                LOG.warning("viewer: frame failed (%s: %s)", type(err).__name__, err)
                self.status.content = f"frame not rendered ({type(err).__name__}: {err})"

    def _update_picture(self) -> None:
        if not self.splats_on():
            if self._splat_node is not None:
                self._splat_node.visible = False
            self._send_frame()
            return
        self._send_splats()
        if not self.refine.value:
            self._show_splats(True)
            return
        rest = self.config.refine_delay - (time.monotonic() - self._moved_at)
        if rest > 0:  # the camera moves: the splats follow it; refine once it rests
            if not self._wake.wait(rest):
                self._wake.set()  # rested: come back and refine
            return
        self._send_frame()
        self._show_splats(False)

    def _camera(self) -> Camera:
        """The client's camera as ours; ValueError for a camera no frame can be made of."""
        camera = self.client.camera
        width, height = int(camera.image_width), int(camera.image_height)
        if width <= 0 or height <= 0:
            raise ValueError(f"bad camera: a {width} x {height} canvas")
        c2w = np.eye(4)
        wxyz = np.asarray(camera.wxyz, dtype=np.float64)
        if not np.isfinite(wxyz).all() or not 0.5 < np.linalg.norm(wxyz) < 2.0:
            raise ValueError("bad camera: its rotation is not a unit quaternion")
        c2w[:3, :3] = vtf.SO3(wxyz / np.linalg.norm(wxyz)).as_matrix()
        c2w[:3, 3] = camera.position
        return pinhole(c2w, float(camera.fov), width / height, self.config.max_side)

    def _send_frame(self) -> None:
        """Render the client's current camera and send the frame as its background image."""
        view = self._camera()
        started = time.perf_counter()
        frame, selection = self.session.frame(view)
        self.last_frame_seconds = time.perf_counter() - started
        self.client.scene.set_background_image(frame, format="jpeg", jpeg_quality=90)
        self.last_camera, self.last_selection, self.last_frame = view, selection, frame
        self.frames_sent += 1


def _ready_text(reason: str) -> str:
    return f"Queries off: {reason}" if reason else "Semantic layer decoded: type a query."


def _highlighted(selection: Selection | None) -> tuple[int, ...]:
    """The codebook leaves a selection highlights (what a frame shows of it)."""
    return () if selection is None else tuple(selection.leaves)


def _add_input(gui: Any, value: Value, disabled: bool) -> Any:
    """The viewer input of an operation's ``value``."""
    if value.control == "rgb":
        return gui.add_rgb(value.label, value.default, disabled=disabled)
    if value.control == "vector3":
        return gui.add_vector3(value.label, value.default, step=value.step, disabled=disabled)
    return gui.add_number(
        value.label, value.default, min=value.lo, max=value.hi, step=value.step, disabled=disabled
    )
