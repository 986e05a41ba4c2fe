"""Queries on a decoded stream: the selection's masks, the query command and eval's protocols."""

import json

import torch

from csgaussian import api
from csgaussian.cli import main
from csgaussian.data import load_scene
from csgaussian.scene.rendering import render_view
from csgaussian.semantics.query import render_selection


def _class_names(tiny_scene):
    return (tiny_scene / "segmentations" / "classes.txt").read_text().split("\n")[:-1]


def test_selection_masks_follow_the_selected_gaussians(tiny_run, tiny_scene):
    scene = api.decode(tiny_run / "stream.csg")
    camera = load_scene(tiny_scene).test[0].camera
    model = scene.model
    every = torch.ones(model.n_anchors, model.config.n_offsets, dtype=torch.bool)
    full = render_selection(model, camera, every)
    alpha = render_view(model, camera).raster.alpha[..., 0]
    assert torch.equal(full["silhouette"], alpha > 0.7)  # the whole scene rendered alone
    assert torch.equal(full["visible"], alpha > 0.5)  # every pixel's weight is selected
    none = render_selection(model, camera, torch.zeros_like(every))
    assert not none["visible"].any() and not none["silhouette"].any()


def test_query_command_writes_mask_highlight_and_one_json_line(
    tiny_run, tiny_scene, tmp_path, capsys
):
    name = _class_names(tiny_scene)[0]
    out = tmp_path / "q"
    args = ["query", str(tiny_run / "stream.csg"), name, "--data", str(tiny_scene), "-o", str(out)]
    assert main([*args, "--view", "test:1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == name and record["view"] == "test:1"
    assert {"matched", "best_score", "leaves", "gaussians_selected"} <= record.keys()
    assert (out / "mask.png").is_file() and (out / "highlight.png").is_file()
    assert json.loads((out / "query.json").read_text()) == record
    assert main([*args, "--view", "test:9"]) == 2
    assert "has 2 views" in capsys.readouterr().err


def test_eval_names_each_protocol_beside_its_figures(tiny_run, tiny_scene, tmp_path, capsys):
    names = _class_names(tiny_scene)
    queries = tmp_path / "queries.json"
    queries.write_text(json.dumps({names[0]: [names[0], f"the {names[0]} object"]}))
    stream = str(tiny_run / "stream.csg")
    assert main(["eval", stream, str(tiny_scene), "--json", "--queries", str(queries)]) == 0
    report = json.loads(capsys.readouterr().out)
    protocols = report["protocols"]
    assert set(protocols) == {
        "visible_selection",
        "3d_selection",
        "langsplat_relevancy",
        "3dovs_argmax",
    }
    assert report["miou"] == protocols["visible_selection"]["miou"]
    assert report["acc"] == protocols["visible_selection"]["acc"]
    assert report["ground_truth"] == "instance_maps"
    for figures in protocols.values():
        assert "protocol" in figures and 0 <= figures["miou"] <= 1
    for name in ("visible_selection", "3d_selection", "langsplat_relevancy"):
        queries_scored = {q["query"] for q in protocols[name]["per_query"]}
        assert queries_scored == {names[0], f"the {names[0]} object"}
    assert set(protocols["3dovs_argmax"]["per_class"]) == {names[0]}
    base_only = tmp_path / "base.csg"
    base_only.write_bytes((tiny_run / "stream.csg").read_bytes()[: report["layer_bytes"]["base"]])
    assert main(["eval", str(base_only), str(tiny_scene), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["miou"] is None and "protocols" not in report and report["psnr"] > 5
    assert "truncated" in report["notes"][0]
