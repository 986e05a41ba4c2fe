"""Stages 2-3 on what SAM really gives: views without masks, one mask over everything,
fragments, and levels that disagree; training and association must not break."""

import shutil

import numpy as np
import torch

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.preprocess.features import view_stem, write_view
from csgaussian.preprocess.prepare import ENCODER_FILE
from csgaussian.scene.io import RUN_INFO_NAME, SCENE_NAME
from csgaussian.semantics.encoders import HashEncoder
from csgaussian.train.loop import CHECKPOINT_NAME


def test_degenerate_masks_train_and_decode(tiny_run, tiny_scene, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in (RUN_INFO_NAME, CHECKPOINT_NAME, SCENE_NAME):
        shutil.copy(tiny_run / name, run / name)
    encoder = HashEncoder(16)
    rows = encoder.encode(["background", "a", "b", "c", "d", "e", "f", "g"])
    features = tmp_path / "language_features"
    rng = np.random.default_rng(0)
    for k, view in enumerate(load_scene(tiny_scene).train):
        instance = view.instance.numpy()
        h, w = instance.shape
        if k == 0:  # no mask at all
            ids, feats = -np.ones((h, w), np.int64), rows[:0]
        elif k == 1:  # one mask over everything, background included
            ids, feats = np.zeros((h, w), np.int64), rows[:1]
        elif k == 2:  # fragments: every 4x4 block its own mask with a random object's text
            blocks = (np.arange(h)[:, None] // 4) * ((w + 3) // 4) + np.arange(w)[None, :] // 4
            ids = blocks
            feats = rows[rng.integers(0, len(rows), blocks.max() + 1)]
        else:  # the true masks with a share of them missing
            present, local = np.unique(instance, return_inverse=True)
            ids = local.reshape(h, w)
            ids[np.isin(ids, [1, 2])] = -1
            feats = rows[present % len(rows)]
        level_ids = [ids, -np.ones((h, w), np.int64), ids, ids]
        level_feats = [feats, rows[:0], feats, feats]
        write_view(features, view_stem(view.image_path), level_ids, level_feats)
    (features / ENCODER_FILE).write_text(f'{{"text_space": "{encoder.name}"}}')
    result = api.train(None, run, preset="tiny", stages="2,3", features=features, quiet=True)
    assert result.semantic is not None
    scene = api.decode(run / "stream.csg")
    layer = scene.semantics
    assert torch.isfinite(layer.slot_features(scene.model)).all()
    assert torch.isfinite(layer.language).all()
    report = api.evaluate(run / "stream.csg", tiny_scene)
    for protocol in report["protocols"].values():
        assert 0.0 <= protocol["miou"] <= 1.0
