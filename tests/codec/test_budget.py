"""The decoder knows its whole memory need from the metadata and refuses above a limit."""

from __future__ import annotations

import ctypes
import json
import resource
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from csgaussian.codec import budget
from csgaussian.codec.container import StreamError, read_container, section_layers
from csgaussian.codec.container import write_container as _write
from csgaussian.codec.octree import encode_positions
from csgaussian.codec.stream import _read_meta, decode_scene, encode_scene
from csgaussian.entropy.anchors import AnchorEntropyModel, RateConfig
from csgaussian.scene.scaffold import AnchorGrid, ScaffoldConfig, ScaffoldModel

GOLDEN = Path(__file__).parent / "golden" / "tiny.csg"


def _golden_with(positions: bytes | None = None, **edits) -> bytes:
    """The golden stream with metadata fields (``"scaffold.feature_dim": 5``) and optionally
    the positions payload replaced, checksums rewritten."""
    data = GOLDEN.read_bytes()
    sections, layers = read_container(data), section_layers(data)
    meta = json.loads(zlib.decompress(sections["meta"]))
    for path, value in edits.items():
        doc = meta
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[part]
        doc[last] = value
    sections["meta"] = zlib.compress(json.dumps(meta).encode())
    if positions is not None:
        sections["positions"] = positions
    return _write(list(sections.items()), layers)


def _dense_block(side: int) -> tuple[bytes, int]:
    axis = np.arange(side)
    cells = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return encode_positions(cells), len(cells)


def test_a_few_bytes_cannot_ask_for_gigabytes():
    """The issue's case: 29 bytes of positions declare a dense 64^3 block; with wide networks
    the scene would need tens of GiB. Refused from the metadata, before anything is decoded."""
    positions, n = _dense_block(64)
    assert len(positions) == 29 and n == 262_144
    wide = {"scaffold.feature_dim": 1024, "scaffold.hidden_dim": 1024, "scaffold.n_offsets": 64}
    crafted = _golden_with(positions, n_anchors=n, **{"grid.depth": 8}, **wide)
    assert len(crafted) < 20_000
    start = time.perf_counter()
    with pytest.raises(
        StreamError, match="decoding would need about [0-9.]+ GiB .* over the limit"
    ):
        decode_scene(crafted)
    assert time.perf_counter() - start < 1.0  # nothing was decoded or allocated
    # the same block with the golden's small networks fits 4 GiB, not 256 MiB
    small = _golden_with(positions, n_anchors=n, **{"grid.depth": 8})
    with pytest.raises(StreamError, match="over the limit of 0.25 GiB \\(max_memory\\)"):
        decode_scene(small, max_memory=256 << 20)
    with budget.memory_limit(256 << 20), pytest.raises(StreamError, match="max_memory"):
        decode_scene(small)
    with pytest.raises(StreamError, match="flags payload holds 360 x 4 flags"):
        decode_scene(small)  # under the default limit: refused by the next reader


def test_counts_the_format_cannot_hold_are_refused_by_name():
    huge_tables = {
        "rate.hyperprior": "hashgrid",
        "rate.hashgrid.n_levels": 32,
        "rate.hashgrid.log2_table_size": 22,
        "rate.hashgrid.n_features": 16,
        "rate.hashgrid.max_resolution": 4096,
    }
    with pytest.raises(
        StreamError, match="hash-grid sign tables would hold .* \\(rate.hashgrid\\)"
    ):
        decode_scene(_golden_with(**huge_tables))
    with pytest.raises(StreamError, match="the hyperprior MLP would hold"):
        decode_scene(_golden_with(**{"rate.inr.mlp.width": 1024, "rate.inr.mlp.depth": 16}))


def test_the_anchor_count_is_checked_against_the_positions_before_decoding():
    with pytest.raises(StreamError, match="positions hold 360 anchors, metadata says 361"):
        decode_scene(_golden_with(n_anchors=361))
    positions, n = _dense_block(8)
    with pytest.raises(StreamError, match=f"positions hold {n} anchors, metadata says 360"):
        decode_scene(_golden_with(positions))


def test_the_limit_is_a_positive_byte_count_and_scoped():
    assert budget.resolve_limit(None) == budget.DEFAULT_MAX_MEMORY
    assert budget.resolve_limit(123) == 123
    for bad in (0, -1, 1.5, True, "4G"):
        with pytest.raises(ValueError, match="max_memory"):
            budget.resolve_limit(bad)
    with budget.memory_limit(1 << 20):
        assert budget.resolve_limit(None) == 1 << 20
        with budget.memory_limit(1 << 21):
            assert budget.resolve_limit(None) == 1 << 21
        assert budget.resolve_limit(None) == 1 << 20
    assert budget.resolve_limit(None) == budget.DEFAULT_MAX_MEMORY


def _fresh_peak() -> bool:
    """Return freed heap pages to the system and reset the peak RSS (glibc, Linux)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _block_stream(side: int, kind: str) -> bytes:
    """A stream of a dense ``side^3`` block of anchors with seeded random attributes."""
    axis = torch.arange(side)
    cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    model = ScaffoldModel(cells, AnchorGrid(0.01, (0, 0, 0), 5), ScaffoldConfig())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.features.normal_(generator=generator)
        model.offsets.normal_(generator=generator)
    return encode_scene(model, AnchorEntropyModel(model, RateConfig(hyperprior=kind))).data


@pytest.mark.parametrize("kind", ["inr", "hashgrid"])
def test_the_estimate_covers_the_measured_peak(kind):
    """Decoding a dense 24^3 block (13,824 anchors): the peak RSS it adds stays below the
    estimate, and not far below (measured: 120 MiB against an estimate of 140 MiB; on 32^3
    blocks 274 / 281 MiB against 331 / 337 MiB)."""
    if not _fresh_peak():
        pytest.skip("needs glibc and Linux /proc/self/clear_refs to measure a peak")
    # A 2^3 block first: the process's one-time start-up of this decode path (kernel caches,
    # lazily loaded libraries; a cold clone measured 0.1% over the estimate with it) is not
    # the file's need, and 8 anchors leave no freed memory worth reusing.
    decode_scene(_block_stream(2, kind))
    data = _block_stream(24, kind)
    sections = read_container(data)
    meta = _read_meta(sections, section_layers(data))
    need = budget.base_memory(meta.config, meta.rate, meta.n_anchors)
    _fresh_peak()
    before = _rss()
    decode_scene(data)
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert need.total / 3 < added < need.total, (added, need)
