"""Scale: seconds per stage-1 iteration by component, against image size, old code beside new.

Scenes: kitchen's training views resampled (bilinear) to each size, the intrinsics scaled with
them (``--sizes 128x128,512x512,1000x750``); kitchen has 64 training views at every size. A
fresh quick-preset model is trained for ``--warmup`` iterations (numba compilation included),
then moved to the rate-term start (so the hyperprior is priced, as in three quarters of the
run) and ``--iters`` iterations are timed. That is early training: the Gaussians are those of
the random initialisation, larger than after densification, so the rasterizer's share is the
pessimistic one.

Components are timed by wrapping the package's functions in the measuring process (the same
names exist at the old commit): visibility, rate model (hyperprior #1 and quantization), the
Scaffold-GS MLPs (spawn), projection, binning and packing, forward kernel, loss, backward
kernel, the rest of the backward (torch autograd: MLPs, rate model, SSIM), optimizer,
densification. ``peak_rss_mb`` is the process's peak resident memory (images included).

``--compare TREE`` runs every size with the code of another checkout (e.g. a worktree of the
base commit) in alternation with this one, each in its own process, ``--repeats`` times.

Usage: python benchmarks/scale.py [--sizes 128x128,512x512] [--iters 5] [--warmup 3]
    [--compare /tmp/old] [--repeats 2] [--out benchmarks/results/scale]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

KITCHEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitchen"
COMPONENTS = (
    "visibility",
    "rate_model",
    "mlps",
    "projection",
    "binning",
    "forward_kernel",
    "loss",
    "backward_kernel",
    "backward_other",
    "optimizer",
    "densification",
)


def _timed(owner: object, name: str, key: str, spent: dict[str, float]) -> None:
    """Replace ``owner.name`` by a wrapper adding its wall seconds to ``spent[key]``."""
    original = getattr(owner, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


def _instrument(spent: dict[str, float]) -> None:
    from csgaussian.entropy.anchors import AnchorEntropyModel
    from csgaussian.render import kernels, rasterize
    from csgaussian.scene.anchor_ops import AnchorDensifier
    from csgaussian.scene.scaffold import ScaffoldModel
    from csgaussian.train import loop

    _timed(ScaffoldModel, "visible_anchors", "visibility", spent)
    _timed(AnchorEntropyModel, "forward", "rate_model", spent)
    _timed(ScaffoldModel, "spawn", "mlps", spent)
    _timed(rasterize, "project_gaussians", "projection", spent)
    _timed(rasterize.TileComposite, "forward", "composite_forward", spent)
    _timed(kernels, "forward_kernel", "forward_kernel", spent)
    _timed(loop, "color_loss", "loss", spent)
    _timed(torch.Tensor, "backward", "backward_total", spent)
    _timed(kernels, "backward_kernel", "backward_kernel", spent)
    _timed(kernels, "reduce_by_gaussian", "backward_kernel", spent)
    _timed(torch.optim.Adam, "step", "optimizer", spent)
    _timed(AnchorDensifier, "accumulate", "densification", spent)
    _timed(AnchorDensifier, "step", "densification", spent)


def _resampled(scene: object, width: int, height: int) -> None:
    """Resample the training views in place to ``width x height`` (intrinsics follow)."""
    from csgaussian.types import View

    views = []
    for v in scene.train:
        sx, sy = width / v.camera.width, height / v.camera.height
        camera = v.camera.scaled(1.0)
        camera.K[0] *= sx
        camera.K[1] *= sy
        camera.width, camera.height = width, height
        image = v.image.permute(2, 0, 1)[None]
        image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)
        views.append(View(camera, image[0].permute(1, 2, 0).contiguous(), v.image_path))
    scene.train = views
    scene.test = []


def measure(width: int, height: int, warmup: int, iters: int, threads: int) -> dict:
    """Time ``iters`` stage-1 iterations at ``width x height`` in this process."""
    import numba

    from csgaussian.data import load_scene
    from csgaussian.train.config import preset
    from csgaussian.train.loop import Trainer

    numba.set_num_threads(threads)
    spent: dict[str, float] = defaultdict(float)
    scene = load_scene(KITCHEN, load_instances=False)
    _resampled(scene, width, height)
    config = preset("quick")
    trainer = Trainer(scene, config, Path(os.devnull))
    torch.set_num_threads(config.torch_threads)
    for _ in range(warmup):
        trainer.step()
    trainer.iteration = config.rate_start
    trainer.step()
    _instrument(spent)
    steps, gaussians = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        stats = trainer.step()
        steps.append((time.perf_counter() - t0, time.process_time() - c0))
        gaussians.append(stats.n_gaussians)
    per_iter = {k: v / iters for k, v in spent.items()}
    per_iter["binning"] = per_iter.pop("composite_forward", 0.0) - per_iter["forward_kernel"]
    backward_total = per_iter.pop("backward_total", 0.0)
    per_iter["backward_other"] = backward_total - per_iter["backward_kernel"]
    return {
        "width": width,
        "height": height,
        "views": len(scene.train),
        "threads": threads,
        "iterations_timed": iters,
        "seconds_per_iteration": statistics.median(s[0] for s in steps),
        "cpu_seconds_per_iteration": statistics.median(s[1] for s in steps),
        "gaussians": int(statistics.median(gaussians)),
        "anchors": trainer.model.n_anchors,
        "components_s": {k: round(per_iter.get(k, 0.0), 4) for k in COMPONENTS},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def _run_in(tree: Path, size: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh process importing the csgaussian of ``tree``."""
    cmd = [sys.executable, __file__, "--measure", size, "--iters", str(args.iters)]
    cmd += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict], key: Callable[[dict], float]) -> dict[str, float]:
    values = [key(r) for r in runs]
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128x128,256x256,512x512,1000x750")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare", type=Path, help="another checkout to run beside this one")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        w, h = (int(v) for v in args.measure.split("x"))
        print(json.dumps(measure(w, h, args.warmup, args.iters, args.threads)))
        return 0

    repo = Path(__file__).resolve().parents[1]
    trees = {"new": repo} | ({"old": args.compare.resolve()} if args.compare else {})
    results: dict[str, dict[str, list[dict]]] = {name: {} for name in trees}
    for size in args.sizes.split(","):
        for _ in range(args.repeats):
            for name, tree in trees.items():
                run = _run_in(tree, size, args)
                results[name].setdefault(size, []).append(run)
                comps = "  ".join(f"{k} {v:.3f}" for k, v in run["components_s"].items())
                print(
                    f"{name:>3} {size:>9}: {run['seconds_per_iteration']:.3f} s/it "
                    f"({run['cpu_seconds_per_iteration']:.3f} CPU-s), "
                    f"{run['gaussians']} Gaussians, peak {run['peak_rss_mb']:.0f} MB, "
                    f"load {run['load_average']}\n    {comps}",
                    flush=True,
                )
    rows = []
    for size in args.sizes.split(","):
        row = {"size": size}
        for name in trees:
            runs = results[name][size]
            row[f"{name}_s_per_it"] = _summary(runs, lambda r: r["seconds_per_iteration"])
            row[f"{name}_cpu_s_per_it"] = _summary(runs, lambda r: r["cpu_seconds_per_iteration"])
        if "old" in trees:
            pairs = zip(results["old"][size], results["new"][size], strict=True)
            ratios = [o["seconds_per_iteration"] / n["seconds_per_iteration"] for o, n in pairs]
            row["old_over_new"] = {
                "min": round(min(ratios), 3),
                "median": round(statistics.median(ratios), 3),
                "max": round(max(ratios), 3),
            }
        rows.append(row)
    print(json.dumps(rows))
    if args.out:
        sys.path.insert(0, str(Path(__file__).parent))
        from provenance import provenance, write_environment

        args.out.mkdir(parents=True, exist_ok=True)
        origin = provenance(["python", "benchmarks/scale.py", *(argv or sys.argv[1:])])
        record = {"provenance": origin, "compare": str(args.compare), "summary": rows}
        record["runs"] = results
        (args.out / "scale.json").write_text(json.dumps(record, indent=1) + "\n")
        write_environment(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
