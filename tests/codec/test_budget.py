"""The decoder knows its whole memory need from the metadata and refuses above a limit."""

from __future__ import annotations

import ctypes
import json
import math
import re
import resource
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from csgaussian import api
from csgaussian.codec import budget
from csgaussian.codec.container import StreamError, read_container, section_layers
from csgaussian.codec.container import write_container as _write
from csgaussian.codec.flags import encode_flags
from csgaussian.codec.octree import encode_positions
from csgaussian.codec.stream import _read_meta, decode_scene, encode_scene, with_edits
from csgaussian.entropy.anchors import AnchorEntropyModel, RateConfig
from csgaussian.scene.edits import SceneEdit, apply_edit
from csgaussian.scene.rendering import render_view
from csgaussian.scene.scaffold import AnchorGrid, NeuralGaussians, ScaffoldConfig, ScaffoldModel
from csgaussian.types import Camera
from csgaussian.viewer.session import ViewerSession

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


def _golden_edited(edits: list[SceneEdit]) -> bytes:
    return with_edits(GOLDEN.read_bytes(), edits)


def _everything(kind: str = "duplicate") -> SceneEdit:
    return SceneEdit(kind, torch.ones(360, 4, dtype=torch.bool), "everything", (0.01, 0.0, 0.0))


def test_64_duplicates_of_everything_are_refused_before_decoding_the_base():
    """The issue's file: 64 "duplicate everything" edits (a few KB) would make 2^64 copies of
    each Gaussian. Refused at the first edit that crosses the limit, in one line."""
    crafted = _golden_edited([_everything()] * 64)
    assert len(crafted) < 20_000
    with pytest.raises(StreamError) as refused:
        decode_scene(crafted)
    message = str(refused.value)
    assert "\n" not in message and "max_memory" in message
    assert message.startswith("edit 13 of 64 (duplicate 'everything') makes 8,282,112 Gaussians")
    # a removal after the duplicates does not hide the peak reached on the way
    with pytest.raises(StreamError, match="edit 13 of 14"):
        decode_scene(_golden_edited([_everything()] * 13 + [_everything("remove")]))
    assert len(decode_scene(_golden_edited([_everything()] * 3)).edits) == 3
    with pytest.raises(StreamError, match="edit 9 of 10 .* over the limit of 0.25 GiB"):
        decode_scene(_golden_edited([_everything()] * 10), max_memory=256 << 20)


def test_edit_counts_are_exact_in_python_integers():
    active = np.zeros((5, 3), dtype=bool)
    active[:4, :2] = True  # 8 active slots
    half = torch.zeros(5, 3, dtype=torch.bool)
    half[:2] = True  # 4 of them, and 2 inactive slots
    dup = SceneEdit("duplicate", half)
    edits = [dup] * 200 + [SceneEdit("extract", ~half), SceneEdit("recolor", half)]
    peak, at = budget.edited_gaussians(active, edits, cap=1 << 254)
    assert (peak, at) == (4 + 4 * 2**200, 200)
    assert budget.edited_gaussians(active, [dup] * 3, cap=10) == (12, 1)  # stops there
    # the last count equals what apply_edits leaves of one Gaussian per active slot
    generator = torch.Generator().manual_seed(0)
    kinds = ["duplicate", "remove", "extract", "recolor"]
    for trial in range(20):
        edits = [
            SceneEdit(kinds[int(torch.randint(4, (1,), generator=generator))], flags > 0.5)
            for flags in torch.rand(6, 5, 3, generator=generator)
        ]
        anchors, offsets = torch.from_numpy(active).nonzero(as_tuple=True)
        g = len(anchors)
        gaussians = NeuralGaussians(
            torch.zeros(g, 3), torch.ones(g, 3), torch.ones(g, 4), torch.ones(g),
            torch.zeros(g, 3), anchors, offsets,
        )  # fmt: skip
        counts = [g]
        for edit in edits:
            gaussians = apply_edit(gaussians, edit)
            counts.append(gaussians.means.shape[0])
        peak, at = budget.edited_gaussians(active, edits, cap=1 << 60)
        assert peak == max(counts) and counts[at] == peak, trial


