"""The embedded demo: the built-in scene trained, encoded, decoded, evaluated, exported,
rendered and queried, with a report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .codec.files import layer_bytes
from .data.synthetic import ensure_demo_scene
from .fileio import write_bytes_atomic
from .receiver import evaluate, export, query_view, render
from .semantics.encoders import DEFAULT_ENCODER
from .train.commands import encode, train
from .train.config import DEFAULT_PRESET


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2).encode()
    write_bytes_atomic(path, text)


DEMO_QUERY = "a red ball"
"""The demo's closing query: a paraphrase of one of the built-in scene's object names ("red
ball", see ``csgaussian.data.synthetic_geometry.default_objects``)."""


def demo(
    out_dir: str | Path = "csgaussian-demo",
    preset: str = DEFAULT_PRESET,
    iterations: int | None = None,
    encoder: str = DEFAULT_ENCODER,
) -> dict[str, Any]:
    """The embedded default: generate the built-in scene, train all three stages, encode,
    decode, evaluate, export, render, and end with a text query on the decoded file."""
    out_dir = Path(out_dir)
    scene_dir = ensure_demo_scene(out_dir / "scene")
    run_dir = out_dir / "run"
    started = time.perf_counter()
    result = train(scene_dir, run_dir, preset=preset, iterations=iterations, encoder=encoder)
    trained = evaluate(run_dir)
    stream_path = out_dir / "scene.csg"
    encoded = encode(run_dir, stream_path)
    decoded = evaluate(stream_path, scene_dir)
    n_exported = export(stream_path, out_dir / "scene.ply", quiet=True)["gaussians"]
    renders = render(stream_path, out_dir / "renders", data=scene_dir)
    closing = query_view(stream_path, DEMO_QUERY, scene_dir, "test:0", out_dir / "query")
    layers = layer_bytes(encoded.data)
    summary = {
        "scene": str(scene_dir),
        "iterations": result.colour.iterations if result.colour else None,
        "train_seconds": round(time.perf_counter() - started, 1),
        "n_anchors": decoded["n_anchors"],
        "n_gaussians": decoded["n_gaussians"],
        "trained_psnr": round(trained["psnr"], 2),
        "decoded_psnr": round(decoded["psnr"], 2),
        "decoded_ssim": round(decoded["ssim"], 4),
        "lpips": decoded["lpips"],
        "stream_bytes": len(encoded.data),
        "base_layer_bytes": layers["base"],
        "semantic_layer_bytes": layers["semantic"],
        "miou_visible": decoded["miou"],
        "acc_visible": decoded["acc"],
        "miou_3d_selection": decoded.get("protocols", {}).get("3d_selection", {}).get("miou"),
        "query": f"'{DEMO_QUERY}': {closing['gaussians_selected']} Gaussians, "
        f"{closing['mask_pixels']} pixels in test:0 (score {closing['best_score']})",
        "stream": str(stream_path),
        "ply": str(out_dir / "scene.ply"),
        "ply_gaussians": n_exported,
        "renders": f"{len(renders)} PNG (decoded scene) in {out_dir / 'renders'}",
    }
    write_json(out_dir / "report.json", summary)
    return summary
