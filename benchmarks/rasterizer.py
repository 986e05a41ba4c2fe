"""Rasterizer speed: fast tile path (numba) against the dense torch reference.

Scene (typical of a trained scene at low resolution): 20,000 Gaussians uniform in a
2.6 x 2.6 x 2 box centred 3 units in front of a camera with a 50 degree horizontal field of view,
log-normal scales (median footprint sigma ~1.5 px, tail to ~10 px), opacities sigmoid(N(0, 2)).
Runs with ``--threads`` torch and numba threads (default 2). Timings are medians of wall time
and of process CPU time (the latter is the one to compare on a shared, loaded machine, with
``--threads 1``). Ends by printing one JSON line.

``--compare TREE`` runs this script ``--repeats`` times with this checkout's csgaussian and with
another checkout's (e.g. a worktree of an older commit), in alternation, each in its own process
and without the dense reference, and prints the old / new ratios of forward + backward time
(pair by pair: min, median, max); ``--out DIR`` writes them to ``DIR/rasterizer.json``.

Usage: python benchmarks/rasterizer.py [--n 20000] [--size 128] [--reps 15] [--ref-reps 3]
    [--threads 2] [--compare /tmp/old --repeats 3 --out benchmarks/results/scale]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import torch

from csgaussian.render import RasterConfig, rasterize_gaussians
from csgaussian.render.projection import project_gaussians, tile_rects
from csgaussian.render.rasterize import TileComposite
from csgaussian.types import Camera

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import spread, write_record  # noqa: E402

try:
    from csgaussian.render.projection import alpha_reach
except ImportError:  # checkouts before 95e470b (e.g. 08fc446): tile rectangles from radii only
    alpha_reach = None

CAMERA_DISTANCE = 3.0
FOV_DEG = 50.0
BOX_HALF = (1.3, 1.3, 1.0)
SIGMA_PX_MEDIAN = 1.5
LOG_SCALE_STD = 0.7  # per Gaussian; tail 2.5 std ~ 6x the median
LOG_ANISO_STD = 0.4  # per axis
OPACITY_LOGIT_STD = 2.0


def make_scene(n: int, size: int, seed: int = 0) -> tuple[list[torch.Tensor], Camera]:
    """Random Gaussians and a camera; returns ``[means, quats, scales, opacities, colors]``."""
    g = torch.Generator().manual_seed(seed)
    f = 0.5 * size / math.tan(math.radians(FOV_DEG) / 2)
    K = torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
    viewmat = torch.eye(4)
    viewmat[2, 3] = CAMERA_DISTANCE
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor(BOX_HALF)
    median_world = SIGMA_PX_MEDIAN * CAMERA_DISTANCE / f
    log_s = math.log(median_world) + LOG_SCALE_STD * torch.randn(n, 1, generator=g)
    scales = torch.exp(log_s + LOG_ANISO_STD * torch.randn(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    opacities = torch.sigmoid(OPACITY_LOGIT_STD * torch.randn(n, generator=g))
    colors = torch.rand(n, 3, generator=g)
    return [means, quats, scales, opacities, colors], Camera(viewmat, K, size, size)


CPU_MS: dict[int, float] = {}
"""Median process CPU milliseconds of the last :func:`median_ms` call, keyed by ``id(fn)``."""


def median_ms(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``reps`` runs after one warm-up.

    Also records the median process CPU time of the same runs in ``CPU_MS[id(fn)]``.
    """
    fn()
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    CPU_MS[id(fn)] = statistics.median(cpu)
    return statistics.median(times)


COMPARED = ("fast_fwd_bwd_ms", "composite_fwd_bwd_cpu_ms", "fast_fwd_bwd_cpu_ms")
"""Figures of each run that ``--compare`` sets side by side."""


