"""The Python API under the CLI: prepare, train, encode, decode, render, query, evaluate, export.

A receiver's functions (decode, render, query, evaluate a stream) import no training code;
``train`` and ``demo`` load it when called. The renderer (numba kernels) loads with the first
function that renders (:func:`_render_view`), so that ``edit`` and a query without a picture
start without it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .codec.container import StreamError, read_container, section_layers
from .codec.edit_layer import edit_summary
from .codec.stream import MIN_SLOT_SHARE, EncodedScene, decode_scene, encode_scene, with_edits
from .data import load_scene
from .data.synthetic import ensure_demo_scene
from .entropy.anchors import AnchorEntropyModel
from .eval.metrics import evaluate_images, load_lpips
from .fileio import atomic_write, write_bytes_atomic
from .scene.decoded import Scene
from .scene.io import (
    RUN_INFO_NAME,
    SCENE_NAME,
    STREAM_NAME,
    STREAM_REPORT_NAME,
    RunError,
    load_torch,
    model_from_state,
    read_run_info,
    save_torch,
    scene_state,
)
from .scene.scaffold import NeuralGaussians, ScaffoldModel
from .semantics.edits import Duplicate as Duplicate  # re-exported: the edit requests
from .semantics.edits import EditRequest, resolve
from .semantics.edits import Extract as Extract
from .semantics.edits import Recolor as Recolor
from .semantics.edits import Remove as Remove
from .semantics.encoders import CachedTextEncoder
from .semantics.query import QueryConfig, Selection, highlight, render_selection, select
from .types import Camera, DataError, SceneData

if TYPE_CHECKING:
    from .scene.rendering import ViewRender
    from .train.stages import RunResult

SPLITS = ("train", "test")


def _render_view() -> Callable[..., ViewRender]:
    """:func:`csgaussian.scene.rendering.render_view`, imported on first use (module doc)."""
    from .scene.rendering import render_view

    return render_view


def train(
    data: str | Path | None,
    run_dir: str | Path,
    preset: str = "quick",
    iterations: int | None = None,
    resume: bool = False,
    downscale: int = 1,
    lambda_rate: float | None = None,
    hyperprior: str | None = None,
    quiet: bool = False,
    stages: str = "1,2,3",
    features: str | Path | None = None,
    encoder: str = "minilm",
    level: str | None = None,
    seed: int | None = None,
) -> RunResult:
    """Train the stages ``stages`` ("1,2,3" by default) of a run from the dataset at ``data``.

    Stage 1 learns colour with the rate term (``lambda_rate`` 0: plain Scaffold-GS, no stream);
    stages 2 and 3 learn and compress the semantic field on the decoded base layer, from the
    LangSplat-layout ``features`` or, without them, from the dataset's instance maps prepared
    into the run with the text ``encoder``. ``resume`` continues the run from its last
    checkpoint, in whatever stage, with the settings it was started with. ``seed`` (default:
    the preset's) seeds network initialisation and sampling in every stage.
    """
    from .train.stages import parse_stages, run_stages, start_or_resume

    if iterations is not None and iterations < 1:
        raise ValueError(f"--iterations must be a positive count, got {iterations}")
    run_dir = Path(run_dir)
    stage_list = parse_stages(stages)
    settings = {
        "downscale": downscale,
        "preset": preset,
        "iterations": iterations,
        "lambda_rate": lambda_rate,
        "hyperprior": hyperprior,
        "features": None if features is None else str(Path(features).resolve()),
        "encoder": encoder,
        "level": level,
        "seed": seed,
        "stages": list(stage_list),
    }
    info = start_or_resume(data, run_dir, stage_list, resume, settings)
    if resume:
        stage_list = tuple(info.get("stages", stage_list))
    return run_stages(run_dir, info, stage_list, resume, quiet)


def prepare(
    data: str | Path,
    out_dir: str | Path,
    encoder: str = "minilm",
    sam: str | Path | None = None,
    clip: str | Path | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write LangSplat-layout masks and language features: from SAM and CLIP model folders
    when given (LangSplat's preprocessing), else from the dataset's instance maps."""
    from .semantics.prepare import prepare_features, prepare_sam_clip

    if (sam is None) != (clip is None):
        raise ValueError("give both --sam DIR and --clip DIR (or neither: instance maps)")
    if sam is not None and clip is not None:
        return prepare_sam_clip(data, out_dir, sam, clip, quiet=quiet)
    return prepare_features(data, out_dir, encoder)


def text_features(texts: list[str], clip: str | Path, out: str | Path) -> dict[str, Any]:
    """Write a ``{text: vector}`` JSON cache of ``texts`` (and LangSplat's negatives) with a
    CLIP model folder, for ``--text-features``."""
    from .semantics.prepare import make_text_features

    if not texts:
        raise ValueError("give at least one text")
    return make_text_features(texts, clip, out)


STREAM_SUFFIX = ".csg"


def load(source: str | Path, base_only: bool = False) -> Scene:
    """The scene of a ``.csg`` stream (decoded), a run directory (with its training cameras
    when its dataset is at hand) or a ``scene.pt`` file."""
    source = Path(source)
    if source.suffix == STREAM_SUFFIX:
        return decode(source, base_only=base_only)
    cameras = _training_cameras(source) if source.is_dir() else []
    return Scene(load_trained(source)[0], cameras=cameras)


def load_model(source: str | Path) -> ScaffoldModel:
    """The renderable model of a stream, a run directory or a ``scene.pt`` file."""
    return load(source, base_only=True).model


def load_trained(source: str | Path) -> tuple[ScaffoldModel, AnchorEntropyModel | None]:
    """The trained scene of a run directory (or ``scene.pt``) and its entropy model, if any."""
    source = Path(source)
    path = source / SCENE_NAME if source.is_dir() else source
    if source.is_dir() and not path.is_file():
        raise RunError(f"{source}: no trained scene yet ({SCENE_NAME} missing; train or --resume)")
    model, entropy = model_from_state(load_torch(path), path)
    model.eval()
    return model, entropy


def encode(
    source: str | Path, stream_path: str | Path, min_slot_share: float = MIN_SLOT_SHARE
) -> EncodedScene:
    """Write a run's stream to one ``.csg`` file (atomically).

    A run whose stages 2-3 finished has its progressive stream (base + semantic layer) already
    made; it is copied (its base layer is the one the semantic field was learned on, so
    ``min_slot_share`` cannot change it). Otherwise the stage-1 scene is encoded as a base-only
    stream, dropping offset slots used by fewer than ``min_slot_share`` of the anchors, with a
    few of the training cameras when the run's dataset is at hand.
    """
    source = Path(source)
    if (source / STREAM_NAME).is_file():
        return _finished_stream(source, stream_path, min_slot_share)
    model, entropy = load_trained(source)
    if entropy is None:
        raise RunError(f"{source}: trained without the rate term (--lambda 0); nothing to encode")
    encoded = encode_scene(model, entropy, min_slot_share, _training_cameras(source))
    write_bytes_atomic(stream_path, encoded.data)
    return encoded


def _training_cameras(run_dir: Path) -> list[Camera]:
    """The training cameras of the run's dataset, or none when it is not at hand."""
    try:
        info = read_run_info(run_dir)
        data = load_scene(info["data"], info.get("downscale", 1), load_instances=False)
    except (RunError, DataError, OSError, KeyError):
        return []
    return [view.camera for view in data.train]


def _finished_stream(run_dir: Path, stream_path: str | Path, min_slot_share: float) -> EncodedScene:
    if min_slot_share != MIN_SLOT_SHARE:
        raise RunError(
            f"{run_dir}: its semantic layer was learned on the base layer encoded with "
            f"--min-slot-share {MIN_SLOT_SHARE}; another share would need stages 2-3 again"
        )
    data = (run_dir / STREAM_NAME).read_bytes()
    report = json.loads((run_dir / STREAM_REPORT_NAME).read_text())
    scene = decode_scene(data, base_only=True)
    write_bytes_atomic(stream_path, data)
    return EncodedScene(data, report["section_bytes"], report["estimated_bits"], scene.model)


def layer_bytes(data: bytes) -> dict[str, int]:
    """Bytes per layer of a stream; the container's header counts to the base layer. An
    ``edit`` entry is there when the stream has an edit layer."""
    layers = section_layers(data)
    sections = read_container(data, partial_ok=True)
    sizes = {"semantic": 0}
    for name, payload in sections.items():
        if layers[name] != "base":
            sizes[layers[name]] = sizes.get(layers[name], 0) + len(payload)
    return {"base": len(data) - sum(sizes.values()), **sizes}


def decode(stream_path: str | Path, base_only: bool = False) -> Scene:
    """Decode a ``.csg`` file (both layers unless ``base_only``); errors name the file."""
    stream_path = Path(stream_path)
    try:
        data = stream_path.read_bytes()
    except OSError as err:
        raise StreamError(f"{stream_path}: cannot read ({err.strerror})") from None
    try:
        return decode_scene(data, base_only=base_only)
    except StreamError as err:
        raise StreamError(f"{stream_path}: {err}") from None


def decode_to(stream_path: str | Path, out_dir: str | Path, base_only: bool = False) -> dict:
    """Decode a stream into ``out_dir``: ``scene.pt`` (renderable) and a 3DGS ``scene.ply`` (the
    export's default: :func:`export`)."""
    from .export.scene import export_scene

    out_dir = Path(out_dir)
    scene = decode(stream_path, base_only=base_only)
    model = scene.model
    save_torch(out_dir / SCENE_NAME, scene_state(model, None))
    exported = export_scene(scene, out_dir / "scene.ply")
    report: dict[str, Any] = {
        "n_anchors": model.n_anchors,
        "ply_gaussians": exported["gaussians"],
        "semantics": scene.semantics is not None,
    }
    if scene.semantics is not None:
        report["text_space"] = scene.semantics.text_space
        report["language_entries"] = int(scene.semantics.language.shape[0])
    if scene.edits:
        report["edits (not applied to scene.pt / scene.ply)"] = len(scene.edits)
    for index, note in enumerate(scene.notes):
        report[f"note {index + 1}"] = note
    return report


def _scene_for(source: Path, data: str | Path | None, load_instances: bool = False) -> SceneData:
    if data is None:
        if not (source.is_dir() and (source / RUN_INFO_NAME).is_file()):
            raise RunError(f"{source}: give the dataset path (a scene file holds no cameras)")
        info = read_run_info(source)
        return load_scene(info["data"], downscale=info["downscale"], load_instances=load_instances)
    run_info = source / RUN_INFO_NAME
    downscale = read_run_info(source)["downscale"] if run_info.is_file() else 1
    return load_scene(data, downscale=downscale, load_instances=load_instances)


@torch.no_grad()
def render_camera(model: ScaffoldModel, camera: Camera) -> torch.Tensor:
    """Render ``camera``: ``[H, W, 3]`` in [0, 1]."""
    return _render_view()(model, camera).image.clamp(0, 1)


@torch.no_grad()
def render_scene(scene: Scene, camera: Camera) -> torch.Tensor:
    """Render ``camera`` with the scene's edits: ``[H, W, 3]`` in [0, 1]."""
    return _render_view()(scene.model, camera, edit=scene.edit_hook()).image.clamp(0, 1)


def render(
    source: str | Path, out_dir: str | Path, split: str = "test", data: str | Path | None = None
) -> list[Path]:
    """Render every view of ``split`` (with a stream's edits) to PNG files in ``out_dir``;
    returns their paths."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    source, out_dir = Path(source), Path(out_dir)
    decoded = load(source, base_only=True)
    scene = _scene_for(source, data)
    paths = []
    for index, view in enumerate(getattr(scene, split)):
        image = render_scene(decoded, view.camera)
        path = out_dir / f"{split}_{index:03d}.png"
        save_png(path, image)
        paths.append(path)
    return paths


def save_png(path: Path, image: torch.Tensor) -> None:
    """Write ``[H, W, 3]`` in [0, 1] (or ``[H, W]`` bool) as an 8-bit PNG, atomically."""
    if image.dtype == torch.bool:
        pixels = image.to(torch.uint8).mul(255).cpu().numpy()
    else:
        pixels = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    atomic_write(
        path, lambda handle: Image.fromarray(np.ascontiguousarray(pixels)).save(handle, "PNG")
    )


def query(
    scene: Scene | str | Path,
    text: str,
    config: QueryConfig = QueryConfig(),  # noqa: B008
    text_features: str | Path | None = None,
) -> Selection:
    """Select the object ``text`` names in a decoded scene (or a ``.csg`` path); the text is
    embedded by the stream's encoder, or looked up in the ``text_features`` JSON cache."""
    if not isinstance(scene, Scene):
        scene = decode(scene)
    encoder = None if text_features is None else CachedTextEncoder(text_features)
    return select(scene, text, encoder=encoder, config=config)


def query_view(
    stream_path: str | Path,
    text: str,
    data: str | Path,
    view: str = "test:0",
    out_dir: str | Path | None = None,
    text_features: str | Path | None = None,
) -> dict[str, Any]:
    """Query a stream and render the selection in one dataset view (``split:index``).

    Writes ``mask.png`` (the visible selection), ``highlight.png`` and ``query.json`` into
    ``out_dir`` when given; returns the JSON record.
    """
    split, _, index_text = view.partition(":")
    if split not in SPLITS or not index_text.isdigit():
        raise ValueError(f"--view takes split:index (e.g. test:3), got {view!r}")
    scene = decode(stream_path)
    selection = query(scene, text, text_features=text_features)
    views = getattr(load_scene(data, load_instances=False), split)
    if int(index_text) >= len(views):
        raise ValueError(f"--view {view}: the {split} split has {len(views)} views")
    camera = views[int(index_text)].camera
    masks = render_selection(scene.model, camera, selection.slots, scene.edit_hook())
    record = {**selection.summary(), "view": view, "mask_pixels": int(masks["visible"].sum())}
    if out_dir is not None:
        out_dir = Path(out_dir)
        save_png(out_dir / "mask.png", masks["visible"])
        save_png(out_dir / "highlight.png", highlight(masks["image"], masks["visible"]))
        write_bytes_atomic(out_dir / "query.json", json.dumps(record).encode())
    return record


def edit(
    scene: Scene | str | Path,
    requests: list[EditRequest],
    config: QueryConfig = QueryConfig(),  # noqa: B008
) -> Scene:
    """The scene (or the scene of a ``.csg`` path) with ``requests`` resolved and appended to its
    edits, e.g. ``edit(scene, [Remove("rubber duck"), Recolor("mug", "#2040ff")])``.

    Each request's text is queried on the decoded scene now; the edit keeps the selected anchor
    slots (see :mod:`csgaussian.semantics.edits`). The input scene is not changed.
    """
    if not isinstance(scene, Scene):
        scene = decode(scene)
    edits = resolve(scene, requests, config=config)
    edited = [*scene.edits, *edits]
    return Scene(scene.model, scene.semantics, list(scene.notes), edited, list(scene.cameras))


def save_edited(scene: Scene, source: str | Path, out_path: str | Path) -> dict[str, Any]:
    """Write the stream ``source`` with ``scene``'s edit list as ``out_path`` (atomically); the
    base and semantic layers are copied byte for byte. Returns sizes and the edits."""
    source = Path(source)
    try:
        data = source.read_bytes()
        edited = with_edits(data, scene.edits)
    except OSError as err:
        raise StreamError(f"{source}: cannot read ({err.strerror})") from None
    except StreamError as err:
        raise StreamError(f"{source}: {err}") from None
    write_bytes_atomic(out_path, edited)
    return {
        "input_bytes": len(data),
        "output_bytes": len(edited),
        "edit_layer_bytes": layer_bytes(edited).get("edit", 0),
        "edits": edit_summary(scene.edits),
    }


def edit_file(
    stream_path: str | Path, out_path: str | Path, requests: list[EditRequest]
) -> dict[str, Any]:
    """``csgaussian edit``: decode ``stream_path``, apply ``requests`` (after the edits it
    already holds) and write the edited stream to ``out_path``."""
    scene = edit(decode(stream_path), requests)
    return save_edited(scene, stream_path, out_path)


VIEWER_INSTALL = "pip install 'csgaussian[viewer]'"


def viewer(stream_path: str | Path, port: int = 8080, host: str = "127.0.0.1"):
    """Start the interactive viewer over a ``.csg`` file; returns the running
    :class:`csgaussian.viewer.app.Viewer` (``stop()`` ends it). Needs the ``viewer`` extra."""
    stream_path = Path(stream_path)
    try:
        from .viewer.app import Viewer
    except ImportError as err:
        missing = f"the viewer needs viser ({err.name} is missing)"
        raise RunError(f"{missing}: {VIEWER_INSTALL}") from None
    return Viewer(stream_path, lambda base_only: decode(stream_path, base_only), host, port)


def evaluate(
    source: str | Path,
    data: str | Path | None = None,
    lpips_weights: str | Path | None = None,
    queries: str | Path | None = None,
    text_features: str | Path | None = None,
) -> dict[str, Any]:
    """PSNR, SSIM, LPIPS (null unless its weights are on disk) and sizes on the test views (a
    stream's edits rendered); with a semantic layer and segmentation ground truth, mIoU and acc
    under every protocol (of the unedited scene). ``text_features`` (a ``{text: vector}`` JSON
    cache) embeds the queries instead of the stream's encoder.
    """
    source = Path(source)
    scene = load(source)
    model = scene.model
    data_scene = _scene_for(source, data, load_instances=scene.semantics is not None)
    started = time.perf_counter()
    preds, counts = [], []
    with torch.no_grad():
        for view in data_scene.test:
            rendered = _render_view()(model, view.camera, edit=scene.edit_hook())
            preds.append(rendered.image.clamp(0, 1))
            counts.append(rendered.gaussians.means.shape[0])
    seconds = time.perf_counter() - started
    targets = [view.image for view in data_scene.test]
    metrics = evaluate_images(preds, targets, load_lpips(lpips_weights))
    n_gaussians = sum(counts) / max(len(counts), 1)
    report = {
        "psnr": metrics["psnr"],
        "ssim": metrics["ssim"],
        "lpips": metrics["lpips"],
        "n_test_views": len(data_scene.test),
        "n_anchors": model.n_anchors,
        "n_gaussians": round(n_gaussians),
        "seconds": seconds,
        "render_ms_per_view": 1000 * seconds / max(len(data_scene.test), 1),
        "per_view_psnr": metrics["per_view"]["psnr"],
    }
    if source.suffix == STREAM_SUFFIX:
        report["stream_bytes"] = source.stat().st_size
        report["layer_bytes"] = layer_bytes(source.read_bytes())
    report["notes"] = scene.notes
    report.update(segmentation_report(scene, data_scene, queries, text_features))
    return report


def segmentation_report(
    scene: Scene,
    data: SceneData,
    queries: str | Path | None = None,
    text_features: str | Path | None = None,
) -> dict[str, Any]:
    """mIoU and acc per protocol on the scene's ground truth (instance maps, LERF-OVS labels or
    3D-OVS masks); empty without semantics or ground truth. Top-level ``miou`` and ``acc`` are
    the visible selection's."""
    from .eval.open_vocab import score_segmentation

    encoder = None if text_features is None else CachedTextEncoder(text_features)
    return score_segmentation(scene, data, queries, encoder)


@torch.no_grad()
def static_gaussians(model: ScaffoldModel, eye: torch.Tensor) -> NeuralGaussians:
    """All anchors' Gaussians evaluated for one viewpoint ``eye`` ([3]): a plain 3DGS scene."""
    return model.spawn(torch.arange(model.n_anchors), eye)


def export(
    source: str | Path,
    out_path: str | Path,
    select: str | None = None,
    sh_degree: int | None = None,
    fit_iterations: int | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write the scene as a standard 3DGS PLY (``.ply``) or web ``.splat`` file.

    Scaffold-GS colours and shapes depend on the view; the export keeps one Gaussian per drawn
    anchor slot, with SH colours of degree ``sh_degree`` (default: ``ExportConfig``'s), solved
    in closed form from the decoded model's Gaussians at the capture cameras the stream holds
    (else an orbit), drops those that only fog the views that hide them, and takes
    ``fit_iterations`` Adam steps on top (default none; :mod:`csgaussian.export.fit`).
    ``select`` keeps only the object a text names (the scene needs a semantic layer). Returns a
    JSON-ready report.
    """
    from .export.fit import ExportConfig
    from .export.scene import export_scene
    from .render.sh import MAX_SH_DEGREE

    if sh_degree is not None and not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise ValueError(f"--sh-degree must be 0-{MAX_SH_DEGREE}, got {sh_degree}")
    if fit_iterations is not None and fit_iterations < 0:
        raise ValueError(f"--fit-iterations must be >= 0, got {fit_iterations}")
    config = ExportConfig()
    if sh_degree is not None:
        config = replace(config, sh_degree=sh_degree)
    if fit_iterations is not None:
        config = replace(config, fit_iterations=fit_iterations)
    scene = load(source)
    return export_scene(scene, Path(out_path), config, select, quiet)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2).encode()
    write_bytes_atomic(path, text)


DEMO_QUERY = "a red ball"
"""The demo's closing query: a paraphrase of one of the built-in scene's object names ("red
ball", see ``csgaussian.data.synthetic_geometry.default_objects``)."""


def demo(
    out_dir: str | Path = "csgaussian-demo",
    preset: str = "quick",
    iterations: int | None = None,
    encoder: str = "minilm",
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
