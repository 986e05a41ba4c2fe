"""The viewer against hostile clients: a websocket client that speaks viser's protocol sends what
no page would (issue 15 item 2): connections without the token or from another Origin, saves
after paths in the text box, messages for disabled controls, huge texts, broken GUI updates, bad
cameras, a flood. Nothing may be written but the viewer's save target, no traceback may
appear, and another client's frames must keep coming."""

import hashlib
import threading
import time
import urllib.error
import urllib.request

import pytest
import websocket

from csgaussian import api
from csgaussian.viewer.session import MAX_QUERY_CHARS, ViewerConfig

from .browser import free_port, wait_for
from .wsclient import ViserClient, page_origin, websocket_url


@pytest.fixture
def folder(tiny_run, tmp_path):
    """A folder holding a copy of the tiny stream, and nothing else."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "scene.csg").write_bytes((tiny_run / "stream.csg").read_bytes())
    return work


def _files(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _start(path, **config):
    return api.viewer(path, port=free_port(), config=ViewerConfig(**config))


def _connect(viewer) -> ViserClient:
    client = ViserClient(websocket_url(viewer.url), page_origin(viewer.url))
    client.camera()
    wait_for(lambda: client.uuid("Save .csg"), 20, "the client's panel")
    return client


def _status(viewer) -> str:
    return wait_for(viewer.only_client, 10, "one client").status.content


def test_only_the_page_with_its_token_and_origin_connects(folder, capfd):
    viewer = _start(folder / "scene.csg")
    try:
        url, origin = viewer.url, page_origin(viewer.url)
        token = viewer.gate.token
        good = websocket_url(url)
        port = viewer.server.get_port()
        refused = [
            (good, "http://evil.example", None),  # another site's page
            (good, None, None),  # no Origin at all
            (good.replace(token, "x" * len(token)), origin, None),  # a wrong token
            (f"ws://127.0.0.1:{port}", origin, None),  # no token
            (good, f"http://evil.example:{port}", f"evil.example:{port}"),  # DNS rebinding
            (good, "http://evil.example", f"127.0.0.1:{port}\r\nHost: evil.example"),  # two
        ]
        for address, from_origin, host in refused:
            with pytest.raises(websocket.WebSocketBadStatusException, match="403"):
                ViserClient(address, from_origin, host=host)
        for page in (f"http://127.0.0.1:{port}/", url.replace(token, "x")):
            with pytest.raises(urllib.error.HTTPError, match="403"):
                urllib.request.urlopen(page, timeout=10)
        assert urllib.request.urlopen(url, timeout=10).status == 200
        client = _connect(viewer)
        assert not client.closed.is_set()
        assert viewer.gate.refused == len(refused) + 2
        client.close()
    finally:
        viewer.stop()
    assert "Traceback" not in capfd.readouterr().err


def test_crafted_messages_write_nothing_but_the_save_target(folder, capfd):
    source = folder / "scene.csg"
    before = source.read_bytes()
    viewer = _start(source)
    try:
        wait_for(viewer.ready.is_set, 30, "the semantic layer")
        client = _connect(viewer)
        wait_for(lambda: "decoded" in _status(viewer), 10, "the enabled panel")
        client.click("Save .csg")  # nothing edited: nothing to save
        wait_for(lambda: "no edit" in _status(viewer), 10, "the refusal")
        for text in ("../../escape.csg", str(folder.parent / "abs.csg"), "scene.csg", "pwn/a/b"):
            client.update("Query", value=text)
            client.click("Remove")
            client.click("Save .csg")
        client.update("Query", value="x" * (MAX_QUERY_CHARS + 1))
        wait_for(lambda: "characters" in _status(viewer), 10, "the long query's refusal")
        client.update("Query", value="floor\x00")
        wait_for(lambda: "unprintable" in _status(viewer), 10, "the control character's refusal")
        client.update("Offset", value=["nan", "1", "2"])  # not numbers: viser's cast fails
        client.update("Query", evil=1)  # a property the text box does not have
        client.update("Offset", value=[float("nan"), 0.0, 0.0])
        client.update("Query", value="floor")
        client.click("Duplicate")
        wait_for(lambda: "offset" in _status(viewer), 10, "the NaN offset's refusal")
        client.click("Remove")
        wait_for(lambda: "remove 'floor'" in _status(viewer), 10, "the removal")
        client.click("Save .csg")
        wait_for(lambda: (folder / "scene.edited.csg").exists(), 10, "the save")
        client.click("Save .csg")  # its own output: replaced
        time.sleep(0.5)
        assert not client.closed.is_set()
        assert set(_files(folder.parent)) == {"work/scene.csg", "work/scene.edited.csg"}
        assert source.read_bytes() == before
        assert [e.kind for e in api.decode(folder / "scene.edited.csg").edits] == ["remove"]
        (folder / "scene.edited.csg").unlink()
        (folder / "scene.edited.csg").write_bytes(b"someone else's")
        client.click("Save .csg")
        wait_for(lambda: "not the viewer's output" in _status(viewer), 10, "the refusal")
        assert (folder / "scene.edited.csg").read_bytes() == b"someone else's"
        huge = "y" * (2 << 20)  # over the message limit: the connection ends, nothing else
        client.update("Query", value=huge)
        wait_for(client.closed.is_set, 10, "the oversized message's connection to close")
        other = _connect(viewer)  # the viewer serves the next page
        other.close()
    finally:
        viewer.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err


def test_controls_of_a_base_only_stream_are_refused_on_the_server(folder, capfd):
    data = (folder / "scene.csg").read_bytes()
    base = folder / "base.csg"
    base.write_bytes(data[: api.layer_bytes(data)["base"]])
    (folder / "scene.csg").unlink()
    viewer = _start(base)
    try:
        wait_for(viewer.ready.is_set, 30, "the semantic layer's decode to fail")
        client = _connect(viewer)
        for label in ("Query", "Highlight", "Remove", "Duplicate", "Save .csg"):
            if label == "Query":
                client.update(label, value="floor", disabled=False)
            else:
                client.update(label, disabled=False)
                client.click(label)
        wait_for(lambda: "semantic" in _status(viewer), 10, "the refusal")
        time.sleep(0.5)
        assert set(_files(folder)) == {"base.csg"}
    finally:
        viewer.stop()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "camera",
    [
        {"size": (128, 0)},
        {"fov": 0.0},
        {"fov": float("nan")},
        {"fov": float("inf")},
        {"position": (float("inf"), 0.0, 0.0)},
        {"wxyz": (0.0, 0.0, 0.0, 0.0)},
    ],
    ids=["height 0", "fov 0", "fov nan", "fov inf", "position inf", "zero rotation"],
)
def test_a_bad_camera_is_a_status_message(folder, camera, capfd):
    viewer = _start(folder / "scene.csg", client_splats=False)
    try:
        client = _connect(viewer)
        wait_for(lambda: client.frames(), 20, "a first frame")
        client.camera(**camera)
        wait_for(lambda: "bad camera" in _status(viewer), 10, "the bad camera's message")
        sent = client.camera()  # a good camera afterwards renders again
        wait_for(lambda: client.frames(sent), 20, "a frame after the bad camera")
    finally:
        viewer.stop()
    assert "Traceback" not in capfd.readouterr().err


def test_a_flooding_client_does_not_stop_another_clients_frames(folder, capfd):
    """Client A floods queries, clicks and cameras; client B keeps moving and must get a frame
    for every camera (the worst delay is printed; benchmarks/viewer.py reports it)."""
    viewer = _start(folder / "scene.csg", client_splats=False)
    try:
        wait_for(viewer.ready.is_set, 30, "the semantic layer")
        flooder, watcher = _connect(viewer), _connect(viewer)
        stop = threading.Event()

        def flood() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                flooder.update("Query", value=f"floor {n} " * 20)
                flooder.click("Duplicate")
                flooder.click("Highlight")
                flooder.camera(position=(3.0, -3.0, 3.0 + 0.01 * (n % 7)))

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        delays = []
        for step in range(8):
            sent = watcher.camera(position=(3.0 + 0.1 * step, -3.0, 3.0))
            arrived = wait_for(lambda s=sent: watcher.frames(s), 60, "B's frame")
            delays.append(arrived[0] - sent)
        stop.set()
        thread.join(10)
        with capfd.disabled():
            print(f"worst frame delay of B while A floods: {max(delays):.3f} s")
        assert len(delays) == 8 and not watcher.closed.is_set()
        assert len(viewer.clients) == 2
    finally:
        viewer.stop()
    assert "Traceback" not in capfd.readouterr().err


def test_pages_do_not_share_selection_edits_undo_or_status(folder, capfd):
    viewer = _start(folder / "scene.csg", client_splats=False)
    try:
        wait_for(viewer.ready.is_set, 30, "the semantic layer")
        a = _connect(viewer)
        view_a = wait_for(viewer.only_client, 10, "page A")
        b = _connect(viewer)
        wait_for(lambda: len(viewer.clients) == 2, 10, "page B")
        view_b = next(v for v in viewer.clients.values() if v is not view_a)
        a.update("Query", value="floor")
        a.click("Remove")
        wait_for(lambda: len(view_a.session.edits) == 1, 10, "A's removal")
        b.click("Undo")
        wait_for(lambda: view_b.status.content == "nothing to undo", 10, "B's undo")
        b.update("Query", value="x" * (MAX_QUERY_CHARS + 1))
        wait_for(lambda: "characters" in view_b.status.content, 10, "B's error")
        assert len(view_a.session.edits) == 1 and view_b.session.edits == []
        assert view_a.session.selection is not None and view_b.session.selection is None
        assert "remove 'floor'" in view_a.status.content
    finally:
        viewer.stop()
    assert "Traceback" not in capfd.readouterr().err
