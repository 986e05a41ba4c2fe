"""Export speed and quality (issue 18 item 2): ``csgaussian export`` as a user runs it, its PLY
rendered by an independent 3DGS renderer, beside the decoded model it comes from.

Runs ``csgaussian export STREAM -o scene.ply`` (the default settings, and ``--fit-iterations 0``:
the closed form alone) as whole processes and times them from start to exit, interpreter
included. Each PLY is read and drawn by ``splat_reference.py`` (written from the 3DGS paper and
the INRIA PLY layout, importing nothing of csgaussian) at the dataset's test cameras; the
decoded model is rendered at the same cameras by csgaussian. Reports PSNR against the test
images and against the decoded model's renders, wall times, Gaussian counts and sizes.

Prints a table and ends with ONE JSON line; writes ``export.json`` and ``export.md`` to --out.

Usage:
    python benchmarks/export.py STREAM [DATA] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.eval.metrics import psnr
from csgaussian.progress import summary_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import splat_reference  # noqa: E402
from provenance import provenance, provenance_lines, write_environment  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitchen"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "export"
CLI = Path(sys.executable).with_name("csgaussian")


def mean_psnr(images: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
    pairs = zip(images, targets, strict=True)
    return round(sum(psnr(i.clamp(0, 1), t) for i, t in pairs) / len(images), 3)


def timed_export(stream: Path, ply: Path, extra: list[str]) -> float:
    """Wall seconds of ``csgaussian export`` as a whole process (interpreter start included)."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(CLI), "export", str(stream), "-o", str(ply), "--force", *extra],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"csgaussian export failed: {done.stderr.strip()[-2000:]}")
    return round(seconds, 1)


def markdown(result: dict, origin: dict) -> str:
    """The results table: PSNR on the test views against the images and the decoded model."""
    lines = ["# Export", "", *provenance_lines(origin), ""]
    lines += [
        f"Stream `{result['stream']}` ({result['stream_bytes']:,} B, "
        f"{result['stream_cameras']} capture cameras), {result['test_views']} test views; "
        f"the decoded model renders at {result['psnr_decoded']} dB against the images. PLYs drawn "
        "by `benchmarks/splat_reference.py`; wall time of `csgaussian export` from start to exit.",
        "",
        "| export | wall s | Gaussians | bytes | PSNR vs images | gap to decoded | vs decoded |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in (("default", "default settings"), ("closed_form", "--fit-iterations 0")):
        lines.append(
            f"| {label} | {result[f'{name}_seconds']} | {result[f'{name}_gaussians']:,} | "
            f"{result[f'{name}_bytes']:,} | {result[f'{name}_psnr']} | "
            f"{result[f'{name}_gap_db']} | {result[f'{name}_psnr_vs_decoded']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", type=Path)
    parser.add_argument("data", type=Path, nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    origin = provenance([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    plys = {"default": args.out / "scene.ply", "closed form": args.out / "closed_form.ply"}
    seconds = {
        "default": timed_export(args.stream, plys["default"], []),
        "closed form": timed_export(args.stream, plys["closed form"], ["--fit-iterations", "0"]),
    }
    scene = api.decode(args.stream)
    data = load_scene(args.data, load_instances=False)
    background = scene.model.background_color().detach()
    targets = [view.image for view in data.test]
    with torch.no_grad():
        decoded = [api.render_camera(scene.model, view.camera) for view in data.test]
    result = {
        **origin,
        "stream": args.stream.name,
        "stream_bytes": args.stream.stat().st_size,
        "stream_cameras": len(scene.cameras),
        "test_views": len(targets),
        "psnr_decoded": mean_psnr(decoded, targets),
    }
    for name, path in plys.items():
        gaussians = splat_reference.read_3dgs_ply(path)
        renders = [
            splat_reference.render(
                gaussians, view.camera.viewmat, view.camera.K, view.camera.width,
                view.camera.height, background.double(),
            ).float()
            for view in data.test
        ]  # fmt: skip
        key = name.replace(" ", "_")
        result[f"{key}_seconds"] = seconds[name]
        result[f"{key}_gaussians"] = int(gaussians.means.shape[0])
        result[f"{key}_bytes"] = path.stat().st_size
        result[f"{key}_psnr"] = mean_psnr(renders, targets)
        result[f"{key}_psnr_vs_decoded"] = mean_psnr(renders, decoded)
        result[f"{key}_gap_db"] = round(result["psnr_decoded"] - result[f"{key}_psnr"], 3)
        path.unlink()
    Console(stderr=True).print(summary_table("export (test views)", result))
    (args.out / "export.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "export.md").write_text(markdown(result, origin))
    write_environment(args.out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