def test_inconsistent_or_huge_edit_tables_are_refused_in_one_line():
    wrong = SceneEdit("duplicate", torch.ones(360, 5, dtype=torch.bool))
    with pytest.raises(
        StreamError, match="edit 1 selects a torch.bool table of shape \\(360, 5\\)"
    ):
        budget.check_edits_fit(np.ones((360, 4), dtype=bool), [wrong])
    data = _golden_edited([_everything()])
    sections, layers = read_container(data), section_layers(data)
    payload = sections["edits"]
    (meta_len,) = struct.unpack_from("<I", payload)
    start = 4 + meta_len
    meta = json.loads(zlib.decompress(payload[4:start]))
    cases = {
        # the metadata claims a scene far larger than the format or the base layer
        "n_anchors = 4294967295 is outside": dict(meta, n_anchors=2**32 - 1),
        "selects among 361 x 4 anchor slots": dict(meta, n_anchors=361),
        # a flag table of another shape than the slots
        "flags payload holds 1 x 4 flags": encode_flags(np.ones((1, 4), dtype=bool)),
        # a flag table declaring 2^32 x 65535 flags
        "flags payload declares 4294967295 x 65535 flags": struct.pack("<IH", 2**32 - 1, 65535),
    }
    for expected, change in cases.items():
        if isinstance(change, dict):
            blob = zlib.compress(json.dumps(change).encode())
            new = struct.pack("<I", len(blob)) + blob + payload[start:]
        else:
            new = payload[:start] + struct.pack("<I", len(change)) + change
        sections["edits"] = new
        with pytest.raises(StreamError, match=re.escape(expected)) as refused:
            decode_scene(_write(list(sections.items()), layers))
        assert "\n" not in str(refused.value)


def test_the_gaussian_estimate_covers_the_measured_render_peak():
    """Rendering the golden scene with 8 duplicates of everything at 512 x 512: the peak RSS
    it adds stays below GAUSSIAN_BYTES per rendered Gaussian (measured about 530 bytes)."""
    if not _fresh_peak():
        pytest.skip("needs glibc and Linux /proc/self/clear_refs to measure a peak")
    scene = decode_scene(_golden_edited([_everything()] * 8))
    model = scene.model
    low, high = model.anchors.min(0).values, model.anchors.max(0).values
    eye = (low + high) / 2 + torch.tensor([0.0, 0.0, 1.2 * float((high - low).norm())])
    viewmat = torch.eye(4)
    viewmat[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    viewmat[:3, 3] = -viewmat[:3, :3] @ eye
    focal = 0.5 * 512 / math.tan(0.45)
    K = torch.tensor([[focal, 0.0, 256.0], [0.0, focal, 256.0], [0.0, 0.0, 1.0]])
    camera = Camera(viewmat=viewmat, K=K, width=512, height=512)
    render_view(model, camera)  # the rasterizer's one-time start-up is not the edits' need
    _fresh_peak()
    before = _rss()
    with torch.no_grad():
        out = render_view(model, camera, edit=scene.edit_hook())
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    rendered = out.gaussians.means.shape[0]
    assert rendered > 100_000
    assert budget.GAUSSIAN_BYTES * rendered / 4 < added < budget.GAUSSIAN_BYTES * rendered


def test_the_refusal_itself_allocates_little():
    """Refusing the 64-duplicate file reads a few KB and counts on [360, 4] tables: its peak
    RSS stays within a few MiB (measured with /usr/bin/time: 5.6 MiB above importing the API)."""
    if not _fresh_peak():
        pytest.skip("needs glibc and Linux /proc/self/clear_refs to measure a peak")
    crafted = _golden_edited([_everything()] * 64)
    with pytest.raises(StreamError):
        decode_scene(crafted)  # the one-time start-up of this path
    _fresh_peak()
    before = _rss()
    with pytest.raises(StreamError, match="edit 13 of 64"):
        decode_scene(crafted)
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert added < 16 << 20, added


def test_the_api_and_the_viewers_live_edits_apply_the_same_bound(tiny_run):
    scene = decode_scene((tiny_run / "stream.csg").read_bytes())
    floor = api.Duplicate("floor", (0.1, 0.0, 0.0))
    with pytest.raises(StreamError, match=r"^edit \d+ of 64 \(duplicate 'floor'\) makes") as no:
        api.edit(scene, [floor] * 64)
    assert "\n" not in str(no.value) and scene.edits == []
    session = ViewerSession(scene, tiny_run / "stream.csg")
    with budget.memory_limit(64 << 20):
        with pytest.raises(StreamError, match="over the limit of 0.06 GiB"):
            for _ in range(64):
                session.apply(floor)
    accepted = len(session.edits)
    assert 0 < accepted < 64
    peak, _ = budget.edited_gaussians(scene.model.active_slots().numpy(), session.edits, 1 << 60)
    assert peak * budget.GAUSSIAN_BYTES <= 64 << 20
