"""The viewer's session without a browser: cameras from viser's pose, edits, undo, save."""

import math
import sys

import numpy as np
import pytest
import torch

from csgaussian import api
from csgaussian.cli import main
from csgaussian.codec.budget import GAUSSIAN_BYTES, check_edits_fit
from csgaussian.semantics.query import QueryError
from csgaussian.viewer.session import (
    MAX_QUERY_CHARS,
    SaveTarget,
    ViewerConfig,
    ViewerSession,
    pinhole,
)

from .visible_object import most_visible


def test_pinhole_inverts_the_client_pose_and_keeps_its_aspect():
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    camera = pinhole(c2w, math.pi / 2, 2.0, 512)
    assert (camera.width, camera.height) == (512, 256)
    assert torch.allclose(camera.center, torch.tensor([1.0, 2.0, 3.0]))
    assert camera.K[1, 1] == pytest.approx(128.0)  # half the height over tan(45 deg)


def test_edits_undo_and_save_go_through_the_stream_format(tiny_run, tiny_names, tmp_path):
    source = tiny_run / "stream.csg"
    target = SaveTarget(source, tmp_path / "edited.csg")
    session = ViewerSession(api.decode(source), source, target=target)
    camera = pinhole(np.linalg.inv(_look_from(session)), 0.8, 1.2, 64)
    plain, none = session.frame(camera)
    assert plain.shape == (53, 64, 3) and plain.dtype == np.uint8 and none is None
    name, pixels = most_visible(session.scene, camera, tiny_names)
    assert pixels > 0 and session.query(name).matched
    tinted, selection = session.frame(camera)
    assert selection is session.selection and (tinted != plain).any()
    session.apply(api.Remove(name))
    session.apply(api.Recolor(name, "#ff0000"))
    assert session.undo().kind == "recolor" and len(session.edits) == 1
    session.save()
    session.save()  # the viewer's own output may be replaced by its next save
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
    taken = tmp_path / "taken.csg"
    taken.write_bytes(b"keep")
    for save, why in [(taken, "exists"), (tiny_run / "stream.csg", "source")]:
        assert main(["view", str(tiny_run / "stream.csg"), "--save", str(save)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and why in err
    assert taken.read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("fov", "aspect", "pose"),
    [(0.0, 1.0, None), (math.nan, 1.0, None), (math.inf, 1.0, None), (3.2, 1.0, None),
     (0.8, 0.0, None), (0.8, math.inf, None), (0.8, 1.0, math.nan), (0.8, 1.0, 2.0)],
)  # fmt: skip
def test_pinhole_refuses_a_camera_no_frame_can_be_made_of(fov, aspect, pose):
    c2w = np.eye(4)
    if pose is not None:
        c2w[0, 0] = pose  # not finite, or not a rotation
    with pytest.raises(ValueError, match="bad camera"):
        pinhole(c2w, fov, aspect, 64)


def test_the_save_target_is_never_the_source_nor_a_file_it_did_not_write(tiny_run, tmp_path):
    source = tmp_path / "scene.csg"
    source.write_bytes((tiny_run / "stream.csg").read_bytes())
    assert SaveTarget(source).path == tmp_path / "scene.edited.csg"
    (tmp_path / "scene.edited.csg").write_bytes(b"someone's")
    assert SaveTarget(source).path == tmp_path / "scene.edited-2.csg"  # made unique
    for bad, why in [
        (source, "source"), (tmp_path / "scene.edited.csg", "exists"),
        (tmp_path / "no" / "x.csg", "folder does not exist"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            SaveTarget(source, bad)
    target = SaveTarget(source, tmp_path / "out.csg")
    session = ViewerSession(api.decode(source), source, target=target)
    with pytest.raises(ValueError, match="no edit"):
        session.save()
    session.apply(api.Remove("floor"))
    (tmp_path / "out.csg").write_bytes(b"planted")  # appeared after the viewer started
    with pytest.raises(ValueError, match="not the viewer's output"):
        session.save()
    assert (tmp_path / "out.csg").read_bytes() == b"planted"
    assert not (tmp_path / "no").exists()


def test_a_session_enforces_the_text_edit_and_gaussian_limits(tiny_run):
    source = tiny_run / "stream.csg"
    scene = api.decode(source)
    with pytest.raises(ValueError, match="characters"):
        ViewerSession(scene, source).query("floor" * MAX_QUERY_CHARS)
    with pytest.raises(ValueError, match="unprintable"):
        ViewerSession(scene, source).query("floor\x00")
    session = ViewerSession(scene, source, ViewerConfig(max_edits=2))
    session.apply(api.Recolor("floor", "#ff0000"))
    session.apply(api.Recolor("floor", "#00ff00"))
    with pytest.raises(ValueError, match="at most 2 edits"):
        session.apply(api.Remove("floor"))
    # The decoder's edit budget: room for the scene's Gaussians and one more, no duplicate.
    held = sum(t.nbytes for t in scene.model.state_dict().values())
    base = int(scene.model.active_slots().sum())
    limit = held + (base + 1) * GAUSSIAN_BYTES
    session = ViewerSession(scene, source, ViewerConfig(max_memory=limit))
    removal = session.apply(api.Remove("floor"))
    assert check_edits_fit(scene.model, [removal], limit) == base
    session.undo()
    with pytest.raises(ValueError, match="edit 1 of 1 .* Gaussians"):
        session.apply(api.Duplicate("floor", (0.1, 0.0, 0.0)))
    assert session.edits == []
    assert ViewerSession(scene, source).undo() is None
