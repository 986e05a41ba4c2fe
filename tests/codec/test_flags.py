"""Flag tables (offset masks, sign tables): lossless, near the per-column entropy bound, and
refused when damaged."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csgaussian.codec.container import StreamError
from csgaussian.codec.flags import MAX_FLAGS, decode_flags, encode_flags


def _entropy_bytes(column: np.ndarray) -> float:
    p = column.mean()
    if p in (0.0, 1.0):
        return 0.0
    return column.size * -(p * math.log2(p) + (1 - p) * math.log2(1 - p)) / 8


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=300))
def test_a_one_dimensional_array_round_trips_as_one_column(values):
    flags = np.array(values, dtype=bool)
    assert np.array_equal(decode_flags(encode_flags(flags)), flags[:, None])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 40).flatmap(
        lambda rows: st.lists(
            st.lists(st.booleans(), min_size=rows, max_size=rows), min_size=1, max_size=12
        )
    )
)
def test_a_table_round_trips(columns):
    table = np.array(columns, dtype=bool).reshape(len(columns), -1).T  # [rows, columns]
    decoded = decode_flags(encode_flags(table))
    assert decoded.shape == table.shape and np.array_equal(decoded, table)


def test_each_column_costs_its_own_entropy():
    rng = np.random.default_rng(0)
    rates = np.array([0.0, 0.01, 0.2, 0.66, 0.93, 1.0])
    table = rng.random((20_000, rates.size)) < rates
    bound = sum(_entropy_bytes(table[:, k]) for k in range(rates.size))
    shared = _entropy_bytes(table.ravel())
    size = len(encode_flags(table))
    assert size < bound * 1.01 + 32
    assert size < 0.6 * shared  # what one probability for the whole table would cost


@pytest.mark.parametrize("value", [True, False])
def test_constant_arrays_cost_only_the_header(value):
    data = encode_flags(np.full(10_000, value))
    assert len(data) <= 8
    assert decode_flags(data).ravel().tolist() == [value] * 10_000


def test_truncated_or_padded_payloads_raise():
    data = encode_flags(np.random.default_rng(1).random((1000, 4)) < 0.5)
    for cut in (0, 3, 7, 12, len(data) - 1, len(data) - 4):
        with pytest.raises(StreamError):
            decode_flags(data[:cut])
    with pytest.raises(StreamError):
        decode_flags(data + b"\x00\x00\x00\x00")


def test_a_header_cannot_request_an_oversized_table():
    data = encode_flags(np.zeros((4, 2), dtype=bool))
    huge = (MAX_FLAGS // 2 + 1).to_bytes(4, "little") + data[4:]
    with pytest.raises(StreamError, match="declares"):
        decode_flags(huge)


def test_an_expected_shape_is_enforced():
    data = encode_flags(np.ones((5, 3), dtype=bool))
    assert decode_flags(data, (5, 3)).all()
    with pytest.raises(StreamError, match="expected"):
        decode_flags(data, (3, 5))
