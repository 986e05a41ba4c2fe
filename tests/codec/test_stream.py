"""The .csg stream of a trained scene: exact decoding, honest sizes, refusal of damaged files."""

import json
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csgaussian import api
from csgaussian.codec.container import (
    StreamError,
    _parse_table,
    read_container,
    write_container,
)
from csgaussian.codec.stream import decode_scene, encode_scene
from csgaussian.data import load_scene
from csgaussian.entropy.anchors import (
    GROUP_PARAMETERS,
    AnchorEntropyModel,
    RateConfig,
    offset_channels,
)
from csgaussian.render import RasterConfig
from csgaussian.scene.rendering import render_view
from csgaussian.scene.scaffold import AnchorGrid, ScaffoldConfig, scaffold_from_points


@pytest.fixture(scope="module")
def encoded(tiny_run):
    model, entropy = api.load_trained(tiny_run)
    return encode_scene(model, entropy)


def test_decoded_scene_equals_the_encoder_side_quantized_scene(encoded, tiny_scene):
    decoded = decode_scene(encoded.data).model
    expected = encoded.model.state_dict()
    for name, value in decoded.state_dict().items():
        assert torch.equal(value, expected[name]), name
    for view in load_scene(tiny_scene).test:
        a = api.render_camera(decoded, view.camera)
        b = api.render_camera(encoded.model, view.camera)
        assert (a - b).abs().max() <= 1 / 255


def test_coded_scene_is_the_training_time_rounded_scene(encoded, tiny_run, tiny_scene):
    """What the codec writes is what rate-distortion training priced and rendered ("round"):
    each coded attribute lies within one training-time step of its rounded value (the steps
    differ slightly: the coder's hyperprior runs on int10 weights in float64), and the renders
    agree to a fraction of a grey level."""
    model, entropy = api.load_trained(tiny_run)
    row = {tuple(c): i for i, c in enumerate(model.anchor_cells.tolist())}
    ids = torch.tensor([row[tuple(c)] for c in encoded.model.anchor_cells.tolist()])
    coded_mask = encoded.model.offset_mask(use_mask=True) > 0.5  # [N, K]
    with torch.no_grad():
        rounded = entropy(model, ids, "round", model.offset_mask(use_mask=True)[ids])
        positions = model.grid.unit_cube(model.anchor_cells[ids]).float()
        params = entropy.hyperprior.params(positions)
    for group, name in GROUP_PARAMETERS.items():
        step = entropy.hyperprior.groups[group].q0 * (1 + torch.tanh(params[group].r))  # [N, 1]
        diff = (rounded.attributes[name] - getattr(encoded.model, name)).reshape(len(ids), -1)
        sent = offset_channels(coded_mask) if name == "offsets" else torch.ones_like(diff).bool()
        assert torch.all(diff.abs()[sent] <= (1.001 * step).expand_as(diff)[sent]), name
    view = load_scene(tiny_scene).test[0]
    with torch.no_grad():
        image = render_view(model, view.camera, RasterConfig(), True, entropy, "round").image
    error = (image.clamp(0, 1) - api.render_camera(encoded.model, view.camera)).abs()
    assert error.mean() < 1e-3 and error.max() < 2 / 255  # measured: 1.4e-4 and 0.2 / 255


def test_section_sizes_add_up_and_match_the_estimate(encoded):
    table, payload_start = _parse_table(encoded.data)  # header, section table, header CRC
    assert [(t.name, t.length) for t in table] == list(encoded.section_bytes.items())
    assert sum(encoded.section_bytes.values()) == len(encoded.data) - payload_start
    assert payload_start == 4 + 2 * 3 + sum(1 + len(t.name) + 1 + 8 + 4 for t in table) + 4
    for group, bits in encoded.estimated_bits.items():
        actual = encoded.section_bytes[group]
        assert abs(actual - bits / 8) <= 0.03 * bits / 8 + 16, group


