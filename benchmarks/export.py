"""Export quality and time (issues 10 §4 and 18 §2): the exported PLY against the decoded model.

Runs ``csgaussian export STREAM`` as a command (wall time from start, interpreter and imports
included; the export uses the capture cameras the stream holds, never the dataset's images),
reads the PLY back with our reader and renders it with the plain 3DGS SH rasterizer (SH degree
3, logit opacity, log scales, as 3DGS reads a PLY) on the dataset's test views, beside the
decoded model's own renders and the oldest export (every Gaussian baked from the mean training
camera). The ``.splat`` is written from the same PLY (its layout keeps the DC colour only) and
scored too.

Prints a table and ends with ONE JSON line: PSNRs, seconds, file sizes.

Usage:
    python benchmarks/export.py STREAM [DATA] [--out DIR] [--fit-iterations N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.eval.metrics import psnr
from csgaussian.export.splat import write_splat
from csgaussian.ply import read_gaussians_ply, write_gaussians_ply
from csgaussian.progress import summary_table
from csgaussian.render import rasterize_gaussians
from csgaussian.render.sh import rasterize_sh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantics import provenance  # noqa: E402


def mean_psnr(images: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
    return sum(psnr(i.clamp(0, 1), t) for i, t in zip(images, targets, strict=True)) / len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", type=Path)
    parser.add_argument("data", type=Path, nargs="?", default=Path("/work/shared/data/kitchen"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/export_bench"))
    parser.add_argument("--fit-iterations", type=int)
    args = parser.parse_args(argv)
    origin = provenance([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    torch.set_num_threads(1)
    ply_path, splat_path = args.out / "scene.ply", args.out / "scene.splat"
    command = [sys.executable, "-c", "from csgaussian.cli import entry; entry()", "export"]
    command += [str(args.stream), "-o", str(ply_path), "--quiet"]
    if args.fit_iterations is not None:
        command += ["--fit-iterations", str(args.fit_iterations)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    export_seconds = time.perf_counter() - started

    scene = api.decode(args.stream)
    model = scene.model
    data = load_scene(args.data, load_instances=False)
    background = model.background_color().detach()
    g = read_gaussians_ply(ply_path)
    write_splat(splat_path, g["means"], g["scales"], g["quats"], g["opacities"], g["sh"][:, 0])
    eye = torch.stack([view.camera.center for view in data.train]).mean(0)
    baked = api.static_gaussians(model, eye)
    bake_path = args.out / "bake.ply"
    write_gaussians_ply(
        bake_path, baked.means, baked.scales, baked.quats, baked.opacities, baked.colors
    )
    renders: dict[str, list[torch.Tensor]] = {"decoded": [], "ply": [], "splat_dc": [], "bake": []}
    with torch.no_grad():
        for view in data.test:
            cam = view.camera
            renders["decoded"].append(api.render_camera(model, cam))
            args_ply = (g["means"], g["quats"], g["scales"], g["opacities"])
            renders["ply"].append(rasterize_sh(*args_ply, g["sh"], cam, background).colors)
            renders["splat_dc"].append(
                rasterize_sh(*args_ply, g["sh"][:, :1], cam, background).colors
            )
            b = baked
            renders["bake"].append(
                rasterize_gaussians(
                    b.means, b.quats, b.scales, b.opacities, b.colors, cam, background
                ).colors
            )
    targets = [view.image for view in data.test]
    result = {
        **origin,
        "stream": str(args.stream),
        "test_views": len(targets),
        "psnr_decoded": round(mean_psnr(renders["decoded"], targets), 3),
        "psnr_exported_ply": round(mean_psnr(renders["ply"], targets), 3),
        "psnr_splat_dc": round(mean_psnr(renders["splat_dc"], targets), 3),
        "psnr_old_bake": round(mean_psnr(renders["bake"], targets), 3),
        "psnr_ply_vs_decoded_render": round(mean_psnr(renders["ply"], renders["decoded"]), 3),
        "fit_iterations": args.fit_iterations or 0,
        "cameras_in_stream": len(scene.cameras),
        "export_command_seconds": round(export_seconds, 1),
        "gaussians": int(g["means"].shape[0]),
        "bytes_stream": args.stream.stat().st_size,
        "bytes_ply": ply_path.stat().st_size,
        "bytes_splat": splat_path.stat().st_size,
        "bytes_old_bake_ply": bake_path.stat().st_size,
        "timing": "contended (shared 2-core machine)",
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    result["gap_db"] = round(result["psnr_decoded"] - result["psnr_exported_ply"], 3)
    Console(stderr=True).print(summary_table("export (kitchen test views)", result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
