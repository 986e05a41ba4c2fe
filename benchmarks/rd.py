"""Rate-distortion benchmark (issue 3): PSNR versus bytes on one scene, four ways of storing it.

Trains the scene (default: the kitchen) as plain Scaffold-GS (``lambda_rate = 0``) and with the
rate term at several lambdas, for the INR hyperprior (the paper's) and the hash-grid peer
(HAC-style), then measures on the same test views:

* ``scaffold fp32``: the uncompressed run, every tensor a renderer needs as float32;
* ``fp16 + lzma``: that run's tensors cast to float16, concatenated and compressed with lzma;
* ``INR hyperprior`` and ``hash-grid hyperprior``: ``.csg`` streams from ``api.encode``, with
  no capture cameras (``max_cameras=0``): the figures count the coded scene, as the paper and
  its peers do, not the optional pose side channel (docs/format.md §3.7, 486 bytes for 16
  cameras of one capture).

The standard 3DGS PLY a receiver exports from a stream is measured by ``benchmarks/export.py``
(results in ``results/export/``), against the decoded model it comes from.

Every run is trained once per ``--seeds`` entry; the tables give each seed's points and their
mean with the spread (min-max), and the headline figures are read from the means. Writes
``rd.csv`` (every seed), ``rd.md`` (mean table, then every seed, then bytes by section),
``rd.json`` (the summary) and ``rd.png`` into ``--out``, names the commit, command, CPU and
packages they come from (``environment.txt`` is ``pip freeze``), and ends by printing ONE JSON
line. ``--quick`` is a smoke mode whose committed output (``results/rd_quick``) a test re-runs.

Usage:
    python benchmarks/rd.py [--data DIR] [--out DIR] [--preset quick] [--iterations N]
        [--lambdas 0.002 0.003 0.004 0.008] [--grid-lambdas 0.004 0.008] [--seeds 0 1]
        [--skip-existing] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import lzma
import math
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from provenance import provenance, provenance_lines, write_environment
from rich.console import Console
from rich.table import Table

from csgaussian import api
from csgaussian.codec.container import StreamError
from csgaussian.data import load_scene
from csgaussian.eval.metrics import evaluate_images
from csgaussian.scene.io import RUN_INFO_NAME, SCENE_NAME, RunError
from csgaussian.scene.scaffold import ScaffoldModel
from csgaussian.train.config import PRESETS
from csgaussian.train.config import preset as preset_config
from csgaussian.train.loop import CHECKPOINT_NAME
from csgaussian.types import DataError, View

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitchen"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "rd"
QUICK_OUT = REPO / "benchmarks" / "results" / "rd_quick"
DEFAULT_LAMBDAS = (0.002, 0.003, 0.004, 0.008)
"""Within HAC's span (0.004 ... 0.001) plus 0.008 for a lower rate; 0.002 ... 0.004 sample the
curve where it crosses the fp32 PSNR minus NEAR_LOSSLESS_DB on kitchen."""
DEFAULT_SEEDS = (0, 1)
"""Two seeds at least: a verdict of a few tenths of a dB must not rest on one run."""
DEFAULT_GRID_LAMBDAS = (0.004, 0.008)
"""The hash-grid peer at two points, so the INR curve can be read at equal PSNR."""
QUICK_LAMBDAS = (0.004,)
QUICK_ITERATIONS = 60
"""Smoke mode: enough iterations to pass the rate start (a quarter of them) and densify once."""
NEAR_LOSSLESS_DB = 0.3
"""An INR point 'matches' the fp32 baseline when its PSNR is at most this far below it."""
LZMA_PRESET = 9 | lzma.PRESET_EXTREME
FP32_BYTES = 4
KILO = 1000

SCAFFOLD, FP16, INR, GRID = (
    "scaffold fp32",
    "fp16 + lzma",
    "INR hyperprior",
    "hash-grid hyperprior",
)
HYPERPRIOR_METHOD = {"inr": INR, "hashgrid": GRID}
CSV_FIELDS = (
    "method",
    "lambda",
    "seed",
    "bytes",
    "psnr",
    "ssim",
    "n_anchors",
    "ratio",
    "encode_s",
    "decode_s",
)


@dataclass(frozen=True)
class Settings:
    """What every run of one benchmark shares."""

    data: Path
    out: Path
    preset: str
    iterations: int
    lambdas: tuple[float, ...]
    grid_lambdas: tuple[float, ...]
    seeds: tuple[int, ...]
    skip_existing: bool


@dataclass
class Point:
    """One rate-distortion point (one row of the table)."""

    method: str
    lambda_rate: float | None
    seed: int | None
    bytes: float
    psnr: float
    ssim: float
    n_anchors: int
    ratio: float = math.nan  # scaffold fp32 bytes / bytes, filled in at the end
    encode_s: float | None = None
    decode_s: float | None = None
    sections: dict[str, dict[str, float]] = field(default_factory=dict)
    psnr_range: tuple[float, float] | None = None  # min, max over seeds (a mean point only)
    bytes_range: tuple[float, float] | None = None

    def row(self) -> dict[str, Any]:
        """The table columns (CSV_FIELDS), rounded."""
        return {
            "method": self.method,
            "lambda": self.lambda_rate,
            "seed": self.seed,
            "bytes": round(self.bytes),
            "psnr": round(self.psnr, 3),
            "ssim": round(self.ssim, 4),
            "n_anchors": self.n_anchors,
            "ratio": round(self.ratio, 2),
            "encode_s": None if self.encode_s is None else round(self.encode_s, 3),
            "decode_s": None if self.decode_s is None else round(self.decode_s, 3),
        }


def train_run(
    settings: Settings,
    name: str,
    lambda_rate: float,
    hyperprior: str | None,
    seed: int,
    console: Console,
) -> Path:
    """Train (or, with ``--skip-existing``, reuse or resume) the run ``runs/<name>``."""
    run_dir = settings.out / "runs" / name
    wanted = {
        "data": str(settings.data.resolve()),
        "downscale": 1,
        "preset": settings.preset,
        "iterations": settings.iterations,
        "lambda_rate": lambda_rate,
        "hyperprior": hyperprior,
        "seed": seed,
    }
    info_path = run_dir / RUN_INFO_NAME
    recorded = json.loads(info_path.read_text()) if info_path.is_file() else None
    same = recorded is not None and {k: recorded.get(k) for k in wanted} == wanted
    if settings.skip_existing and same and (run_dir / SCENE_NAME).is_file():
        console.print(f"[green]reusing[/] {run_dir}")
        return run_dir
    resume = settings.skip_existing and same and (run_dir / CHECKPOINT_NAME).is_file()
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # never mistake a stale run for this one
    console.print(f"{'resuming' if resume else 'training'} {name} ({settings.iterations} it)")
    result = api.train(
        settings.data,
        run_dir,
        preset=settings.preset,
        iterations=settings.iterations,
        resume=resume,
        lambda_rate=lambda_rate,
        hyperprior=hyperprior,
        stages="1",
        seed=seed,
    ).colour
    console.print(f"trained {name} in {result.seconds:.0f} s, {result.n_anchors} anchors")
    return run_dir


def score(preds: list[torch.Tensor], views: list[View]) -> dict[str, Any]:
    """PSNR and SSIM of ``[H, W, 3]`` renders against the test views, as api.evaluate does."""
    return evaluate_images(preds, [view.image for view in views], None)


def renderer_tensors(model: ScaffoldModel) -> dict[str, torch.Tensor]:
    """Every tensor a renderer needs: the state dict minus ``anchor_cells`` (= the anchors)."""
    return {k: v for k, v in model.state_dict().items() if k != "anchor_cells"}


def scaffold_point(run_dir: Path, seed: int) -> Point:
    model, _ = api.load_trained(run_dir)
    size = sum(t.numel() * FP32_BYTES for t in renderer_tensors(model).values())
    metrics = api.evaluate(run_dir)
    return Point(SCAFFOLD, 0.0, seed, size, metrics["psnr"], metrics["ssim"], model.n_anchors)


def fp16_point(run_dir: Path, views: list[View], seed: int) -> Point:
    """float16 tensors, concatenated and lzma-compressed; PSNR of the rounded model."""
    model, _ = api.load_trained(run_dir)
    halves = {k: v.detach().half().contiguous() for k, v in renderer_tensors(model).items()}
    started = time.perf_counter()
    blob = b"".join(t.numpy().tobytes() for t in halves.values())
    packed = lzma.compress(blob, preset=LZMA_PRESET)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    if lzma.decompress(packed) != blob:
        raise RuntimeError("lzma round trip changed the float16 payload")
    decode_s = time.perf_counter() - started
    model.load_state_dict({k: t.float() for k, t in halves.items()}, strict=False)
    preds = [api.render_camera(model, view.camera) for view in views]
    metrics = score(preds, views)
    return Point(
        FP16,
        0.0,
        seed,
        len(packed),
        metrics["psnr"],
        metrics["ssim"],
        model.n_anchors,
        encode_s=encode_s,
        decode_s=decode_s,
    )


def coded_point(
    settings: Settings, run_dir: Path, method: str, lambda_rate: float, seed: int
) -> Point:
    """Encode a rate-trained run, decode it, evaluate the stream; per-section bytes."""
    stream = settings.out / "streams" / f"{run_dir.name}.csg"
    stream.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    encoded = api.encode(run_dir, stream, max_cameras=0)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    api.decode(stream)
    decode_s = time.perf_counter() - started
    metrics = api.evaluate(stream, settings.data)
    sections: dict[str, dict[str, float]] = {
        name: {"bytes": size} for name, size in encoded.section_bytes.items()
    }
    for group, bits in encoded.estimated_bits.items():
        sections[group]["estimated_bytes"] = round(bits / 8, 1)
    return Point(
        method,
        lambda_rate,
        seed,
        stream.stat().st_size,
        metrics["psnr"],
        metrics["ssim"],
        metrics["n_anchors"],
        encode_s=encode_s,
        decode_s=decode_s,
        sections=sections,
    )


def bytes_at_psnr(curve: list[Point], psnr: float) -> float | None:
    """Bytes of ``curve`` at ``psnr``, interpolated linearly in (PSNR, log bytes) between the two
    points that bracket it; None outside the curve's PSNR range."""
    ordered = sorted(curve, key=lambda p: p.psnr)
    for low, high in itertools.pairwise(ordered):
        if low.psnr <= psnr <= high.psnr and high.psnr > low.psnr:
            t = (psnr - low.psnr) / (high.psnr - low.psnr)
            return math.exp((1 - t) * math.log(low.bytes) + t * math.log(high.bytes))
    return None


