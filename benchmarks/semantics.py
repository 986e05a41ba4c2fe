"""Semantic ablations (issue 8 §6): what QAT, quality weighting, conditioning and d_s buy.

Starts from one stage-1 run of the scene (trained here, or given with ``--base-run``), then for
each variant runs stages 2 and 3 on a copy of it with the variant's settings, and scores the
decoded stream: mIoU and acc under both protocols (visible selection, 3D selection) on the test
views' instance maps, the semantic layer's bytes, and the stage 2+3 seconds.

Variants: ``default``, ``no_qat``, ``no_quality``, ``conditional`` (s conditioned on the decoded
f, supp B.2), ``latent_4`` / ``latent_16`` (d_s), each over ``--seeds``.

Writes ``semantics.csv`` and ``semantics.md`` into ``--out`` (commit and command recorded) and
ends by printing ONE JSON line.

Usage:
    python benchmarks/semantics.py [--data DIR] [--base-run RUN] [--out DIR] [--preset quick]
        [--variants default no_qat ...] [--seeds 0 1] [--encoder minilm] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from provenance import provenance, provenance_lines, write_environment

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.run import RunSettings
from csgaussian.scene.io import RUN_INFO_NAME, SCENE_NAME, read_run_info
from csgaussian.train.config import TrainConfig
from csgaussian.train.loop import CHECKPOINT_NAME
from csgaussian.train.stages import train_semantic_stages, training_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kitchen"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "semantics"
STAGE_ONE_FILES = (RUN_INFO_NAME, CHECKPOINT_NAME, SCENE_NAME)
VARIANTS = ("default", "no_qat", "no_quality", "conditional", "latent_4", "latent_16")
CSV_FIELDS = (
    "variant",
    "seed",
    "miou_visible",
    "acc_visible",
    "miou_3d",
    "acc_3d",
    "semantic_bytes",
    "base_bytes",
    "semantic_share",
    "stage23_seconds",
)


def variant_config(config: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """The run's configuration with one ablation applied."""
    semantic = replace(config.semantic, seed=seed)
    if variant == "no_qat":
        semantic = replace(semantic, qat=False)
    elif variant == "no_quality":
        semantic = replace(semantic, quality_weighting=False)
    elif variant == "conditional":
        semantic = replace(semantic, rate=replace(semantic.rate, conditional=True))
    elif variant.startswith("latent_"):
        dim = int(variant.removeprefix("latent_"))
        field = replace(semantic.semantic_field, latent_dim=dim)
        semantic = replace(semantic, semantic_field=field)
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    return replace(config, semantic=semantic)


def stage_one(data: Path, out: Path, preset: str, base_run: Path | None) -> Path:
    """A finished stage-1 run: the given one, or one trained (once) into ``out/base``."""
    if base_run is not None:
        return base_run
    run = out / "base"
    if not (run / SCENE_NAME).is_file():
        shutil.rmtree(run, ignore_errors=True)
        api.train(data, run, preset=preset, stages="1", quiet=True)
    return run


def run_variant(base: Path, out: Path, variant: str, seed: int, encoder: str) -> dict[str, Any]:
    run = out / "runs" / f"{variant}_seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    for name in STAGE_ONE_FILES:
        shutil.copy(base / name, run / name)
    info = {**read_run_info(run), "encoder": encoder, "features": None, "stages": [2, 3]}
    settings = RunSettings.from_dict(info, run)
    config = variant_config(training_config(settings), variant, seed)
    scene = load_scene(info["data"], downscale=info["downscale"], load_instances=False)
    started = time.perf_counter()
    result = train_semantic_stages(run, settings, config, scene, resume=False, quiet=True)
    seconds = time.perf_counter() - started
    report = api.evaluate(result.stream_path, info["data"])
    protocols = report["protocols"]
    return {
        "variant": variant,
        "seed": seed,
        "miou_visible": protocols["visible_selection"]["miou"],
        "acc_visible": protocols["visible_selection"]["acc"],
        "miou_3d": protocols["3d_selection"]["miou"],
        "acc_3d": protocols["3d_selection"]["acc"],
        "semantic_bytes": result.semantic_bytes,
        "base_bytes": result.base_bytes,
        "semantic_share": round(result.semantic_bytes / result.base_bytes, 4),
        "stage23_seconds": round(seconds, 1),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per variant: mean and spread (min, max) over seeds of the main figures."""
    out: dict[str, dict[str, float]] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        entry: dict[str, float] = {"seeds": len(group)}
        for key in ("miou_visible", "miou_3d", "semantic_bytes", "stage23_seconds"):
            values = [r[key] for r in group]
            entry[key] = round(statistics.fmean(values), 4)
            entry[f"{key}_min"], entry[f"{key}_max"] = min(values), max(values)
        out[variant] = entry
    return out


def write_results(out: Path, rows: list[dict[str, Any]], summary: dict, origin: dict) -> None:
    with (out / "semantics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Semantic ablations",
        "",
        *provenance_lines(origin),
        "",
        "| variant | seeds | mIoU visible (min-max) | mIoU 3D (min-max) | semantic bytes | "
        "stage 2+3 s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variant, e in summary.items():
        lines.append(
            f"| {variant} | {e['seeds']} | {e['miou_visible']:.3f} ({e['miou_visible_min']:.3f}-"
            f"{e['miou_visible_max']:.3f}) | {e['miou_3d']:.3f} ({e['miou_3d_min']:.3f}-"
            f"{e['miou_3d_max']:.3f}) | {e['semantic_bytes']:.0f} | {e['stage23_seconds']:.0f} |"
        )
    (out / "semantics.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--base-run", type=Path, help="a finished stage-1 run to start from")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny preset, 2 variants")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.variants, args.encoder = "tiny", ["default", "no_qat"], "hash"
    args.out.mkdir(parents=True, exist_ok=True)
    origin = provenance([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    base = stage_one(args.data, args.out, args.preset, args.base_run)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            rows.append(run_variant(base, args.out, variant, seed, args.encoder))
            print(json.dumps(rows[-1]), file=sys.stderr)
    summary = summarize(rows)
    write_results(args.out, rows, summary, origin)
    write_environment(args.out)
    print(json.dumps({**origin, "variants": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
