"""A training run directory as the receiver and the trainer both read it: its trained scene
(``scene.pt``), the file names and the settings of ``scene.io``."""

from __future__ import annotations

from pathlib import Path

from .entropy.anchors import AnchorEntropyModel
from .scene.io import SCENE_NAME, RunError, load_torch, model_from_state
from .scene.scaffold import ScaffoldModel


def load_trained(source: str | Path) -> tuple[ScaffoldModel, AnchorEntropyModel | None]:
    """The trained scene of a run directory (or ``scene.pt``) and its entropy model, if any."""
    source = Path(source)
    path = source / SCENE_NAME if source.is_dir() else source
    if source.is_dir() and not path.is_file():
        raise RunError(f"{source}: no trained scene yet ({SCENE_NAME} missing; train or --resume)")
    model, entropy = model_from_state(load_torch(path), path)
    model.eval()
    return model, entropy
