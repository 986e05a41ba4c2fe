"""The viewer end to end in headless Chromium: the page loads, a frame rendered on the server
arrives, a query typed in the page's text box highlights the object where its mask is."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from csgaussian import api
from csgaussian.semantics.query import render_selection

from .browser import (
    Browser,
    answered,
    chromium_path,
    client_of,
    focus_query_box,
    free_port,
    hide_notifications,
    query_enabled,
    shows,
    wait_for,
)
from .visible_object import most_visible

CHROMIUM = chromium_path()
CHANGED = 24
"""A screen pixel counts as highlighted when a channel moved by more than this (of 255): the
tint moves the object's pixels half-way to red, JPEG noise stays under ~8."""


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run must install it")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    page = Browser(CHROMIUM, tmp_path / "profile")
    yield page
    page.close()


def test_typed_query_highlights_the_object_where_its_mask_is(browser, tiny_run, tiny_names):
    viewer = api.viewer(tiny_run / "stream.csg", port=free_port())
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=viewer.url)
        wait_for(viewer.ready.is_set, 20, "the semantic layer")
        wait_for(lambda: viewer.frames_sent > 0, 20, "a first frame")
        page = client_of(viewer)
        wait_for(lambda: query_enabled(browser), 10, "enabled query controls")
        hide_notifications(browser)
        before = _displayed(browser, viewer)
        name, _ = most_visible(page.session.scene, page.last_camera, tiny_names)
        focus_query_box(browser)
        browser.type_text(name)
        wait_for(lambda: answered(viewer, name), 10, "the query's selection")
        selection = page.session.selection
        wait_for(lambda: shows(viewer, selection), 10, "a highlighted frame")
        after = _displayed(browser, viewer)
        mask = render_selection(page.session.scene.model, page.last_camera, selection.slots)
        expected = _to_screen(mask["visible"], after.shape[:2])
        changed = np.abs(after.astype(int) - before.astype(int)).max(-1) > CHANGED
        left = slice(0, after.shape[1] // 2)  # the GUI panel sits on the right
        hit, want = changed[:, left], expected[:, left]
        assert want.sum() > 1000
        assert (hit & want).sum() / want.sum() > 0.8  # the object's pixels are highlighted
        assert (hit & ~want).sum() / max(hit.sum(), 1) < 0.1  # and little else moved
    finally:
        viewer.stop()


def _displayed(page: Browser, viewer) -> np.ndarray:
    """A screenshot once the page shows the server's last frame: on the left half (no panel
    there) under 2% of the pixels differ from the frame stretched to the page."""
    shots = []

    def showing() -> bool:
        shot = page.screenshot()
        shots.append(shot)
        height, width = shot.shape[:2]
        frame = np.asarray(Image.fromarray(client_of(viewer).last_frame).resize((width, height)))
        left = slice(0, width // 2)
        off = np.abs(shot[:, left].astype(int) - frame[:, left].astype(int)).max(-1) > CHANGED
        return off.mean() < 0.02

    wait_for(showing, 10, "the page to show the last frame", step=0.2)
    return shots[-1]


def _to_screen(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The frame's mask stretched to the page (the background image fills the canvas)."""
    scaled = F.interpolate(mask.float()[None, None], size=size, mode="nearest")
    return scaled[0, 0].numpy() > 0.5
