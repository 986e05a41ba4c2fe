"""Robustness to SAM-like masks (issue 9 §5): stages 2-3 on clean vs degraded kitchen masks.

Writes kitchen's training-view instance maps in LangSplat's ``language_features/`` layout twice:
clean (one mask per object and one for the background, each with the MiniLM embedding of its
name, as ``csgaussian prepare``) and degraded. The degradation, per view, seeded:

1. merge neighbours: each pair of objects that touch (4-neighbour pixels) merges into one mask
   with probability ``--merge`` (0.3; an object merges at most once); its feature is the
   normalised mean of the two names' embeddings;
2. split: every object mask (merged or not) is split at the median column of its pixels into
   two masks with the same feature, with probability ``--split`` (0.5);
3. erode: every mask, background included, loses its boundary (``--erode`` 1 pixel, 3x3
   square): those pixels get no mask (-1);
4. drop: every mask, background included, is dropped (all its pixels -1) with probability
   ``--drop`` (0.2).

The background mask (text "background") covers everything that is not an object, as SAM's
large masks do. For each set, stages 2-3 run on a copy of one finished stage-1 run
(``--base-run``, default /tmp/kq; never written into), and the decoded stream is scored on the
test views' instance maps. Prints a table and ONE JSON line; writes ``robust_masks.json``.

Usage:
    python benchmarks/robust_masks.py [--base-run RUN] [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.preprocess.features import LEVELS, view_stem, write_view
from csgaussian.preprocess.prepare import BACKGROUND_TEXT, ENCODER_FILE
from csgaussian.progress import summary_table
from csgaussian.scene.io import RUN_INFO_NAME, SCENE_NAME, read_run_info
from csgaussian.semantics.encoders import get_text_encoder
from csgaussian.train.loop import CHECKPOINT_NAME

STAGE_ONE_FILES = (RUN_INFO_NAME, CHECKPOINT_NAME, SCENE_NAME)
DEFAULT_BASE = Path("/tmp/kq")
DEFAULT_OUT = Path("/tmp/csgaussian-robust-masks")


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` minus its boundary: a pixel stays when its (2p+1)^2 square lies inside the mask
    (outside the image counts as outside the mask)."""
    grid = F.pad(torch.from_numpy(~mask).float()[None, None], (pixels,) * 4, value=1.0)
    grown = F.max_pool2d(grid, 2 * pixels + 1, stride=1)[0, 0]
    return grown.numpy() == 0


def _touching_pairs(instance: np.ndarray) -> list[tuple[int, int]]:
    """Object id pairs (a < b, background excluded) with 4-neighbouring pixels."""
    pairs = set()
    for a, b in (
        (instance[:, :-1], instance[:, 1:]),
        (instance[:-1, :], instance[1:, :]),
    ):
        edge = (a != b) & (a > 0) & (b > 0)
        pairs |= {(min(x, y), max(x, y)) for x, y in zip(a[edge], b[edge], strict=True)}
    return sorted(pairs)


