"""The output guard: no output replaces an input or a training run's file without --force."""

import os

import pytest

from csgaussian.scene.io import RUN_FILES, RUN_INFO_NAME, OutputError, check_output


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in RUN_FILES:
        (run / name).write_text(name)
    return run


def test_an_input_is_refused_through_symlinks_and_hard_links(tmp_path):
    source = tmp_path / "a.csg"
    source.write_bytes(b"CSGS")
    with pytest.raises(OutputError, match="is the input"):
        check_output(source, [source])
    (tmp_path / "link.csg").symlink_to(source)
    with pytest.raises(OutputError, match="is the input"):
        check_output(tmp_path / "link.csg", [source])
    os.link(source, tmp_path / "hard.csg")
    with pytest.raises(OutputError, match="is the input"):
        check_output(tmp_path / "hard.csg", [source])
    with pytest.raises(OutputError, match="is the input"):
        check_output(tmp_path / "sub" / ".." / "a.csg", [None, source])
    check_output(tmp_path / "b.csg", [source, None])
    check_output(source, [source], force=True)


def test_a_runs_files_and_the_run_itself_are_refused(run, tmp_path):
    for name in RUN_FILES:
        with pytest.raises(OutputError, match=f"is {name} of the training run") as refused:
            check_output(run / name, [])
        assert "--force" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(OutputError, match=f"training run directory \\(it holds {RUN_INFO_NAME}"):
        check_output(run, [])
    (tmp_path / "alias").symlink_to(run)
    with pytest.raises(OutputError, match="training run"):
        check_output(tmp_path / "alias" / "scene.pt", [])
    check_output(run / "my.csg", [run])  # a new file in a run is fine
    check_output(run, [tmp_path / "data"], run_dir=True)  # train writes its own run
    with pytest.raises(OutputError, match="is the input"):
        check_output(tmp_path / "data", [tmp_path / "data"], run_dir=True)
    check_output(run / "scene.pt", [], force=True)
