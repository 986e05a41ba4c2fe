"""Offset-mask flags: lossless, near the entropy bound, and refused when damaged."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csgaussian.codec.container import StreamError
from csgaussian.codec.flags import decode_flags, encode_flags


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=300))
def test_round_trip(values):
    flags = np.array(values, dtype=bool)
    assert np.array_equal(decode_flags(encode_flags(flags)), flags)


def test_size_is_close_to_the_binary_entropy():
    rng = np.random.default_rng(0)
    flags = rng.random(100_000) < 0.2
    p = flags.mean()
    bound = flags.size * -(p * math.log2(p) + (1 - p) * math.log2(1 - p)) / 8
    assert len(encode_flags(flags)) < bound * 1.01 + 16


@pytest.mark.parametrize("value", [True, False])
def test_constant_arrays_cost_a_few_bytes(value):
    data = encode_flags(np.full(10_000, value))
    assert len(data) < 10
    assert decode_flags(data).tolist() == [value] * 10_000


@pytest.mark.parametrize("cut", [0, 3, 7])
def test_damaged_payloads_raise(cut):
    data = encode_flags(np.random.default_rng(1).random(1000) < 0.5)
    with pytest.raises(StreamError):
        decode_flags(data[:cut])
    with pytest.raises(StreamError):
        decode_flags(data[:6] + b"\x07" + data[7:])
