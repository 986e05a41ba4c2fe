"""The optional ``cameras`` section: poses back to float32 precision, a spread subset of a long
capture, every malformed field refused in one line, skipped by readers that do not know it, kept
by an edit, written by training."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from csgaussian import api
from csgaussian.codec.cameras import (
    MAX_CAMERAS,
    MAX_SIDE,
    SECTION,
    decode_cameras,
    encode_cameras,
    rotation_to_quaternion,
    spread_cameras,
)
from csgaussian.codec.container import (
    StreamError,
    optional_sections,
    read_container,
    section_layers,
    write_container,
)
from csgaussian.codec.stream import decode_scene, encode_scene, with_edits
from csgaussian.data import load_scene
from csgaussian.render.projection import quat_to_rotmat
from csgaussian.scene.edits import SceneEdit
from csgaussian.types import Camera

GOLDEN = Path(__file__).parent / "golden" / "tiny.csg"
HEADER = 2
INTRINSICS = 20
POSE = 29


@pytest.fixture(scope="module")
def cameras(tiny_scene) -> list[Camera]:
    return [view.camera for view in load_scene(tiny_scene, load_instances=False).train]


def _with_section(
    data: bytes, name: str, payload: bytes, optional: bool = True, layer: str = "base"
) -> bytes:
    """``data`` with a section added at the end of ``layer`` (checksums rewritten)."""
    sections, layers = read_container(data), section_layers(data)
    order = ["base", "semantic", "edit"]
    items = list(sections.items())
    at = sum(order.index(layers[n]) <= order.index(layer) for n, _ in items)
    items.insert(at, (name, payload))
    flags = set(optional_sections(data)) | ({name} if optional else set())
    return write_container(items, {**layers, name: layer}, flags)


def test_poses_and_intrinsics_come_back_to_float32_precision(cameras):
    decoded = decode_cameras(encode_cameras(cameras))
    assert len(decoded) == len(cameras)
    for got, sent in zip(decoded, cameras, strict=True):
        assert torch.allclose(got.viewmat, sent.viewmat, atol=1e-6)
        assert torch.allclose(got.K, sent.K)
        assert (got.width, got.height) == (sent.width, sent.height)
        assert torch.allclose(got.center, sent.center, atol=1e-5)


def test_shared_intrinsics_are_stored_once(cameras):
    assert len(encode_cameras(cameras)) == HEADER + INTRINSICS + POSE * len(cameras)
    other = [cameras[0], cameras[1].scaled(0.5)]
    assert len(encode_cameras(other)) == HEADER + 2 * INTRINSICS + 2 * POSE


@pytest.mark.parametrize("angle", [0.0, 1.0, math.pi - 1e-3, math.pi])
@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, -2, 0.5)])
def test_quaternions_of_every_branch_give_the_rotation_back(angle, axis):
    axis_ = np.asarray(axis, float) / np.linalg.norm(axis)
    q = np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis_])
    rotation = quat_to_rotmat(torch.from_numpy(q)[None])[0].numpy()
    got = rotation_to_quaternion(rotation)
    assert got[0] >= 0 and abs(np.linalg.norm(got) - 1) < 1e-12
    back = quat_to_rotmat(torch.from_numpy(got)[None])[0].numpy()
    assert np.abs(back - rotation).max() < 1e-12


def test_a_long_capture_keeps_a_deterministic_spread_subset(cameras):
    many = cameras * 5  # more than the section holds, with repeats
    kept = spread_cameras(many)
    assert len(kept) == MAX_CAMERAS and kept[0] is many[0]
    assert {tuple(c.center.tolist()) for c in kept} == {tuple(c.center.tolist()) for c in cameras}
    assert [id(c) for c in spread_cameras(many)] == [id(c) for c in kept]
    assert spread_cameras(many, 0) == [] and len(spread_cameras(cameras, 3)) == 3
    with pytest.raises(ValueError, match="1..16 cameras"):
        encode_cameras(many)


def _forged(cameras: list[Camera], **change) -> bytes:
    """The payload of two cameras with one intrinsics row or pose field replaced."""
    payload = bytearray(encode_cameras(cameras[:2]))
    offsets = {
        "counts": (0, "<BB"),
        "size": (HEADER, "<HH"),
        "focal": (HEADER + 4, "<f"),
        "index": (HEADER + INTRINSICS, "<B"),
        "q": (HEADER + INTRINSICS + 1, "<4f"),
        "t": (HEADER + INTRINSICS + 17, "<3f"),
    }
    for name, values in change.items():
        offset, fmt = offsets[name]
        struct.pack_into(fmt, payload, offset, *values)
    return bytes(payload)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"counts": (1, 0)}, "0 cameras with 1 intrinsics"),
        ({"counts": (1, 17)}, "17 cameras"),
        ({"counts": (3, 2)}, "2 cameras with 3 intrinsics"),
        ({"counts": (1, 3)}, "3 cameras with 1 intrinsics take"),
        ({"size": (0, 40)}, "width or height outside"),
        ({"size": (48, MAX_SIDE + 1)}, "width or height outside"),
        ({"focal": (0.0,)}, "focal length is not positive"),
        ({"focal": (float("nan"),)}, "not finite"),
        ({"focal": (1e30,)}, "beyond"),
        ({"index": (1,)}, "intrinsics index beyond the table"),
        ({"q": (1.0, 0.1, 0.0, 0.0)}, "not of unit length"),
        ({"q": (float("inf"), 0.0, 0.0, 0.0)}, "pose is not finite"),
        ({"t": (0.0, 0.0, 1e30)}, "translation beyond"),
    ],
)
def test_forged_fields_are_refused_in_one_line(cameras, change, message):
    with pytest.raises(StreamError, match=message) as err:
        decode_cameras(_forged(cameras, **change))
    assert "\n" not in str(err.value) and str(err.value).startswith("cameras section: ")


def test_truncated_or_padded_payloads_are_refused(cameras):
    payload = encode_cameras(cameras[:2])
    for bad in (payload[:1], payload[:-1], payload + b"\x00"):
        with pytest.raises(StreamError, match="cameras section: "):
            decode_cameras(bad)


def test_the_encoder_refuses_what_the_decoder_would(cameras):
    skewed = Camera(cameras[0].viewmat * 2, cameras[0].K, 48, 40)
    with pytest.raises(ValueError, match="not a rotation"):
        encode_cameras([skewed])
    with pytest.raises(ValueError, match="focal length"):
        encode_cameras([Camera(cameras[0].viewmat, cameras[0].K * 1e7, 48, 40)])


def test_a_larger_image_is_stored_at_the_largest_side_with_its_field_of_view(cameras):
    big = cameras[0].scaled(3 * MAX_SIDE / cameras[0].width)
    (stored,) = decode_cameras(encode_cameras([big]))
    assert stored.width == MAX_SIDE and abs(stored.height - big.height / 3) <= 1
    assert torch.allclose(stored.K[:2], big.K[:2] / 3, rtol=1e-5)
    assert torch.allclose(stored.viewmat, big.viewmat, atol=1e-6)


def test_the_golden_stream_with_cameras_decodes_them(cameras):
    golden = GOLDEN.read_bytes()
    assert decode_scene(golden).cameras == []
    data = _with_section(golden, SECTION, encode_cameras(cameras))
    scene = decode_scene(data)
    assert len(scene.cameras) == len(cameras) and scene.notes == []
    assert torch.equal(scene.model.anchors, decode_scene(golden).model.anchors)
    edited = with_edits(data, [SceneEdit("remove", torch.ones(360, 4, dtype=torch.bool))])
    assert read_container(edited)[SECTION] == read_container(data)[SECTION]
    assert optional_sections(edited) == {SECTION}
    assert len(decode_scene(edited).cameras) == len(cameras)


def test_misflagged_or_misplaced_cameras_are_refused(cameras):
    golden, payload = GOLDEN.read_bytes(), encode_cameras(cameras)
    with pytest.raises(StreamError, match="'cameras' is optional but its optional bit is clear"):
        decode_scene(_with_section(golden, SECTION, payload, optional=False))
    with pytest.raises(StreamError, match="'masks' is required but its optional bit is set"):
        sections, layers = read_container(golden), section_layers(golden)
        decode_scene(write_container(list(sections.items()), layers, {"masks"}))
    with pytest.raises(StreamError, match="cameras outside the base layer"):
        decode_scene(_with_section(golden, SECTION, payload, layer="semantic"))
    with pytest.raises(StreamError, match="cameras section: "):
        decode_scene(_with_section(golden, SECTION, payload[:-1]))


@pytest.mark.parametrize("layer", ["base", "semantic", "edit"])
def test_an_unknown_optional_section_is_skipped_with_a_note(layer):
    golden = GOLDEN.read_bytes()
    data = _with_section(golden, "future_hints", b"\x01\x02\x03", layer=layer)
    scene = decode_scene(data)
    assert scene.notes == ["skipped unknown optional section(s) future_hints"]
    assert scene.semantics is not None
    assert torch.equal(scene.model.anchors, decode_scene(golden).model.anchors)
    if layer != "edit":  # an edit replaces the edit layer; the others are copied
        assert read_container(with_edits(data, []))["future_hints"] == b"\x01\x02\x03"
    plain = _with_section(golden, "future_hints", b"\x01\x02\x03", optional=False, layer=layer)
    with pytest.raises(StreamError, match="future_hints"):
        decode_scene(plain)


def test_encode_scene_stores_a_spread_subset_only_when_asked(tiny_run, cameras):
    model, entropy = api.load_trained(tiny_run)
    plain = encode_scene(model, entropy)
    assert SECTION not in read_container(plain.data)
    assert encode_scene(model, entropy, cameras=cameras, max_cameras=0).data == plain.data
    some = encode_scene(model, entropy, cameras=cameras, max_cameras=3)
    assert len(some.data) - len(plain.data) == HEADER + INTRINSICS + 3 * POSE + 1 + 7 + 13
    assert len(decode_scene(some.data).cameras) == 3
    with pytest.raises(ValueError, match="max_cameras must lie in 0..16"):
        encode_scene(model, entropy, cameras=cameras, max_cameras=17)


def test_a_trained_run_stores_its_training_cameras(tiny_run, cameras):
    for name in ("base.csg", "stream.csg"):
        data = (tiny_run / name).read_bytes()
        assert optional_sections(data) == {SECTION}
        stored = decode_scene(data).cameras
        assert len(stored) == len(cameras)  # the tiny capture has fewer than 16
        assert torch.allclose(stored[0].viewmat, cameras[0].viewmat, atol=1e-6)
