"""The three training stages of a run directory, in order, each resumable (docs/method.md §3-§5).

A run directory holds ``run.json`` (the settings), stage 1's ``checkpoint.pt`` and ``scene.pt``,
the base layer ``base.csg`` that stages 2 and 3 learn on, their ``semantic_checkpoint.pt``, and
at the end the progressive stream ``stream.csg`` with ``stream.json`` (section sizes, estimates).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..codec.stream import MIN_SLOT_SHARE, encode_scene
from ..data import load_scene
from ..fileio import write_bytes_atomic
from ..preprocess.features import read_features, view_stem
from ..preprocess.prepare import prepare_features, read_text_space
from ..progress import TrainProgress
from ..run import RunDir, RunSettings
from ..scene.io import (
    RUN_INFO_NAME,
    SCENE_NAME,
    RunError,
    load_torch,
    model_from_state,
    read_run_info,
)
from ..semantics.encoders import DEFAULT_ENCODER, EXTERNAL_SPACE
from ..types import Dataset
from .config import DEFAULT_PRESET, TrainConfig
from .config import preset as preset_config
from .loop import Trainer, TrainResult, torch_threads
from .semantic import SemanticResult, SemanticTrainer

STAGES = (1, 2, 3)
DEFAULT_SETTINGS: dict[str, Any] = {
    "preset": DEFAULT_PRESET,
    "downscale": 1,
    "encoder": DEFAULT_ENCODER,
    "stages": list(STAGES),
}
"""What a new run records for the settings its command left out (``None``)."""


@dataclass
class RunResult:
    """What ``train`` reports: the stages it ran."""

    colour: TrainResult | None
    semantic: SemanticResult | None


def training_config(settings: RunSettings) -> TrainConfig:
    """The configuration a run's settings (``run.json``) stand for."""
    config = preset_config(settings.preset, settings.iterations)
    lambda_rate, hyperprior = settings.lambda_rate, settings.hyperprior
    if lambda_rate is not None and lambda_rate < 0:
        raise ValueError(f"--lambda must be >= 0, got {lambda_rate}")
    if settings.level is not None:
        config = replace(config, semantic=replace(config.semantic, level=settings.level))
    if settings.seed is not None:
        seed = settings.seed
        config = replace(config, seed=seed, semantic=replace(config.semantic, seed=seed))
    if lambda_rate == 0:
        return replace(config, rate=None)
    rate = config.rate
    if lambda_rate is not None:
        rate = replace(rate, lambda_rate=lambda_rate)
    if hyperprior is not None:
        rate = replace(rate, hyperprior=hyperprior)
    return replace(config, rate=rate)


