"""Supplementary Table 2 on our side: an OpenGaussian-style baseline next to CSGaussian.

The baseline is a configuration of the stage-2 trainer (``per_slot_baseline``): a free
6-D instance feature per anchor slot (OpenGaussian's per-Gaussian feature) on the decoded base
layer, trained with the same cohesion / separation losses, quality weights and iterations as
ours (stage 2 + stage 3 steps of the preset, all in stage 2: there is no rate term), with and
without QAT (features rounded at the latent step q0). It is never coded: the codebook and the
leaf-language association are built on the trained (uncompressed) features, as the receiver
would on decoded ones, and scored with the same protocols on the same test views.

Our rows come from the semantic ablation (benchmarks/semantics.py: ``default`` = with QAT,
``no_qat``), which started from the same stage-1 run (identical base layer, checked here).

Writes ``table2.md`` and ``table2.json`` into ``--out`` (commit and command recorded) and ends
by printing ONE JSON line.

Usage:
    python benchmarks/table2.py [--base-run /tmp/kq] [--out DIR] [--seed 0]
        [--work DIR] [--ours-runs DIR] [--variants baseline baseline_qat]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from csgaussian.api import segmentation_report
from csgaussian.data import load_scene
from csgaussian.entropy.quantize import quantize
from csgaussian.preprocess.features import read_features, view_stem
from csgaussian.preprocess.prepare import read_text_space
from csgaussian.progress import TrainProgress, summary_table
from csgaussian.run import RunSettings
from csgaussian.scene.decoded import Scene
from csgaussian.scene.io import RUN_INFO_NAME, SCENE_NAME, read_run_info
from csgaussian.train.loop import CHECKPOINT_NAME, torch_threads
from csgaussian.train.semantic import BASE_STREAM_NAME, SemanticTrainer
from csgaussian.train.stages import FEATURES_DIR_NAME, training_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantics import REPO, provenance  # noqa: E402

DEFAULT_BASE = Path("/tmp/kq")
DEFAULT_OUT = REPO / "benchmarks" / "results" / "table2"
SEMANTICS = REPO / "benchmarks" / "results" / "semantics"
VARIANTS = {"baseline": False, "baseline_qat": True}  # name -> QAT
OURS = {"default": "CSGaussian (ours, QAT)", "no_qat": "CSGaussian (ours, no QAT)"}
BASELINE_NAMES = {
    "baseline": "OpenGaussian-style, uncompressed, no QAT",
    "baseline_qat": "OpenGaussian-style, uncompressed, QAT",
}
COPIED = (RUN_INFO_NAME, CHECKPOINT_NAME, SCENE_NAME, BASE_STREAM_NAME)


def run_baseline(base: Path, work: Path, variant: str, seed: int) -> dict[str, Any]:
    """Stage 2 of the per-slot field on a copy of ``base`` in ``work``; the receiver's scores."""
    run = work / f"{variant}_seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    for name in COPIED:
        shutil.copy(base / name, run / name)
    shutil.copytree(base / FEATURES_DIR_NAME, run / FEATURES_DIR_NAME)
    info = read_run_info(run)
    config = training_config(RunSettings.from_dict(info))
    sem = config.semantic
    sem = replace(
        sem,
        seed=seed,
        qat=VARIANTS[variant],
        stage2_iterations=sem.stage2_iterations + sem.stage3_iterations,
        stage3_iterations=0,
        per_slot_baseline=True,
    )
    scene = load_scene(info["data"], downscale=info["downscale"], load_instances=True)
    text_space = read_text_space(run / FEATURES_DIR_NAME)
    stems = [view_stem(view.image_path) for view in scene.train]
    masks = read_features(run / FEATURES_DIR_NAME, stems, sem.level)
    started = time.perf_counter()
    with torch_threads(config.torch_threads):
        trainer = SemanticTrainer(scene, masks, text_space, sem, run)
        with TrainProgress(sem.stage2_iterations, description=f"{variant} stage 2") as progress:
            trainer.run_stage(2, progress)
        with torch.no_grad():
            if sem.qat:  # the receiver would hold the rounded features
                trainer.field.latents.copy_(quantize(trainer.field.latents, sem.rate.q0, "round"))
            layer = trainer.index(trainer.field)
    seconds = time.perf_counter() - started
    report = segmentation_report(Scene(trainer.model, layer), scene)
    protocols = report["protocols"]
    n_values = int(trainer.model.active_slots().sum()) * sem.semantic_field.feature_dim
    return {
        "method": BASELINE_NAMES[variant],
        "variant": variant,
        "seed": seed,
        "miou_visible": protocols["visible_selection"]["miou"],
        "miou_3d": protocols["3d_selection"]["miou"],
        "semantic_bytes": None,
        "uncompressed_feature_bytes": 4 * n_values,  # float32 per active slot
        "stage23_seconds": round(seconds, 1),
    }


