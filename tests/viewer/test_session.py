"""The viewer's session without a browser: cameras from viser's pose, edits, undo, save."""

import math
import sys

import numpy as np
import pytest
import torch

from csgaussian import api
from csgaussian.cli import main
from csgaussian.semantics.query import QueryError
from csgaussian.viewer.session import ViewerSession, pinhole


def test_pinhole_inverts_the_client_pose_and_keeps_its_aspect():
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    camera = pinhole(c2w, math.pi / 2, 2.0, 512)
    assert (camera.width, camera.height) == (512, 256)
    assert torch.allclose(camera.center, torch.tensor([1.0, 2.0, 3.0]))
    assert camera.K[1, 1] == pytest.approx(128.0)  # half the height over tan(45 deg)


def test_edits_undo_and_save_go_through_the_stream_format(tiny_run, tmp_path):
    source = tiny_run / "stream.csg"
    session = ViewerSession(api.decode(source), source)
    camera = pinhole(np.linalg.inv(_look_from(session)), 0.8, 1.2, 64)
    plain, none = session.frame(camera)
    assert plain.shape == (53, 64, 3) and plain.dtype == np.uint8 and none is None
    assert session.query("floor").matched
    tinted, selection = session.frame(camera)
    assert selection is session.selection and (tinted != plain).any()
    session.apply(api.Remove("floor"))
    session.apply(api.Recolor("floor", "#ff0000"))
    assert session.undo().kind == "recolor" and len(session.edits) == 1
    session.save(tmp_path / "edited.csg")
    saved = api.decode(tmp_path / "edited.csg")
    assert [e.kind for e in saved.edits] == ["remove"]
    assert torch.equal(saved.edits[0].slots, selection.slots)
    reopened = ViewerSession(saved, tmp_path / "edited.csg")
    assert np.array_equal(reopened.frame(camera)[0], session.frame(camera)[0])


def test_a_base_only_file_says_why_queries_are_off(tiny_run, tmp_path):
    data = (tiny_run / "stream.csg").read_bytes()
    cut = tmp_path / "base.csg"
    cut.write_bytes(data[: api.layer_bytes(data)["base"]])
    session = ViewerSession(api.decode(cut), cut)
    assert not session.can_query and "truncated" in session.why_no_query()
    with pytest.raises(QueryError, match="no semantics"):
        session.query("floor")


def _look_from(session) -> np.ndarray:
    """A world-to-camera matrix looking at the anchors' centre from above (OpenCV axes)."""
    centre = session.scene.model.anchors.mean(0).numpy().astype(np.float64)
    eye = centre + np.array([0.0, -3.0, 3.0])
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([right, down, forward])
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    return w2c


def test_view_command_says_what_to_install_and_refuses_a_bad_file(
    tiny_run, tmp_path, monkeypatch, capsys
):
    monkeypatch.delitem(sys.modules, "csgaussian.viewer.app", raising=False)
    monkeypatch.setitem(sys.modules, "viser", None)  # as if the viewer extra were not installed
    assert main(["view", str(tiny_run / "stream.csg")]) == 2
    assert "pip install 'csgaussian[viewer]'" in capsys.readouterr().err
    monkeypatch.undo()
    broken = tmp_path / "broken.csg"
    broken.write_bytes(b"CSGS" + b"\x00" * 40)
    assert main(["view", str(broken), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(broken) in err
