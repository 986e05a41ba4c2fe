"""Training: it learns, it checkpoints atomically, and resuming after a crash loses nothing."""

import json
from pathlib import Path

import pytest
import torch

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.scene.io import SCENE_NAME, load_torch
from csgaussian.train.config import PRESETS, TrainConfig, preset
from csgaussian.train.loop import CHECKPOINT_NAME, Trainer


def test_presets_keep_the_papers_schedule_proportions():
    paper = PRESETS["paper"]
    assert paper.iterations == 40_000 and paper.mask_start == 3_000  # supp A.2
    assert paper.semantic.stage2_iterations == 40_000  # supp A.2
    assert paper.semantic.stage3_iterations == 30_000  # supp A.2
    assert paper.rate_start == 10_000  # hyperprior MLP #1 from 10k [supp A.2]
    assert paper.rate_start < paper.round_start < paper.iterations
    assert paper.lr.color_mlp == 0.008  # the rates that trained well here
    table1 = PRESETS["paper-table1"]
    assert table1.lr.offsets == 0.01 and table1.lr.color_mlp == 0.08  # supp Table 1
    scaled = paper.with_iterations(4_000)
    assert scaled.mask_start == 300 and scaled.rate_start == 1_000
    assert scaled.densify.until == 1_500
    changed = scaled.to_dict()
    changed["lr"]["offsets"] = 0.0123  # a nested value survives the round trip
    assert TrainConfig.from_dict(changed).lr.offsets == 0.0123
    assert TrainConfig.from_dict(changed).mask_start == scaled.mask_start
    changed["lr"]["ofsets"] = 0.01  # a misspelt key is refused, not dropped
    with pytest.raises(ValueError, match="ofsets"):
        TrainConfig.from_dict(changed)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_training_improves_the_fit(tiny_scene, tmp_path):
    scene = load_scene(tiny_scene, load_instances=False)
    trainer = Trainer(scene, preset("tiny", iterations=100), tmp_path)
    first = [trainer.step().psnr for _ in range(6)]
    for _ in range(88):
        trainer.step()
    last = [trainer.step().psnr for _ in range(6)]
    assert sum(last) / 6 > sum(first) / 6 + 1.0  # PSNR gains over a dB in 100 iterations


def test_resume_after_a_crash_equals_an_uninterrupted_run(tiny_scene, tmp_path, monkeypatch):
    straight = api.train(tiny_scene, tmp_path / "straight", preset="tiny", quiet=True, stages="1")

    crash_at = PRESETS["tiny"].checkpoint_every + 5
    original_step = Trainer.step

    def crashing_step(self):
        if self.iteration == crash_at:
            raise KeyboardInterrupt
        return original_step(self)

    monkeypatch.setattr(Trainer, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        api.train(tiny_scene, tmp_path / "resumed", preset="tiny", quiet=True, stages="1")
    checkpoint = load_torch(tmp_path / "resumed" / CHECKPOINT_NAME)
    assert checkpoint["iteration"] == PRESETS["tiny"].checkpoint_every
    assert not (tmp_path / "resumed" / SCENE_NAME).exists()
    monkeypatch.setattr(Trainer, "step", original_step)
    resumed = api.train(None, tmp_path / "resumed", resume=True, quiet=True).colour

    assert resumed.iterations == straight.colour.iterations
    a, b = load_torch(straight.colour.scene_path), load_torch(resumed.scene_path)
    for part in ("state", "entropy"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), name


def test_checkpoints_leave_no_temporary_files(tiny_run: Path):
    leftovers = [p.name for p in tiny_run.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["preset"] == "tiny"


def test_a_new_training_never_overwrites_an_existing_run(tiny_run, tiny_scene):
    before = (tiny_run / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match="already holds a run"):
        api.train(tiny_scene, tiny_run, preset="tiny", quiet=True)
    assert (tiny_run / CHECKPOINT_NAME).read_bytes() == before


def test_resume_without_a_run_directory_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="not a csgaussian run directory"):
        api.train(None, tmp_path / "nothing", resume=True)
