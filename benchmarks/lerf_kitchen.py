"""kitchen_colmap (COLMAP + LERF-OVS labels) through the whole pipeline (issue 9 targets).

1. features: ``csgaussian prepare`` on kitchen (same views, instance maps; MiniLM embeddings of
   the object names), the file pairs renamed to kitchen_colmap's stems (kitchen's train view
   ``r_i`` is ``frame_{i+1:05d}``, as kitchen_colmap's README states). SAM and CLIP weights are
   not available here, so these stand in for ``prepare --sam --clip``;
2. ``csgaussian train kitchen_colmap --features`` (stage 1 at ``--iterations``, stages 2-3 at
   the preset's counts), skipped when the run already holds its stream;
3. ``csgaussian encode``, then ``eval`` of the decoded stream on the LERF-OVS labels: mIoU and
   acc under each protocol.

Prints a table and ONE JSON line. Usage:
    python benchmarks/lerf_kitchen.py [--run DIR] [--iterations 1500] [--preset quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from csgaussian import api
from csgaussian.preprocess.prepare import ENCODER_FILE
from csgaussian.progress import summary_table
from csgaussian.scene.io import STREAM_NAME

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KITCHEN_TRAIN_VIEWS = 64


def colmap_features(kitchen: Path, out: Path) -> dict:
    """Instance-map features of kitchen under kitchen_colmap's file stems."""
    staging = out.with_name(out.name + "_kitchen")
    report = api.prepare(kitchen, staging)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(staging / ENCODER_FILE, out / ENCODER_FILE)
    for index in range(KITCHEN_TRAIN_VIEWS):
        for part in ("s", "f"):
            shutil.copy(
                staging / f"r_{index:03d}_{part}.npy", out / f"frame_{index + 1:05d}_{part}.npy"
            )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "kitchen_colmap")
    parser.add_argument("--kitchen", type=Path, default=SHARED / "kitchen")
    parser.add_argument("--run", type=Path, default=Path("/tmp/csgaussian-lerf-kitchen"))
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--preset", default="quick")
    args = parser.parse_args(argv)
    features = args.run.with_name(args.run.name + "_features")
    started = time.perf_counter()
    if not (args.run / STREAM_NAME).is_file():
        colmap_features(args.kitchen, features)
        api.train(
            args.data,
            args.run,
            preset=args.preset,
            iterations=args.iterations,
            features=features,
            quiet=True,
        )
    train_seconds = time.perf_counter() - started
    stream = args.run.with_suffix(".csg")
    api.encode(args.run, stream)
    report = api.evaluate(stream, args.data)
    protocols = report["protocols"]
    rows = {
        "ground_truth": report["ground_truth"],
        "annotated_views": len(report["annotated_views"]),
        "psnr": round(report["psnr"], 2),
        "stream_bytes": report["stream_bytes"],
        **{f"{name} miou": round(p["miou"], 4) for name, p in protocols.items()},
        **{f"{name} acc": round(p["acc"], 4) for name, p in protocols.items()},
        "train_seconds": round(train_seconds, 1),
    }
    Console(stderr=True).print(summary_table("kitchen_colmap, decoded stream", rows))
    per_class = {name: p["per_class"] for name, p in protocols.items()}
    print(json.dumps({**rows, "iterations": args.iterations, "per_class": per_class}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
