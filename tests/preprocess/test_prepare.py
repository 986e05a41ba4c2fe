"""Language features prepared from instance maps: one mask per object, its name's embedding."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from csgaussian.data import load_scene
from csgaussian.preprocess.features import LEVELS, read_features, view_stem
from csgaussian.preprocess.prepare import prepare_features, read_text_space
from csgaussian.semantics.encoders import EncoderError, HashEncoder
from csgaussian.types import DataError


@pytest.fixture
def scene(tiny_scene, tmp_path):
    """The tiny built-in scene with object 3 painted over by the background in train view 1."""
    root = shutil.copytree(tiny_scene, tmp_path / "scene")
    path = root / "instance" / "train_001.png"
    instance = np.asarray(Image.open(path))
    Image.fromarray(np.where(instance == 3, 0, instance).astype(np.uint8)).save(path)
    return root


def test_prepare_writes_one_mask_per_object_with_its_name_embedding(scene, tmp_path):
    out = tmp_path / "language_features"
    summary = prepare_features(scene, out, encoder="hash")
    data = load_scene(scene)
    texts = ["background", *data.class_names]
    expected_masks = sum(len(np.unique(v.instance.numpy())) for v in data.train)
    assert expected_masks == 6 * len(texts) - 1  # object 3 is absent from one view
    assert summary["views"] == len(data.train) == 6
    assert summary["skipped_views"] == 2  # test views r_000, r_001 share the train views' stems
    assert summary["masks"] == expected_masks
    assert (summary["text_space"], summary["dim"]) == ("hash:v1:64", 64)
    assert summary["seconds"] >= 0
    embedding = HashEncoder().encode(texts)  # [1 + classes, 64], row i = text of instance i
    stems = [view_stem(v.image_path) for v in data.train]
    for level in LEVELS:
        masks = read_features(out, stems, level=level)
        for view in data.train:
            got = masks[view_stem(view.image_path)]
            instance = view.instance.numpy()
            present = np.unique(instance)
            assert len(got.features) == len(present)
            np.testing.assert_array_equal(present[got.ids], instance)
            np.testing.assert_array_equal(got.features, embedding[present])


def test_encoder_file_records_the_text_space(scene, tmp_path):
    out = tmp_path / "lf"
    assert read_text_space(out) is None  # unknown, e.g. features brought by the user
    prepare_features(scene, out, encoder="hash:v1:16")
    meta = json.loads((out / "encoder.json").read_text())
    assert meta == {"text_space": "hash:v1:16", "dim": 16, "level_names": list(LEVELS)}
    assert read_text_space(out) == "hash:v1:16"
    (out / "encoder.json").write_text('{"dim": 16}')
    with pytest.raises(DataError, match="encoder.json: missing string 'text_space'"):
        read_text_space(out)


def test_dataset_without_instance_maps_is_refused(scene, tmp_path):
    shutil.rmtree(scene / "instance")
    out = tmp_path / "lf"
    with pytest.raises(DataError, match="no instance maps; give --features") as info:
        prepare_features(scene, out, encoder="hash")
    assert str(scene) in str(info.value)
    with pytest.raises(EncoderError, match="unknown text encoder 'clip'"):
        prepare_features(scene, out, encoder="clip")
    assert not out.exists()


def test_prepare_matches_the_training_resolution(scene, tmp_path):
    """Masks for a --downscale 2 run are written at the downscaled image size."""
    prepare_features(scene, tmp_path / "half", "hash", downscale=2)
    view = load_scene(scene, downscale=2, load_instances=False).train[0]
    masks = read_features(tmp_path / "half", [view_stem(view.image_path)])
    assert masks[view_stem(view.image_path)].ids.shape == (view.camera.height, view.camera.width)
