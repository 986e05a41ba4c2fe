"""``encode`` of a run: the training cameras go into a stage-1 run's stream unless asked not to,
and a finished run's stream can drop them without touching another byte."""

from __future__ import annotations

import json
import shutil

import pytest

from csgaussian import api
from csgaussian.codec.cameras import SECTION
from csgaussian.codec.container import optional_sections, read_container
from csgaussian.codec.stream import decode_scene, encode_scene
from csgaussian.data import load_scene
from csgaussian.scene.io import RunError


@pytest.fixture
def stage_one(tiny_run, tmp_path):
    run = tmp_path / "stage1"
    run.mkdir()
    for name in ("run.json", "scene.pt"):
        shutil.copy(tiny_run / name, run / name)
    return run


def test_a_stage_one_run_stores_its_training_cameras(stage_one, tiny_scene, tmp_path):
    encoded = api.encode(stage_one, tmp_path / "a.csg")
    train = load_scene(tiny_scene, load_instances=False).train
    assert optional_sections(encoded.data) == {SECTION}
    assert len(decode_scene(encoded.data).cameras) == len(train)
    plain = api.encode(stage_one, tmp_path / "b.csg", max_cameras=0)
    assert plain.data == encode_scene(*api.load_trained(stage_one)).data
    assert len(api.encode(stage_one, tmp_path / "c.csg", max_cameras=2).data) == (
        len(plain.data) + 2 + 20 + 2 * 29 + 21
    )


def test_a_stage_one_run_whose_dataset_is_gone_encodes_without_cameras(stage_one, tmp_path):
    info = json.loads((stage_one / "run.json").read_text())
    (stage_one / "run.json").write_text(json.dumps({**info, "data": str(tmp_path / "gone")}))
    assert decode_scene(api.encode(stage_one, tmp_path / "a.csg").data).cameras == []


def test_a_finished_run_keeps_or_drops_its_cameras(tiny_run, tmp_path):
    stream = (tiny_run / "stream.csg").read_bytes()
    assert api.encode(tiny_run, tmp_path / "a.csg").data == stream
    dropped = api.encode(tiny_run, tmp_path / "b.csg", max_cameras=0)
    assert (tmp_path / "b.csg").read_bytes() == dropped.data
    kept = read_container(dropped.data)
    assert SECTION not in kept and SECTION not in dropped.section_bytes
    assert kept == {n: p for n, p in read_container(stream).items() if n != SECTION}
    assert decode_scene(dropped.data).semantics is not None
    with pytest.raises(RunError, match="keeps the cameras stored at training"):
        api.encode(tiny_run, tmp_path / "c.csg", max_cameras=4)