def derived_figures(
    points: list[Point], fp32: Point, coded: list[Point] | None = None
) -> dict[str, Any]:
    """The headline numbers of issue 3, read from ``points``; the estimate's error from the
    per-section bytes of ``coded`` (default: ``points``; mean points carry no sections)."""
    inr = [p for p in points if p.method == INR]
    grid = {p.lambda_rate: p for p in points if p.method == GRID}
    near = [p for p in inr if p.psnr >= fp32.psnr - NEAR_LOSSLESS_DB]
    best = min(near, key=lambda p: p.bytes) if near else None
    errors = [
        abs(8 * s["bytes"] - 8 * s["estimated_bytes"]) / (8 * s["estimated_bytes"])
        for p in coded or points
        for s in p.sections.values()
        if s.get("estimated_bytes")
    ]
    timed = [p for p in points if p.method in (INR, GRID)]
    bar = fp32.psnr - NEAR_LOSSLESS_DB
    at_bar = bytes_at_psnr(inr, bar)
    return {
        "inr_within_0.3db": None
        if best is None
        else {
            "lambda": best.lambda_rate,
            "bytes": best.bytes,
            "psnr": round(best.psnr, 3),
            "ratio": round(best.ratio, 2),
        },
        "inr_at_fp32_minus_0.3db": {
            "psnr": round(bar, 3),
            "bytes_interpolated": None if at_bar is None else round(at_bar),
            "ratio": None if at_bar is None else round(fp32.bytes / at_bar, 2),
        },
        "inr_vs_hashgrid": [
            {
                "lambda": p.lambda_rate,
                "inr_bytes": p.bytes,
                "hashgrid_bytes": grid[p.lambda_rate].bytes,
                "inr_over_hashgrid": round(p.bytes / grid[p.lambda_rate].bytes, 4),
                "psnr_inr_minus_hashgrid": round(p.psnr - grid[p.lambda_rate].psnr, 3),
            }
            for p in inr
            if p.lambda_rate in grid
        ],
        "inr_at_hashgrid_psnr": [
            {
                "hashgrid_lambda": g.lambda_rate,
                "psnr": round(g.psnr, 3),
                "hashgrid_bytes": g.bytes,
                "inr_bytes_interpolated": None if at is None else round(at),
                "inr_over_hashgrid": None if at is None else round(at / g.bytes, 4),
            }
            for g in grid.values()
            for at in [bytes_at_psnr(inr, g.psnr)]
        ],
        "max_rel_error_actual_vs_estimated": round(max(errors), 5) if errors else None,
        "max_encode_s": round(max(p.encode_s for p in timed), 3) if timed else None,
        "max_decode_s": round(max(p.decode_s for p in timed), 3) if timed else None,
    }


