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

``--memory`` measures peak memory instead, on a capture of ``--memory-views`` views (300) at
``--memory-size`` (1000x750) that it writes to a temporary folder in the Blender layout:
kitchen's 64 training views and their instance maps resampled (bilinear / nearest) to that size
and repeated under new names (symbolic links) until there are enough, with its 8 test views.
Each phase runs in a fresh process (the peak resident set only grows) and reports that peak
(``ru_maxrss``) and the bytes the loaded views hold: ``load`` (``load_scene`` as ``train``
calls it), ``prepare`` (``prepare_features`` with the hash encoder: the instance maps become
mask files), ``stage1`` (loading, then ``--memory-iters`` stage-1 iterations of the quick
preset rescaled to them, writing ``scene.pt``) and ``stage2`` (loading, the masks of every
view, the base layer, the trainer, the quality weights (one render per view) and
``--memory-iters`` stage-2 iterations). With ``--compare`` the other checkout runs the same
phases on the same capture.

Usage: python benchmarks/scale.py [--sizes 128x128,512x512] [--iters 5] [--warmup 3]
    [--compare /tmp/old] [--repeats 2] [--out benchmarks/results/scale]
    python benchmarks/scale.py --memory [--memory-size 1000x750] [--memory-views 300]
    [--memory-iters 3] [--compare /tmp/old] [--out benchmarks/results/scale]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import spread, write_record  # noqa: E402

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


MEMORY_PHASES = ("load", "prepare", "stage1", "stage2")
MEMORY_LIMIT_MB = 8 * 1024  # issue 16: a 300-view 1 MP capture must fit in 8 GB
KITCHEN_TEST_VIEWS = 8


def _resampled_frames(
    split: str, count: int, width: int, height: int, out: Path
) -> tuple[list[dict], float, float]:
    """Write kitchen's ``split`` views and instance maps resampled to ``width x height`` under
    ``out``, repeated under new names up to ``count`` views; their frames and the focal lengths."""
    from PIL import Image

    meta = json.loads((KITCHEN / f"transforms_{split}.json").read_text())
    source = meta["frames"]
    fx = 0.5 * 128 / math.tan(0.5 * meta["camera_angle_x"])  # kitchen's views are 128 x 128
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "instance").mkdir(exist_ok=True)
    (out / "resampled").mkdir(exist_ok=True)
    for k, frame in enumerate(source):
        stem = Path(frame["file_path"]).name
        with Image.open(KITCHEN / split / f"{stem}.png") as im:
            im.convert("RGB").resize((width, height), Image.BILINEAR).save(
                out / "resampled" / f"{split}_{k:03d}.png"
            )
        with Image.open(KITCHEN / "instance" / f"{split}_{k:03d}.png") as im:
            im.resize((width, height), Image.NEAREST).save(
                out / "resampled" / f"{split}_{k:03d}_instance.png"
            )
    frames = []
    for i in range(count):
        k = i % len(source)
        (out / split / f"r_{i:03d}.png").symlink_to(out / "resampled" / f"{split}_{k:03d}.png")
        (out / "instance" / f"{split}_{i:03d}.png").symlink_to(
            out / "resampled" / f"{split}_{k:03d}_instance.png"
        )
        frames.append({**source[k], "file_path": f"./{split}/r_{i:03d}"})
    return frames, fx * width / 128, fx * height / 128


def write_memory_capture(out: Path, width: int, height: int, views: int) -> Path:
    """Kitchen resampled to ``width x height`` with ``views`` training views (see the module
    docstring), in the Blender layout under ``out``."""
    for split, count in (("train", views), ("test", KITCHEN_TEST_VIEWS)):
        frames, fl_x, fl_y = _resampled_frames(split, count, width, height, out)
        meta = {"fl_x": fl_x, "fl_y": fl_y, "cx": width / 2, "cy": height / 2, "w": width}
        meta |= {"h": height, "frames": frames}
        (out / f"transforms_{split}.json").write_text(json.dumps(meta))
    (out / "segmentations").mkdir()
    shutil.copy(KITCHEN / "segmentations" / "classes.txt", out / "segmentations" / "classes.txt")
    return out


def _held_mb(views: list) -> float:
    """Megabytes of the tensors the loaded views hold (images and instance maps)."""
    total = 0
    for view in views:
        for value in vars(view).values():
            if isinstance(value, torch.Tensor) and value.dim() >= 2:
                total += value.numel() * value.element_size()
    return round(total / 2**20, 1)


