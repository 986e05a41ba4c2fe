"""The ``scale`` edit operation: it scales the selected Gaussians (and the viewer's splats)
about their centroid and leaves the others alone; the registry gives it a CLI flag, a stream
record with a bounded factor, and a viewer control."""

import json
import struct
import zlib

import pytest
import torch

from csgaussian import api
from csgaussian.cli import main
from csgaussian.codec.container import (
    StreamError,
    optional_sections,
    read_container,
    section_layers,
    write_container,
)
from csgaussian.codec.edit_layer import SECTION
from csgaussian.codec.stream import decode_scene
from csgaussian.scene.edits import SceneEdit, apply_edit
from csgaussian.scene.operations import OPERATIONS
from csgaussian.scene.operations.scale import FACTOR_MAX, FACTOR_MIN, Scale
from csgaussian.scene.scaffold import NeuralGaussians
from csgaussian.viewer.session import SaveTarget, ViewerSession
from csgaussian.viewer.splats import Splats, edited


def _gaussians(n_anchors: int = 6, k: int = 2) -> NeuralGaussians:
    generator = torch.Generator().manual_seed(0)
    g = n_anchors * k
    return NeuralGaussians(
        means=torch.randn(g, 3, generator=generator),
        scales=torch.rand(g, 3, generator=generator) + 0.1,
        quats=torch.nn.functional.normalize(torch.randn(g, 4, generator=generator), dim=1),
        opacities=torch.rand(g, generator=generator),
        colors=torch.rand(g, 3, generator=generator),
        anchor_index=torch.arange(n_anchors).repeat_interleave(k),
        offset_index=torch.arange(k).repeat(n_anchors),
    )


def _slots(n_anchors: int = 6, k: int = 2) -> torch.Tensor:
    slots = torch.zeros(n_anchors, k, dtype=torch.bool)
    slots[:3] = True  # the first three anchors' Gaussians
    return slots


def test_scale_moves_and_grows_the_selection_about_its_centroid():
    before, slots = _gaussians(), _slots()
    chosen = before.at_slots(slots)
    after = apply_edit(before, SceneEdit("scale", slots, params={"factor": 2.0}))
    centre = before.means[chosen].mean(0)
    assert torch.allclose(after.means[chosen], centre + 2.0 * (before.means[chosen] - centre))
    assert torch.allclose(after.means[chosen].mean(0), centre, atol=1e-6)  # the centre stays
    assert torch.allclose(after.scales[chosen], 2.0 * before.scales[chosen])
    assert torch.equal(after.means[~chosen], before.means[~chosen])
    assert torch.equal(after.scales[~chosen], before.scales[~chosen])
    for name in ("quats", "opacities", "colors", "anchor_index", "offset_index"):
        assert torch.equal(getattr(after, name), getattr(before, name))
    nothing = SceneEdit("scale", torch.zeros_like(slots), params={"factor": 2.0})
    assert torch.equal(apply_edit(before, nothing).means, before.means)


def test_the_viewer_splats_scale_as_the_gaussians_do():
    g, slots = _gaussians(), _slots()
    splats = Splats(
        centers=g.means,
        covariances=torch.diag_embed(g.scales**2),
        rgbs=g.colors,
        opacities=g.opacities[:, None],
        anchor_index=g.anchor_index,
        offset_index=g.offset_index,
    )
    edit = SceneEdit("scale", slots, params={"factor": 0.5})
    scaled, moved = edited(splats, [edit]), apply_edit(g, edit)
    assert torch.allclose(scaled.centers, moved.means)
    assert torch.allclose(scaled.covariances, torch.diag_embed(moved.scales**2))


def test_the_registry_gives_scale_a_flag_a_bounded_record_and_a_control():
    op = OPERATIONS["scale"]
    assert op is Scale and op.value.flag == "--factor" and op.effect == "keep"
    assert op.value.control == "number" and (op.value.lo, op.value.hi) == (FACTOR_MIN, FACTOR_MAX)
    assert Scale.from_value("mug", "2.5").stored() == {"params": {"factor": 2.5}}
    for bad in ("big", "0.01", "11", "nan"):
        with pytest.raises(ValueError, match="scale factor"):
            Scale.from_value("mug", bad)


def _with_meta(data: bytes, meta: dict, selections: list[bytes]) -> bytes:
    blob = zlib.compress(json.dumps(meta).encode())
    parts = [struct.pack("<I", len(blob)), blob]
    for selection in selections:
        parts += [struct.pack("<I", len(selection)), selection]
    sections, layers = read_container(data), section_layers(data)
    sections[SECTION] = b"".join(parts)
    return write_container(list(sections.items()), layers, optional_sections(data))


def test_scale_from_the_command_line_round_trips_and_a_bad_factor_is_refused(
    tiny_run, tmp_path, capsys
):
    source, out = tiny_run / "stream.csg", tmp_path / "scaled.csg"
    assert main(["edit", str(source), "-o", str(out), "--scale", "floor", "--factor", "2"]) == 0
    scene = decode_scene(out.read_bytes())
    assert [(e.kind, e.params) for e in scene.edits] == [("scale", {"factor": 2.0})]
    assert torch.equal(scene.edits[0].slots, api.query(api.decode(source), "floor").slots)
    assert main(["edit", str(source), "-o", str(tmp_path / "b.csg"), "--scale", "floor"]) == 2
    assert "needs --factor" in capsys.readouterr().err
    args = ["edit", str(source), "-o", str(tmp_path / "c.csg"), "--scale", "floor"]
    assert main([*args, "--factor", "50"]) == 2
    assert "outside 0.1..10" in capsys.readouterr().err

    sections = read_container(out.read_bytes())
    meta_len = struct.unpack_from("<I", sections[SECTION])[0]
    meta = json.loads(zlib.decompress(sections[SECTION][4 : 4 + meta_len]))
    selection = sections[SECTION][8 + meta_len :]
    for factor, problem in ((50.0, "outside"), (None, "lacks field")):
        record = {**meta["edits"][0], "factor": factor}
        if factor is None:
            del record["factor"]
        crafted = _with_meta(out.read_bytes(), {**meta, "edits": [record]}, [selection])
        with pytest.raises(StreamError, match=problem):
            decode_scene(crafted)


def test_a_viewer_session_scales_and_saves_through_the_stream(tiny_run, tmp_path):
    source = tiny_run / "stream.csg"
    target = SaveTarget(source, tmp_path / "edited.csg")
    session = ViewerSession(api.decode(source), source, target=target)
    edit = session.apply(Scale("floor", 0.5))
    assert edit.kind == "scale" and edit.params == {"factor": 0.5} and edit.n_selected > 0
    session.save()
    saved = api.decode(tmp_path / "edited.csg")
    assert [(e.kind, e.params) for e in saved.edits] == [("scale", {"factor": 0.5})]
