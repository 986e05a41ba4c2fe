"""The metadata schema: every field of both layers checked for type, shape and range, by name."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch

from csgaussian.codec import schema
from csgaussian.codec.container import StreamError, read_container, section_layers
from csgaussian.codec.container import write_container as _write
from csgaussian.codec.stream import decode_scene
from csgaussian.codec.weights import pack_tensors, unpack_tensors

GOLDEN = Path(__file__).parent / "golden" / "tiny.csg"


def _patched(section: str, edit) -> bytes:
    """The golden stream with the JSON of ``section`` edited in place, checksums rewritten."""
    data = GOLDEN.read_bytes()
    sections, layers = read_container(data), section_layers(data)
    doc = json.loads(zlib.decompress(sections[section]))
    edit(doc)
    sections[section] = zlib.compress(json.dumps(doc).encode())
    return _write(list(sections.items()), layers)


def _set(path: str, value):
    def edit(doc):
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[part]
        doc[last] = value

    return edit


def test_every_config_field_has_a_spec():
    for record in (
        schema.MLP,
        schema.INR,
        schema.HASHGRID,
        schema.QUANT,
        schema.RATE,
        schema.SCAFFOLD,
        schema.GRID,
        schema.SEMANTIC,
        schema.SEMANTIC_RATE,
    ):
        assert set(record.fields) == {f.name for f in fields(record.cls)}, record.cls

    @dataclass
    class Later:
        old: int = 1
        new: float = 0.5  # a field added without a bound

    with pytest.raises(TypeError, match="fields without a spec \\['new'\\]"):
        schema.table(Later, old=schema.Int(0, 2))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # the three tracebacks
        ("grid.origin", [1, 2], "grid.origin = \\[1, 2\\] is not a list of 3 integers"),
        ("rate.quant.feature", [1.0], "rate.quant.feature = \\[1.0\\] is not a number"),
        ("rate.hashgrid.min_resolution", 0, "rate.hashgrid.min_resolution = 0 is outside 1.."),
        # types: booleans are not integers, integers are not booleans, strings are strings
        ("scaffold.n_offsets", True, "scaffold.n_offsets = True is not an integer"),
        ("scaffold.feature_dim", 8.0, "scaffold.feature_dim = 8.0 is not an integer"),
        ("rate.hyperprior", "mlp", "rate.hyperprior = 'mlp' is not one of inr, hashgrid"),
        ("grid.origin", [1, 2, "3"], "grid.origin\\[2\\] = '3' is not an integer"),
        # ranges and finiteness
        ("grid.voxel_size", 0, "grid.voxel_size = 0 is outside \\(0, "),
        ("grid.voxel_size", float("nan"), "grid.voxel_size = nan is not finite"),
        ("rate.quant.scaling", -0.03, "rate.quant.scaling = -0.03 is outside \\(0"),
        ("rate.quant.offsets", float("inf"), "rate.quant.offsets = inf is not finite"),
        ("rate.inr.n_freqs", 25, "rate.inr.n_freqs = 25 is outside 0..24"),
        ("rate.inr.mlp.width", 4096, "rate.inr.mlp.width = 4096 is outside 1..1024"),
        ("rate.hashgrid.max_resolution", 1 << 20, "rate.hashgrid.max_resolution = 1048576 is"),
        ("scaffold.mask_threshold", 1.0, "scaffold.mask_threshold = 1.0 is outside"),
        ("grid.depth", 17, "grid.depth = 17 is outside 1..16"),
        # structure: nesting, missing and unknown fields
        ("rate.inr", [8], "rate.inr = \\[8\\] is not an object"),
        ("scaffold.colour_dim", 3, "scaffold has unknown field\\(s\\) colour_dim"),
    ],
)
def test_base_metadata_fields_are_refused_by_name(path, value, message):
    with pytest.raises(StreamError, match=f"bad stream metadata: {message}"):
        decode_scene(_patched("meta", _set(path, value)))


def test_cross_field_rules_and_missing_fields_are_refused():
    def swap(doc):
        doc["rate"]["hashgrid"]["min_resolution"] = 600  # above max_resolution 512

    with pytest.raises(StreamError, match="rate.hashgrid breaks 'min <= max resolution'"):
        decode_scene(_patched("meta", swap))
    with pytest.raises(StreamError, match="grid lacks field\\(s\\) depth"):
        decode_scene(_patched("meta", lambda doc: doc["grid"].pop("depth")))
    with pytest.raises(StreamError, match="positions span depth 4, beyond the metadata's"):
        decode_scene(_patched("meta", _set("grid.depth", 3)))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("rate.conditional", 1, "rate.conditional = 1 is not a boolean"),
        ("semantic.latent_dim", 0, "semantic.latent_dim = 0 is outside 1..64"),
        ("rate.q0", 0.0, "rate.q0 = 0.0 is outside \\(0"),
        ("rate.inr.n_freqs", -1, "rate.inr.n_freqs = -1 is outside 0..24"),
        ("text_space", 5, "text_space = 5 is not a string"),
        ("text_space", "caf\u00e9", "text_space = 'café' is not printable ascii"),
        ("codebook.n_fine", 65, "codebook.n_fine = 65 is outside 1..64"),
        ("codebook.position_weight", -1, "codebook.position_weight = -1 is outside"),
        ("n_entries", 40000, "n_entries = 40000 is outside 0..32767"),
        ("language_dim", None, "language_dim = None is not an integer"),
    ],
)
def test_semantic_metadata_fields_are_refused_by_name(path, value, message):
    with pytest.raises(StreamError, match=f"bad semantic metadata: {message}"):
        decode_scene(_patched("semantic_meta", _set(path, value)))


def test_an_unknown_semantic_version_leaves_the_base_layer_usable():
    scene = decode_scene(_patched("semantic_meta", lambda doc: doc.update(version=99, x=[])))
    assert scene.semantics is None and "version 99 is not known" in scene.notes[0]


def _with_renderer(named: dict) -> bytes:
    data = GOLDEN.read_bytes()
    sections, layers = read_container(data), section_layers(data)
    sections["renderer"] = pack_tensors(named, "int8")
    return _write(list(sections.items()), layers)


def test_a_section_lacking_a_tensor_or_carrying_another_is_refused():
    data = GOLDEN.read_bytes()
    state = unpack_tensors(read_container(data)["renderer"])  # encoder-side: no template
    lacking = {k: v for k, v in state.items() if k != "cov_mlp.2.bias"}
    with pytest.raises(StreamError, match="tensor\\(s\\) cov_mlp.2.bias missing"):
        decode_scene(_with_renderer(lacking))
    extra = {**state, "cov_mlp.3.weight": torch.ones(2, 2)}
    with pytest.raises(StreamError, match="unexpected tensor 'cov_mlp.3.weight'"):
        decode_scene(_with_renderer(extra))
    assert decode_scene(_with_renderer(state)).model.n_anchors > 0


def test_unknown_or_misplaced_sections_are_refused():
    data = GOLDEN.read_bytes()
    sections, layers = read_container(data), section_layers(data)
    base = [(n, p) for n, p in sections.items() if layers[n] == "base"]
    semantic = [(n, p) for n, p in sections.items() if layers[n] == "semantic"]
    as_semantic = {n: "semantic" for n, _ in semantic}
    with pytest.raises(StreamError, match="unexpected section\\(s\\) notes in the base layer"):
        decode_scene(_write([*base, ("notes", b"x"), *semantic], as_semantic))
    extra = {**as_semantic, "notes": "semantic"}
    with pytest.raises(StreamError, match="notes in the semantic layer"):
        decode_scene(_write([*base, *semantic, ("notes", b"x")], extra))
    moved = {**as_semantic, "offsets": "semantic"}
    reordered = [(n, p) for n, p in base if n != "offsets"] + [("offsets", sections["offsets"])]
    with pytest.raises(StreamError, match="base section\\(s\\) offsets outside the base layer"):
        decode_scene(_write([*reordered, *semantic], moved))


def test_the_encoder_never_writes_metadata_its_reader_refuses():
    from csgaussian.codec.stream import encode_scene
    from csgaussian.entropy.anchors import AnchorEntropyModel, RateConfig
    from csgaussian.scene.scaffold import AnchorGrid, ScaffoldConfig, ScaffoldModel

    cells = torch.tensor([[0, 0, 0], [1, 2, 3]])
    config = ScaffoldConfig(frustum_margin=5000.0)  # beyond the schema's bound
    model = ScaffoldModel(cells, AnchorGrid(0.1, (0, 0, 0), 2), config)
    with pytest.raises(ValueError, match="cannot encode this model: scaffold.frustum_margin"):
        encode_scene(model, AnchorEntropyModel(model, RateConfig()))
