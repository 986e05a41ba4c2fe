import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from csgaussian.codec.container import StreamError
from csgaussian.codec.weights import CODED_LEVELS, pack_tensors, unpack_tensors

NAMED = {
    "trunk.0.weight": torch.randn(64, 51),
    "trunk.0.bias": torch.randn(64),
    "scalar": torch.tensor(3.5),
    "empty": torch.zeros(0, 7),
    "héad.w": torch.randn(2, 3, 4, 5),
}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip(dtype):
    data = pack_tensors(NAMED, dtype)
    out = unpack_tensors(data)
    assert list(out) == list(NAMED)
    for name, t in NAMED.items():
        assert out[name].shape == t.shape and out[name].dtype == torch.float32
        expect = t.half().float() if dtype == "float16" else t
        assert torch.equal(out[name], expect)
    n = sum(t.numel() for t in NAMED.values())
    assert len(data) < n * (2 if dtype == "float16" else 4) + 40 * len(NAMED)


@pytest.mark.parametrize(("dtype", "bits"), [("int8", 8), ("int10", 10)])
def test_coded_round_trip_is_within_half_a_row_step_and_small(dtype, bits):
    torch.manual_seed(0)
    named = {**NAMED, "zero_row": torch.cat([torch.zeros(1, 9), torch.randn(3, 9)])}
    data = pack_tensors(named, dtype)
    out = unpack_tensors(data)
    assert list(out) == list(named)
    for name, t in named.items():
        assert out[name].shape == t.shape
        if t.numel() == 0:
            continue
        rows = t.reshape(t.shape[0] if t.ndim >= 2 else 1, -1)
        levels = CODED_LEVELS[dtype]
        half_step = rows.abs().amax(dim=1, keepdim=True) / levels * 0.5 * 1.001 + 1e-7
        err = (out[name] - t).reshape(rows.shape).abs()
        assert torch.all(err <= half_step), name
    assert torch.all(out["zero_row"][0] == 0)
    # Gaussian weights: under bits + 1 a value instead of float16's 16
    big = {"w": torch.randn(50, 54)}
    assert len(pack_tensors(big, dtype)) < (bits + 1) / 16 * len(pack_tensors(big, "float16"))


@pytest.mark.parametrize("code", [2, 3])
def test_a_coded_blob_cannot_claim_more_values_than_the_limit(code):
    header = struct.pack("<HB", 1, 1) + b"w" + struct.pack("<BB", code, 2)
    huge = header + struct.pack("<2I", 2**16, 2**16) + b"\x00" * 64
    with pytest.raises(StreamError, match="coded values"):
        unpack_tensors(huge)


def test_state_dict_of_a_module_round_trips():
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    clone = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    clone.load_state_dict(unpack_tensors(pack_tensors(model.state_dict())))
    x = torch.randn(3, 5)
    assert torch.equal(model(x), clone(x))


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="float"):
        pack_tensors({"i": torch.arange(3)})
    with pytest.raises(ValueError, match="dtype"):
        pack_tensors(NAMED, "int4")  # type: ignore[arg-type]


def test_specific_corruptions():
    data = pack_tensors({"w": torch.ones(2, 2)})
    with pytest.raises(StreamError, match="tensor 'w' needs 16 bytes, 15 remain"):
        unpack_tensors(data[:-1])
    with pytest.raises(StreamError, match="trailing"):
        unpack_tensors(data + b"\x00")
    huge = (
        struct.pack("<HB", 1, 1)
        + b"w"
        + struct.pack("<BB", 0, 3)
        + struct.pack("<3I", *[2**31] * 3)
    )
    with pytest.raises(StreamError, match="truncated weights"):
        unpack_tensors(huge)
    with pytest.raises(StreamError, match="rank"):
        unpack_tensors(struct.pack("<HB", 1, 1) + b"w" + struct.pack("<BB", 0, 200))


@settings(max_examples=300, deadline=1000)
@given(st.data())
def test_random_corruption_is_a_stream_error_or_a_valid_dict(data):
    dtype = data.draw(st.sampled_from(["float16", "int8", "int10"]))
    rng = torch.Generator().manual_seed(0)  # same blob every example: hypothesis replays draws
    named = {"a": torch.randn(3, 4, generator=rng), "b": torch.randn(5, generator=rng)}
    blob = bytearray(pack_tensors(named, dtype))
    kind = data.draw(st.sampled_from(["cut", "flip", "garbage"]))
    if kind == "cut":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "flip":
        for pos in data.draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=3)):
            blob[pos] ^= data.draw(st.integers(1, 255))
    else:
        blob = bytearray(data.draw(st.binary(max_size=200)))
    try:
        out = unpack_tensors(bytes(blob), {k: t.shape for k, t in named.items()})
    except StreamError:
        return
    assert set(out) == set(named)  # a template demands every tensor: none may go missing
    assert all(out[k].shape == t.shape and torch.isfinite(out[k]).all() for k, t in named.items())


def test_a_template_refuses_unexpected_names_and_shapes():
    data = pack_tensors({"w": torch.ones(2, 3)}, "int8")
    assert unpack_tensors(data, {"w": torch.Size([2, 3])})["w"].shape == (2, 3)
    with pytest.raises(StreamError, match="unexpected tensor 'w' of shape \\[2, 3\\]"):
        unpack_tensors(data, {"w": torch.Size([3, 2])})
    with pytest.raises(StreamError, match="unexpected tensor 'w'"):
        unpack_tensors(data, {"v": torch.Size([2, 3])})
    with pytest.raises(StreamError, match="tensor\\(s\\) v missing"):
        unpack_tensors(data, {"w": torch.Size([2, 3]), "v": torch.Size([1])})


def test_a_zero_row_costs_only_its_step():
    torch.manual_seed(1)
    w = torch.randn(40, 50)
    sparse = w.clone()
    sparse[::2] = 0.0
    out = unpack_tensors(pack_tensors({"w": sparse}, "int8"))["w"]
    half_step = w[1::2].abs().amax(dim=1, keepdim=True) / 127 * 0.501
    assert torch.all(out[::2] == 0) and torch.all((out[1::2] - w[1::2]).abs() <= half_step)
    full, half = (len(pack_tensors({"w": t}, "int8")) for t in (w, sparse))
    assert half < 0.55 * full