def _run_in(tree: Path, args: argparse.Namespace) -> dict:
    """One run of this script in a fresh process importing the csgaussian of ``tree``."""
    cmd = [sys.executable, __file__, "--n", str(args.n), "--size", str(args.size)]
    cmd += ["--reps", str(args.reps), "--ref-reps", "0", "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree)
    run = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = run.get("cpu_ms", {})
    run["fast_fwd_bwd_cpu_ms"] = cpu.get("fast_fwd_bwd")
    run["composite_fwd_bwd_cpu_ms"] = cpu.get("composite_fwd_bwd")
    return run


def compare(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--compare``: this checkout and another, alternated, with old / new ratios."""
    trees = {"new": Path(__file__).resolve().parents[1], "old": args.compare.resolve()}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            run = _run_in(tree, args)
            runs[name].append(run)
            shown = {key: run.get(key) for key in ("intersections", *COMPARED)}
            print(f"{name}: {json.dumps(shown)}, load {os.getloadavg()[0]:.2f}", flush=True)
    summary: dict[str, object] = {"n_gaussians": args.n, "size": args.size}
    for key in COMPARED:
        pairs = [(o.get(key), n.get(key)) for o, n in zip(runs["old"], runs["new"], strict=True)]
        if all(o is not None and n is not None for o, n in pairs):
            summary[key] = {
                "old": spread([o for o, _ in pairs]),
                "new": spread([n for _, n in pairs]),
                "old_over_new": spread([o / n for o, n in pairs]),
            }
    print(json.dumps(summary))
    if args.out:
        command = ["python", "benchmarks/rasterizer.py", *(argv or sys.argv[1:])]
        fields = {"compare": str(args.compare), "summary": summary, "runs": runs}
        write_record(args.out, "rasterizer", command, fields)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--ref-reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="another checkout to run beside this one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args, argv)
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    config = RasterConfig()

    params, camera = make_scene(args.n, args.size)
    for p in params:
        p.requires_grad_(True)
    background = torch.rand(3, requires_grad=True)
    weights = torch.rand(args.size, args.size, 3)

    def forward(backend: str) -> object:
        with torch.no_grad():
            return rasterize_gaussians(*params, camera, background, config, backend)

    def forward_backward(backend: str) -> object:
        out = rasterize_gaussians(*params, camera, background, config, backend)
        loss = (out.colors * weights).sum() + out.alpha.sum() + out.depth.mean()
        return torch.autograd.grad(loss, [*params, background])

    def project_only() -> object:
        proj = project_gaussians(params[0], params[1], params[2], camera, config)
        return torch.autograd.grad(proj.means2d.sum() + proj.conics.sum(), params[:3])

    with torch.no_grad():
        proj = project_gaussians(params[0], params[1], params[2], camera, config)
    screen = [
        x.detach().clone().requires_grad_(True)
        for x in (proj.means2d, proj.conics, params[3], params[4], proj.depths, background)
    ]

    def composite_only() -> object:
        out = TileComposite.apply(*screen, proj.radii, args.size, args.size, config)
        loss = (out[0] * weights).sum() + out[1].sum() + out[2].mean()
        return torch.autograd.grad(loss, screen)

    with torch.no_grad():
        size, tile = args.size, config.tile_size
        if alpha_reach is None:
            rects = tile_rects(proj.means2d, proj.radii, size, size, tile)
        else:
            reach = alpha_reach(proj.conics, params[3], config.alpha_min)
            rects = tile_rects(proj.means2d, proj.radii, size, size, tile, reach)
        isects = int(((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])).sum())
        visible = int((proj.radii > 0).sum())
        radii_median = float(proj.radii[proj.radii > 0].float().median())

    def fast_forward() -> object:
        return forward("numba")

    def fast_forward_backward() -> object:
        return forward_backward("numba")

    fast_fwd = median_ms(fast_forward, args.reps)
    fast_fb = median_ms(fast_forward_backward, args.reps)
    proj_fb = median_ms(project_only, args.reps)
    comp_fb = median_ms(composite_only, args.reps)
    cpu = {
        "fast_fwd": CPU_MS[id(fast_forward)],
        "fast_fwd_bwd": CPU_MS[id(fast_forward_backward)],
        "projection_fwd_bwd": CPU_MS[id(project_only)],
        "composite_fwd_bwd": CPU_MS[id(composite_only)],
    }
    ref_fb = median_ms(lambda: forward_backward("torch"), args.ref_reps) if args.ref_reps else 0.0

    diff = float("nan")  # the dense reference is skipped with --ref-reps 0 (hours at 100k, 512^2)
    if args.ref_reps:
        fast, ref = forward("numba"), forward("torch")
        diff = max(
            float((fast.colors - ref.colors).abs().max()),
            float((fast.alpha - ref.alpha).abs().max()),
            float((fast.depth - ref.depth).abs().max()),
        )

    load = os.getloadavg()[0]
    print(f"Gaussians {args.n} (visible {visible}), image {args.size}x{args.size}, C=3")
    print(
        f"load average (1 min) {load:.2f} on {os.cpu_count()} cores: timings assume an idle machine"
    )
    print(f"intersections {isects}, median radius {radii_median:.0f} px")
    print(f"threads {args.threads}; wall ms, process CPU ms")
    print(f"{'fast forward':<28}{fast_fwd:9.1f} {cpu['fast_fwd']:9.1f}")
    print(f"{'fast forward+backward':<28}{fast_fb:9.1f} {cpu['fast_fwd_bwd']:9.1f}")
    print(f"{'  projection alone f+b':<28}{proj_fb:9.1f} {cpu['projection_fwd_bwd']:9.1f}")
    print(f"{'  binning+kernels alone f+b':<28}{comp_fb:9.1f} {cpu['composite_fwd_bwd']:9.1f}")
    print(f"{'reference forward+backward':<28}{ref_fb:9.1f} ms")
    print(f"{'max |fast - reference|':<28}{diff:9.2e}")
    record = {
        "n_gaussians": args.n,
        "width": args.size,
        "height": args.size,
        "intersections": isects,
        "fast_fwd_ms": round(fast_fwd, 2),
        "fast_fwd_bwd_ms": round(fast_fb, 2),
        "threads": args.threads,
        "cpu_ms": {k: round(v, 2) for k, v in cpu.items()},
        "reference_fwd_bwd_ms": round(ref_fb, 1),
        "max_abs_diff_vs_reference": diff,
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
