"""The command line: each command through ``main(argv)``, and one-line errors for bad input."""

import json

from csgaussian.cli import main
from csgaussian.ply import read_gaussians_ply


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
    assert main(["decode", str(stream), "-o", str(tmp_path / "decoded")]) == 0
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


def test_export_writes_a_standard_ply(tiny_run, tmp_path):
    assert main(["export", str(tiny_run), "-o", str(tmp_path / "s.ply")]) == 0
    assert read_gaussians_ply(tmp_path / "s.ply")["opacities"].min() > 0


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
