"""A training run directory as the trainer and the receiver both read it: its file names (the
constants of :mod:`csgaussian.scene.io`, their single source), its settings (``run.json``) and
its trained scene (``scene.pt``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .dataclass_io import dataclass_from_dict
from .entropy.anchors import AnchorEntropyModel
from .scene.io import (
    BASE_REPORT_NAME,
    BASE_STREAM_NAME,
    CHECKPOINT_NAME,
    FEATURES_DIR_NAME,
    RUN_INFO_NAME,
    SCENE_NAME,
    SEMANTIC_CHECKPOINT_NAME,
    STREAM_NAME,
    STREAM_REPORT_NAME,
    RunError,
    load_torch,
    model_from_state,
    read_run_info,
    write_run_info,
)
from .scene.scaffold import ScaffoldModel


@dataclass
class RunSettings:
    """The settings a run records in ``run.json``: what ``csgaussian train`` was given, a
    left-out setting filled from ``train.stages.DEFAULT_SETTINGS`` (or ``None``: the preset's).
    The fields' order is the file's."""

    data: str | None = None
    """The dataset folder (resolved)."""
    downscale: int | None = None
    preset: str | None = None
    iterations: int | None = None
    """Stage-1 iterations (None: the preset's)."""
    lambda_rate: float | None = None
    """The rate weight (None: the preset's; 0: no rate term, no stream)."""
    hyperprior: str | None = None
    features: str | None = None
    """A LangSplat features folder (None: prepared into the run from instance maps)."""
    encoder: str | None = None
    level: str | None = None
    seed: int | None = None
    stages: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, info: dict[str, Any], source: Path | str = RUN_INFO_NAME) -> RunSettings:
        """The settings of a ``run.json`` dict; RunError naming ``source`` for an unknown key."""
        try:
            return dataclass_from_dict(cls, info)
        except ValueError as err:
            raise RunError(f"{source}: {err}") from None


@dataclass(frozen=True)
class RunDir:
    """A run directory: the paths of its files and its settings."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def info(self) -> Path:
        return self.path / RUN_INFO_NAME

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def scene(self) -> Path:
        return self.path / SCENE_NAME

    @property
    def base_stream(self) -> Path:
        return self.path / BASE_STREAM_NAME

    @property
    def base_report(self) -> Path:
        return self.path / BASE_REPORT_NAME

    @property
    def semantic_checkpoint(self) -> Path:
        return self.path / SEMANTIC_CHECKPOINT_NAME

    @property
    def features_dir(self) -> Path:
        return self.path / FEATURES_DIR_NAME

    @property
    def stream(self) -> Path:
        return self.path / STREAM_NAME

    @property
    def stream_report(self) -> Path:
        return self.path / STREAM_REPORT_NAME

    def is_run(self) -> bool:
        """Whether the directory holds ``run.json``."""
        return self.path.is_dir() and self.info.is_file()

    def read_settings(self) -> RunSettings:
        """The settings the run was started with; RunError if it is not a run."""
        return RunSettings.from_dict(read_run_info(self.path), self.info)

    def write_settings(self, settings: RunSettings) -> None:
        """Record ``settings`` in ``run.json`` (atomically)."""
        write_run_info(self.path, settings.to_dict())


def load_trained(source: str | Path) -> tuple[ScaffoldModel, AnchorEntropyModel | None]:
    """The trained scene of a run directory (or ``scene.pt``) and its entropy model, if any."""
    source = Path(source)
    path = source / SCENE_NAME if source.is_dir() else source
    if source.is_dir() and not path.is_file():
        raise RunError(f"{source}: no trained scene yet ({SCENE_NAME} missing; train or --resume)")
    model, entropy = model_from_state(load_torch(path), path)
    model.eval()
    return model, entropy
