"""The three training stages of a run directory, in order, each resumable (METHOD §3-§5).

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
from ..progress import TrainProgress
from ..scene.io import (
    SCENE_NAME,
    STREAM_NAME,
    STREAM_REPORT_NAME,
    RunError,
    load_torch,
    model_from_state,
    read_run_info,
    write_run_info,
)
from ..semantics.encoders import EXTERNAL_SPACE
from ..semantics.features import read_features, view_stem
from ..semantics.prepare import prepare_features, read_text_space
from ..types import Camera
from .config import TrainConfig
from .config import preset as preset_config
from .loop import CHECKPOINT_NAME, Trainer, TrainResult, torch_threads
from .semantic import (
    BASE_STREAM_NAME,
    SEMANTIC_CHECKPOINT_NAME,
    SemanticResult,
    SemanticTrainer,
)

STAGES = (1, 2, 3)
FEATURES_DIR_NAME = "language_features"
BASE_REPORT_NAME = "base.json"


@dataclass
class RunResult:
    """What ``train`` reports: the stages it ran."""

    colour: TrainResult | None
    semantic: SemanticResult | None


def training_config(info: dict[str, Any]) -> TrainConfig:
    """The configuration a run's settings (``run.json``) stand for."""
    config = preset_config(info["preset"], info.get("iterations"))
    lambda_rate, hyperprior = info.get("lambda_rate"), info.get("hyperprior")
    if lambda_rate is not None and lambda_rate < 0:
        raise ValueError(f"--lambda must be >= 0, got {lambda_rate}")
    if info.get("level") is not None:
        config = replace(config, semantic=replace(config.semantic, level=info["level"]))
    if info.get("seed") is not None:
        seed = info["seed"]
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
    info: dict[str, Any],
    stages: tuple[int, ...],
    resume: bool,
    quiet: bool,
) -> RunResult:
    """Run ``stages`` of the run in ``run_dir`` with the settings ``info``."""
    config = training_config(info)
    if 2 in stages and config.rate is None:
        raise RunError(
            f"{run_dir}: --lambda 0 trains no base layer for stages 2-3 to learn on; "
            "give --stages 1 for the uncompressed baseline"
        )
    scene = load_scene(info["data"], downscale=info["downscale"], load_instances=False)
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
    info: dict[str, Any],
    config: TrainConfig,
    scene: Any,
    resume: bool,
    quiet: bool,
) -> SemanticResult:
    if not (run_dir / SCENE_NAME).is_file():
        raise RunError(f"{run_dir}: stage 1 is not finished ({SCENE_NAME} missing)")
    if (run_dir / SEMANTIC_CHECKPOINT_NAME).is_file() and not resume:
        raise RunError(
            f"{run_dir}: stages 2-3 already started; continue with --resume or use a new run"
        )
    _write_base_layer(run_dir, MIN_SLOT_SHARE, [view.camera for view in scene.train])
    features_dir, text_space = _features(run_dir, info)
    sizes = {view_stem(view.image_path): tuple(view.image.shape[:2]) for view in scene.train}
    masks = read_features(features_dir, list(sizes), config.semantic.level, sizes)
    if text_space is None:
        text_space = f"{EXTERNAL_SPACE}:{next(iter(masks.values())).features.shape[1]}"
    started = time.perf_counter()
    with torch_threads(config.torch_threads):
        trainer = SemanticTrainer(scene, masks, text_space, config.semantic, run_dir)
        if resume and (run_dir / SEMANTIC_CHECKPOINT_NAME).is_file():
            trainer.load_checkpoint()
        cfg = config.semantic
        for stage, total in ((2, cfg.stage2_iterations), (3, cfg.stage3_iterations)):
            if trainer.stage > stage:
                continue
            with TrainProgress(total, quiet=quiet, description=f"stage {stage}") as progress:
                trainer.run_stage(stage, progress)
        data, report = trainer.finish()
    base_estimates = json.loads((run_dir / BASE_REPORT_NAME).read_text())
    report["estimated_bits"] = {**base_estimates, **report["estimated_bits"]}
    write_bytes_atomic(run_dir / STREAM_REPORT_NAME, json.dumps(report, indent=2).encode())
    write_bytes_atomic(run_dir / STREAM_NAME, data)  # last: its presence means the run is done
    base_bytes = (run_dir / BASE_STREAM_NAME).stat().st_size
    return SemanticResult(
        stage2_iterations=cfg.stage2_iterations,
        stage3_iterations=cfg.stage3_iterations,
        seconds=time.perf_counter() - started,
        semantic_bytes=len(data) - base_bytes,
        base_bytes=base_bytes,
        n_leaves_matched=report["n_leaves_matched"],
        n_language_entries=report["n_language_entries"],
        stream_path=run_dir / STREAM_NAME,
    )


def _write_base_layer(run_dir: Path, min_slot_share: float, cameras: list[Camera]) -> None:
    """Encode stage 1's scene into ``base.csg`` once (with its estimated bits in ``base.json``
    and a few of the training ``cameras``): stages 2-3 learn on its decoded scene."""
    path = run_dir / BASE_STREAM_NAME
    if path.is_file():
        return
    model, entropy = model_from_state(load_torch(run_dir / SCENE_NAME), run_dir / SCENE_NAME)
    encoded = encode_scene(model, entropy, min_slot_share, cameras)
    estimates = json.dumps(encoded.estimated_bits).encode()
    write_bytes_atomic(run_dir / BASE_REPORT_NAME, estimates)
    write_bytes_atomic(path, encoded.data)


def _features(run_dir: Path, info: dict[str, Any]) -> tuple[Path, str | None]:
    """The language-feature folder and its text space: the user's, or prepared into the run.

    Brought features without ``encoder.json`` (LangSplat's CLIP files) have an unknown space
    (None); the run names it ``external:<D>`` and queries it through a text-feature cache.
    """
    if info.get("features"):
        features_dir = Path(info["features"])
    else:
        features_dir = run_dir / FEATURES_DIR_NAME
        if read_text_space(features_dir) is None:
            encoder = info.get("encoder") or "minilm"
            prepare_features(info["data"], features_dir, encoder, info["downscale"])
    return features_dir, read_text_space(features_dir)


def new_run_info(data: str | Path, **settings: Any) -> dict[str, Any]:
    """The settings a new run records in ``run.json``."""
    return {"data": str(Path(data).resolve()), **settings}


def start_or_resume(
    data: str | Path | None,
    run_dir: Path,
    stages: tuple[int, ...],
    resume: bool,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Validate the run directory for the requested stages and return its settings."""
    if resume:
        return read_run_info(run_dir)
    if 1 in stages:
        if (run_dir / CHECKPOINT_NAME).is_file():
            raise RunError(
                f"{run_dir}: already holds a run; continue it with --resume or use a new directory"
            )
        if data is None:
            raise ValueError("give the dataset to train from")
        info = new_run_info(data, **settings)
        write_run_info(run_dir, info)
        return info
    info = read_run_info(run_dir)
    semantic_settings = {
        k: settings[k] for k in ("features", "encoder", "level", "seed") if k in settings
    }
    info.update({k: v for k, v in semantic_settings.items() if v is not None})
    info["stages"] = list(stages)
    write_run_info(run_dir, info)
    return info
