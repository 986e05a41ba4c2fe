"""Codec benchmark: octree bits/anchor, position and attribute coding speed, actual vs estimate.

Usage: python benchmarks/codec.py [--colmap PATH/points3D.txt] [--symbols 1500000]
Prints progress lines, then ONE JSON line with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

from csgaussian.codec.octree import decode_positions, encode_positions, voxelize
from csgaussian.entropy.coder import decode_gaussian, encode_gaussian, estimate_bits
from csgaussian.entropy.hashgrid import HashGridHyperprior
from csgaussian.entropy.hyperprior import INRHyperprior

DEFAULT_COLMAP = Path("/work/shared/data/kitchen_colmap/sparse/0/points3D.txt")
GEOMETRY = Path(__file__).resolve().parents[1] / "tests" / "codec" / "geometry.py"


def _surface_anchor_grid(n_samples: int) -> np.ndarray:
    """The codec tests' synthetic surface geometry (``tests/codec/geometry.py``)."""
    spec = importlib.util.spec_from_file_location("csgaussian_test_geometry", GEOMETRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.surface_anchor_grid(n_samples)


def timed(fn, *args, repeats: int = 3):
    """(result, best wall seconds of ``repeats`` calls)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return out, best


def octree_figures(grid: np.ndarray) -> dict:
    data, t_enc = timed(encode_positions, grid)
    out, t_dec = timed(decode_positions, data)
    assert np.array_equal(out, grid), "octree round trip failed"
    return {
        "anchors": len(grid),
        "bytes": len(data),
        "bits_per_anchor": round(8 * len(data) / max(len(grid), 1), 3),
        "encode_s": round(t_enc, 4),
        "decode_s": round(t_dec, 4),
    }


def colmap_points(path: Path) -> np.ndarray:
    """x y z columns of a COLMAP points3D.txt."""
    return np.loadtxt(path, comments="#", usecols=(1, 2, 3), ndmin=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colmap", type=Path, default=DEFAULT_COLMAP)
    ap.add_argument("--symbols", type=int, default=1_500_000)
    args = ap.parse_args(argv)
    result: dict = {"octree_surface": {}, "octree_colmap": {}}

    for samples in (5_000, 20_000, 50_000, 200_000):
        grid = _surface_anchor_grid(samples)
        result["octree_surface"][str(samples)] = fig = octree_figures(grid)
        print(f"surface fixture, {samples} samples: {fig}", file=sys.stderr)
    grid20k = _surface_anchor_grid(20_150)[:20_000]
    result["positions_20k"] = octree_figures(grid20k)

    if args.colmap.exists():
        pts = colmap_points(args.colmap)
        extent = float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))
        for frac in (1e-3, 2e-3):
            grid, _ = voxelize(pts, extent * frac)
            fig = octree_figures(grid)
            fig["points"] = len(pts)
            result["octree_colmap"][f"voxel_{frac:g}_extent"] = fig
            print(f"{args.colmap}, voxel {frac:g} x extent: {fig}", file=sys.stderr)

    rng = np.random.default_rng(0)
    m = args.symbols
    means = rng.normal(0.0, 10.0, m)
    scales = np.exp(rng.uniform(np.log(0.05), np.log(50.0), m))
    symbols = np.round(means + scales * rng.normal(size=m)).astype(np.int32)
    symbols[:: max(m // 1000, 1)] += 10_000  # 0.1 % outliers exercise the escape path
    data, t_enc = timed(encode_gaussian, symbols, means, scales)
    out, t_dec = timed(decode_gaussian, data, means, scales)
    assert np.array_equal(out, symbols), "attribute round trip failed"
    est = estimate_bits(symbols, means, scales)
    result["attributes"] = {
        "symbols": m,
        "actual_bits": 8 * len(data),
        "estimated_bits": round(est, 1),
        "actual_over_estimate": round(8 * len(data) / est, 6),
        "bits_per_symbol": round(8 * len(data) / m, 4),
        "encode_s": round(t_enc, 4),
        "decode_s": round(t_dec, 4),
    }
    result["hyperprior_parameters"] = {
        "inr": INRHyperprior().num_parameters(),
        "hashgrid": HashGridHyperprior().num_parameters(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
