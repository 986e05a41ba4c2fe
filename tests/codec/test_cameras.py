"""The optional cameras section: exact poses back, a bounded count, malformed payloads refused,
and a stream without it unchanged."""

import numpy as np
import pytest
import torch

from csgaussian import api
from csgaussian.codec.cameras import (
    MAX_CAMERAS,
    SECTION,
    decode_cameras,
    encode_cameras,
    spread_cameras,
)
from csgaussian.codec.container import StreamError, read_container
from csgaussian.codec.stream import decode_scene, encode_scene
from csgaussian.data import load_scene


@pytest.fixture(scope="module")
def cameras(tiny_scene):
    return [view.camera for view in load_scene(tiny_scene, load_instances=False).train]


def test_poses_and_intrinsics_come_back_to_float32_precision(cameras):
    decoded = decode_cameras(encode_cameras(cameras))
    assert len(decoded) == len(cameras)
    for got, sent in zip(decoded, cameras, strict=True):
        assert torch.allclose(got.viewmat, sent.viewmat, atol=1e-6)
        assert torch.allclose(got.K, sent.K)
        assert (got.width, got.height) == (sent.width, sent.height)
        assert torch.allclose(got.center, sent.center, atol=1e-5)


def test_a_long_capture_keeps_a_spread_subset(cameras):
    many = cameras * 5  # more than the section holds, with repeats
    kept = spread_cameras(many)
    assert len(kept) == MAX_CAMERAS
    centers = {tuple(c.center.tolist()) for c in kept}
    assert len(centers) == len(cameras)  # every distinct pose before any repeat
    with pytest.raises(ValueError, match="1..16 cameras"):
        encode_cameras(many)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-1], "do not hold"),
        (lambda b: b[:1], "truncated count"),
        (lambda b: b"\x00\x00", "do not hold 0 cameras"),
        (lambda b: b[:6] + np.float32(np.nan).tobytes() + b[10:], "not finite"),
        (lambda b: b[:6] + np.float32(2.0).tobytes() + b[10:], "not orthonormal"),
    ],
)
def test_malformed_sections_are_refused(cameras, damage, message):
    with pytest.raises(StreamError, match=message):
        decode_cameras(damage(encode_cameras(cameras[:2])))


def test_the_stream_carries_the_cameras_only_when_given(tiny_run, cameras):
    model, entropy = api.load_trained(tiny_run)
    plain = encode_scene(model, entropy)
    with_cameras = encode_scene(model, entropy, cameras=cameras)
    assert SECTION not in read_container(plain.data)
    assert decode_scene(plain.data).cameras == []
    assert 0 < len(with_cameras.data) - len(plain.data) < 1200
    decoded = decode_scene(with_cameras.data)
    assert len(decoded.cameras) == len(cameras)
    assert torch.equal(decoded.model.anchors, decode_scene(plain.data).model.anchors)


def test_a_trained_run_stores_its_training_cameras(tiny_run):
    scene = api.decode(tiny_run / "stream.csg")
    assert 0 < len(scene.cameras) <= MAX_CAMERAS
