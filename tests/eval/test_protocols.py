"""LangSplat's relevancy protocol and 3D-OVS's closed-set argmax on hand-computed tiny cases."""

import math

import pytest
import torch

from csgaussian.eval.segmentation import (
    RELEVANCY_NEGATIVES,
    argmax_ious,
    argmax_report,
    majority_filter,
    relevancy,
    relevancy_mask,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_relevancy_is_the_worst_pairwise_softmax_against_the_negatives():
    """Axes e0 (query), e1, e2 (negatives): a pixel along e0 has cos 1 vs 0 with each negative,
    so relevancy = softmax(10 * [1, 0])[0] = sigmoid(10); a pixel between e0 and e1 has cos
    1/sqrt2 with both: sigmoid(0) = 0.5 against e1 and sigmoid(10/sqrt2) against e2, min 0.5;
    a zero feature has cos 0 everywhere: 0.5."""
    e = torch.eye(3)
    features = torch.stack([e[0] * 3.0, e[0] + e[1], torch.zeros(3), e[2]])[None]  # [1, 4, 3]
    r = relevancy(features, e[0], e[1:])
    expected = [sigmoid(10), 0.5, 0.5, sigmoid(-10)]
    torch.testing.assert_close(r[0], torch.tensor(expected), rtol=0, atol=1e-6)
    assert RELEVANCY_NEGATIVES == ("object", "things", "stuff", "texture")


def test_majority_filter_takes_the_window_majority_with_ties_to_false():
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True  # a lone pixel: 1 of 49 -> removed
    assert not majority_filter(mask).any()
    mask[:, :5] = True  # left 5 columns: column 4's 7x7 window has 5 of 7 columns set
    out = majority_filter(mask)
    assert out[:, :5].all() and not out[:, 6:].all()
    # column 5 at the centre row: window columns 2..8, of which 2..4 are set: 3/7 < 0.5
    assert not out[4, 5]
    half = torch.zeros(1, 2, dtype=torch.bool)
    half[0, 0] = True  # each 1x2 window (cropped) is one of two: a tie, so False
    assert not majority_filter(half).any()


def test_relevancy_mask_keeps_a_high_blob_and_drops_the_background():
    """A 40x40 map at 0.5 with a 12x12 block at 0.9: after the box blend and min-max stretch
    the block's centre is far above 0.7 of the range (> 0.4 after 2x - 1), the far corner at 0."""
    r = torch.full((40, 40), 0.5)
    r[10:22, 10:22] = 0.9
    mask = relevancy_mask(r)
    assert mask[16, 16] and not mask[35, 35]
    assert mask[10:22, 10:22].float().mean() > 0.5 and mask.float().mean() < 0.15
    assert not relevancy_mask(torch.full((8, 8), 0.5)).any()  # flat map: all 0 after stretching


def test_argmax_ious_by_hand():
    """2x2 view, classes a (e0) and b (e1); the pixel features point to a, a, b, b (row-major)
    so argmax = [[a, a], [b, b]]. GT a = top-left only: IoU 1/2; GT b = bottom row: IoU 1."""
    e = torch.eye(2)
    features = torch.stack([e[0], e[0] + 0.1 * e[1], e[1], 2 * e[1]]).reshape(2, 2, 2)
    gt_a = torch.tensor([[True, False], [False, False]])
    gt_b = torch.tensor([[False, False], [True, True]])
    ious = argmax_ious(features, e, {0: gt_a, 1: gt_b})
    assert ious == {0: pytest.approx(0.5), 1: pytest.approx(1.0)}


def test_argmax_report_means_classes_then_views():
    """View 1: a 0.5, b 1.0 -> 0.75; view 2: a 0.1 -> 0.1; mIoU (0.75 + 0.1) / 2 = 0.425, not
    the mean over all three (0.533); acc counts IoU > 0.25: 2 of 3."""
    report = argmax_report([{"a": 0.5, "b": 1.0}, {"a": 0.1}])
    assert report["miou"] == pytest.approx(0.425)
    assert report["acc"] == pytest.approx(2 / 3) and report["n"] == 3
    assert report["per_class"] == {"a": pytest.approx(0.3), "b": pytest.approx(1.0)}
