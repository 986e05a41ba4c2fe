"""Figures of issue 10 §3 from existing results: rate-accuracy, t-SNE (supp C.1), low vs high
rate segmentation (supp D). Each PNG is written beside its data, both naming commit and command.

- ``rate_accuracy.png`` / ``.csv``: mIoU (both protocols) against semantic-layer bytes of the
  ablation's ``latent_4``, ``default`` (d_s = 8) and ``latent_16`` runs (mean over seeds, bars =
  min-max), from ``benchmarks/results/semantics/semantics.csv``.
- ``tsne.png`` / ``tsne.json``: t-SNE of the decoded per-Gaussian instance features of the
  ``default_seed0`` (QAT) and ``no_qat_seed0`` streams, coloured by the ground-truth object of
  each Gaussian (majority of the training instance maps where the Gaussian is visible: its
  camera depth within ``DEPTH_TOLERANCE`` of the rendered depth at its pixel).
- ``segmentation_rates.png`` / ``.json``: the ``latent_4`` and ``latent_16`` streams' visible
  selections of every object name on the same test views, beside the ground truth.

Usage:
    python benchmarks/figures.py [--runs DIR] [--data DIR] [--out DIR] [--only a b c]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from csgaussian import api  # noqa: E402
from csgaussian.data import load_scene  # noqa: E402
from csgaussian.eval.segmentation import VISIBLE_SHARE  # noqa: E402
from csgaussian.scene.rendering import render_view  # noqa: E402
from csgaussian.semantics.query import select  # noqa: E402
from csgaussian.types import Dataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantics import REPO, provenance  # noqa: E402

SEMANTICS = REPO / "benchmarks" / "results" / "semantics"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "figures"
RATE_VARIANTS = {"latent_4": 4, "default": 8, "latent_16": 16}  # variant -> d_s
DEPTH_TOLERANCE = 0.05
"""Relative depth slack of the visibility test that labels Gaussians for the t-SNE."""
TSNE_POINTS = 3000
"""Labelled Gaussians drawn (fixed seed) for each t-SNE: sklearn's exact-neighbour Barnes-Hut
on all ~17k takes minutes on this CPU and shows the same structure."""
SEGMENTATION_VIEWS = (0, 3, 6)


def rate_accuracy(out: Path) -> dict:
    """Figure (a): mIoU vs semantic bytes for d_s = 4, 8, 16."""
    with (SEMANTICS / "semantics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["variant"] in RATE_VARIANTS]
    points = []
    for variant, dim in RATE_VARIANTS.items():
        group = [r for r in rows if r["variant"] == variant]
        entry = {"variant": variant, "latent_dim": dim, "seeds": len(group)}
        for key in ("semantic_bytes", "miou_visible", "miou_3d"):
            values = [float(r[key]) for r in group]
            entry[key] = statistics.fmean(values)
            entry[f"{key}_min"], entry[f"{key}_max"] = min(values), max(values)
        points.append(entry)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    kb = np.array([p["semantic_bytes"] for p in points]) / 1000
    for key, label, marker in (
        ("miou_visible", "visible selection", "o"),
        ("miou_3d", "3D selection (OpenGaussian)", "s"),
    ):
        y = np.array([p[key] for p in points])
        err = np.array([[p[key] - p[f"{key}_min"], p[f"{key}_max"] - p[key]] for p in points]).T
        ax.errorbar(kb, y, yerr=err, marker=marker, capsize=3, label=label)
    for p, x in zip(points, kb, strict=True):
        ax.annotate(
            f"d_s={p['latent_dim']}",
            (x, p["miou_visible"]),
            textcoords="offset points",
            xytext=(4, 6),
        )
    ax.set_xlabel("semantic layer (kB)")
    ax.set_ylabel("mIoU (8 kitchen test views)")
    ax.set_title("Semantic rate-accuracy (kitchen, quick preset)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rate_accuracy.png", dpi=130)
    plt.close(fig)
    with (out / "rate_accuracy.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(points[0]))
        writer.writeheader()
        writer.writerows(points)
    return {"rate_accuracy": points}


@torch.no_grad()
def gaussian_labels(model, data: Dataset) -> torch.Tensor:
    """Ground-truth object ``[N, K]`` of every anchor slot (0 = background or never seen)."""
    n, k = model.n_anchors, model.config.n_offsets
    votes = torch.zeros(n * k, len(data.class_names) + 1)
    for view in data.train:
        cam = view.camera
        out = render_view(model, cam)
        g = out.gaussians
        depth = (out.raster.depth / out.raster.alpha.clamp_min(1e-6))[..., 0]
        z = g.means @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
        uv = (z[:, :2] / z[:, 2:].clamp_min(1e-6)) @ cam.K[:2, :2].T + cam.K[:2, 2]
        px = uv.floor().long()
        inside = (
            (px[:, 0] >= 0) & (px[:, 0] < cam.width) & (px[:, 1] >= 0) & (px[:, 1] < cam.height)
        )
        inside &= z[:, 2] > 0
        idx = inside.nonzero().squeeze(1)
        x, y = px[idx, 0], px[idx, 1]
        seen = (z[idx, 2] - depth[y, x]).abs() < DEPTH_TOLERANCE * depth[y, x]
        idx, x, y = idx[seen], x[seen], y[seen]
        slot = g.anchor_index[idx] * k + g.offset_index[idx]
        votes.index_put_((slot, view.instance[y, x].long()), torch.ones(len(idx)), accumulate=True)
    labels = votes.argmax(1)
    labels[votes.sum(1) == 0] = 0
    return labels.view(n, k)


def tsne(runs: Path, data_dir: Path, out: Path) -> dict:
    """Figure (b): t-SNE of decoded features with and without QAT, coloured by object."""
    from sklearn.manifold import TSNE

    data = load_scene(data_dir, load_instances=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    record = {}
    labels = None
    for ax, (variant, title) in zip(
        axes, (("default", "with QAT"), ("no_qat", "without QAT")), strict=True
    ):
        scene = api.decode(runs / f"{variant}_seed0" / "stream.csg")
        model = scene.model
        if labels is None:  # both runs share the stage-1 base layer
            labels = gaussian_labels(model, data)
        active = model.active_slots() & (labels > 0)
        features = scene.semantics.slot_features(model)[active].numpy()
        objects = labels[active].numpy()
        rng = np.random.default_rng(0)
        pick = rng.choice(len(objects), size=min(TSNE_POINTS, len(objects)), replace=False)
        xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=30).fit_transform(
            features[pick]
        )
        for obj in np.unique(objects[pick]):
            mask = objects[pick] == obj
            ax.scatter(xy[mask, 0], xy[mask, 1], s=3, label=data.class_names[obj - 1])
        ax.set_title(f"decoded instance features, {title}")
        ax.set_xticks([])
        ax.set_yticks([])
        record[variant] = {"points": len(pick), "labelled_gaussians": int(active.sum())}
    axes[1].legend(markerscale=4, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out / "tsne.png", dpi=120)
    plt.close(fig)
    return {"tsne": record}


PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], dtype=np.uint8
)  # fmt: skip


@torch.no_grad()
def label_map(scene, camera, class_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """``[H, W]`` object index (0 = none) from one render with a channel per object name: a
    pixel takes the object whose visible selection holds it (share > VISIBLE_SHARE)."""
    leaves = scene.semantics.slot_leaves(scene.model)
    slots = [select(scene, name, slot_leaves=leaves) for name in class_names]
    stacked = torch.stack([s.slots for s in slots], dim=-1).float()  # [N, K, C]
    out = render_view(scene.model, camera, extra=lambda g: stacked[g.anchor_index, g.offset_index])
    share, best = out.extra.max(dim=-1)
    labels = torch.where(share > VISIBLE_SHARE, best + 1, 0)
    unmatched = [name for name, s in zip(class_names, slots, strict=True) if not s.matched]
    return labels.numpy(), unmatched


def segmentation_rates(runs: Path, data_dir: Path, out: Path) -> dict:
    """Figure (c): low- (d_s = 4) vs high-rate (d_s = 16) segmentation of the same views."""
    data = load_scene(data_dir, load_instances=True)
    columns = (("latent_4", "d_s = 4"), ("latent_16", "d_s = 16"))
    scenes = {v: api.decode(runs / f"{v}_seed0" / "stream.csg") for v, _ in columns}
    sizes = {
        v: api.layer_bytes((runs / f"{v}_seed0" / "stream.csg").read_bytes())["semantic"]
        for v, _ in columns
    }
    fig, axes = plt.subplots(len(SEGMENTATION_VIEWS), 4, figsize=(12, 3 * len(SEGMENTATION_VIEWS)))
    record = {"views": list(SEGMENTATION_VIEWS), "unmatched": {}, "pixel_agreement_with_gt": {}}
    for row, index in enumerate(SEGMENTATION_VIEWS):
        view = data.test[index]
        axes[row, 0].imshow(view.image.numpy())
        axes[row, 0].set_title(f"test view {index}")
        axes[row, 1].imshow(PALETTE[view.instance.numpy() % len(PALETTE)])
        axes[row, 1].set_title("ground truth")
        for col, (variant, label) in enumerate(columns, start=2):
            labels, unmatched = label_map(scenes[variant], view.camera, data.class_names)
            record["unmatched"][variant] = unmatched
            agree = float((labels == view.instance.numpy()).mean())
            record["pixel_agreement_with_gt"].setdefault(variant, []).append(round(agree, 4))
            blend = 0.45 * view.image.numpy() + 0.55 * PALETTE[labels % len(PALETTE)] / 255
            axes[row, col].imshow(blend.clip(0, 1))
            axes[row, col].set_title(f"{label} (semantic layer {sizes[variant] / 1000:.1f} kB)")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=PALETTE[i + 1] / 255)
        for i in range(len(data.class_names))
    ]
    fig.legend(handles, data.class_names, loc="lower center", ncol=len(data.class_names))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out / "segmentation_rates.png", dpi=110)
    plt.close(fig)
    record["semantic_layer_bytes"] = sizes
    return {"segmentation_rates": record}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=SEMANTICS / "runs")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kitchen")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="+", choices=("a", "b", "c"), default=["a", "b", "c"])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    origin = provenance([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    torch.set_num_threads(1)
    record: dict = dict(origin)
    if "a" in args.only:
        record.update(rate_accuracy(args.out))
    if "b" in args.only:
        record.update(tsne(args.runs, args.data, args.out))
    if "c" in args.only:
        record.update(segmentation_rates(args.runs, args.data, args.out))
    for key in ("rate_accuracy", "tsne", "segmentation_rates"):
        if key in record:
            payload = {**origin, key: record[key]}
            (args.out / f"{key}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
