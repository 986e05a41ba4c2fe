"""Viewer speed on the kitchen stream (issue 10): server time per 512 x 512 frame, and time from
a query to its highlighted frame.

Usage: python benchmarks/viewer.py [--stream /tmp/kfinal.csg] [--data ../shared/data/kitchen]
       [--frames 10]

Frames are rendered as the server does (:meth:`ViewerSession.frame`, the test cameras scaled to
512 x 512, plus the JPEG encoding viser sends); the first frame is reported apart (it compiles
the rasterizer's kernels). A query's time is from the text to the highlighted frame: the text
encoder, the slot leaves (computed once per scene, so the first query pays them) and the frame.
With Chromium installed, also the end-to-end time from typing the query into the page to the
server having sent the highlighted frame. Prints ONE JSON line.
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
import time
from pathlib import Path

from PIL import Image

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.types import Camera
from csgaussian.viewer.session import ViewerSession

REPO = Path(__file__).resolve().parents[1]
SIDE = 512
QUERIES = ("rubber duck", "green bottle", "blue plate")


def square(camera: Camera) -> Camera:
    """``camera`` resampled to SIDE x SIDE (kitchen's views are square)."""
    scaled = camera.scaled(SIDE / max(camera.width, camera.height))
    return Camera(scaled.viewmat, scaled.K, SIDE, SIDE)


def frame_seconds(session: ViewerSession, camera: Camera) -> float:
    """Wall seconds of one frame (render + JPEG); its process CPU time goes to CPU_TIMES."""
    started, cpu = time.perf_counter(), time.process_time()
    image, _ = session.frame(camera)
    Image.fromarray(image).save(io.BytesIO(), "JPEG", quality=90)
    CPU_TIMES.append(time.process_time() - cpu)
    return time.perf_counter() - started


CPU_TIMES: list[float] = []


def browser_query_seconds(stream: Path) -> float | None:
    """Typing a query into the page to the highlighted frame sent, or None without Chromium."""
    spec = importlib.util.spec_from_file_location("browser", REPO / "tests/viewer/browser.py")
    browser = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser)
    chromium_path, wait_for = browser.chromium_path, browser.wait_for
    if chromium_path() is None:
        return None
    viewer = api.viewer(stream, port=browser.free_port())
    with tempfile.TemporaryDirectory() as profile:
        page = browser.Browser(chromium_path(), Path(profile), size=(SIDE + 400, SIDE))
        try:
            page.call("Page.navigate", url=f"http://127.0.0.1:{viewer.server.get_port()}")
            wait_for(lambda: viewer.frames_sent > 0 and browser.query_enabled(page), 60, "the page")
            browser.focus_query_box(page)
            started = time.perf_counter()
            page.type_text(QUERIES[0])
            wait_for(lambda: browser.answered(viewer, QUERIES[0]), 30, "the query", step=0.01)
            selection = viewer.session.selection
            wait_for(lambda: browser.shows(viewer, selection), 30, "the frame", step=0.01)
            return time.perf_counter() - started
        finally:
            page.close()
            viewer.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", type=Path, default=Path("/tmp/kfinal.csg"))
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kitchen")
    ap.add_argument("--frames", type=int, default=10)
    args = ap.parse_args(argv)
    cameras = [square(view.camera) for view in load_scene(args.data, load_instances=False).test]
    session = ViewerSession(api.decode(args.stream), args.stream)
    first = frame_seconds(session, cameras[0])
    CPU_TIMES.clear()
    times = [frame_seconds(session, cameras[i % len(cameras)]) for i in range(args.frames)]
    cpu = statistics.median(CPU_TIMES)
    print(f"frame: first {first:.3f} s, median {statistics.median(times):.3f} s", file=sys.stderr)
    queries = []
    for text in QUERIES:
        started = time.perf_counter()
        session.query(text)
        session.frame(cameras[0])
        queries.append(round(time.perf_counter() - started, 3))
    highlighted = [frame_seconds(session, cameras[i % len(cameras)]) for i in range(args.frames)]
    report = {
        "frame_side": SIDE,
        "first_frame_s": round(first, 3),
        "frame_s_median": round(statistics.median(times), 3),
        "frame_s_max": round(max(times), 3),
        "frame_cpu_s_median": round(cpu, 3),
        "highlighted_frame_s_median": round(statistics.median(highlighted), 3),
        "query_to_highlighted_frame_s": dict(zip(QUERIES, queries, strict=True)),
        "browser_typing_to_highlighted_frame_s": browser_query_seconds(args.stream),
        "load_average": round(os.getloadavg()[0], 2),
        "numba_threads": os.environ.get("NUMBA_NUM_THREADS", "default"),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
