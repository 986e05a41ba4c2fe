"""Queries on a decoded stream: the selection's masks, the query command and eval's protocols."""

import json
from pathlib import Path

import pytest
import torch

from csgaussian import api
from csgaussian.cli import main
from csgaussian.data import load_scene
from csgaussian.scene.rendering import render_view
from csgaussian.semantics.query import QueryConfig, match_decision, render_selection


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
    tiny_run, tiny_scene, tiny_names, tmp_path, capsys
):
    name = tiny_names[0]
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


def test_eval_names_each_protocol_beside_its_figures(
    tiny_run, tiny_scene, tiny_names, tmp_path, capsys
):
    names = tiny_names
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


def test_the_rule_weighs_the_best_entry_against_the_vocabulary_and_the_negatives():
    config = QueryConfig()
    negatives = torch.tensor([0.20, 0.25, 0.15, 0.10])
    paraphrase = match_decision(torch.tensor([0.43, 0.27, 0.10]), negatives, config)
    assert paraphrase.matched and paraphrase.entries.tolist() == [0]
    assert paraphrase.margin == pytest.approx(0.16) and paraphrase.relevancy > 0.8
    # Best cosine under the floor ("spaceship": 0.34, margin 0.03): nothing.
    assert not match_decision(torch.tensor([0.34, 0.31]), negatives, config).matched
    # A best that the generic words explain as well (relevancy under 0.5): nothing.
    generic = match_decision(torch.tensor([0.40, 0.20]), torch.tensor([0.42]), config)
    assert not generic.matched and generic.relevancy < 0.5
    # A sure match needs no relevancy; near-identical entries come along.
    sure = match_decision(torch.tensor([0.62, 0.60, 0.1]), torch.tensor([0.7]), config)
    assert sure.matched and sure.entries.tolist() == [0, 1]
    # Without negatives (a cache that lacks them) the relevancy is 1.
    assert match_decision(torch.tensor([0.40, 0.1]), torch.zeros(0), config).relevancy == 1.0
    assert not match_decision(torch.zeros(0), negatives, config).matched


def test_paraphrase_sets_name_only_entries_of_their_vocabulary():
    for path in (Path(__file__).parents[2] / "benchmarks" / "paraphrases").glob("*.json"):
        spec = json.loads(path.read_text())
        assert set(spec["queries"]) - {""} <= set(spec["vocabulary"]), path.name
        assert len(spec["queries"][""]) >= 20, path.name  # queries that must select nothing
