"""Text-feature caches ({text: vector} JSON) as the query encoder; brought features without a
named text space."""

import json
import shutil

import numpy as np
import pytest

from csgaussian import api
from csgaussian.cli import main
from csgaussian.data import load_scene
from csgaussian.eval.segmentation import RELEVANCY_NEGATIVES
from csgaussian.preprocess.features import LEVELS, view_stem, write_view
from csgaussian.scene.io import RUN_INFO_NAME, SCENE_NAME
from csgaussian.semantics.encoders import (
    CachedTextEncoder,
    EncoderError,
    HashEncoder,
    get_text_encoder,
)
from csgaussian.train.loop import CHECKPOINT_NAME


def _cache(path, encoder, texts):
    rows = encoder.encode(texts)
    path.write_text(json.dumps({t: (3 * r).tolist() for t, r in zip(texts, rows, strict=True)}))
    return path


def test_cache_rows_are_normalised_and_a_missing_text_is_one_line(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"cup": [3.0, 4.0], "plate": [0, 2]}))
    encoder = CachedTextEncoder(path)
    assert encoder.dim == 2
    np.testing.assert_allclose(encoder.encode(["plate", "cup"]), [[0, 1], [0.6, 0.8]])
    with pytest.raises(EncoderError, match="no feature for 'spoon'") as info:
        encoder.encode(["cup", "spoon"])
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[1, 2]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        ('{"a": [1, 2], "b": [1]}', "'b' has 1 values, the first text 2"),
        ('{"a": [0, 0]}', "zero or has a NaN"),
        ('{"a": ["x"]}', "list of numbers"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_caches_are_refused(tmp_path, content, problem):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(EncoderError, match=problem):
        CachedTextEncoder(path)


def test_eval_with_a_cache_of_the_streams_space_gives_the_same_figures(
    tiny_run, tiny_scene, tiny_names, tmp_path, capsys
):
    stream = str(tiny_run / "stream.csg")
    names = tiny_names
    encoder = get_text_encoder(api.decode(stream).semantics.text_space)
    cache = _cache(tmp_path / "t.json", encoder, [*names, *RELEVANCY_NEGATIVES])
    assert main(["eval", stream, str(tiny_scene), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)["protocols"]
    assert main(["eval", stream, str(tiny_scene), "--json", "--text-features", str(cache)]) == 0
    cached = json.loads(capsys.readouterr().out)["protocols"]
    for name in plain:
        assert cached[name]["miou"] == pytest.approx(plain[name]["miou"], abs=1e-6)
    short = _cache(tmp_path / "short.json", encoder, names[1:])
    assert main(["eval", stream, str(tiny_scene), "--text-features", str(short)]) == 2
    assert f"no feature for '{names[0]}'" in capsys.readouterr().err
    wrong_dim = _cache(tmp_path / "wide.json", HashEncoder(encoder.dim + 1), names)
    args = ["query", stream, names[0], "--data", str(tiny_scene)]
    assert main([*args, "--text-features", str(wrong_dim)]) == 2
    assert f"gives {encoder.dim + 1}" in capsys.readouterr().err


def test_brought_features_without_a_text_space_train_and_query_through_a_cache(
    tiny_run, tiny_scene, tiny_names, tmp_path, capsys
):
    """LangSplat-layout files at half the image resolution and no encoder.json: stages 2-3 run
    (masks resized), the stream's space is external:<D>, and a query needs a cache."""
    run = tmp_path / "run"
    run.mkdir()
    for name in (RUN_INFO_NAME, CHECKPOINT_NAME, SCENE_NAME):
        shutil.copy(tiny_run / name, run / name)
    names = tiny_names
    encoder = HashEncoder(16)
    texts = ["background", *names]
    rows = encoder.encode(texts)
    features = tmp_path / "language_features"
    for view in load_scene(tiny_scene).train:
        ids = view.instance.numpy()[::2, ::2]
        present, local = np.unique(ids, return_inverse=True)
        local = local.reshape(ids.shape)
        write_view(features, view_stem(view.image_path), [local] * 4, [rows[present]] * 4)
    api.train(
        None, run, preset="tiny", stages="2,3", features=features, level=LEVELS[2], quiet=True
    )
    scene = api.decode(run / "stream.csg")
    assert scene.semantics.text_space == "external:16"
    stream = str(run / "stream.csg")
    assert main(["query", stream, names[0], "--data", str(tiny_scene)]) == 2
    assert "give --text-features" in capsys.readouterr().err
    cache = _cache(tmp_path / "t.json", encoder, texts)
    assert (
        main(["query", stream, names[0], "--data", str(tiny_scene), "--text-features", str(cache)])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["text"] == names[0]
