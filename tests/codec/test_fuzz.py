"""Crafted streams: whatever is changed inside a section (checksums rewritten), decoding ends in
a Scene or one StreamError line, never another exception, a hang or a memory blow-up.

The mutations live in ``benchmarks/fuzz.py`` (``python benchmarks/fuzz.py STREAM`` runs 10,000
cases on demand, with per-case timeouts and peak memory); this test runs a few hundred.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..benchmark_scripts import load_benchmark

GOLDEN = Path(__file__).parent / "golden" / "tiny.csg"
CASE_SECONDS = 20
"""A case that takes longer is a hang (a full decode of the tiny run takes about 0.1 s)."""
MAX_MEMORY = 1 << 30
"""The decoder's limit in these cases: a crafted file that asks for more must be refused."""


fuzz = load_benchmark("fuzz")


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def expired(signum, frame):
        raise TimeoutError(f"no result in {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _campaign(seed_stream: bytes, seed: int, cases: int) -> tuple[list[str], list[str]]:
    """Outcomes of ``cases`` crafted variants and the failures (with how to replay them)."""
    outcomes, failures = [], []
    for index in range(cases):
        data, done = fuzz.mutate(seed_stream, fuzz.case_rng(seed, index))
        try:
            with _deadline(CASE_SECONDS):
                outcomes.append(fuzz.decode_case(data, max_memory=MAX_MEMORY))
        except Exception as err:  # every escape is the finding
            where = traceback.extract_tb(err.__traceback__)[-1]
            failures.append(
                f"case {index} ({'; '.join(done)}): {type(err).__name__}: {err} "
                f"at {Path(where.filename).name}:{where.lineno}"
            )
    return outcomes, failures


def _sections_reached(outcomes: list[str]) -> set[str]:
    """Which readers refused something, from their messages."""
    probes = {
        "metadata": ("metadata",),
        "container": ("section", "layer"),
        "positions": ("positions",),
        "flags": ("flags",),
        "weights": ("weights", "hyperprior section"),
        "attributes": ("attributes",),
        "semantic": ("semantic codebook", "semantic language", "semantic weights"),
        "edits": ("edit",),
    }
    return {
        reader
        for reader, words in probes.items()
        if any(any(w in o for w in words) for o in outcomes if o.startswith("refused"))
    }


@pytest.mark.parametrize(("seed", "cases"), [(0, 200), (1, 100)])
def test_crafted_variants_of_a_trained_stream(tiny_run, seed, cases):
    stream = (tiny_run / "stream.csg").read_bytes()
    outcomes, failures = _campaign(stream, seed, cases)
    assert not failures, f"{len(failures)} of {cases} cases escaped:\n" + "\n".join(failures)
    assert len(_sections_reached(outcomes)) >= 6, _sections_reached(outcomes)
    assert any(o == "accepted" for o in outcomes)  # harmless changes still decode


def test_crafted_variants_of_an_edited_stream(tiny_run, tmp_path):
    from csgaussian import api

    scene = api.edit(api.decode(tiny_run / "stream.csg"), [api.Duplicate("floor", (0.5, 0, 0))])
    api.save_edited(scene, tiny_run / "stream.csg", tmp_path / "edited.csg")
    outcomes, failures = _campaign((tmp_path / "edited.csg").read_bytes(), 3, 80)
    assert not failures, "\n".join(failures)
    assert "edits" in _sections_reached(outcomes)


def test_crafted_variants_of_the_golden_stream():
    outcomes, failures = _campaign(GOLDEN.read_bytes(), 2, 100)
    assert not failures, "\n".join(failures)
    assert len(_sections_reached(outcomes)) >= 6, _sections_reached(outcomes)


def test_mutations_are_reproducible_and_keep_checksums_valid():
    from csgaussian.codec.container import read_container

    seed_stream = GOLDEN.read_bytes()
    for index in range(30):
        first, done = fuzz.mutate(seed_stream, fuzz.case_rng(5, index))
        again, _ = fuzz.mutate(seed_stream, fuzz.case_rng(5, index))
        assert first == again
        if not done[0].startswith("table"):  # table mutations change lengths on purpose
            read_container(first)  # every checksum valid: the section decoders see the change
