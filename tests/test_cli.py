"""The command line: each command through ``main(argv)``, and one-line errors for bad input."""

import json
import os
import shutil
import zlib
from pathlib import Path

import pytest
import torch

from csgaussian import api
from csgaussian.cli import main
from csgaussian.codec.budget import DEFAULT_MAX_MEMORY, resolve_limit
from csgaussian.codec.container import (
    StreamError,
    read_container,
    section_layers,
    write_container,
)
from csgaussian.codec.stream import with_edits
from csgaussian.ply import read_gaussians_ply
from csgaussian.scene.edits import SceneEdit

GOLDEN = Path(__file__).parent / "codec" / "golden" / "tiny.csg"


def test_eval_json_reports_honest_metrics(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lpips"] is None  # no LPIPS weights on disk: never a made-up number
    assert 5 < report["psnr"] < 60 and 0 < report["ssim"] <= 1
    assert report["n_anchors"] > 0 and report["n_gaussians"] > 0 and report["seconds"] > 0


def test_encode_decode_render_and_eval_from_the_stream(tiny_run, tiny_scene, tmp_path, capsys):
    stream = tmp_path / "scene.csg"
    assert main(["encode", str(tiny_run), "-o", str(stream)]) == 0
    assert "positions" in capsys.readouterr().err
    decode = ["decode", str(stream), "-o", str(tmp_path / "decoded"), "--fit-iterations", "5"]
    assert main(decode) == 0
    ply = read_gaussians_ply(tmp_path / "decoded" / "scene.ply")
    assert ply["means"].shape[0] > 0
    assert main(["render", str(stream), "--data", str(tiny_scene), "-o", str(tmp_path / "r")]) == 0
    assert len(list((tmp_path / "r").glob("test_*.png"))) == 2
    capsys.readouterr()
    assert main(["eval", str(stream), str(tiny_scene), "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert main(["eval", str(tiny_run), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert abs(decoded["psnr"] - trained["psnr"]) < 1.5


def test_export_writes_a_standard_ply_and_a_splat(tiny_run, tmp_path, capsys):
    fast = ["--fit-iterations", "5", "--quiet"]
    assert main(["export", str(tiny_run), "-o", str(tmp_path / "run.ply"), *fast]) == 0
    stream = str(tiny_run / "stream.csg")
    assert main(["export", stream, "-o", str(tmp_path / "s.ply"), *fast]) == 0
    ply = read_gaussians_ply(tmp_path / "s.ply")
    assert ply["opacities"].min() > 0 and ply["sh"].shape[1] == 16
    assert "instance_id" in ply and "semantic" in ply  # the stream has a semantic layer
    assert "instance_id" not in read_gaussians_ply(tmp_path / "run.ply")  # stage 1 has none
    assert main(["export", stream, "-o", str(tmp_path / "s.splat"), *fast]) == 0
    assert (tmp_path / "s.splat").stat().st_size == 32 * ply["means"].shape[0]
    capsys.readouterr()
    assert main(["export", stream, "-o", str(tmp_path / "s.obj"), *fast]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert main(["export", stream, "-o", str(tmp_path / "s.ply"), "--sh-degree", "4"]) == 2
    query = ["--select", "qqq zzz", "--fit-iterations", "2000"]  # refused before any fitting
    assert main(["export", stream, "-o", str(tmp_path / "o.ply"), *query]) == 2
    assert "matches no object" in capsys.readouterr().err


def test_bad_inputs_end_in_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["train", str(missing), "-o", str(tmp_path / "run"), "--preset", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing) in err and "Traceback" not in err

    broken = tmp_path / "broken.csg"
    broken.write_bytes(b"CSGS" + b"\x00" * 40)
    assert main(["eval", str(broken), str(tmp_path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(broken) in err

    assert main(["render", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


def test_a_non_positive_iteration_count_is_refused(tiny_scene, tmp_path, capsys):
    for count in ("0", "-3"):
        run = tmp_path / f"run{count}"
        argv = ["train", str(tiny_scene), "-o", str(run), "--preset", "tiny", "--iterations", count]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--iterations must be a positive count" in err and count in err
        assert not run.exists()


def _crafted_golden(tmp_path: Path) -> Path:
    """The golden stream with a grid origin of two values, checksums rewritten."""
    data = GOLDEN.read_bytes()
    sections, layers = read_container(data), section_layers(data)
    meta = json.loads(zlib.decompress(sections["meta"]))
    meta["grid"]["origin"] = meta["grid"]["origin"][:2]
    sections["meta"] = zlib.compress(json.dumps(meta).encode())
    path = tmp_path / "crafted.csg"
    path.write_bytes(write_container(list(sections.items()), layers))
    return path


def test_crafted_streams_end_in_one_line_for_decode_render_and_eval(tiny_scene, tmp_path, capsys):
    crafted = _crafted_golden(tmp_path)
    for argv in (
        ["decode", str(crafted), "-o", str(tmp_path / "d")],
        ["render", str(crafted), "--data", str(tiny_scene), "-o", str(tmp_path / "r")],
        ["eval", str(crafted), str(tiny_scene), "--json"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert str(crafted) in err and "grid.origin" in err


def test_max_memory_limits_what_a_stream_may_ask_for(tmp_path, capsys):
    out = tmp_path / "decoded"
    assert main(["decode", str(GOLDEN), "-o", str(out), "--max-memory", "64K"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "over the limit of" in err and "max_memory" in err
    assert main(["decode", str(GOLDEN), "-o", str(out), "--max-memory", "1G"]) == 0
    assert resolve_limit(None) == DEFAULT_MAX_MEMORY  # the option does not outlive the command


def test_an_unexpected_exception_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch\nsecond line of a torch message")

    monkeypatch.setattr(api, "decode_to", broken)
    assert main(["decode", str(GOLDEN), "-o", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "csgaussian decode: error: internal error "
        "(RuntimeError: shape mismatch second line of a torch message)"
    )


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run, for commands that might write into it."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_no_output_replaces_an_input_or_a_runs_file_without_force(
    run_copy, tiny_scene, tmp_path, capsys
):
    run, stream = run_copy, run_copy / "stream.csg"
    before, scene_files = _contents(run), _contents(tiny_scene)
    (tmp_path / "alias.csg").symlink_to(stream)
    cases = [
        ["encode", run, "-o", run / "scene.pt"],
        ["encode", run, "-o", run / "stream.csg"],
        ["decode", stream, "-o", run],
        ["edit", stream, "-o", tmp_path / "alias.csg", "--remove", "floor"],
        ["export", stream, "-o", run / "run.json"],
        ["render", stream, "--data", tiny_scene, "-o", run],
        ["query", stream, "floor", "--data", tiny_scene, "-o", run],
        ["prepare", tiny_scene, "-o", run / "language_features"],
        ["text-features", "mug", "--clip", tmp_path, "-o", run / "checkpoint.pt"],
        ["train", tiny_scene, "-o", tiny_scene, "--preset", "tiny"],
        ["demo", "-o", run],
    ]
    for argv in cases:
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--force" in err and "Traceback" not in err, err
        assert "training run" in err or "is the input" in err, err
    assert _contents(run) == before and _contents(tiny_scene) == scene_files
    assert main(["decode", str(stream), "-o", str(run), "--force", "--fit-iterations", "0"]) == 0
    assert _contents(run)["scene.pt"] != before["scene.pt"]


def test_bad_stream_files_query_texts_and_folders_end_in_one_line(
    run_copy, tiny_scene, tmp_path, capsys
):
    stream = run_copy / "stream.csg"
    os.mkfifo(tmp_path / "fifo")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = {
        ("decode", "/dev/zero", "-o", str(tmp_path / "d")): "/dev/zero: is a device",
        ("decode", str(tmp_path / "fifo"), "-o", str(tmp_path / "d")): "fifo: is a FIFO",
        ("render", str(folder), "-o", str(tmp_path / "r")): "",
        ("query", str(stream), "mug \udcff", "--data", str(tiny_scene)): "is not valid UTF-8",
        ("edit", str(stream), "-o", str(tmp_path / "e.csg"), "--remove", "\udcff"): "UTF-8",
        ("encode", str(run_copy), "-o", str(folder)): f"cannot write {folder} (Is a directory)",
    }
    for argv, expected in cases.items():
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err and expected in err, err
        assert ".tmp" not in err and "internal error" not in err, err
    assert os.listdir(folder) == [] and not (tmp_path / "e.csg").exists()


def test_64_duplicates_of_everything_are_refused_by_every_command(tiny_scene, tmp_path, capsys):
    data = GOLDEN.read_bytes()
    everything = torch.ones(360, 4, dtype=torch.bool)
    edits = [SceneEdit("duplicate", everything, "everything", (0.01, 0.0, 0.0))] * 64
    crafted = tmp_path / "dup64.csg"
    crafted.write_bytes(with_edits(data, edits))
    for argv in (
        ["decode", str(crafted), "-o", str(tmp_path / "d")],
        ["render", str(crafted), "--data", str(tiny_scene), "-o", str(tmp_path / "r")],
        ["eval", str(crafted), str(tiny_scene), "--json"],
        ["export", str(crafted), "-o", str(tmp_path / "x.ply")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err == (
            f"csgaussian {argv[0]}: error: {crafted}: edit 13 of 64 (duplicate 'everything') "
            "makes 8,282,112 Gaussians per view, about 7.90 GiB to render, over the limit of "
            "4.00 GiB (max_memory)"
        )
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()
    with pytest.raises(StreamError, match="edit 13 of 64"):
        api.decode(crafted)


def test_every_command_has_one_handler_and_its_defaults_come_from_the_configs(capsys):
    import argparse

    from csgaussian.cli import COMMANDS, OUTPUT_INPUTS, _parser
    from csgaussian.export.fit import ExportConfig
    from csgaussian.train.config import PRESETS

    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(COMMANDS) == set(sub.choices) == set(OUTPUT_INPUTS) | {"eval", "view"}
    preset = next(a for a in sub.choices["train"]._actions if a.dest == "preset")
    assert list(preset.choices) == list(PRESETS)
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(default {ExportConfig().fit_iterations}; 0: no fit)" in shown
    with pytest.raises(SystemExit):  # argparse refuses a preset that PRESETS does not hold
        main(["train", "x", "-o", "y", "--preset", "nosuch"])
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err