def parse_stages(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> (1, 2, 3); stages run in order and none may be skipped in between."""
    try:
        stages = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"--stages takes numbers like 1,2,3, got {text!r}") from None
    if not stages or not set(stages) <= set(STAGES):
        raise ValueError(f"--stages takes a subset of 1,2,3, got {text!r}")
    if stages != tuple(range(stages[0], stages[-1] + 1)):
        raise ValueError(f"--stages must not skip a stage in between, got {text!r}")
    if 3 in stages and 2 not in stages:
        raise ValueError("stage 3 continues stage 2: give --stages 2,3")
    return stages


def run_stages(
    run_dir: Path,
    info: RunSettings,
    stages: tuple[int, ...],
    resume: bool,
    quiet: bool,
    write_info: bool = False,
) -> RunResult:
    """Run ``stages`` of the run in ``run_dir`` with the settings ``info``; ``write_info``
    records them in ``run.json`` once the dataset and the features are found valid."""
    config = training_config(info)
    if 2 in stages and config.rate is None:
        raise RunError(
            f"{run_dir}: --lambda 0 trains no base layer for stages 2-3 to learn on; "
            "give --stages 1 for the uncompressed baseline"
        )
    scene = load_scene(info.data, downscale=info.downscale, load_instances=False)
    if 2 in stages:
        _check_features(info, scene, config)
    if write_info:
        RunDir(run_dir).write_settings(info)
    colour = None
    if 1 in stages:
        trainer = Trainer(scene, config, run_dir)
        with TrainProgress(config.iterations, quiet=quiet, description="stage 1") as progress:
            colour = trainer.train(resume=resume, progress=progress)
    semantic = None
    if 2 in stages:
        semantic = train_semantic_stages(run_dir, info, config, scene, resume, quiet)
    return RunResult(colour, semantic)


def train_semantic_stages(
    run_dir: Path,
    info: RunSettings,
    config: TrainConfig,
    scene: Dataset,
    resume: bool,
    quiet: bool,
) -> SemanticResult:
    run = RunDir(run_dir)
    if not run.scene.is_file():
        raise RunError(f"{run_dir}: stage 1 is not finished ({SCENE_NAME} missing)")
    if run.semantic_checkpoint.is_file() and not resume:
        raise RunError(
            f"{run_dir}: stages 2-3 already started; continue with --resume or use a new run"
        )
    _write_base_layer(run_dir, MIN_SLOT_SHARE, scene, config.stream_cameras)
    features_dir, text_space = _features(run_dir, info)
    sizes = {view_stem(view.image_path): view.size for view in scene.train}
    masks = read_features(features_dir, list(sizes), config.semantic.level, sizes)
    if text_space is None:
        text_space = f"{EXTERNAL_SPACE}:{next(iter(masks.values())).features.shape[1]}"
    started = time.perf_counter()
    with torch_threads(config.torch_threads):
        trainer = SemanticTrainer(scene, masks, text_space, config.semantic, run_dir)
        if resume and run.semantic_checkpoint.is_file():
            trainer.load_checkpoint()
        cfg = config.semantic
        for stage, total in ((2, cfg.stage2_iterations), (3, cfg.stage3_iterations)):
            if trainer.stage > stage:
                continue
            with TrainProgress(total, quiet=quiet, description=f"stage {stage}") as progress:
                trainer.run_stage(stage, progress)
        data, report = trainer.finish()
    base_estimates = json.loads(run.base_report.read_text())
    report["estimated_bits"] = {**base_estimates, **report["estimated_bits"]}
    write_bytes_atomic(run.stream_report, json.dumps(report, indent=2).encode())
    write_bytes_atomic(run.stream, data)  # last: its presence means the run is done
    base_bytes = run.base_stream.stat().st_size
    return SemanticResult(
        stage2_iterations=cfg.stage2_iterations,
        stage3_iterations=cfg.stage3_iterations,
        seconds=time.perf_counter() - started,
        semantic_bytes=len(data) - base_bytes,
        base_bytes=base_bytes,
        n_leaves_matched=report["n_leaves_matched"],
        n_language_entries=report["n_language_entries"],
        stream_path=run.stream,
    )


def _write_base_layer(
    run_dir: Path, min_slot_share: float, scene: Dataset, max_cameras: int
) -> None:
    """Encode stage 1's scene into ``base.csg`` once (with its estimated bits in ``base.json``
    and up to ``max_cameras`` of ``scene``'s training cameras): stages 2-3 learn on its decoded
    scene, and ``stream.csg`` copies its sections."""
    run = RunDir(run_dir)
    path = run.base_stream
    if path.is_file():
        return
    model, entropy = model_from_state(load_torch(run.scene), run.scene)
    cameras = [view.camera for view in scene.train]
    encoded = encode_scene(model, entropy, min_slot_share, cameras, max_cameras)
    estimates = json.dumps(encoded.estimated_bits).encode()
    write_bytes_atomic(run.base_report, estimates)
    write_bytes_atomic(path, encoded.data)


def _check_features(info: RunSettings, scene: Dataset, config: TrainConfig) -> None:
    """Read the user's features of the first training view now (DataError naming the file),
    not after stage 1; stage 2 reads every view."""
    if not info.features or not scene.train:
        return
    view = scene.train[0]
    stem = view_stem(view.image_path)
    read_features(info.features, [stem], config.semantic.level, {stem: view.size})


def _features(run_dir: Path, info: RunSettings) -> tuple[Path, str | None]:
    """The language-feature folder and its text space: the user's, or prepared into the run.

    Brought features without ``encoder.json`` (LangSplat's CLIP files) have an unknown space
    (None); the run names it ``external:<D>`` and queries it through a text-feature cache.
    """
    if info.features:
        features_dir = Path(info.features)
    else:
        features_dir = RunDir(run_dir).features_dir
        if read_text_space(features_dir) is None:
            encoder = info.encoder or DEFAULT_ENCODER
            prepare_features(info.data, features_dir, encoder, info.downscale)
    return features_dir, read_text_space(features_dir)


def new_run_info(data: str | Path, **settings: Any) -> RunSettings:
    """The settings a new run records in ``run.json``."""
    return RunSettings(data=str(Path(data).resolve()), **settings)


def start_or_resume(
    data: str | Path | None,
    run_dir: Path,
    stages: tuple[int, ...],
    resume: bool,
    settings: RunSettings,
) -> tuple[RunSettings, bool]:
    """Validate the run directory for the requested stages; return its settings and whether
    they are new (for :func:`run_stages` to write once the inputs are validated).

    ``settings`` hold the command's explicit settings and ``None`` for the ones it left out.
    ``resume`` continues with the settings in ``run.json``: an explicit setting (or dataset)
    that differs from them is refused, naming each.
    """
    given = {**settings.to_dict(), "data": None if data is None else str(Path(data).resolve())}
    run = RunDir(run_dir)
    if resume:
        info = read_run_info(run_dir)
        _refuse_differing(run_dir, info, given, "--resume continues")
        return RunSettings.from_dict(info, run.info), False
    if 1 in stages:
        if run.checkpoint.is_file():
            raise RunError(
                f"{run_dir}: already holds a run; continue it with --resume or use a new directory"
            )
        if data is None:
            raise ValueError("give the dataset to train from")
        chosen = {k: DEFAULT_SETTINGS.get(k) if v is None else v for k, v in given.items()}
        return new_run_info(**chosen), True
    info = read_run_info(run_dir)
    fixed = {k: v for k, v in given.items() if k not in SEMANTIC_SETTINGS and k != "stages"}
    _refuse_differing(run_dir, info, fixed, f"--stages {','.join(map(str, stages))} continues")
    info.update({k: given[k] for k in SEMANTIC_SETTINGS if given.get(k) is not None})
    info["stages"] = list(stages)
    return RunSettings.from_dict(info, run.info), True


SEMANTIC_SETTINGS = ("features", "encoder", "level", "seed")
"""The settings a run of stages 2-3 alone may set anew (stage 1's are fixed by its scene)."""


def _refuse_differing(run_dir: Path, info: dict[str, Any], given: dict[str, Any], how: str) -> None:
    """RunError naming each explicit setting in ``given`` that differs from ``info``."""
    differ = [
        f"{key} {value!r} (run.json: {info.get(key)!r})"
        for key, value in given.items()
        if value is not None and info.get(key) != value
    ]
    if differ:
        raise RunError(
            f"{run_dir}: {how} with the run's settings, and these differ from its "
            f"{RUN_INFO_NAME}: {', '.join(differ)}; leave them out or start a new run"
        )
