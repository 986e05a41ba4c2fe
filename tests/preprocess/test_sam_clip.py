"""LangSplat's SAM + CLIP preprocessing with tiny random models of the real classes, its
vectorised mask filter against a direct pairwise transcription, and the one-line refusals."""

import itertools
import json
import sys

import numpy as np
import pytest
import torch

from csgaussian.cli import main
from csgaussian.preprocess import sam_clip
from csgaussian.preprocess.features import LEVELS, read_view
from csgaussian.preprocess.mask_filter import MaskNmsConfig, box_nms, id_map, mask_boxes, mask_nms
from csgaussian.preprocess.prepare import prepare_sam_clip

from .tiny_models import write_tiny_clip, write_tiny_sam

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return write_tiny_sam(root / "sam"), write_tiny_clip(root / "clip")


def _pairwise_mask_nms(masks, scores):
    """LangSplat's mask_nms criteria written pair by pair (the oracle)."""
    cfg = MaskNmsConfig()
    order = sorted(range(len(scores)), key=lambda k: -float(scores[k]))
    m = [masks[k] for k in order]
    s = [float(scores[k]) for k in order]
    n = len(m)
    area = [float(x.sum()) for x in m]
    iou = np.zeros((n, n))
    inner = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        if j < i:
            continue
        inter = float((m[i] & m[j]).sum())
        iou[i, j] = inter / float((m[i] | m[j]).sum())
        a, b = inter / area[i], inter / area[j]
        if a < cfg.outside and b >= cfg.inside:
            inner[i, j] = 1 - a * b
        if a >= cfg.inside and b < cfg.outside:
            inner[j, i] = 1 - a * b
    keep = []
    for j in range(n):
        iou_max = max([iou[i, j] for i in range(j)], default=0.0)
        upper = max([inner[i, j] for i in range(j)], default=0.0)
        lower = max([inner[i, j] for i in range(n) if i >= j - 1], default=0.0)
        if (
            iou_max <= cfg.iou_thr
            and s[j] > cfg.score_thr
            and upper <= 1 - cfg.inner_thr
            and lower <= 1 - cfg.inner_thr
        ):
            keep.append(order[j])
    return keep


def _random_masks(count, seed):
    g = torch.Generator().manual_seed(seed)
    h = w = 12
    masks = torch.zeros(count, h, w, dtype=torch.bool)
    for k in range(count):
        y0, x0 = torch.randint(0, 8, (2,), generator=g).tolist()
        y1, x1 = y0 + torch.randint(2, 6, (1,), generator=g).item(), x0 + 4
        masks[k, y0:y1, x0:x1] = True
    masks[3] = masks[2] | masks[1]  # one mask around two others
    masks[5] = masks[4].clone()
    masks[5, 0, 0] = True  # near duplicate
    return masks, 0.6 + 0.4 * torch.rand(count, generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_mask_nms_matches_the_pairwise_definition(seed):
    masks, scores = _random_masks(14, seed)
    kept = mask_nms(masks, scores).tolist()
    assert kept == _pairwise_mask_nms(masks.numpy(), scores.numpy())


def test_mask_nms_by_hand():
    """A (score 0.9) and its near copy B (0.8, IoU 0.9 > 0.8): B goes; C (0.65 <= 0.7): goes."""
    masks = torch.zeros(3, 4, 5, dtype=torch.bool)
    masks[0, :, :] = True
    masks[0, 0, :2] = False  # 18 pixels
    masks[1, :, :] = True  # 20 pixels, IoU 18/20
    masks[2, 0, 0] = True
    assert mask_nms(masks, torch.tensor([0.9, 0.8, 0.65])).tolist() == [0]


def test_box_nms_boxes_and_id_map():
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0, 1:5, 1:5] = True  # 16 px
    masks[1, 1:5, 1:4] = True  # box IoU 12/16 with mask 0
    masks[2, 0, 5] = True
    assert mask_boxes(masks).tolist() == [[1, 1, 4, 4], [1, 1, 3, 4], [5, 0, 5, 0]]
    assert box_nms(mask_boxes(masks), torch.tensor([0.5, 0.9, 0.1]), 0.7).tolist() == [1, 2]
    ids, kept = id_map(masks)
    assert kept.tolist() == [0, 1, 2]  # painted large to small
    assert ids[2, 2] == 1 and ids[2, 4] == 0 and ids[0, 5] == 2 and ids[5, 5] == -1
    ids, kept = id_map(torch.stack([masks[1], masks[1] | masks[0]]))
    assert kept.tolist() == [1, 0] and set(ids.unique().tolist()) == {-1, 0, 1}


