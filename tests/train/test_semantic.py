"""Stages 2-3 and the semantic layer: progressive decoding, resuming, queries, receiver imports."""

import json
import shutil
import subprocess
import sys
import zlib

import pytest
import torch

from csgaussian import api
from csgaussian.codec.container import (
    StreamError,
    optional_sections,
    read_container,
    section_layers,
    write_container,
)
from csgaussian.codec.stream import decode_scene
from csgaussian.semantics.encoders import HashEncoder
from csgaussian.semantics.query import QueryConfig, QueryError, select
from csgaussian.train.semantic import SemanticTrainer
from csgaussian.train.stages import parse_stages

STAGE_ONE_FILES = ("run.json", "checkpoint.pt", "scene.pt")


@pytest.fixture(scope="module")
def stream(tiny_run) -> bytes:
    return (tiny_run / "stream.csg").read_bytes()


def _rewrite(data: bytes, change) -> bytes:
    """The stream with its sections changed by ``change(dict)`` and checksums recomputed."""
    sections = read_container(data)
    layers = section_layers(data)
    change(sections)
    optional = optional_sections(data) & set(sections)
    return write_container(
        list(sections.items()), {n: layers.get(n, "semantic") for n in sections}, optional
    )


def test_the_stream_has_a_base_and_a_semantic_layer(stream):
    layers = section_layers(stream)
    assert [n for n, layer in layers.items() if layer == "semantic"][0] == "semantic_meta"
    scene = decode_scene(stream)
    assert scene.semantics is not None and scene.notes == []
    assert scene.semantics.text_space == HashEncoder().name
    assert scene.semantics.field.latents.shape[0] == scene.model.n_anchors


def test_base_only_and_a_file_cut_after_the_base_layer_decode_the_base(stream):
    full = decode_scene(stream)
    base_end = api.layer_bytes(stream)["base"]
    for scene in (decode_scene(stream, base_only=True), decode_scene(stream[:base_end])):
        assert scene.semantics is None and len(scene.notes) == 1
        for name, value in scene.model.state_dict().items():
            assert torch.equal(value, full.model.state_dict()[name]), name
    assert "truncated" in decode_scene(stream[: base_end + 10]).notes[0]
    with pytest.raises(StreamError):
        decode_scene(stream[: base_end - 1])


def test_an_unknown_semantic_layer_version_decodes_the_base_and_says_so(stream):
    def bump(sections):
        meta = json.loads(zlib.decompress(sections["semantic_meta"]))
        sections["semantic_meta"] = zlib.compress(json.dumps({**meta, "version": 99}).encode())

    scene = decode_scene(_rewrite(stream, bump))
    assert scene.semantics is None
    assert "version 99" in scene.notes[0] and "base layer only" in scene.notes[0]


@pytest.mark.parametrize("name", ["semantic_mlp", "semantic_codebook", "semantic"])
def test_a_semantic_layer_missing_a_section_is_refused(stream, name):
    with pytest.raises(StreamError, match=name):
        decode_scene(_rewrite(stream, lambda sections: sections.pop(name)))


def test_a_query_with_another_text_encoder_is_refused(stream):
    scene = decode_scene(stream)

    other = HashEncoder(dim=32)
    assert other.name != scene.semantics.text_space
    with pytest.raises(QueryError, match="made by hash:v1:64"):
        select(scene, "cube", encoder=other)
    with pytest.raises(QueryError, match="no semantics"):
        select(decode_scene(stream, base_only=True), "cube")


def test_a_query_that_matches_nothing_selects_nothing(stream):
    scene = decode_scene(stream)
    selection = select(scene, "qqqq zzzz", config=QueryConfig(min_score=0.99))
    assert not selection.matched and selection.n_gaussians == 0 and selection.entries == []


def test_receiver_commands_import_no_training_code(tiny_run, tiny_scene):
    code = (
        "import sys, csgaussian as c\n"
        f"s = c.decode({str(tiny_run / 'stream.csg')!r})\n"
        "c.query(s, 'cube')\n"
        f"c.render({str(tiny_run / 'stream.csg')!r}, {str(tiny_run / 'renders')!r}, "
        f"data={str(tiny_scene)!r})\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('csgaussian.train', "
        "'csgaussian.preprocess')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stages_are_parsed_strictly():
    assert parse_stages("1,2,3") == (1, 2, 3) and parse_stages("2,3") == (2, 3)
    for bad in ("1,3", "3", "4", "x", ""):
        with pytest.raises(ValueError, match="stage"):
            parse_stages(bad)


def _stage_one_copy(tiny_run, target):
    target.mkdir()
    for name in STAGE_ONE_FILES:
        shutil.copy(tiny_run / name, target / name)
    return target


def test_semantic_stages_resume_after_a_crash_to_the_same_stream(tiny_run, tmp_path, monkeypatch):
    straight = _stage_one_copy(tiny_run, tmp_path / "straight")
    api.train(None, straight, stages="2,3", encoder="hash", quiet=True)
    crashed = _stage_one_copy(tiny_run, tmp_path / "crashed")
    original_step = SemanticTrainer.step

    def crashing_step(self):
        if self.stage == 2 and self.iteration == 15:
            raise KeyboardInterrupt
        return original_step(self)

    monkeypatch.setattr(SemanticTrainer, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        api.train(None, crashed, stages="2,3", encoder="hash", quiet=True)
    assert not (crashed / "stream.csg").exists()
    monkeypatch.setattr(SemanticTrainer, "step", original_step)
    with pytest.raises(ValueError, match="already started"):
        api.train(None, crashed, stages="2,3", encoder="hash", quiet=True)
    api.train(None, crashed, resume=True, quiet=True)
    assert (crashed / "stream.csg").read_bytes() == (straight / "stream.csg").read_bytes()


def test_semantic_stages_without_a_base_layer_are_refused_before_training(tiny_scene, tmp_path):
    with pytest.raises(ValueError, match="--lambda 0 trains no base layer"):
        api.train(tiny_scene, tmp_path / "run", preset="tiny", lambda_rate=0, quiet=True)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_stage_two_holds_the_datasets_pixels_and_renders_one_view_at_a_time(
    tiny_run, tiny_scene, monkeypatch
):
    """The trainer keeps each view's 8-bit pixels (no float copy) and compact mask ids, and the
    quality weights let each render go before the next (not one float image per view at once)."""
    import weakref

    from csgaussian.data import load_scene
    from csgaussian.preprocess.features import read_features, view_stem
    from csgaussian.run import RunDir
    from csgaussian.train import semantic
    from csgaussian.train.config import preset

    scene = load_scene(tiny_scene, load_instances=False)
    config = preset("tiny").semantic
    sizes = {view_stem(v.image_path): v.size for v in scene.train}
    masks = read_features(RunDir(tiny_run).features_dir, list(sizes), config.level, sizes)
    trainer = SemanticTrainer(scene, masks, "hash", config, tiny_run)
    for view, source in zip(trainer.views, scene.train, strict=True):
        assert view.source is source and source.pixels.dtype == torch.uint8
        assert view.masks.ids.itemsize == 1  # a few masks per view: int8 ids
    renders: list[weakref.ref] = []
    most_alive = 0
    original = semantic.render_view

    def counting_render(*args, **kwargs):
        nonlocal most_alive
        most_alive = max(most_alive, sum(ref() is not None for ref in renders))
        out = original(*args, **kwargs)
        renders.append(weakref.ref(out.image))
        return out

    monkeypatch.setattr(semantic, "render_view", counting_render)
    trainer._quality_weights()
    assert len(renders) == len(scene.train) > 2
    assert most_alive <= 1
