"""Tests for csgaussian.eval.segmentation: IoU, summaries, targets, query files, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from csgaussian.eval.segmentation import (
    ACC_IOU,
    PROTOCOLS,
    SILHOUETTE_ALPHA,
    VISIBLE_SHARE,
    SegmentationTarget,
    instance_targets,
    mask_iou,
    protocol_report,
    read_queries,
    summarize,
)
from csgaussian.types import Camera, DataError, View

CLASSES = ["cup", "duck", "plate"]


def mask(rows: list[str]) -> torch.Tensor:
    """A bool mask from strings of '#' (in) and '.' (out)."""
    return torch.tensor([[c == "#" for c in row] for row in rows])


def view(name: str, instance: list[list[int]] | None) -> View:
    camera = Camera(torch.eye(4), torch.eye(3), width=3, height=2, name=name)
    labels = None if instance is None else torch.tensor(instance, dtype=torch.int64)
    return View(camera, torch.zeros(2, 3, 3), Path(f"test/{name}.png"), labels)


def target(view_index: int, class_name: str, query: str = "") -> SegmentationTarget:
    return SegmentationTarget(
        view_index,
        f"r_{view_index:03d}",
        class_name,
        query or class_name,
        torch.ones(1, 1, dtype=torch.bool),
    )


# --- mask_iou ---------------------------------------------------------------------------------


def test_iou_hand_computed() -> None:
    pred = mask(["##..", "##.."])  # 4 pixels
    gt = mask([".##.", ".##."])  # 4 pixels, 2 shared
    assert mask_iou(pred, gt) == pytest.approx(2 / 6)
    assert mask_iou(gt, pred) == pytest.approx(2 / 6)
    assert mask_iou(mask(["#..."]), mask(["####"])) == pytest.approx(1 / 4)


def test_iou_identical_disjoint_and_empty() -> None:
    a = mask(["#.#", "..#"])
    assert mask_iou(a, a.clone()) == 1.0
    assert mask_iou(a, ~a) == 0.0
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert mask_iou(empty, empty) == 0.0  # empty union scores 0 (OpenGaussian)
    assert mask_iou(empty, a) == 0.0
    assert mask_iou(a, empty) == 0.0


def test_iou_rejects_shape_and_dtype_mismatch() -> None:
    with pytest.raises(ValueError, match="one shape"):
        mask_iou(torch.zeros(2, 3, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="one shape"):
        mask_iou(torch.zeros(1, 2, 3, dtype=torch.bool), torch.zeros(1, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        mask_iou(torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.bool))


# --- summarize and constants -----------------------------------------------------------------


def test_summarize_mean_and_strict_accuracy() -> None:
    assert ACC_IOU == 0.25
    result = summarize([0.25, 0.5, 0.0, 0.2500001])
    assert result["n"] == 4
    assert result["miou"] == pytest.approx((0.25 + 0.5 + 0.2500001) / 4)
    assert result["acc"] == pytest.approx(2 / 4)  # exactly 0.25 does not count
    assert summarize([0.25])["acc"] == 0.0
    assert summarize([1.0, 1.0])["acc"] == 1.0


def test_summarize_empty_and_invalid() -> None:
    assert summarize([]) == {"miou": None, "acc": None, "n": 0}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        summarize([float("nan")])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        summarize([1.5])


def test_protocol_constants() -> None:
    assert set(PROTOCOLS) == {
        "3d_selection",
        "visible_selection",
        "langsplat_relevancy",
        "3dovs_argmax",
    }
    assert SILHOUETTE_ALPHA == 0.7 and VISIBLE_SHARE == 0.5
    assert "0.7" in PROTOCOLS["3d_selection"] and "0.5" in PROTOCOLS["visible_selection"]


# --- instance_targets -----------------------------------------------------------------------

INSTANCE_A = [[0, 1, 1], [3, 3, 0]]  # cup and plate, no duck
INSTANCE_B = [[2, 0, 0], [0, 0, 0]]  # duck only


def test_targets_present_only_skips_absent_classes() -> None:
    views = [view("r_000", INSTANCE_A), view("r_001", INSTANCE_B)]
    targets = instance_targets(views, CLASSES, None)
    assert [(t.view_index, t.view_name, t.class_name, t.query) for t in targets] == [
        (0, "r_000", "cup", "cup"),
        (0, "r_000", "plate", "plate"),
        (1, "r_001", "duck", "duck"),
    ]
    assert torch.equal(targets[0].gt, mask([".##", "..."]))
    assert torch.equal(targets[1].gt, mask(["...", "##."]))
    assert torch.equal(targets[2].gt, mask(["#..", "..."]))
    assert all(t.gt.dtype == torch.bool for t in targets)


def test_targets_all_classes_keep_empty_gt() -> None:
    views = [view("r_000", INSTANCE_A), view("r_001", INSTANCE_B)]
    targets = instance_targets(views, CLASSES, None, present_only=False)
    assert [(t.view_index, t.class_name) for t in targets] == [
        (0, "cup"),
        (0, "duck"),
        (0, "plate"),
        (1, "cup"),
        (1, "duck"),
        (1, "plate"),
    ]
    absent = targets[1]
    assert not absent.gt.any()
    assert mask_iou(mask(["#..", "..."]), absent.gt) == 0.0  # a false positive scores 0


def test_targets_with_queries_order_and_omitted_classes() -> None:
    views = [view("r_000", INSTANCE_A)]
    queries = {"plate": ["blue plate", "dish"], "cup": ["coffee cup"]}
    targets = instance_targets(views, CLASSES, queries)
    assert [(t.class_name, t.query) for t in targets] == [
        ("cup", "coffee cup"),
        ("plate", "blue plate"),
        ("plate", "dish"),
    ]
    with pytest.raises(ValueError, match="spoon"):
        instance_targets(views, CLASSES, {"spoon": ["spoon"]})


def test_targets_reject_missing_or_bad_instance_maps() -> None:
    with pytest.raises(ValueError, match="r_009 has no instance map"):
        instance_targets([view("r_009", None)], CLASSES, None)
    with pytest.raises(ValueError, match=r"r_002: instance ids"):
        instance_targets([view("r_002", [[0, 4, 0], [0, 0, 0]])], CLASSES, None)


# --- read_queries ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "queries.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_queries_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"plate": [" blue plate ", "dish"], "cup": ["mug"]}))
    assert read_queries(path, CLASSES) == {"cup": ["mug"], "plate": ["blue plate", "dish"]}
    assert list(read_queries(path, CLASSES)) == ["cup", "plate"]  # class-list order


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "malformed JSON"),
        ('["cup"]', "must be a JSON object"),
        ("{}", "no class"),
        ('{"spoon": ["spoon"]}', "'spoon' is not in the scene's class list"),
        ('{"cup": "mug"}', "non-empty list"),
        ('{"cup": []}', "non-empty list"),
        ('{"cup": ["mug", 3]}', "non-empty string"),
        ('{"cup": ["  "]}', "non-empty string"),
        ('{"cup": ["mug", "mug "]}', "duplicate"),
    ],
)
def test_read_queries_errors_name_the_file(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text, "bad_queries.json")
    with pytest.raises(DataError, match="bad_queries.json") as info:
        read_queries(path, CLASSES)
    message = str(info.value)
    assert problem in message
    assert "\n" not in message


def test_read_queries_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="absent.json.*missing"):
        read_queries(tmp_path / "absent.json", CLASSES)


# --- protocol_report ------------------------------------------------------------------------


def test_protocol_report_aggregates_per_class_and_orders() -> None:
    per_target = [
        (target(1, "plate"), 0.5),
        (target(0, "plate", "dish"), 0.1),
        (target(0, "cup"), 0.8),
        (target(0, "plate", "blue plate"), 0.3),
        (target(1, "cup", "mug"), 0.0),
    ]
    report = protocol_report(per_target)
    assert report["n"] == 5
    assert report["miou"] == pytest.approx((0.5 + 0.1 + 0.8 + 0.3 + 0.0) / 5)
    assert report["acc"] == pytest.approx(3 / 5)
    assert list(report["per_class"]) == ["cup", "plate"]
    assert report["per_class"]["cup"] == pytest.approx(0.4)
    assert report["per_class"]["plate"] == pytest.approx((0.5 + 0.1 + 0.3) / 3)
    assert report["per_query"] == [
        {"view": "r_000", "class": "cup", "query": "cup", "iou": 0.8},
        {"view": "r_000", "class": "plate", "query": "blue plate", "iou": 0.3},
        {"view": "r_000", "class": "plate", "query": "dish", "iou": 0.1},
        {"view": "r_001", "class": "cup", "query": "mug", "iou": 0.0},
        {"view": "r_001", "class": "plate", "query": "plate", "iou": 0.5},
    ]
    assert protocol_report(list(reversed(per_target))) == report
    json.dumps(report)  # serialisable as it stands


def test_protocol_report_empty() -> None:
    assert protocol_report([]) == {
        "miou": None,
        "acc": None,
        "n": 0,
        "per_class": {},
        "per_query": [],
    }


def test_end_to_end_with_hand_predictions() -> None:
    views = [view("r_000", INSTANCE_A), view("r_001", INSTANCE_B)]
    targets = instance_targets(views, CLASSES, None)
    predictions = {
        ("r_000", "cup"): mask([".#.", "..."]),  # 1 / 2
        ("r_000", "plate"): mask(["...", "##."]),  # 1
        ("r_001", "duck"): mask(["...", "..#"]),  # 0
    }
    scored = [(t, mask_iou(predictions[t.view_name, t.class_name], t.gt)) for t in targets]
    report = protocol_report(scored)
    assert report["miou"] == pytest.approx(0.5)
    assert report["acc"] == pytest.approx(2 / 3)
    assert report["per_class"] == {"cup": 0.5, "duck": 0.0, "plate": 1.0}