def test_prepare_with_tiny_sam_and_clip_writes_four_levels(tiny_models, tiny_scene, tmp_path):
    """Random SAM weights give no mask passing LangSplat's thresholds; with every threshold at
    0 and a coarse grid, each level keeps masks and every code path runs."""
    sam, clip = tiny_models
    permissive = sam_clip.MaskGeneratorConfig(
        points_per_side=4, pred_iou_thresh=-1e9, stability_score_thresh=0.0, box_nms_thresh=0.9
    )
    report = prepare_sam_clip(tiny_scene, tmp_path / "permissive", sam, clip, generator=permissive)
    assert all(report[f"masks_{level}"] > 0 for level in LEVELS)
    masks = read_view(tmp_path / "permissive", "r_000", "whole")
    assert len(masks.features) > 0
    np.testing.assert_allclose(np.linalg.norm(masks.features, axis=1), 1, atol=1e-5)
    assert set(np.unique(masks.ids)) - {-1} == set(range(len(masks.features)))
    out = tmp_path / "features"
    assert (
        main(
            [
                "prepare",
                str(tiny_scene),
                "--sam",
                str(sam),
                "--clip",
                str(clip),
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["text_space"] == "clip:clip" and meta["dim"] == 12
    stems = sorted(p.name[: -len("_s.npy")] for p in out.glob("*_s.npy"))
    assert len(stems) == 6  # train and test views share the stems r_000..r_005
    for level in LEVELS:
        masks = read_view(out, stems[0], level)
        assert masks.ids.shape == (40, 48) and masks.features.shape[1] == 12
        if len(masks.features):
            np.testing.assert_allclose(np.linalg.norm(masks.features, axis=1), 1, atol=1e-5)
            assert set(np.unique(masks.ids)) - {-1} == set(range(len(masks.features)))


def test_crops_are_masked_padded_and_resized(tiny_models):
    """Embedding a mask's crop equals embedding the hand-made square: the box of the mask,
    outside pixels zeroed, centred on a square, resized to the model's input size."""
    clip = sam_clip.ClipModel(tiny_models[1])
    image = torch.rand(10, 12, 3)
    mask = torch.zeros(1, 10, 12, dtype=torch.bool)
    mask[0, 2:4, 3:9] = True  # 2 x 6 box
    mask[0, 3, 3] = False
    square = torch.zeros(3, 6, 6)
    crop = (image.permute(2, 0, 1) * mask[0])[:, 2:4, 3:9]
    square[:, 2:4, :] = crop
    pixels = torch.nn.functional.interpolate(
        square[None], size=(16, 16), mode="bilinear", antialias=True
    )
    mean = torch.tensor(sam_clip.CLIP_MEAN)[:, None, None]
    std = torch.tensor(sam_clip.CLIP_STD)[:, None, None]
    with torch.no_grad():
        expected = clip._tensor(clip.model.get_image_features(pixel_values=(pixels - mean) / std))
    torch.testing.assert_close(
        clip.encode_crops(image, mask), torch.nn.functional.normalize(expected, dim=-1)
    )


def test_text_features_command_writes_a_cache_with_the_negatives(tiny_models, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert (
        main(["text-features", "red cup", "a plate", "--clip", str(tiny_models[1]), "-o", str(out)])
        == 0
    )
    cache = json.loads(out.read_text())
    assert list(cache) == ["red cup", "a plate", "object", "things", "stuff", "texture"]
    assert all(len(v) == 12 for v in cache.values())


def test_missing_models_or_extra_are_one_line(
    tiny_models, tiny_scene, tmp_path, capsys, monkeypatch
):
    sam, clip = tiny_models
    args = ["prepare", str(tiny_scene), "-o", str(tmp_path / "f")]
    assert main([*args, "--sam", str(tmp_path / "none"), "--clip", str(clip)]) == 2
    err = capsys.readouterr().err
    assert "not a SAM model folder" in err and err.count("\n") == 1
    assert main([*args, "--sam", str(sam)]) == 2
    assert "give both --sam DIR and --clip DIR" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "transformers", None)
    sam_clip._transformers.cache_clear()
    try:
        assert main([*args, "--sam", str(sam), "--clip", str(clip)]) == 2
        assert "pip install 'csgaussian[sam]'" in capsys.readouterr().err
    finally:
        sam_clip._transformers.cache_clear()
