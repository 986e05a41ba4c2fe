"""A run's settings: --resume never silently changes them, and run.json is written only once
the inputs are found valid."""

import shutil
from pathlib import Path

import pytest

from csgaussian import api
from csgaussian.cli import main
from csgaussian.scene.io import RunError


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def test_resume_refuses_settings_that_differ_from_run_json(run_copy, tmp_path, capsys):
    info = (run_copy / "run.json").read_bytes()
    argv = ["train", str(tmp_path / "nonexistent"), "-o", str(run_copy), "--resume"]
    argv += ["--preset", "paper", "--iterations", "99999", "--lambda", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--resume continues with the run's settings" in err
    for named in (
        "data '",
        "preset 'paper' (run.json: 'tiny')",
        "iterations 99999",
        "lambda_rate 5",
    ):
        assert named in err, err
    with pytest.raises(RunError, match="encoder 'minilm' \\(run.json: 'hash'\\)"):
        api.train(None, run_copy, resume=True, encoder="minilm", quiet=True)
    with pytest.raises(RunError, match="stages \\[1\\]"):
        api.train(None, run_copy, resume=True, stages="1", quiet=True)
    with pytest.raises(RunError, match="--stages 2,3 continues .* downscale 2 \\(run.json: 1\\)"):
        api.train(None, run_copy, stages="2,3", downscale=2, quiet=True)
    assert (run_copy / "run.json").read_bytes() == info


def test_a_bad_features_folder_leaves_run_json_as_it_was(run_copy, tiny_scene, tmp_path, capsys):
    info = (run_copy / "run.json").read_bytes()
    (run_copy / "semantic_checkpoint.pt").unlink(missing_ok=True)
    argv = ["train", "-o", str(run_copy), "--stages", "2,3", "--features", str(tmp_path / "no")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "language features folder is missing" in err, err
    assert (run_copy / "run.json").read_bytes() == info
    new_run = tmp_path / "new"
    argv = ["train", str(tiny_scene), "-o", str(new_run), "--preset", "tiny"]
    assert main([*argv, "--features", str(tmp_path / "no")]) == 2
    assert not (new_run / "run.json").exists()
    assert main(["train", str(tmp_path / "nowhere"), "-o", str(new_run)]) == 2
    assert not new_run.exists()
