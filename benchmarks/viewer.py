"""Viewer speed on the kitchen stream (issues 10, 15, 18): the server's frames, the browser's
splats, queries and edits to their pictures, and another page's frames while one floods.

Usage: python benchmarks/viewer.py --stream STREAM.csg [--data ../shared/data/kitchen]
       [--frames 10] [--out benchmarks/results/viewer]

Server side (no browser): a 512 x 512 frame as the server makes it (:meth:`ViewerSession.frame`
at the test cameras, plus the JPEG viser sends; the first frame, which compiles the rasterizer's
kernels, apart), query to highlighted frame, remove to updated frame, and the splats' making.

Browser side, with Chromium installed (headless, software WebGL: SwiftShader on the CPU, no GPU;
the figures are the CPU's, a GPU draws the splats far faster): from the viewer's start to the URL,
to the page's first picture and to the splats; frames per second the page draws while the mouse
orbits the camera (requestAnimationFrame count over the drag) with the splats and, for
comparison, the server frames received per second with "Splats in the browser" off; query typed
to the highlighted splats on screen and Remove clicked to the updated splats on screen ("Refine
at rest" off, so the splats are what the page shows), and the same two through the server's
frames. Last, the worst delay of a page's frame while another page floods the viewer with
queries, clicks and cameras (tests/viewer/wsclient.py). Writes ``viewer.json`` with provenance
and prints it.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from provenance import provenance, write_environment

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.semantics.edit_requests import Remove
from csgaussian.types import Camera
from csgaussian.viewer.opening import opening_view
from csgaussian.viewer.session import ViewerConfig, ViewerSession
from csgaussian.viewer.splats import splats_of

REPO = Path(__file__).resolve().parents[1]
SIDE = 512
QUERIES = ("rubber duck", "green bottle", "blue plate")
DRAG_STEPS = 90
"""Mouse moves of one orbit drag (one per 16 ms, a 60 Hz display's pace)."""
CHANGED = 24
"""A screen pixel changed when a channel moved by more than this (of 255)."""


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "viewer" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def square(camera: Camera) -> Camera:
    """``camera`` resampled to SIDE x SIDE (kitchen's views are square)."""
    scaled = camera.scaled(SIDE / max(camera.width, camera.height))
    return Camera(scaled.viewmat, scaled.K, SIDE, SIDE)


def frame_seconds(session: ViewerSession, camera: Camera) -> float:
    """Wall seconds of one frame (render + JPEG)."""
    started = time.perf_counter()
    image, _ = session.frame(camera)
    Image.fromarray(image).save(io.BytesIO(), "JPEG", quality=90)
    return time.perf_counter() - started


def server_figures(stream: Path, cameras: list[Camera], n_frames: int) -> dict:
    session = ViewerSession(api.decode(stream), stream)
    first = frame_seconds(session, cameras[0])
    times = [frame_seconds(session, cameras[i % len(cameras)]) for i in range(n_frames)]
    queries, matched = {}, None
    for text in QUERIES:
        started = time.perf_counter()
        selection = session.query(text)
        session.frame(cameras[0])
        queries[text] = round(time.perf_counter() - started, 3)
        if selection.matched and matched is None:
            matched = text
    removed = None
    if matched is not None:
        started = time.perf_counter()
        session.apply(Remove(matched))
        session.frame(cameras[0])
        removed = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    config = ViewerConfig()
    splats = splats_of(
        session.scene.model, session.scene.cameras, config.splat_views, config.splat_bulk_share
    )
    return {
        "frame_side": SIDE,
        "first_frame_s": round(first, 3),
        "frame_s_median": round(statistics.median(times), 3),
        "frame_s_max": round(max(times), 3),
        "query_to_highlighted_frame_s": queries,
        "remove_to_updated_frame_s": removed,
        "removed": matched,
        "splats_s": round(time.perf_counter() - started, 3),
        "splats": len(splats),
        "splat_bytes": 32 * len(splats),
    }


RAF_COUNTER = """(() => { window.__frames = 0; const tick = () => { window.__frames++;
    requestAnimationFrame(tick); }; requestAnimationFrame(tick); return true; })()"""

CLICK_BUTTON = """((label) => { const b = [...document.querySelectorAll('button')].find(
    e => e.textContent.trim() === label); if (!b) return false; b.click(); return true; })"""


class Page:
    """The benchmark's Chromium page over one viewer."""

    def __init__(self, browser_module, viewer, profile: Path) -> None:
        self.b = browser_module
        self.viewer = viewer
        self.page = browser_module.Browser(
            browser_module.chromium_path(), profile, size=(SIDE + 400, SIDE)
        )

    def drag_fps(self) -> tuple[float, float]:
        """Orbit the camera by a mouse drag: (page frames per second, server frames per second)."""
        page, client = self.page, self.b.client_of(self.viewer)
        page.evaluate(RAF_COUNTER)
        x, y = SIDE // 2, SIDE // 2
        page.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left",
                  buttons=1, clickCount=1)  # fmt: skip
        frames0, server0 = page.evaluate("window.__frames"), client.frames_sent
        started = time.perf_counter()
        for step in range(DRAG_STEPS):
            page.call("Input.dispatchMouseEvent", type="mouseMoved", x=x + 2 * (step % 60),
                      y=y, button="left", buttons=1)  # fmt: skip
            time.sleep(max(0.0, started + 0.016 * (step + 1) - time.perf_counter()))
        seconds = time.perf_counter() - started
        frames, server = page.evaluate("window.__frames") - frames0, client.frames_sent - server0
        page.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left",
                  buttons=0, clickCount=1)  # fmt: skip
        return frames / seconds, server / seconds

    def settle(self) -> np.ndarray:
        """A screenshot once two in a row agree (the page has drawn what it got)."""
        last = self.page.screenshot()
        for _ in range(50):
            time.sleep(0.2)
            shot = self.page.screenshot()
            if _changed(shot, last) < 0.001:
                return shot
            last = shot
        return last

    def until_changed(self, before: np.ndarray, started: float, timeout: float = 60) -> float:
        """Seconds from ``started`` to a screenshot that differs from ``before`` (left half)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _changed(self.page.screenshot(), before) > 0.001:
                return time.perf_counter() - started
        raise AssertionError("the picture did not change")


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    left = slice(0, a.shape[1] // 2)  # the GUI panel sits on the right
    return float((np.abs(a[:, left].astype(int) - b[:, left].astype(int)).max(-1) > CHANGED).mean())


def browser_figures(stream: Path, query: str | None) -> dict | None:
    b = _load("browser")
    if b.chromium_path() is None:
        return None
    out: dict = {"webgl": "headless Chromium, software WebGL (no GPU)"}
    started = time.perf_counter()
    viewer = api.viewer(stream, port=b.free_port(), save=Path(tempfile.mkdtemp()) / "e.csg")
    out["start_to_url_s"] = round(time.perf_counter() - started, 3)
    with tempfile.TemporaryDirectory() as profile:
        page = Page(b, viewer, Path(profile))
        try:
            page.page.call("Page.navigate", url=viewer.url)
            b.wait_for(lambda: viewer.frames_sent > 0, 120, "a first frame", step=0.01)
            out["start_to_first_picture_s"] = round(time.perf_counter() - started, 3)
            client = b.client_of(viewer)
            b.wait_for(lambda: client.splats_sent > 0, 300, "the splats", step=0.01)
            out["start_to_splats_sent_s"] = round(time.perf_counter() - started, 3)
            b.wait_for(lambda: viewer.ready.is_set() and b.query_enabled(page.page), 300, "ready")
            b.hide_notifications(page.page)
            client.refine.value = False  # the splats are the picture
            client.picture_changed()
            time.sleep(1.0)
            if query is not None:
                out.update(_measured(_query_and_remove, page, client, query, "splats"))
            out["splats_fps_while_moving"] = round(page.drag_fps()[0], 2)
            client.use_splats.value = False  # every frame from the server
            opening = opening_view(client.session.scene)
            client.client.camera.position = opening.position
            client.client.camera.look_at = opening.look_at
            client.picture_changed()
            time.sleep(2.0)
            if query is not None:
                out.update(_measured(_query_and_remove, page, client, query, "server"))
            page_fps, server_fps = page.drag_fps()
            out["server_frames_per_s_while_moving"] = round(server_fps, 2)
            out["page_fps_while_moving_server_path"] = round(page_fps, 2)
        finally:
            page.page.close()
            viewer.stop()
    return out


def _measured(measure, *args) -> dict:
    """``measure(*args)``, or what failed (the other figures are kept)."""
    try:
        return measure(*args)
    except AssertionError as err:
        return {f"{args[-1]}_failed": str(err)}


def _query_and_remove(page: Page, client, query: str, path: str) -> dict:
    """Type ``query`` into the page, then click Remove; each to its picture on screen. Ends
    with the edit undone and the highlight cleared."""
    b = page.b
    before = page.settle()
    b.focus_query_box(page.page)
    started = time.perf_counter()
    page.page.type_text(query)
    highlighted = page.until_changed(before, started)
    b.wait_for(lambda: b.answered(page.viewer, query), 60, "the query")
    before = page.settle()
    started = time.perf_counter()
    assert page.page.evaluate(f"{CLICK_BUTTON}('Remove')")
    removed = page.until_changed(before, started)
    b.wait_for(lambda: len(client.session.edits) == 1, 30, "the removal")
    client.submit("undo", client._undo)
    client.query_text.value = ""
    client.submit("query", client._query)  # the empty query clears the highlight
    b.wait_for(lambda: not client.session.edits and client.session.selection is None, 30, "reset")
    time.sleep(1.0)
    return {
        f"{path}_query_to_highlighted_picture_s": round(highlighted, 3),
        f"{path}_remove_to_updated_picture_s": round(removed, 3),
    }


def flood_delay(stream: Path, n: int = 10) -> dict:
    """The worst delay of page B's frame for its camera while page A floods the viewer."""
    b, ws = _load("browser"), _load("wsclient")
    viewer = api.viewer(
        stream, port=b.free_port(), config=ViewerConfig(client_splats=False),
        save=Path(tempfile.mkdtemp()) / "e.csg",
    )  # fmt: skip
    try:
        b.wait_for(viewer.ready.is_set, 300, "the semantic layer")
        clients = []
        for _ in range(2):
            client = ws.ViserClient(ws.websocket_url(viewer.url), ws.page_origin(viewer.url))
            client.camera()
            b.wait_for(lambda c=client: c.uuid("Save .csg"), 60, "a panel")
            clients.append(client)
        flooder, watcher = clients
        stop, sent_by_a = threading.Event(), [0]

        def flood() -> None:
            while not stop.is_set():
                sent_by_a[0] += 1
                flooder.update("Query", value=f"rubber duck {sent_by_a[0]} " * 15)
                flooder.click("Duplicate")
                flooder.camera(position=(3.0, -3.0, 3.0 + 0.01 * (sent_by_a[0] % 7)))

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        delays = []
        for step in range(n):
            sent = watcher.camera(position=(3.0 + 0.1 * step, -3.0, 3.0))
            arrived = b.wait_for(lambda s=sent: watcher.frames(s), 120, "B's frame")
            delays.append(arrived[0] - sent)
        stop.set()
        thread.join(10)
        for client in clients:
            client.close()
        return {
            "flood_messages_sent_by_a": 3 * sent_by_a[0],
            "b_frame_delay_s_median": round(statistics.median(delays), 3),
            "b_frame_delay_s_worst": round(max(delays), 3),
        }
    finally:
        viewer.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kitchen")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "viewer")
    args = ap.parse_args(argv)
    cameras = [square(view.camera) for view in load_scene(args.data, load_instances=False).test]
    report = {"origin": provenance(["python", "benchmarks/viewer.py", *(argv or sys.argv[1:])])}
    report["stream"] = {"path": str(args.stream), "bytes": args.stream.stat().st_size}
    report["server"] = server_figures(args.stream, cameras, args.frames)
    report["browser"] = browser_figures(args.stream, report["server"]["removed"])
    report["flood"] = flood_delay(args.stream)
    report["load_average"] = round(os.getloadavg()[0], 2)
    report["timing"] = "contended (2 cores shared by five sessions)"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "viewer.json").write_text(json.dumps(report, indent=1) + "\n")
    write_environment(args.out)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