def measure_memory(phase: str, capture: Path, work: Path, iters: int, threads: int) -> dict:
    """Peak resident memory of one phase (see the module docstring) in this process."""
    import numba

    from csgaussian.data import load_scene

    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    record: dict = {"phase": phase}
    if phase == "prepare":
        from csgaussian.preprocess.prepare import prepare_features

        prepare_features(capture, work / "features", "hash")
    else:
        scene = load_scene(capture, load_instances=False)
        record["views"] = len(scene.train) + len(scene.test)
        record["views_hold_mb"] = _held_mb(scene.train + scene.test)
        record["after_load_peak_mb"] = _peak_mb()
    if phase == "stage1":
        from csgaussian.train.config import preset
        from csgaussian.train.loop import Trainer

        (work / "run").mkdir(exist_ok=True)
        Trainer(scene, preset("quick", iters), work / "run").train()
    if phase == "stage2":
        from csgaussian.codec.stream import MIN_SLOT_SHARE
        from csgaussian.preprocess.features import read_features, view_stem
        from csgaussian.train.config import preset
        from csgaussian.train.semantic import SemanticTrainer
        from csgaussian.train.stages import _write_base_layer

        config = preset("quick").semantic
        _write_base_layer(work / "run", MIN_SLOT_SHARE)
        sizes = {view_stem(v.image_path): (v.camera.height, v.camera.width) for v in scene.train}
        masks = read_features(work / "features", list(sizes), config.level, sizes)
        record["after_masks_peak_mb"] = _peak_mb()
        trainer = SemanticTrainer(scene, masks, "hash", config, work / "run")
        del masks
        record["after_setup_peak_mb"] = _peak_mb()
        trainer.quality = trainer._quality_weights()
        record["after_quality_peak_mb"] = _peak_mb()
        for _ in range(iters):
            trainer.step()
    record["peak_rss_mb"] = _peak_mb()
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _memory_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Every phase of ``--memory`` for this checkout and ``--compare``'s, on one capture."""
    repo = Path(__file__).resolve().parents[1]
    trees = {"new": repo} | ({"old": args.compare.resolve()} if args.compare else {})
    width, height = (int(v) for v in args.memory_size.split("x"))
    results: dict[str, dict[str, dict]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory(prefix="csg-memory-") as tmp:
        capture = write_memory_capture(Path(tmp) / "capture", width, height, args.memory_views)
        for name, tree in trees.items():
            work = Path(tmp) / name
            work.mkdir()
            for phase in MEMORY_PHASES:
                cmd = [sys.executable, __file__, "--memory-phase", phase, "--capture", str(capture)]
                cmd += ["--work", str(work), "--memory-iters", str(args.memory_iters)]
                cmd += ["--threads", str(args.threads)]
                env = {**os.environ, "PYTHONPATH": str(tree)}
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
                if out.returncode:
                    raise SystemExit(f"{name} {phase} failed:\n{out.stderr[-3000:]}")
                run = json.loads(out.stdout.strip().splitlines()[-1])
                results[name][phase] = run
                print(f"{name:>3} {phase:>7}: {json.dumps(run)}", flush=True)
    summary = {
        name: {
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs.values()),
            "fits_8gb": max(r["peak_rss_mb"] for r in runs.values()) < MEMORY_LIMIT_MB,
            **{f"{phase}_peak_mb": runs[phase]["peak_rss_mb"] for phase in MEMORY_PHASES},
        }
        for name, runs in results.items()
    }
    print(json.dumps(summary))
    if args.out:
        command = ["python", "benchmarks/scale.py", *(argv or sys.argv[1:])]
        fields = {
            "compare": str(args.compare),
            "capture": f"kitchen resampled to {args.memory_size}, {args.memory_views} views",
            "summary": summary,
            "runs": results,
        }
        write_record(args.out, "memory", command, fields)
    return 0


def _run_in(tree: Path, size: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh process importing the csgaussian of ``tree``."""
    cmd = [sys.executable, __file__, "--measure", size, "--iters", str(args.iters)]
    cmd += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--memory", action="store_true", help="peak memory of a large capture")
    parser.add_argument("--memory-size", default="1000x750")
    parser.add_argument("--memory-views", type=int, default=300)
    parser.add_argument("--memory-iters", type=int, default=3)
    parser.add_argument("--memory-phase", choices=MEMORY_PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--capture", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_phase:
        run = measure_memory(
            args.memory_phase, args.capture, args.work, args.memory_iters, args.threads
        )
        print(json.dumps(run))
        return 0
    if args.memory:
        return _memory_main(args, argv)
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
            row[f"{name}_s_per_it"] = spread([r["seconds_per_iteration"] for r in runs])
            row[f"{name}_cpu_s_per_it"] = spread([r["cpu_seconds_per_iteration"] for r in runs])
        if "old" in trees:
            pairs = zip(results["old"][size], results["new"][size], strict=True)
            ratios = [o["seconds_per_iteration"] / n["seconds_per_iteration"] for o, n in pairs]
            row["old_over_new"] = spread(ratios)
        rows.append(row)
    print(json.dumps(rows))
    if args.out:
        command = ["python", "benchmarks/scale.py", *(argv or sys.argv[1:])]
        fields = {"compare": str(args.compare), "summary": rows, "runs": results}
        write_record(args.out, "scale", command, fields)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
