import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from csgaussian.codec.container import StreamError
from csgaussian.codec.octree import (
    canonical_order,
    decode_positions,
    encode_positions,
    grid_to_unit_cube,
    morton_codes,
    voxelize,
)

from .geometry import surface_anchor_grid


def round_trip(grid: np.ndarray) -> np.ndarray:
    out = decode_positions(encode_positions(grid))
    assert out.dtype == np.uint16 and out.shape[1] == 3
    np.testing.assert_array_equal(out, np.asarray(grid)[canonical_order(grid)])
    return out


coords = st.sampled_from([0, 1, 2, 3, 1000, 32767, 32768, 65534, 65535]) | st.integers(0, 65535)


@settings(max_examples=150, deadline=5000)
@given(arrays(np.int64, st.tuples(st.integers(0, 60), st.just(3)), elements=coords))
def test_round_trip_of_random_sets(grid):
    grid = np.concatenate([grid, grid[: len(grid) // 3]])  # duplicates
    out = round_trip(grid)
    assert len(out) == len(np.unique(grid, axis=0))


@settings(max_examples=60, deadline=5000)
@given(st.integers(0, 2**32), st.integers(1, 400), st.integers(1, 6))
def test_round_trip_of_clustered_sets(seed, n, spread_bits):
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, 65536, 3)
    grid = np.clip(centre + rng.integers(0, 1 << spread_bits, (n, 3)), 0, 65535)
    round_trip(grid)


def test_edge_cases():
    assert round_trip(np.zeros((0, 3), np.uint16)).shape == (0, 3)
    assert round_trip(np.zeros((1, 3), np.uint16)).tolist() == [[0, 0, 0]]
    assert round_trip(np.zeros((5, 3), np.uint16)).tolist() == [[0, 0, 0]]
    assert round_trip(np.full((1, 3), 65535, np.uint16)).tolist() == [[65535] * 3]
    corners = np.array([[x, y, z] for x in (0, 65535) for y in (0, 65535) for z in (0, 65535)])
    assert len(round_trip(corners)) == 8


def test_canonical_order_is_morton_and_keeps_first_duplicate():
    grid = np.array([[3, 0, 0], [0, 0, 1], [3, 0, 0], [0, 1, 0]])
    idx = canonical_order(grid)
    assert idx.tolist() == [1, 3, 0]
    assert np.all(np.diff(morton_codes(grid[idx]).astype(np.int64)) > 0)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        encode_positions(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="16-bit"):
        encode_positions(np.array([[0, 0, 65536]]))


def test_surface_fixture_costs_at_most_12_bits_per_anchor():
    grid = surface_anchor_grid(40_000)
    assert 30_000 < len(grid) < 45_000
    data = encode_positions(grid)
    round_trip(grid)
    bits_per_anchor = 8 * len(data) / len(grid)
    assert bits_per_anchor <= 12.0
    assert bits_per_anchor < 48 / 4  # vs. raw 16-bit triples (HAC)


def test_voxelize_snaps_like_scaffold_gs():
    pts = np.array([[0.0, 0.0, 0.0], [0.011, 0.0, 0.0], [0.0101, 0.0, 0.0], [1.0, 2.0, 3.0]])
    grid, origin = voxelize(pts, 0.01)
    assert len(grid) == 3 and grid.dtype == np.uint16
    assert np.allclose(np.sort(origin + grid * 0.01, axis=0)[-1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="65536"):
        voxelize(np.array([[0.0, 0, 0], [1000.0, 0, 0]]), 0.01)


@settings(max_examples=100, deadline=5000)
@given(st.binary(max_size=200))
def test_garbage_is_a_stream_error_or_a_valid_point_set(junk):
    try:
        out = decode_positions(junk)
    except StreamError:
        return
    assert out.dtype == np.uint16 and len(np.unique(out, axis=0)) == len(out)


def test_corrupted_payload_is_detected():
    data = bytearray(encode_positions(surface_anchor_grid(3000)))
    data[0] ^= 0x40  # point count
    with pytest.raises(StreamError):
        decode_positions(bytes(data))
    with pytest.raises(StreamError):
        decode_positions(bytes(data[:3]))


def test_grid_to_unit_cube_is_exact_and_centred():
    grid = np.array([[0, 0, 0], [1023, 512, 7]], dtype=np.uint16)
    cube = grid_to_unit_cube(grid, 10)
    assert cube.dtype == np.float64
    assert np.array_equal(cube[0], [-1 + 1 / 1024] * 3)
    assert np.all(np.abs(cube) < 1)
    assert np.array_equal(grid_to_unit_cube(decode_positions(encode_positions(grid)), 10), cube)


def test_pinned_bitstream():
    """Catches silent format changes (contexts, slot order, constriction's coder)."""
    data = encode_positions(surface_anchor_grid(2000, seed=7))
    assert (len(data), zlib.crc32(data)) == (4553, 0xE4C22779)
