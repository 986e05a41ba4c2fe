"""Segmentation ground truth from LERF-OVS labels (COLMAP) and 3D-OVS masks (LLFF)."""

import json

import numpy as np
import pytest
from PIL import Image

from csgaussian.data import load_scene
from csgaussian.eval.ground_truth import ground_truth, resize_mask
from csgaussian.types import DataError


def _label(root, image, objects, width=8, height=6):
    folder = root / "label"
    folder.mkdir(exist_ok=True)
    payload = {"info": {"name": image, "width": width, "height": height}, "objects": objects}
    (folder / f"{image.split('.')[0]}.json").write_text(json.dumps(payload))


def _box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_lerf_labels_match_views_by_name_and_or_one_category(tmp_path, make_colmap_text):
    root = make_colmap_text(tmp_path)  # images im_00..im_08, every 8th a test view
    cup = {"category": "cup", "segmentation": _box(0, 0, 1, 1), "bbox": [0, 0, 1, 1]}
    cup2 = {"category": "cup", "segmentation": _box(5, 3, 6, 4), "bbox": [5, 3, 6, 4]}
    plate = {"category": "plate", "segmentation": _box(2, 2, 4, 4), "bbox": [2, 2, 4, 4]}
    _label(root, "im_03.png", [cup, plate, cup2])
    _label(root, "im_00.png", [plate], width=16, height=12)  # labelled at twice the resolution
    scene = load_scene(root)
    gt = ground_truth(scene)
    assert gt.source == "lerf_ovs" and gt.class_names == ["cup", "plate"]
    names = [v.image_path.name for v in gt.views]
    assert names == ["im_00.png", "im_03.png"]  # by the label's image name, not position
    items = {(t.view_name, t.query): t.gt for t in gt.targets}
    assert set(items) == {("im_00.png", "plate"), ("im_03.png", "cup"), ("im_03.png", "plate")}
    cup_mask = items[("im_03.png", "cup")]
    assert cup_mask.shape == (6, 8) and cup_mask[0, 0] and cup_mask[3, 5] and not cup_mask[2, 3]
    assert int(cup_mask.sum()) == 8  # two 2x2 polygons (outline included), OR-ed
    small = items[("im_00.png", "plate")]
    assert small.shape == (6, 8) and small[1:2, 1:2].all() and not small[3, 3]


def test_a_label_for_an_unknown_image_is_one_line(tmp_path, make_colmap_text):
    root = make_colmap_text(tmp_path)
    _label(root, "frame_99.jpg", [{"category": "cup", "segmentation": _box(0, 0, 1, 1)}])
    with pytest.raises(DataError, match="names image frame_99.jpg"):
        ground_truth(load_scene(root))


def _mask(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.array(rows, np.uint8) * 255).save(path)


def test_3dovs_segmentations_index_the_sorted_images(tmp_path, make_llff):
    poses = []
    for k in range(9):
        c2w = np.eye(4)
        c2w[0, 3] = 0.1 * k
        poses.append(c2w)
    root = make_llff(tmp_path, poses)
    seg = root / "segmentations"
    seg.mkdir()
    (seg / "classes.txt").write_text("apple\nbanana\n")
    _mask(seg / "5" / "apple.png", np.eye(6, 8, dtype=bool))
    _mask(seg / "5" / "banana.png", np.zeros((6, 8), bool))  # absent from the view: not scored
    _mask(seg / "0" / "banana.png", np.ones((3, 4), bool))  # at half the resolution
    gt = ground_truth(load_scene(root))
    assert gt.source == "3dovs" and gt.class_names == ["apple", "banana"]
    assert [v.image_path.name for v in gt.views] == ["000.png", "005.png"]
    pairs = [(t.view_name, t.class_name) for t in gt.targets]
    assert pairs == [("000.png", "banana"), ("005.png", "apple")]
    assert gt.targets[0].gt.shape == (6, 8) and gt.targets[0].gt.all()
    _mask(seg / "12" / "apple.png", np.ones((6, 8), bool))
    with pytest.raises(DataError, match="not an image index"):
        ground_truth(load_scene(root))


def test_resize_mask_is_nearest():
    import torch

    mask = torch.tensor([[True, False], [False, True]])
    up = resize_mask(mask, 4, 4)
    assert torch.equal(up, torch.tensor(np.kron(mask.numpy(), np.ones((2, 2), bool))))
