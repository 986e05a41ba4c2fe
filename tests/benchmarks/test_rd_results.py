"""The committed rate-distortion results are what the code at HEAD produces.

Re-running the full benchmark takes hours, so the guard is its ``--quick`` mode: its output was
committed together with the full results, at the same commit. If the quick run at HEAD no longer
reproduces the committed quick results, training or coding has changed since and both are stale.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
KITCHEN = REPO.parent / "shared" / "data" / "kitchen"
BYTES_RTOL = 0.01
"""Quick runs are bit-identical on one machine; 1% of bytes and 0.05 dB leave room for another
CPU's float rounding, while a change of the training or the format moves them further."""
PSNR_ATOL = 0.05


def load(name: str) -> dict:
    return json.loads((RESULTS / name / "rd.json").read_text())


def test_quick_and_full_results_come_from_the_same_commit():
    full, quick = load("rd"), load("rd_quick")
    assert full["provenance"]["commit"] == quick["provenance"]["commit"]
    assert not full["provenance"]["commit"].endswith("+dirty")
    assert len(full["seeds"]) >= 2, "the headline figures must be a mean over seeds"
    if shutil.which("git") and (REPO / ".git").exists():
        known = subprocess.run(
            ["git", "cat-file", "-e", full["provenance"]["commit"] + "^{commit}"], cwd=REPO
        )
        assert known.returncode == 0, "the results name a commit that is not in this history"


def test_full_results_derived_figures_follow_from_their_rows():
    full = load("rd")
    means = {(r["method"], r["lambda"]): r for r in full["mean_rows"]}
    for key, mean in means.items():
        rows = [r for r in full["rows"] if (r["method"], r["lambda"]) == key]
        assert len(rows) == len(full["seeds"])
        assert mean["bytes"] == round(sum(r["bytes"] for r in rows) / len(rows))
    best = full["derived"]["inr_within_0.3db"]
    if best is not None:
        fp32 = means[("scaffold fp32", 0.0)]
        assert best["psnr"] >= fp32["psnr"] - 0.3 - 1e-3


@pytest.mark.skipif(not KITCHEN.is_dir(), reason="needs ../shared/data/kitchen")
def test_quick_benchmark_at_head_reproduces_the_committed_quick_results(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rd.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    committed = load("rd_quick")
    stale = "results are stale: re-run benchmarks/rd.py (full and --quick) and commit both"
    assert [(r["method"], r["lambda"]) for r in fresh["rows"]] == [
        (r["method"], r["lambda"]) for r in committed["rows"]
    ]
    for new, old in zip(fresh["rows"], committed["rows"], strict=True):
        assert new["bytes"] == pytest.approx(old["bytes"], rel=BYTES_RTOL), (new["method"], stale)
        assert new["psnr"] == pytest.approx(old["psnr"], abs=PSNR_ATOL), (new["method"], stale)
