"""Edits on the kitchen stream (issue 10): edit time and sizes, removal leakage, Figs. 4-6.

Usage: python benchmarks/edits.py [--stream /tmp/kfinal.csg] [--data ../shared/data/kitchen]
       [--out benchmarks/results/edits] [--repeats 3]

1. Times ``csgaussian edit STREAM -o E.csg --remove "rubber duck"`` as a fresh process (start-up
   included; best and median of ``--repeats``) and reports the edited file's size beside the
   original's.
2. On every test view: the share of pixels outside the duck's dilated silhouette (its Gaussians
   rendered alone, alpha > 1/255, dilated by 2 px) within 2/255 of the unedited render.
3. Writes Fig. 4 (removal), Fig. 5 (duplicate beside the original) and Fig. 6 (recolour) as PNG
   (before | after on the three test views where the object shows most), their figures
   (duplicate: the object's share of the weight at the copy; recolour: hue gap to the target
   and luma correlation on the object's pixels) and ``edits.json`` / ``edits.md`` (commit and
   command recorded) into ``--out``.
Prints progress on stderr and ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from provenance import provenance, provenance_lines, write_environment

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.scene.edits import luma
from csgaussian.scene.rendering import render_view
from csgaussian.semantics.query import render_selection

REPO = Path(__file__).resolve().parents[1]
REMOVE, DUPLICATE, RECOLOR = "rubber duck", "rubber duck", "green bottle"
RECOLOR_TARGET = "#d02020"
DILATION = 2
TOLERANCE = 2 / 255
FIGURE_VIEWS = 3


def time_cli(stream: Path, repeats: int) -> dict:
    """Seconds of ``csgaussian edit --remove`` as a fresh process, and the sizes."""
    script = shutil.which("csgaussian")
    command = (
        [script] if script else [sys.executable, "-c", "from csgaussian.cli import entry; entry()"]
    )
    seconds, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e.csg"
        for _ in range(repeats):
            started, used = time.perf_counter(), _children_cpu()
            subprocess.run(
                [*command, "edit", str(stream), "-o", str(out), "--remove", REMOVE],
                check=True, capture_output=True,
            )  # fmt: skip
            seconds.append(time.perf_counter() - started)
            cpu.append(_children_cpu() - used)
        edited = out.stat().st_size
    return {
        "edit_seconds_best": round(min(seconds), 3),
        "edit_seconds_median": round(statistics.median(seconds), 3),
        "edit_cpu_seconds_median": round(statistics.median(cpu), 3),
        "original_bytes": stream.stat().st_size,
        "edited_bytes": edited,
        "edit_layer_bytes": edited - stream.stat().st_size,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def silhouette(model, camera, slots) -> torch.Tensor:
    """Pixels the selected Gaussians reach (alpha > 1/255 rendered alone), dilated."""

    def alone(g):
        return g.subset(slots[g.anchor_index, g.offset_index])

    alpha = render_view(model, camera, edit=alone).raster.alpha[..., 0]
    mask = (alpha > 1 / 255).float()[None, None]
    return F.max_pool2d(mask, 2 * DILATION + 1, 1, DILATION)[0, 0] > 0


def hue(rgb: torch.Tensor) -> torch.Tensor:
    y = luma(rgb)
    return torch.atan2(0.713 * (rgb[..., 0] - y), 0.564 * (rgb[..., 2] - y))


def hue_gap(pixels: torch.Tensor, target: torch.Tensor) -> float:
    gap = (hue(pixels) - hue(target)).remainder(2 * torch.pi)
    return float(torch.minimum(gap, 2 * torch.pi - gap).mean())


def strip(pairs: list[tuple[torch.Tensor, torch.Tensor]], path: Path) -> None:
    """Rows of before | after images, 4 px apart, as one PNG (pixels doubled for viewing)."""
    rows = []
    for before, after in pairs:
        gap = torch.ones(before.shape[0], 4, 3)
        rows.append(torch.cat([before, gap, after], dim=1))
        rows.append(torch.ones(4, rows[-1].shape[1], 3))
    image = torch.cat(rows[:-1], dim=0)
    api.save_png(path, image.repeat_interleave(2, 0).repeat_interleave(2, 1))


@torch.no_grad()
def figures(stream: Path, data: Path, out: Path) -> dict:
    scene = api.decode(stream)
    views = load_scene(data, load_instances=False).test
    result: dict = {}

    removed = api.edit(scene, [api.Remove(REMOVE)])
    slots = removed.edits[0].slots
    per_view, shown = [], []
    for view in views:
        before, after = api.render_scene(scene, view.camera), api.render_scene(removed, view.camera)
        outside = ~silhouette(scene.model, view.camera, slots)
        same = ((before - after).abs().amax(-1) <= TOLERANCE)[outside]
        per_view.append(float(same.float().mean()))
        pixels = int(render_selection(scene.model, view.camera, slots)["visible"].sum())
        shown.append((pixels, before, after))
    result["remove"] = {
        "text": REMOVE,
        "gaussians": removed.edits[0].n_selected,
        "unchanged_outside_min": round(min(per_view), 5),
        "unchanged_outside_mean": round(sum(per_view) / len(per_view), 5),
        "per_view": [round(v, 5) for v in per_view],
    }
    best = sorted(range(len(views)), key=lambda i: -shown[i][0])[:FIGURE_VIEWS]
    strip([shown[i][1:] for i in best], out / "fig4_remove.png")

    world = scene.model.anchors[:, None] + scene.model.offsets * torch.exp(
        scene.model.log_scaling[:, None, :3]
    )
    points = world[slots]
    width = float((points.amax(0) - points.amin(0))[0])
    offset = (1.3 * width, 0.0, 0.0)
    duplicated = api.edit(scene, [api.Duplicate(DUPLICATE, offset)])
    pairs, shares = [], []
    for i in best:
        camera = views[i].camera
        pairs.append((api.render_scene(scene, camera), api.render_scene(duplicated, camera)))
        masks = render_selection(duplicated.model, camera, slots, duplicated.edit_hook())
        original = render_selection(scene.model, camera, slots)["visible"]
        shares.append((int(masks["visible"].sum()), int(original.sum())))
    strip(pairs, out / "fig5_duplicate.png")
    result["duplicate"] = {
        "text": DUPLICATE,
        "offset": [round(v, 4) for v in offset],
        "object_pixels_after_vs_before": shares,
    }

    recoloured = api.edit(scene, [api.Recolor(RECOLOR, RECOLOR_TARGET)])
    rslots = recoloured.edits[0].slots
    target = torch.tensor(recoloured.edits[0].color)
    pairs, figures_ = [], []
    order = sorted(
        range(len(views)),
        key=lambda i: -int(render_selection(scene.model, views[i].camera, rslots)["visible"].sum()),
    )[:FIGURE_VIEWS]
    for i in order:
        camera = views[i].camera
        before, after = api.render_scene(scene, camera), api.render_scene(recoloured, camera)
        obj = render_selection(scene.model, camera, rslots)["visible"]
        changed = (before - after).abs().amax(-1) > TOLERANCE
        corr = torch.corrcoef(torch.stack([luma(before[obj]), luma(after[obj])]))[0, 1]
        figures_.append(
            {
                "view": i,
                "hue_gap_before": round(hue_gap(before[obj], target), 3),
                "hue_gap_after": round(hue_gap(after[obj], target), 3),
                "luma_correlation": round(float(corr), 4),
                "changed_outside_silhouette": int(
                    (changed & ~silhouette(scene.model, camera, rslots)).sum()
                ),
            }
        )
        pairs.append((before, after))
    strip(pairs, out / "fig6_recolor.png")
    result["recolor"] = {"text": RECOLOR, "color": RECOLOR_TARGET, "views": figures_}
    return result


def write_markdown(out: Path, report: dict) -> None:
    remove, timing = report["figures"]["remove"], report["timing"]
    lines = [
        "# Edits on kitchen (issue 10, supp C.2 Figs. 4-6)",
        "",
        *provenance_lines(report["origin"]),
        f"Stream: `{report['stream']}`.",
        "Timings are of whatever machine ran it (contended unless said otherwise).",
        "",
        f'- `csgaussian edit --remove "{REMOVE}"`: {timing["edit_seconds_best"]} s best, '
        f"{timing['edit_seconds_median']} s median (fresh process, start-up included; "
        f"{timing['edit_cpu_seconds_median']} s of CPU; load average {report['load_average']:.1f})",
        f"- sizes: {timing['original_bytes']} bytes in, {timing['edited_bytes']} out "
        f"(edit layer and its table entry: {timing['edit_layer_bytes']} bytes)",
        f"- removal: {remove['gaussians']} Gaussian slots; pixels outside the dilated silhouette "
        f"within 2/255: min {remove['unchanged_outside_min']}, mean "
        f"{remove['unchanged_outside_mean']} over the test views",
        "",
        "Figures (before | after, three test views each): `fig4_remove.png`, "
        "`fig5_duplicate.png`, `fig6_recolor.png`; every figure in `edits.json`.",
    ]
    (out / "edits.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", type=Path, default=Path("/tmp/kfinal.csg"))
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kitchen")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "edits")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"origin": provenance(["python", "benchmarks/edits.py", *argv])}
    report["stream"] = str(args.stream)
    print("timing csgaussian edit ...", file=sys.stderr)
    report["timing"] = time_cli(args.stream, args.repeats)
    print("rendering the figures ...", file=sys.stderr)
    report["figures"] = figures(args.stream, args.data, args.out)
    report["load_average"] = os.getloadavg()[0]
    (args.out / "edits.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(args.out, report)
    write_environment(args.out)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
