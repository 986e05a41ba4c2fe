"""Scene files and run settings: torch-serialised scenes (written atomically, read without
pickle code) and the ``run.json`` a run directory is recognised by.

A receiver (decode, render, query, edit) reads and writes scenes through this module; nothing
here belongs to training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..dataclass_io import dataclass_from_dict
from ..entropy.anchors import AnchorEntropyModel, RateConfig
from ..fileio import atomic_write, write_bytes_atomic
from .scaffold import AnchorGrid, ScaffoldConfig, ScaffoldModel

SCENE_NAME = "scene.pt"
RUN_INFO_NAME = "run.json"
STREAM_NAME = "stream.csg"
"""A run's progressive stream, written when stages 2-3 finish (last, after its report)."""
STREAM_REPORT_NAME = "stream.json"
"""Section sizes and estimates of ``STREAM_NAME``."""
CHECKPOINT_NAME = "checkpoint.pt"
"""Stage 1's checkpoint."""
BASE_STREAM_NAME = "base.csg"
"""The base layer stages 2-3 learn on."""
BASE_REPORT_NAME = "base.json"
"""Estimated bits of ``BASE_STREAM_NAME``."""
SEMANTIC_CHECKPOINT_NAME = "semantic_checkpoint.pt"
"""Stages 2-3's checkpoint."""
FEATURES_DIR_NAME = "language_features"
"""Masks and language features prepared into a run from the dataset's instance maps."""
RUN_FILES = (
    RUN_INFO_NAME,
    CHECKPOINT_NAME,
    SCENE_NAME,
    BASE_STREAM_NAME,
    BASE_REPORT_NAME,
    SEMANTIC_CHECKPOINT_NAME,
    FEATURES_DIR_NAME,
    STREAM_REPORT_NAME,
    STREAM_NAME,
)
"""Everything a run directory holds: no command's output may replace one (``check_output``)."""


class RunError(ValueError):
    """A run directory or scene file that cannot be used; the message names the file."""


class OutputError(ValueError):
    """An output path that would replace an input or a training run's file."""


def check_output(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    force: bool = False,
    run_dir: bool = False,
) -> None:
    """Refuse (OutputError, one line) an ``output`` that resolves to one of the ``inputs``
    (through symlinks, or the same file through a hard link) or to a training run's file or
    directory, unless ``force``.

    ``run_dir``: the output is itself a run directory (``train``), whose files it may write.
    """
    if force:
        return
    output = Path(output)
    target = Path(os.path.realpath(output))
    for source in inputs:
        if source is not None and _same(target, Path(source)):
            raise OutputError(
                f"{output}: is the input {source}; give another output path (or --force)"
            )
    if run_dir:
        return
    if target.name in RUN_FILES and (target.parent / RUN_INFO_NAME).is_file():
        raise OutputError(
            f"{output}: is {target.name} of the training run {target.parent}; give another "
            "output path (or --force)"
        )
    if (target / RUN_INFO_NAME).is_file():
        raise OutputError(
            f"{output}: is a training run directory (it holds {RUN_INFO_NAME}); give another "
            "output path (or --force)"
        )


def _same(target: Path, source: Path) -> bool:
    if target == Path(os.path.realpath(source)):
        return True
    try:
        return os.path.samefile(target, source)
    except OSError:  # one of them does not exist (yet)
        return False


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    """A run's settings (``run.json``), written atomically."""
    write_bytes_atomic(run_dir / RUN_INFO_NAME, json.dumps(info, indent=2).encode())


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The settings a run was started with; RunError if ``run_dir`` is not a run."""
    path = run_dir / RUN_INFO_NAME
    if not path.is_file():
        raise RunError(f"{run_dir}: not a csgaussian run directory (no {RUN_INFO_NAME})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: malformed JSON ({err.msg}, line {err.lineno})") from None


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle))


def load_torch(path: Path) -> Any:
    if not path.is_file():
        raise RunError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise RunError(f"{path}: not a readable csgaussian file ({type(err).__name__})") from None


def scene_state(model: ScaffoldModel, entropy: AnchorEntropyModel | None) -> dict[str, Any]:
    """What a trained scene needs to render and to be encoded: configs and tensors."""
    return {
        "format": "csgaussian-scene",
        "scaffold": asdict(model.config),
        "grid": asdict(model.grid),
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "rate": None if entropy is None else asdict(entropy.config),
        "entropy": None if entropy is None else entropy.state_dict(),
    }


def model_from_state(
    state: dict[str, Any], source: Path
) -> tuple[ScaffoldModel, AnchorEntropyModel | None]:
    """Rebuild the scene (and its entropy model, if it was trained with one)."""
    try:
        config = ScaffoldConfig(**state["scaffold"])
        grid = AnchorGrid(**{**state["grid"], "origin": tuple(state["grid"]["origin"])})
        tensors = state["state"]
        model = ScaffoldModel(tensors["anchor_cells"], grid, config)
        model.load_state_dict(tensors)
        entropy = None
        if state.get("rate") is not None:
            entropy = AnchorEntropyModel(model, dataclass_from_dict(RateConfig, state["rate"]))
            entropy.load_state_dict(state["entropy"])
    except (KeyError, TypeError, RuntimeError) as err:
        raise RunError(f"{source}: not a csgaussian scene ({type(err).__name__}: {err})") from None
    return model, entropy
