"""A websocket client that speaks viser's protocol as its page does, to send crafted messages.

Server to client: a frame is ``[8-byte msgpack size][8-byte compressed size][zstd msgpack]``
followed by binary buffers (viser's ``infra._infra._message_producer``); the msgpack holds
``{"messages": [...]}``, each a dict with its ``type``. Client to server: one msgpack dict per
message with its ``type`` (``infra._messages.Message.deserialize``), e.g. ``GuiUpdateMessage``
``{"uuid", "updates"}`` for a typed text or a clicked button and ``ViewerCameraMessage``.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import msgspec
import viser
import zstandard

SUBPROTOCOL = f"viser-v{viser.__version__}"


def websocket_url(page_url: str) -> str:
    """The websocket address viser's page derives from its own (no query, no final '/')."""
    return page_url.replace("http://", "ws://", 1).split("?")[0].rstrip("/")


def page_origin(page_url: str) -> str:
    parts = urlsplit(page_url)
    return f"{parts.scheme}://{parts.netloc}"


class ViserClient:
    """One connection; a reader thread records every message the server sends."""

    def __init__(
        self,
        url: str,
        origin: str | None,
        header: list[str] | None = None,
        host: str | None = None,
    ) -> None:
        import websocket

        kwargs = {"suppress_origin": True} if origin is None else {"origin": origin}
        if host is not None:
            kwargs["host"] = host
        self.socket = websocket.create_connection(
            url, timeout=20, subprotocols=[SUBPROTOCOL], header=header or [], **kwargs
        )
        self.messages: list[tuple[float, dict]] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        zstd = zstandard.ZstdDecompressor()
        try:
            while True:
                data = self.socket.recv()
                if not data:
                    break
                inner = int.from_bytes(data[:8], "little")
                compressed = int.from_bytes(data[8:16], "little")
                payload = zstd.decompress(data[16 : 16 + compressed], max_output_size=inner)
                now = time.monotonic()
                with self._lock:
                    for message in msgspec.msgpack.decode(payload)["messages"]:
                        self.messages.append((now, message))
        except Exception:  # noqa: BLE001 - the server closed the connection
            pass
        finally:
            self.closed.set()

    def send(self, message: dict) -> None:
        self.socket.send_binary(msgspec.msgpack.encode(message))

    def received(self, kind: str, since: float = 0.0) -> list[tuple[float, dict]]:
        with self._lock:
            return [(t, m) for t, m in self.messages if m["type"] == kind and t >= since]

    def uuid(self, label: str) -> str | None:
        """The uuid of the GUI element labelled ``label`` (the last one created)."""
        found = None
        with self._lock:
            for _, message in self.messages:
                props = message.get("props")
                if isinstance(props, dict) and props.get("label") == label and "uuid" in message:
                    found = message["uuid"]
        return found

    def update(self, label: str, **updates) -> None:
        """Send what the page sends when the user changes (or clicks) ``label``."""
        uuid = self.uuid(label)
        assert uuid is not None, f"no GUI element {label!r} received"
        self.send({"type": "GuiUpdateMessage", "uuid": uuid, "updates": updates})

    def click(self, label: str) -> None:
        self.update(label, value=True)

    def camera(
        self,
        position=(3.0, -3.0, 3.0),
        wxyz=(0.3, 0.9, 0.2, 0.1),
        fov=0.9,
        size=(128, 128),
    ) -> float:
        """Send a camera; returns when it was sent."""
        self.send(
            {
                "type": "ViewerCameraMessage",
                "wxyz": list(wxyz),
                "position": list(position),
                "fov": fov,
                "near": 0.01,
                "far": 100.0,
                "image_height": size[1],
                "image_width": size[0],
                "look_at": [0.0, 0.0, 0.0],
                "up_direction": [0.0, 0.0, 1.0],
            }
        )
        return time.monotonic()

    def frames(self, since: float = 0.0) -> list[float]:
        """Arrival times of the background images (server frames) received since ``since``."""
        return [
            t
            for t, m in self.received("BackgroundImageMessage", since)
            if m.get("rgb_data") is not None
        ]

    def close(self) -> None:
        try:
            self.socket.close()
        except OSError:
            pass