def ours(seed: int) -> list[dict[str, Any]]:
    """Our rows from the semantic ablation's CSV (same seed)."""
    with (SEMANTICS / "semantics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["seed"]) == seed]
    out = []
    for row in rows:
        if row["variant"] in OURS:
            out.append(
                {
                    "method": OURS[row["variant"]],
                    "variant": row["variant"],
                    "seed": seed,
                    "miou_visible": float(row["miou_visible"]),
                    "miou_3d": float(row["miou_3d"]),
                    "semantic_bytes": int(row["semantic_bytes"]),
                    "uncompressed_feature_bytes": None,
                    "stage23_seconds": float(row["stage23_seconds"]),
                }
            )
    return out


def write_results(out: Path, rows: list[dict[str, Any]], origin: dict[str, str]) -> None:
    (out / "table2.json").write_text(json.dumps({**origin, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Supplementary Table 2: OpenGaussian-style baseline vs CSGaussian (kitchen)",
        "",
        f"Made at commit `{origin['commit']}` by `{origin['command']}`. One seed (CPU budget);",
        "mIoU on the 8 kitchen test views' instance maps, both protocols (see",
        "`csgaussian/eval/segmentation.py`). Our rows are the semantic ablation's `default` and",
        "`no_qat` runs (benchmarks/results/semantics), from the same stage-1 run.",
        "",
        "| method | mIoU visible | mIoU 3D | semantic layer bytes | float32 feature bytes | "
        "stage 2+3 s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        coded = "-" if r["semantic_bytes"] is None else str(r["semantic_bytes"])
        raw = r["uncompressed_feature_bytes"]
        lines.append(
            f"| {r['method']} | {r['miou_visible']:.3f} | {r['miou_3d']:.3f} | {coded} | "
            f"{'-' if raw is None else raw} | {r['stage23_seconds']:.0f} |"
        )
    (out / "table2.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-run", type=Path, default=DEFAULT_BASE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, default=Path("/tmp/table2_runs"), help="run copies")
    parser.add_argument(
        "--ours-runs", type=Path, default=SEMANTICS / "runs", help="the ablation's run folders"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    origin = provenance([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    ours_base = args.ours_runs / f"default_seed{args.seed}" / BASE_STREAM_NAME
    same = (
        ours_base.is_file()
        and ours_base.read_bytes() == (args.base_run / BASE_STREAM_NAME).read_bytes()
    )
    origin["same_base_layer_as_ours"] = str(same)
    rows = ours(args.seed)
    for variant in args.variants:
        rows.append(run_baseline(args.base_run, args.work, variant, args.seed))
        print(json.dumps(rows[-1]), file=sys.stderr)
    write_results(args.out, rows, origin)
    table = {r["method"]: f"{r['miou_visible']:.3f} / {r['miou_3d']:.3f}" for r in rows}
    Console(stderr=True).print(summary_table("mIoU visible / 3D", table))
    print(json.dumps({**origin, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
