"""The receiver's operations on a decoded scene (a ``.csg`` stream, a run directory or a
``scene.pt``): render, query, edit, evaluate, export, decode to files, view.

Nothing here imports training code (``csgaussian.train``); a run directory is read through
:mod:`csgaussian.run`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .codec.budget import EDIT_TEXT_SHOWN, check_edits_fit
from .codec.files import decode, layer_bytes, read_stream_file, save_edited
from .data import load_scene
from .eval.metrics import evaluate_images, load_lpips
from .fileio import atomic_write, write_bytes_atomic
from .render.sh import MAX_SH_DEGREE
from .run import RunDir, load_trained
from .scene.decoded import Scene
from .scene.io import SCENE_NAME, RunError, save_torch, scene_state
from .scene.rendering import render_view
from .scene.scaffold import NeuralGaussians, ScaffoldModel
from .semantics.edit_requests import EditRequest, resolve
from .semantics.encoders import CachedTextEncoder
from .semantics.query import (
    QueryConfig,
    QueryError,
    Selection,
    highlight,
    render_selection,
    select,
)
from .types import Camera, Dataset

if TYPE_CHECKING:
    from .export.fit import ExportConfig

SPLITS = ("train", "test")


STREAM_SUFFIX = ".csg"


def load(source: str | Path, base_only: bool = False) -> Scene:
    """The scene of a ``.csg`` stream (decoded), a run directory or a ``scene.pt`` file."""
    source = Path(source)
    if source.suffix == STREAM_SUFFIX:
        return decode(source, base_only=base_only)
    return Scene(load_trained(source)[0])


def load_model(source: str | Path) -> ScaffoldModel:
    """The renderable model of a stream, a run directory or a ``scene.pt`` file."""
    return load(source, base_only=True).model


def decode_to(
    stream_path: str | Path,
    out_dir: str | Path,
    base_only: bool = False,
    quiet: bool = True,
    fit_iterations: int | None = None,
) -> dict:
    """Decode a stream into ``out_dir``: ``scene.pt`` (renderable) and ``scene.ply``, the
    standard 3DGS export of :func:`export` (``fit_iterations``: its default unless given)."""
    from .export.scene import export_scene

    out_dir = Path(out_dir)
    config = _export_config(None, fit_iterations)
    scene = decode(stream_path, base_only=base_only)
    model = scene.model
    save_torch(out_dir / SCENE_NAME, scene_state(model, None))
    exported = export_scene(scene, out_dir / "scene.ply", config, quiet=quiet)
    report: dict[str, Any] = {
        "n_anchors": model.n_anchors,
        "ply_gaussians": exported["gaussians"],
        "ply_fit_seconds": exported["fit_seconds"],
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


def _scene_for(source: Path, data: str | Path | None, load_instances: bool = False) -> Dataset:
    run = RunDir(source)
    if data is None:
        if not run.is_run():
            raise RunError(f"{source}: give the dataset path (a scene file holds no cameras)")
        info = run.read_settings()
        return load_scene(info.data, downscale=info.downscale, load_instances=load_instances)
    downscale = run.read_settings().downscale if run.info.is_file() else 1
    return load_scene(data, downscale=downscale, load_instances=load_instances)


@torch.no_grad()
def render_camera(model: ScaffoldModel, camera: Camera) -> torch.Tensor:
    """Render ``camera``: ``[H, W, 3]`` in [0, 1]."""
    return render_view(model, camera).image.clamp(0, 1)


@torch.no_grad()
def render_scene(scene: Scene, camera: Camera) -> torch.Tensor:
    """Render ``camera`` with the scene's edits: ``[H, W, 3]`` in [0, 1]."""
    return render_view(scene.model, camera, edit=scene.edit_hook()).image.clamp(0, 1)


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
    check_text(text)
    if not isinstance(scene, Scene):
        scene = decode(scene)
    encoder = None if text_features is None else CachedTextEncoder(text_features)
    return select(scene, text, encoder=encoder, config=config)


