import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csgaussian.codec.container import StreamError
from csgaussian.entropy.coder import (
    MEAN_GRID,
    SCALE_TABLE,
    decode_gaussian,
    encode_gaussian,
    estimate_bits,
    snap_distribution_params,
)


def sample(m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 20, m)
    scales = np.exp(rng.uniform(np.log(0.02), np.log(300), m))
    symbols = np.round(means + scales * rng.normal(size=m)).astype(np.int32)
    return symbols, means, scales


def round_trip(symbols, means, scales) -> bytes:
    data = encode_gaussian(symbols, means, scales)
    np.testing.assert_array_equal(decode_gaussian(data, means, scales), symbols)
    return data


def test_round_trip_and_size_matches_estimate_within_one_percent():
    symbols, means, scales = sample(200_000)
    data = round_trip(symbols, means, scales)
    est = estimate_bits(symbols, means, scales)
    assert abs(8 * len(data) - est) <= 0.01 * est


def test_outliers_and_extreme_scales_round_trip():
    symbols, means, scales = sample(5000, seed=1)
    symbols[::97] += np.int32(1_000_000)  # far outside the coded window: escapes
    symbols[1::97] = np.iinfo(np.int32).min
    symbols[2::97] = np.iinfo(np.int32).max
    scales[3::7] = 1e-9  # below the table
    scales[4::7] = 1e9  # above the table
    means[5::11] = -3e8
    data = round_trip(symbols, means, scales)
    est = estimate_bits(symbols, means, scales)
    assert abs(8 * len(data) - est) <= 0.01 * est + 64


def test_well_predicted_symbols_are_cheap():
    rng = np.random.default_rng(2)
    means = rng.normal(0, 100, 10_000)
    symbols = np.round(means).astype(np.int32)
    data = round_trip(symbols, means, np.full(10_000, 0.1))
    assert 8 * len(data) / len(symbols) < 0.2


@settings(max_examples=100, deadline=5000)
@given(st.integers(0, 2**32 - 1), st.integers(0, 300))
def test_round_trip_property(seed, m):
    rng = np.random.default_rng(seed)
    symbols, means, scales = sample(m, seed)
    symbols = symbols + rng.integers(-5, 6, m).astype(np.int32) * rng.integers(0, 50, m).astype(
        np.int32
    )
    round_trip(symbols, means, scales)


def test_snapping_is_shared_and_absorbs_float_noise():
    means = np.array([0.25, -1.0 / 3.0, 7.0])
    scales = np.array([1.0, 0.3, 5000.0])
    m, i = snap_distribution_params(means, scales)
    assert np.all(m * MEAN_GRID == np.round(m * MEAN_GRID))
    assert SCALE_TABLE[i[0]] == 1.0 and SCALE_TABLE[i[2]] == SCALE_TABLE[-1]
    m2, i2 = snap_distribution_params(means * (1 + 1e-7), scales * (1 - 1e-7))
    assert np.array_equal(m, m2) and np.array_equal(i, i2)
    symbols = np.array([0, 0, 3], np.int32)
    data = encode_gaussian(symbols, means, scales)
    assert np.array_equal(decode_gaussian(data, means * (1 + 1e-7), scales), symbols)


def test_bad_inputs():
    with pytest.raises(ValueError, match="positive"):
        encode_gaussian(np.zeros(2, np.int32), np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        encode_gaussian(np.zeros(1, np.int32), np.array([np.nan]), np.ones(1))
    with pytest.raises(ValueError, match="integers"):
        encode_gaussian(np.zeros(1), np.zeros(1), np.ones(1))


@settings(max_examples=100, deadline=5000)
@given(st.binary(max_size=100))
def test_garbage_never_crashes_otherwise(junk):
    symbols, means, scales = sample(50, seed=3)
    try:
        out = decode_gaussian(junk, means, scales)
    except StreamError:
        return
    assert out.shape == (50,)


def test_truncation_is_detected():
    symbols, means, scales = sample(2000, seed=4)
    data = encode_gaussian(symbols, means, scales)
    for cut in (0, 3, 10, len(data) // 2, len(data) - 4):
        with pytest.raises(StreamError):
            decode_gaussian(data[:cut], means, scales)


def test_pinned_bitstream():
    """Catches silent format changes (snapping grid, scale table, windows, escapes)."""
    rng = np.random.default_rng(7)
    means = rng.normal(0, 3, 1000)
    scales = np.exp(rng.uniform(-3, 4, 1000))
    symbols = np.round(means + scales * rng.normal(size=1000)).astype(np.int32)
    symbols[::100] += 5000
    data = encode_gaussian(symbols, means, scales)
    assert (len(data), zlib.crc32(data)) == (472, 0xCA890E2F)
