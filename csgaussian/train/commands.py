"""The training side's operations behind the API: prepare features, train the stages of a
run directory, encode a trained run into one ``.csg`` file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..codec.cameras import SECTION as CAMERAS_SECTION
from ..codec.stream import (
    MIN_SLOT_SHARE,
    EncodedScene,
    decode_scene,
    encode_scene,
    without_cameras,
)
from ..data import load_scene
from ..fileio import write_bytes_atomic
from ..run import RunDir, RunSettings, load_trained
from ..scene.io import STREAM_NAME, STREAM_REPORT_NAME, RunError, read_run_info
from ..semantics.encoders import DEFAULT_ENCODER
from ..types import Camera
from .stages import RunResult


def train(
    data: str | Path | None,
    run_dir: str | Path,
    preset: str | None = None,
    iterations: int | None = None,
    resume: bool = False,
    downscale: int | None = None,
    lambda_rate: float | None = None,
    hyperprior: str | None = None,
    quiet: bool = False,
    stages: str | None = None,
    features: str | Path | None = None,
    encoder: str | None = None,
    level: str | None = None,
    seed: int | None = None,
) -> RunResult:
    """Train the stages ``stages`` ("1,2,3" by default) of a run from the dataset at ``data``.

    Stage 1 learns colour with the rate term (``lambda_rate`` 0: plain Scaffold-GS, no stream);
    stages 2 and 3 learn and compress the semantic field on the decoded base layer, from the
    LangSplat-layout ``features`` or, without them, from the dataset's instance maps prepared
    into the run with the text ``encoder``. ``resume`` continues the run from its last
    checkpoint, in whatever stage, with the settings it was started with (a setting given here
    that differs from them is refused). ``seed`` (default: the preset's) seeds network
    initialisation and sampling in every stage. Settings left ``None`` take
    ``train.stages.DEFAULT_SETTINGS`` (preset quick, downscale 1, encoder minilm, stages 1,2,3)
    in a new run. ``run.json`` is written once the dataset and features are found valid.
    """
    from .stages import parse_stages, run_stages, start_or_resume

    if iterations is not None and iterations < 1:
        raise ValueError(f"--iterations must be a positive count, got {iterations}")
    run_dir = Path(run_dir)
    stage_list = parse_stages("1,2,3" if stages is None else stages)
    settings = RunSettings(
        downscale=downscale,
        preset=preset,
        iterations=iterations,
        lambda_rate=lambda_rate,
        hyperprior=hyperprior,
        features=None if features is None else str(Path(features).resolve()),
        encoder=encoder,
        level=level,
        seed=seed,
        stages=None if stages is None else list(stage_list),
    )
    info, new_settings = start_or_resume(data, run_dir, stage_list, resume, settings)
    if resume:
        stage_list = tuple(info.stages or stage_list)
    return run_stages(run_dir, info, stage_list, resume, quiet, write_info=new_settings)


def prepare(
    data: str | Path,
    out_dir: str | Path,
    encoder: str = DEFAULT_ENCODER,
    sam: str | Path | None = None,
    clip: str | Path | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Write LangSplat-layout masks and language features: from SAM and CLIP model folders
    when given (LangSplat's preprocessing), else from the dataset's instance maps."""
    from ..preprocess.prepare import prepare_features, prepare_sam_clip

    if (sam is None) != (clip is None):
        raise ValueError("give both --sam DIR and --clip DIR (or neither: instance maps)")
    if sam is not None and clip is not None:
        return prepare_sam_clip(data, out_dir, sam, clip, quiet=quiet)
    return prepare_features(data, out_dir, encoder)


def text_features(texts: list[str], clip: str | Path, out: str | Path) -> dict[str, Any]:
    """Write a ``{text: vector}`` JSON cache of ``texts`` (and LangSplat's negatives) with a
    CLIP model folder, for ``--text-features``."""
    from ..preprocess.prepare import make_text_features

    if not texts:
        raise ValueError("give at least one text")
    return make_text_features(texts, clip, out)


def encode(
    source: str | Path,
    stream_path: str | Path,
    min_slot_share: float = MIN_SLOT_SHARE,
    max_cameras: int | None = None,
) -> EncodedScene:
    """Write a run's stream to one ``.csg`` file (atomically).

    A run whose stages 2-3 finished has its progressive stream (base + semantic layer) already
    made; it is copied (its base layer is the one the semantic field was learned on, so
    ``min_slot_share`` cannot change it; ``max_cameras`` 0 drops its optional cameras section,
    None keeps it). Otherwise the stage-1 scene is encoded as a base-only stream, dropping
    offset slots used by fewer than ``min_slot_share`` of the anchors, with up to
    ``max_cameras`` of the run's training cameras (None: its ``TrainConfig.stream_cameras``)
    when its dataset is there.
    """
    source = Path(source)
    if (source / STREAM_NAME).is_file():
        return _finished_stream(source, stream_path, min_slot_share, max_cameras)
    model, entropy = load_trained(source)
    if entropy is None:
        raise RunError(f"{source}: trained without the rate term (--lambda 0); nothing to encode")
    cameras, count = _training_cameras(source)
    count = count if max_cameras is None else max_cameras
    encoded = encode_scene(model, entropy, min_slot_share, cameras, count)
    write_bytes_atomic(stream_path, encoded.data)
    return encoded


def _training_cameras(source: Path) -> tuple[list[Camera], int]:
    """The training cameras of the run ``source`` and how many of them its stream stores by
    default; none when ``source`` is not a run directory or its dataset is gone."""
    from .stages import training_config

    run = RunDir(source)
    if not run.info.is_file():
        return [], 0
    settings = RunSettings.from_dict(read_run_info(source), run.info)
    if settings.data is None or not Path(settings.data).is_dir():
        return [], 0
    dataset = load_scene(settings.data, downscale=settings.downscale or 1, load_instances=False)
    return [view.camera for view in dataset.train], training_config(settings).stream_cameras


def _finished_stream(
    run_dir: Path, stream_path: str | Path, min_slot_share: float, max_cameras: int | None
) -> EncodedScene:
    if min_slot_share != MIN_SLOT_SHARE:
        raise RunError(
            f"{run_dir}: its semantic layer was learned on the base layer encoded with "
            f"--min-slot-share {MIN_SLOT_SHARE}; another share would need stages 2-3 again"
        )
    if max_cameras not in (None, 0):
        raise RunError(f"{run_dir}: its stream keeps the cameras stored at training (0 drops them)")
    data = (run_dir / STREAM_NAME).read_bytes()
    report = json.loads((run_dir / STREAM_REPORT_NAME).read_text())
    if max_cameras == 0:
        data = without_cameras(data)
        report["section_bytes"].pop(CAMERAS_SECTION, None)
    scene = decode_scene(data, base_only=True)
    write_bytes_atomic(stream_path, data)
    return EncodedScene(data, report["section_bytes"], report["estimated_bits"], scene.model)