def degrade(
    instance: np.ndarray, by_id: np.ndarray, rng: np.random.Generator, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The degraded masks of one view: ``(ids [H, W] local, features [M, D], counts)``."""
    masks: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    present = [int(i) for i in np.unique(instance)]
    merged: set[int] = set()
    counts = {"merged": 0, "split": 0, "dropped": 0}
    for a, b in _touching_pairs(instance):
        if a in merged or b in merged or rng.random() >= args.merge:
            continue
        merged |= {a, b}
        masks.append((instance == a) | (instance == b))
        feats.append(_unit(by_id[a] + by_id[b]))
        counts["merged"] += 1
    for i in present:
        if i not in merged:
            masks.append(instance == i)
            feats.append(by_id[i])
    objects = [k for k, m in enumerate(masks) if not (m & (instance == 0)).any()]
    for k in objects:
        if rng.random() >= args.split:
            continue
        columns = np.nonzero(masks[k])[1]
        right = masks[k] & (np.arange(instance.shape[1])[None, :] > np.median(columns))
        if right.any() and (masks[k] & ~right).any():
            masks[k] = masks[k] & ~right
            masks.append(right)
            feats.append(feats[k])
            counts["split"] += 1
    ids = -np.ones(instance.shape, np.int64)
    kept = 0
    out_feats = []
    for mask, feat in zip(masks, feats, strict=True):
        if args.erode:
            mask = _erode(mask, args.erode)
        if rng.random() < args.drop:
            counts["dropped"] += 1
            continue
        if mask.any():
            ids[mask] = kept
            out_feats.append(feat)
            kept += 1
    counts["masks"] = kept
    return ids, np.stack(out_feats).astype(np.float32), counts


def write_sets(data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Clean and degraded ``language_features`` folders of the training views."""
    scene = load_scene(data, load_instances=True)
    encoder = get_text_encoder(args.encoder)
    texts = [BACKGROUND_TEXT, *scene.class_names]
    by_id = encoder.encode(texts)
    meta = json.dumps({"text_space": encoder.name, "dim": encoder.dim})
    rng = np.random.default_rng(args.seed)
    stats = {"clean_masks": 0, "degraded_masks": 0, "merged": 0, "split": 0, "dropped": 0}
    unlabelled = []
    for name in ("clean", "degraded"):
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / ENCODER_FILE).write_text(meta)
    for view in scene.train:
        instance = view.instance.numpy()
        stem = view_stem(view.image_path)
        present, local = np.unique(instance, return_inverse=True)
        clean = local.reshape(instance.shape)
        write_view(out / "clean", stem, [clean] * len(LEVELS), [by_id[present]] * len(LEVELS))
        stats["clean_masks"] += len(present)
        ids, feats, counts = degrade(instance, by_id, rng, args)
        write_view(out / "degraded", stem, [ids] * len(LEVELS), [feats] * len(LEVELS))
        stats["degraded_masks"] += counts.pop("masks")
        for key, value in counts.items():
            stats[key] += value
        unlabelled.append(float((ids < 0).mean()))
    stats["degraded_unlabelled_pixel_share"] = round(float(np.mean(unlabelled)), 4)
    return stats


def run_set(base: Path, out: Path, name: str, features: Path) -> dict[str, Any]:
    """Stages 2-3 on a copy of the stage-1 run with one feature set; the decoded stream's
    scores."""
    run = out / "runs" / name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    for file in STAGE_ONE_FILES:
        shutil.copy(base / file, run / file)
    started = time.perf_counter()
    api.train(None, run, stages="2,3", features=features, quiet=True)
    seconds = time.perf_counter() - started
    stream = out / f"{name}.csg"
    api.encode(run, stream)
    report = api.evaluate(stream, read_run_info(run)["data"])
    protocols = report["protocols"]
    return {
        "masks": name,
        "miou_3d_selection": round(protocols["3d_selection"]["miou"], 4),
        "acc_3d_selection": round(protocols["3d_selection"]["acc"], 4),
        "miou_visible_selection": round(protocols["visible_selection"]["miou"], 4),
        "miou_langsplat_relevancy": round(protocols["langsplat_relevancy"]["miou"], 4),
        "semantic_bytes": report["layer_bytes"]["semantic"],
        "stage23_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-run", type=Path, default=DEFAULT_BASE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--merge", type=float, default=0.3)
    parser.add_argument("--split", type=float, default=0.5)
    parser.add_argument("--erode", type=int, default=1)
    parser.add_argument("--drop", type=float, default=0.2)
    args = parser.parse_args(argv)
    data = Path(read_run_info(args.base_run)["data"])
    args.out.mkdir(parents=True, exist_ok=True)
    stats = write_sets(data, args.out / "features", args)
    rows = [
        run_set(args.base_run, args.out, name, args.out / "features" / name)
        for name in ("clean", "degraded")
    ]
    result = {
        "degradation": {k: getattr(args, k) for k in ("seed", "merge", "split", "erode", "drop")},
        "mask_stats": stats,
        "runs": rows,
        "miou_3d_drop": round(rows[0]["miou_3d_selection"] - rows[1]["miou_3d_selection"], 4),
    }
    console = Console(stderr=True)
    for row in rows:
        console.print(summary_table(f"{row['masks']} masks", row))
    console.print(summary_table("degradation", {**result["degradation"], **stats}))
    (args.out / "robust_masks.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