def mean_points(points: list[Point]) -> list[Point]:
    """One point per (method, lambda): the mean over seeds, with the min-max spread."""
    groups: dict[tuple[str, float | None], list[Point]] = {}
    for p in points:
        groups.setdefault((p.method, p.lambda_rate), []).append(p)
    means = []
    for (method, lambda_rate), group in groups.items():
        psnrs, sizes = [p.psnr for p in group], [p.bytes for p in group]
        timed = [p for p in group if p.encode_s is not None]
        means.append(
            Point(
                method,
                lambda_rate,
                None,
                statistics.fmean(sizes),
                statistics.fmean(psnrs),
                statistics.fmean(p.ssim for p in group),
                round(statistics.fmean(p.n_anchors for p in group)),
                encode_s=max((p.encode_s for p in timed), default=None),
                decode_s=max((p.decode_s for p in timed), default=None),
                psnr_range=(min(psnrs), max(psnrs)),
                bytes_range=(min(sizes), max(sizes)),
            )
        )
    return means


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def write_tables(points: list[Point], means: list[Point], origin: dict, out: Path) -> None:
    """``rd.csv`` (every seed) and ``rd.md``: the mean table with spreads, every seed's table,
    then the per-section bytes of the coded runs."""
    rows = [p.row() for p in points]
    with (out / "rd.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    seeds = sorted({p.seed for p in points})
    lines = ["# Rate-distortion", "", *provenance_lines(origin), ""]
    lines += [
        f"Mean over seeds {seeds} (min-max):",
        "",
        "| method | lambda | bytes (min-max) | psnr (min-max) | ssim | n_anchors | ratio | "
        "encode_s | decode_s |",
        "|" + " --- |" * 9,
    ]
    for m in means:
        r = m.row()
        lines.append(
            f"| {m.method} | {m.lambda_rate} | {r['bytes']} ({m.bytes_range[0]:.0f}-"
            f"{m.bytes_range[1]:.0f}) | {r['psnr']} ({m.psnr_range[0]:.3f}-{m.psnr_range[1]:.3f})"
            f" | {r['ssim']} | {r['n_anchors']} | {r['ratio']} | {_cell(r['encode_s'])} | "
            f"{_cell(r['decode_s'])} |"
        )
    lines += ["", "Every seed:", "", "| " + " | ".join(CSV_FIELDS) + " |"]
    lines += ["|" + " --- |" * len(CSV_FIELDS)]
    lines += ["| " + " | ".join(_cell(r[f]) for f in CSV_FIELDS) + " |" for r in rows]
    lines += ["", "| method | lambda | seed | section | bytes | estimated bytes |"]
    lines += ["|" + " --- |" * 6]
    for p in points:
        for name, s in p.sections.items():
            est = _cell(s.get("estimated_bytes"))
            lines.append(
                f"| {p.method} | {p.lambda_rate} | {p.seed} | {name} | {s['bytes']} | {est} |"
            )
    (out / "rd.md").write_text("\n".join(lines) + "\n")


def plot(means: list[Point], path: Path, title: str) -> None:
    """Mean PSNR versus kilobytes (log x), one marker and line per method; bars span the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip((SCAFFOLD, FP16, INR, GRID), "sDov", strict=True))
    for method, marker in markers.items():
        chosen = sorted((p for p in means if p.method == method), key=lambda p: p.bytes)
        if chosen:
            xs = [p.bytes / KILO for p in chosen]
            ys = [p.psnr for p in chosen]
            spread = [[y - p.psnr_range[0] for y, p in zip(ys, chosen, strict=True)]]
            spread += [[p.psnr_range[1] - y for y, p in zip(ys, chosen, strict=True)]]
            ax.errorbar(xs, ys, yerr=spread, marker=marker, capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("size (kB, log scale)")
    ax.set_ylabel("test PSNR (dB), mean and min-max over seeds")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def seed_points(settings: Settings, seed: int, views: list[View], console: Console) -> list[Point]:
    """Every run of one seed, trained (or reused) and measured."""
    jobs = [(SCAFFOLD, 0.0, None)]
    jobs += [(INR, lam, "inr") for lam in settings.lambdas]
    jobs += [(GRID, lam, "hashgrid") for lam in settings.grid_lambdas]
    points: list[Point] = []
    for index, (method, lam, hyperprior) in enumerate(jobs, 1):
        stem = "scaffold_fp32" if hyperprior is None else f"{hyperprior}_lambda{lam:g}"
        name = f"{stem}_seed{seed}"
        console.rule(f"[bold]seed {seed}, run {index}/{len(jobs)}: {method}, lambda {lam:g}")
        run_dir = train_run(settings, name, lam, hyperprior, seed, console)
        if hyperprior is None:
            new = [
                scaffold_point(run_dir, seed),
                fp16_point(run_dir, views, seed),
            ]
        else:
            new = [coded_point(settings, run_dir, method, lam, seed)]
        for p in new:
            console.print(f"{p.method}: {p.bytes} bytes, PSNR {p.psnr:.2f} dB")
        points += new
    return points


def run_benchmark(settings: Settings, origin: dict, console: Console) -> dict[str, Any]:
    """Train, measure and write every output; returns the JSON summary."""
    views = load_scene(settings.data, load_instances=False).test
    settings.out.mkdir(parents=True, exist_ok=True)
    per_seed = {seed: seed_points(settings, seed, views, console) for seed in settings.seeds}
    for points in per_seed.values():
        fp32 = points[0]
        for p in points:
            p.ratio = fp32.bytes / p.bytes
    points = [p for seed_list in per_seed.values() for p in seed_list]
    means = mean_points(points)
    for p in means:
        p.ratio = means[0].bytes / p.bytes
    write_tables(points, means, origin, settings.out)
    write_environment(settings.out)
    title = (
        f"{settings.data.name}, {settings.preset} preset, {settings.iterations} iterations, "
        f"seeds {list(settings.seeds)}"
    )
    plot(means, settings.out / "rd.png", title)
    table = Table(*CSV_FIELDS, title=f"rate-distortion, mean over seeds {list(settings.seeds)}")
    for row in (p.row() for p in means):
        table.add_row(*("" if row[f] is None else str(row[f]) for f in CSV_FIELDS))
    console.print(table)
    summary = {
        "provenance": origin,
        "scene": settings.data.name,
        "preset": settings.preset,
        "iterations": settings.iterations,
        "seeds": list(settings.seeds),
        "n_test_views": len(views),
        "mean_rows": [
            {**p.row(), "psnr_range": p.psnr_range, "bytes_range": p.bytes_range} for p in means
        ],
        "rows": [{**p.row(), "sections": p.sections} for p in points],
        "derived": derived_figures(means, means[0], points),
        "derived_per_seed": {
            seed: derived_figures(seed_list, seed_list[0]) for seed, seed_list in per_seed.items()
        },
    }
    (settings.out / "rd.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def parse_settings(argv: list[str] | None) -> Settings:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="scene folder")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder ({DEFAULT_OUT})")
    ap.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="training preset")
    ap.add_argument("--iterations", type=int, default=None, help="default: the preset's")
    ap.add_argument("--lambdas", type=float, nargs="+", default=None)
    ap.add_argument(
        "--grid-lambdas", type=float, nargs="*", default=None, help="none given: no grid runs"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 (quick: 0)")
    ap.add_argument("--skip-existing", action="store_true", help="reuse/resume runs in --out")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: lambdas {QUICK_LAMBDAS}, {QUICK_ITERATIONS} iterations, {QUICK_OUT}",
    )
    args = ap.parse_args(argv)
    lambdas = tuple(args.lambdas or (QUICK_LAMBDAS if args.quick else DEFAULT_LAMBDAS))
    grid_lambdas = tuple(
        (QUICK_LAMBDAS if args.quick else DEFAULT_GRID_LAMBDAS)
        if args.grid_lambdas is None
        else args.grid_lambdas
    )
    if any(lam <= 0 for lam in lambdas + grid_lambdas):
        ap.error("--lambdas and --grid-lambdas must be > 0 (lambda 0 is the fp32 baseline)")
    seeds = tuple(args.seeds or ((0,) if args.quick else DEFAULT_SEEDS))
    iterations = args.iterations or (
        QUICK_ITERATIONS if args.quick else preset_config(args.preset).iterations
    )
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    return Settings(
        args.data, out, args.preset, iterations, lambdas, grid_lambdas, seeds, args.skip_existing
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    console = Console(stderr=True)
    origin = provenance(["python benchmarks/rd.py", *(sys.argv[1:] if argv is None else argv)])
    console.print(f"rate-distortion benchmark: {asdict(settings)}")
    try:
        summary = run_benchmark(settings, origin, console)
    except (DataError, RunError, StreamError) as err:
        console.print(f"[red]error:[/] {err}")
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
