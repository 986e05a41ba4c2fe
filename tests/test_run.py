"""The run directory's names and settings (csgaussian/run.py)."""

from __future__ import annotations

import json

import pytest

from csgaussian.run import RunDir, RunSettings
from csgaussian.scene.io import RUN_FILES, RunError


def test_run_dir_names_every_run_file(tmp_path) -> None:
    run = RunDir(tmp_path)
    paths = {
        run.info,
        run.checkpoint,
        run.scene,
        run.base_stream,
        run.base_report,
        run.semantic_checkpoint,
        run.features_dir,
        run.stream,
        run.stream_report,
    }
    assert {path.name for path in paths} == set(RUN_FILES)
    assert all(path.parent == tmp_path for path in paths)


def test_settings_round_trip_through_run_json(tmp_path) -> None:
    run = RunDir(tmp_path)
    assert not run.is_run()
    settings = RunSettings(data="/d", downscale=2, preset="tiny", lambda_rate=0.0, stages=[1])
    run.write_settings(settings)
    assert run.is_run() and run.read_settings() == settings
    assert list(json.loads(run.info.read_text())) == list(settings.to_dict())


def test_settings_of_an_older_run_json_default_to_none(tmp_path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"data": "/d", "downscale": 1}))
    settings = RunDir(tmp_path).read_settings()
    assert settings.data == "/d" and settings.seed is None and settings.stages is None


def test_unknown_setting_is_refused_naming_the_file(tmp_path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"data": "/d", "lamda": 1}))
    with pytest.raises(RunError, match=r"run\.json: unknown RunSettings field\(s\): lamda"):
        RunDir(tmp_path).read_settings()
