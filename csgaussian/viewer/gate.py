"""Who may talk to the viewer: a random token in the page's path and the page's own Origin.

The viewer is a network server and every browser client is untrusted: any page open in the
same browser can open a websocket to ``127.0.0.1:PORT`` and any local process can connect. The
gate therefore requires

- a random token as the first path segment of every request (the page is served at
  ``http://HOST:PORT/TOKEN/``, and viser's page opens its websocket at ``ws://HOST:PORT/TOKEN``,
  the page's address without its query): a page or process that was not given the printed URL
  cannot connect, as with Jupyter's token;
- on the websocket handshake, an ``Origin`` header equal to ``http://`` plus the request's
  ``Host``, and for a loopback bind a loopback ``Host`` (a page of another site, or one reached
  through DNS rebinding, is refused);
- websocket messages of at most ``max_message_bytes`` (viser accepts 50 MB).

viser 1.1.1 has no hook for any of this: its HTTP handler and ``websockets.asyncio.server.serve``
call are local to ``WebsockServer._background_worker``. :func:`gated_server` therefore replaces
``websockets.asyncio.server.serve`` only while ``viser.ViserServer`` starts (the call happens in
viser's server thread before the constructor returns; a module lock keeps two viewers from
overlapping), wrapping viser's own request handler and connection handler, and nothing else.
While it starts, viser's banner (its address without the token) goes nowhere: the caller prints
the page's address with the token. viser's share-URL messages are unregistered: a client must not
open a public tunnel to the viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import io
import ipaddress
import logging
import secrets
import threading
from collections.abc import Callable

LOG = logging.getLogger("csgaussian.viewer")

TOKEN_BYTES = 24
"""Random bytes of the page token (32 URL-safe characters), as Jupyter's 24-byte default."""

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
"""The ``Host`` names a loopback-bound viewer answers to (others: DNS rebinding)."""

_PATCH_LOCK = threading.Lock()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to bind) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Gate:
    """The token and Origin check of every request to one viewer."""

    def __init__(self, host: str, max_message_bytes: int, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(TOKEN_BYTES)
        self.loopback = is_loopback(host)
        self.max_message_bytes = max_message_bytes
        self.refused = 0
        """Requests refused so far (tests and the benchmark read it)."""

    @property
    def path(self) -> str:
        """The page's path (``/TOKEN/``)."""
        return f"/{self.token}/"

    def _has_token(self, path: str) -> bool:
        first = path.partition("?")[0].split("/")[1:2]
        return bool(first) and secrets.compare_digest(first[0].encode(), self.token.encode())

    def _host_allowed(self, host: str, port: int) -> bool:
        if not self.loopback:
            return bool(host)
        return host in {f"{name}:{port}" for name in LOOPBACK_NAMES}

    def why_refused(self, request, port: int) -> str:
        """Why ``request`` (a ``websockets.http11.Request``) is refused, or '' when allowed."""
        if not self._has_token(request.path):
            return "no valid token in the path"
        host = _one_header(request, "Host")
        if host is None or not self._host_allowed(host, port):
            return f"Host {host!r} is not the viewer's"
        if _is_upgrade(request):
            origin = _one_header(request, "Origin")
            if origin != f"http://{host}":
                return f"Origin {origin!r} is not the viewer's page"
        return ""

    def process_request(self, serve_page: Callable | None) -> Callable:
        """Wrap viser's HTTP handler ``serve_page``: refuse, else strip the token and serve."""
        from websockets import Headers
        from websockets.http11 import Response

        def process(connection, request):
            port = connection.local_address[1]
            reason = self.why_refused(request, port)
            if reason:
                self.refused += 1
                LOG.warning("viewer: refused a request (%s)", reason)
                return Response(http.HTTPStatus.FORBIDDEN, "Forbidden", Headers(), b"Forbidden\n")
            if _is_upgrade(request):
                return None  # accept the handshake
            path = request.path.partition("?")[0]
            if path == f"/{self.token}":  # the page must end with '/' (its websocket address)
                return Response(
                    http.HTTPStatus.FOUND, "Found", Headers({"Location": self.path}), b""
                )
            rest = "/" + path.split("/", 2)[2]
            if serve_page is None:
                return None
            return serve_page(connection, dataclasses.replace(request, path=rest))

        return process

    def guard(self, handler: Callable) -> Callable:
        """Wrap viser's connection handler: a client that breaks the protocol (a malformed
        message, a property the GUI does not have) loses its connection with one logged line
        instead of a traceback, and so do viser's message tasks on the same event loop."""

        async def guarded(connection) -> None:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(_one_line)
            try:
                await handler(connection)
            except Exception as err:  # noqa: BLE001 - the client's fault, logged in one line
                LOG.warning("viewer: closed a client (%s: %s)", type(err).__name__, err)

        return guarded


def _one_header(request, name: str) -> str | None:
    """The request's one ``name`` header (None when absent or repeated)."""
    values = request.headers.get_all(name)
    return values[0] if len(values) == 1 else None


def _is_upgrade(request) -> bool:
    return any(v.lower() == "websocket" for v in request.headers.get_all("Upgrade"))


_LOGGED: set[str] = set()
MAX_LOGGED = 100
"""Distinct failures of client messages logged (a flooding client must not flood the log)."""


def _one_line(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    err = context.get("exception")
    what = f"{type(err).__name__}: {err}" if err is not None else context.get("message", "")
    if what in _LOGGED or len(_LOGGED) >= MAX_LOGGED:
        return
    _LOGGED.add(what)
    LOG.warning("viewer: a client message failed (%s)", what)


def gated_server(gate: Gate, host: str, port: int):
    """A started ``viser.ViserServer`` whose every request goes through ``gate``."""
    import viser
    import viser._messages as messages
    import websockets.asyncio.server as ws_server

    original = ws_server.serve

    def serve(handler, *args, process_request=None, **kwargs):
        kwargs["max_size"] = gate.max_message_bytes
        return original(
            gate.guard(handler), *args, process_request=gate.process_request(process_request),
            **kwargs,
        )  # fmt: skip

    with _PATCH_LOCK, contextlib.redirect_stdout(io.StringIO()):
        ws_server.serve = serve
        try:
            server = viser.ViserServer(host=host, port=port, verbose=False)
        finally:
            ws_server.serve = original
    for message in (messages.ShareUrlRequest, messages.ShareUrlDisconnect):
        server._websock_server.unregister_handler(message)
    return server
