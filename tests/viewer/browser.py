"""A headless Chromium driven over the DevTools protocol (websocket-client), for viewer tests."""

from __future__ import annotations

import base64
import io
import itertools
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """The system's Chromium executable, if installed (Debian: ``apt-get install chromium``)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, step: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Browser:
    """One headless Chromium page."""

    def __init__(self, executable: str, profile: Path, size: tuple[int, int] = (960, 600)):
        import websocket

        self.port = free_port()
        self.process = subprocess.Popen(
            [
                executable,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--remote-debugging-port={self.port}",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pages = wait_for(self._pages, 20, "Chromium's DevTools endpoint", 0.1)
        # No Origin header: Chromium's DevTools endpoint refuses a websocket that carries one
        # unless started with --remote-allow-origins (the default since Chromium 111 in some
        # builds, all builds later), and websocket-client sends one by default.
        self.socket = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], timeout=20, suppress_origin=True
        )
        self._ids = itertools.count(1)

    def _pages(self) -> list[dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=1) as r:
                return [t for t in json.load(r) if t.get("type") == "page"]
        except OSError:
            return []

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        message_id = next(self._ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def screenshot(self) -> np.ndarray:
        """The page as ``[H, W, 3]`` uint8."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def type_text(self, text: str) -> None:
        """Type into the focused element."""
        for char in text:
            self.call("Input.dispatchKeyEvent", type="keyDown", text=char, key=char)
            self.call("Input.dispatchKeyEvent", type="keyUp", key=char)

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


FIND_QUERY_BOX = """(() => {
    const label = [...document.querySelectorAll('*')].find(
        e => e.children.length === 0 && e.textContent.trim() === 'Query');
    let node = label;
    while (node && !node.querySelector('input')) node = node.parentElement;
    return node ? node.querySelector('input') : null; })()"""
"""The text input beside the viewer's 'Query' label (viser renders a label per input)."""


def hide_notifications(page: Browser) -> None:
    """Hide viser's pop-up notices (e.g. "software WebGL" in a headless browser): they come and
    go on their own and would count as changed pixels between screenshots."""
    page.evaluate(
        "(() => { const s = document.createElement('style'); s.textContent = "
        "'.mantine-Notifications-root { display: none !important; }'; "
        "document.head.appendChild(s); return true; })()"
    )


def focus_query_box(page: Browser) -> None:
    """Focus the viewer's 'Query' text box."""
    focused = page.evaluate(
        f"(() => {{ const box = {FIND_QUERY_BOX}; box.focus(); return true; }})()"
    )
    assert focused, "no Query text box on the page"


def client_of(viewer):
    """The viewer's one connected page (a :class:`csgaussian.viewer.app.ClientView`)."""
    return wait_for(viewer.only_client, 20, "one connected page")


def answered(viewer, text: str) -> bool:
    """Whether the page's selection answers ``text`` (the whole typed query)."""
    selection = client_of(viewer).session.selection
    return selection is not None and selection.text == text


def shows(viewer, selection) -> bool:
    """Whether the page's last server frame highlights ``selection``'s leaves."""
    shown = client_of(viewer).last_selection
    return shown is not None and shown.leaves == selection.leaves


def query_enabled(page: Browser) -> bool:
    return bool(
        page.evaluate(f"(() => {{ const box = {FIND_QUERY_BOX}; return box && !box.disabled; }})()")
    )