def check_text(text: str) -> None:
    """Refuse (QueryError) a query text that is not valid UTF-8 (lone surrogates, as Python
    makes of undecodable command-line bytes): it could not be embedded or written as JSON."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        shown = text.encode("utf-8", "backslashreplace").decode()[:EDIT_TEXT_SHOWN]
        raise QueryError(f"query '{shown}' is not valid UTF-8 ({err.reason})") from None


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
    slots (see :mod:`csgaussian.semantics.edit_requests`). The input scene is not changed. Edits
    whose rendering would need more than the memory limit are refused (StreamError, as the
    decoder refuses such a file: :func:`csgaussian.codec.budget.check_edits_fit`).
    """
    for request in requests:
        check_text(request.text)
    if not isinstance(scene, Scene):
        scene = decode(scene)
    edits = [*scene.edits, *resolve(scene, requests, config=config)]
    check_edits_fit(scene.model, edits)
    return replace(scene, notes=list(scene.notes), edits=edits)


def edit_file(
    stream_path: str | Path, out_path: str | Path, requests: list[EditRequest]
) -> dict[str, Any]:
    """``csgaussian edit``: decode ``stream_path``, apply ``requests`` (after the edits it
    already holds) and write the edited stream to ``out_path``."""
    scene = edit(decode(stream_path), requests)
    return save_edited(scene, stream_path, out_path)


VIEWER_INSTALL = "pip install 'csgaussian[viewer]'"


def viewer(
    stream_path: str | Path,
    port: int = 8080,
    host: str = "127.0.0.1",
    save: str | Path | None = None,
    config: Any = None,
):
    """Start the interactive viewer over a ``.csg`` file; returns the running
    :class:`csgaussian.viewer.app.Viewer` (``stop()`` ends it; ``.url`` is its page with the
    token). Edits are saved to ``save`` only (default ``NAME.edited.csg`` beside the stream),
    which must not exist. ``config`` is a :class:`csgaussian.viewer.session.ViewerConfig`.
    Needs the ``viewer`` extra."""
    stream_path = Path(stream_path)
    try:
        from .viewer.app import Viewer
        from .viewer.session import ViewerConfig
    except ImportError as err:
        missing = f"the viewer needs viser ({err.name} is missing)"
        raise RunError(f"{missing}: {VIEWER_INSTALL}") from None
    return Viewer(
        stream_path,
        lambda base_only: decode(stream_path, base_only),
        host,
        port,
        config or ViewerConfig(),
        None if save is None else Path(save),
    )


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
            rendered = render_view(model, view.camera, edit=scene.edit_hook())
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
        report["layer_bytes"] = layer_bytes(read_stream_file(source))
    report["notes"] = scene.notes
    report.update(segmentation_report(scene, data_scene, queries, text_features))
    return report


def segmentation_report(
    scene: Scene,
    data: Dataset,
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

    Scaffold-GS colours and shapes depend on the view; the export fits one Gaussian per drawn
    anchor slot, with SH colours of degree ``sh_degree`` (default: ``ExportConfig``'s), to
    renders of the decoded model from the capture cameras the stream holds and an orbit
    around the anchors (:mod:`csgaussian.export.fit`).
    ``select`` keeps only the object a text names (the scene needs a semantic layer). Returns a
    JSON-ready report.
    """
    from .export.scene import export_scene

    config = _export_config(sh_degree, fit_iterations)
    scene = load(source)
    return export_scene(scene, Path(out_path), config, select, quiet)


def _export_config(sh_degree: int | None, fit_iterations: int | None) -> ExportConfig:
    """``ExportConfig`` with the given overrides, checked."""
    from .export.fit import ExportConfig

    if sh_degree is not None and not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise ValueError(f"--sh-degree must be 0-{MAX_SH_DEGREE}, got {sh_degree}")
    if fit_iterations is not None and fit_iterations < 0:
        raise ValueError(f"--fit-iterations must be >= 0, got {fit_iterations}")
    config = ExportConfig()
    if sh_degree is not None:
        config = replace(config, sh_degree=sh_degree)
    if fit_iterations is not None:
        config = replace(config, fit_iterations=fit_iterations)
    return config
