"""Shared fixtures: a tiny built-in scene and a tiny trained run, made once per session."""

from pathlib import Path

import pytest
import torch

from csgaussian import api
from csgaussian.data.masks import read_class_names
from csgaussian.data.synthetic import SyntheticConfig, generate_scene

TINY_SCENE = SyntheticConfig(width=48, height=40, n_train=6, n_test=2, seed=3)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run small tensors: one torch thread avoids OpenMP contention with numba's pool."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    return generate_scene(tmp_path_factory.mktemp("scene") / "tiny", TINY_SCENE)


@pytest.fixture(scope="session")
def tiny_names(tiny_scene) -> list[str]:
    """The tiny scene's object names (its ``segmentations/classes.txt``)."""
    return read_class_names(tiny_scene / "segmentations" / "classes.txt")


@pytest.fixture(scope="session")
def tiny_run(tiny_scene, tmp_path_factory) -> Path:
    """A run of the ``tiny`` preset (rate term on, all three stages, the hash text encoder) on
    the tiny scene."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    api.train(tiny_scene, run, preset="tiny", quiet=True, encoder="hash")
    return run