def test_stream_is_far_smaller_than_the_float_parameters(encoded):
    model = encoded.model
    fp32_bytes = 4 * sum(p.numel() for p in model.parameters()) + 12 * model.n_anchors
    assert len(encoded.data) * 5 < fp32_bytes


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_streams_are_refused(encoded, data):
    stream = bytearray(encoded.data)
    kind = data.draw(st.sampled_from(["flip", "truncate", "garbage"]))
    if kind == "flip":
        bits = st.integers(0, len(stream) * 8 - 1)
        for bit in data.draw(st.sets(bits, min_size=1, max_size=4)):
            stream[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        stream = stream[: data.draw(st.integers(0, len(stream) - 1))]
    else:
        stream = bytearray(data.draw(st.binary(min_size=0, max_size=256)))
    with pytest.raises(StreamError):
        decode_scene(bytes(stream))


def test_a_share_that_leaves_nothing_to_encode_is_refused(tiny_run):
    model, entropy = api.load_trained(tiny_run)
    with pytest.raises(ValueError, match="min_slot_share"):
        encode_scene(model, entropy, min_slot_share=1.0)
    with torch.no_grad():
        model.mask_logits.fill_(-20.0)
    with pytest.raises(ValueError, match="no anchor"):
        encode_scene(model, entropy)


def test_an_anchor_count_that_is_not_a_bounded_integer_is_refused(encoded):
    sections = read_container(encoded.data)
    meta = json.loads(zlib.decompress(sections["meta"]))
    for bad in (float("inf"), -1, 2.5, 1 << 40):
        patched = zlib.compress(json.dumps({**meta, "n_anchors": bad}).encode())
        rebuilt = write_container([(n, patched if n == "meta" else p) for n, p in sections.items()])
        with pytest.raises(StreamError, match="n_anchors"):
            decode_scene(rebuilt)


def test_rarely_used_offset_slots_are_dropped_and_cost_almost_nothing(tiny_run):
    model, entropy = api.load_trained(tiny_run)
    with torch.no_grad():
        model.mask_logits[:, 0] = 20.0  # slot 0: every anchor
        model.mask_logits[:, 1] = -20.0
        model.mask_logits[:2, 1] = 20.0  # slot 1: two anchors only
    kept = encode_scene(model, entropy, min_slot_share=0.0)
    pruned = encode_scene(model, entropy, min_slot_share=0.05)
    decoded = decode_scene(pruned.data).model
    mask = decoded.offset_mask(use_mask=True) > 0.5
    assert mask[:, 0].all() and not mask[:, 1].any()
    assert decoded.opacity_mlp[2].weight[1].abs().sum() == 0
    assert decoded.cov_mlp[2].weight[7:14].abs().sum() == 0
    assert decoded.color_mlp[2].weight[3:6].abs().sum() == 0
    heads = entropy.hyperprior.heads["offsets"].weight.shape[0]  # [mean 3K, scale 3K, r]
    assert heads == 6 * model.config.n_offsets + 1
    for name, value in decoded.state_dict().items():
        assert torch.equal(value, pruned.model.state_dict()[name]), name
    assert (decode_scene(kept.data).model.offset_mask(use_mask=True) > 0.5)[:, 1].sum() == 2
    saved = kept.section_bytes["renderer"] - pruned.section_bytes["renderer"]
    assert saved > 0.8 * (1 + 3 + 7) * model.config.hidden_dim  # ~7 bits a weight, 11 rows


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (zlib.compress(b" " * (1 << 20)), "zlib stream of <="),  # a well-formed zlib bomb
        (zlib.compress(b"{}") + b"tail", "zlib stream of <="),
        (b"{}", "not valid compressed JSON"),
        (zlib.compress(b"[" * 60_000), "not valid compressed JSON"),  # nesting beyond recursion
        (zlib.compress(b'{"format": "other"}'), "not csgaussian"),
    ],
)
def test_metadata_that_checksums_cannot_catch_is_refused(encoded, meta, message):
    sections = read_container(encoded.data)
    rebuilt = write_container([(n, meta if n == "meta" else p) for n, p in sections.items()])
    with pytest.raises(StreamError, match=message):
        decode_scene(rebuilt)


@pytest.mark.parametrize("kind", ["inr", "hashgrid"])
def test_both_hyperpriors_round_trip_and_the_grid_sends_signs_only(kind):
    torch.manual_seed(0)
    grid = AnchorGrid.covering(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.05, 0.2)
    model = scaffold_from_points(torch.rand(300, 3) * 2 - 1, grid, ScaffoldConfig())
    model.features.data.normal_()
    entropy = AnchorEntropyModel(model, RateConfig(hyperprior=kind))
    encoded = encode_scene(model, entropy)
    decoded = decode_scene(encoded.data).model
    for name, value in decoded.state_dict().items():
        assert torch.equal(value, encoded.model.state_dict()[name]), name
    n_signs = sum(
        entropy.hyperprior.state_dict()[name].numel()
        for name in entropy.hyperprior.binary_parameters()
    )
    dense = entropy.hyperprior.num_parameters() - n_signs
    assert encoded.section_bytes["hyperprior"] < 2 * dense + n_signs / 8 * 1.05 + 4096
