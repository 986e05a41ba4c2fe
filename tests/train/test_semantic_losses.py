"""OpenGaussian's instance-feature losses by scatter, against hand values and a dense reference."""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from csgaussian.train.semantic_losses import (
    MaskLossConfig,
    mask_losses,
    separation_weights,
)

CFG = MaskLossConfig()


def _reference(features, alpha, mask_ids, cfg: MaskLossConfig, late: bool):
    """Dense double-loop OpenGaussian losses: boolean masks, explicit ranks."""
    ids = [int(i) for i in torch.unique(mask_ids) if i >= 0]
    means, cohesions = [], []
    for i in ids:
        inside = mask_ids == i
        opaque = inside & (alpha > cfg.alpha_threshold)
        use = opaque if opaque.any() else inside
        mu = features[use].mean(0)
        means.append(mu)
        cohesions.append(torch.stack([(f - mu).norm() for f in features[inside]]).mean())
    n = len(means)
    cohesion = torch.stack(cohesions).mean()
    separation = features.new_zeros(())
    for m in range(n):
        inv = [1.0 / ((means[m] - means[k]).square().sum() + 1) for k in range(n)]
        inv[m] = 0.0
        order = sorted(range(n), key=[float(v) for v in inv].__getitem__)  # ascending, self first
        for rank, k in enumerate(order):
            if k == m:
                continue
            w = cfg.separation_low + (cfg.separation_high - cfg.separation_low) * rank / (n - 1)
            if late and w < cfg.late_threshold:
                w = cfg.separation_low
            separation = separation + w * inv[k]
    separation = separation / (n * (n - 1))
    return cohesion, separation


def test_cohesion_and_separation_by_hand():
    feats = torch.tensor([[0.0, 2.0, 4.0], [1.0, 1.0, 7.0]])[..., None]  # [2, 3, 1]
    ids = torch.tensor([[0, 0, -1], [5, 5, 5]])
    alpha = torch.ones(2, 3, 1)
    out = mask_losses(feats, alpha, ids, CFG)
    # mask 0: {0, 2}, mean 1, distances 1, 1; mask 5: {1, 1, 7}, mean 3, distances 2, 2, 4
    assert out.n_masks == 2
    assert out.cohesion.item() == pytest.approx((1.0 + 8.0 / 3.0) / 2.0)
    # one pair each way, weight 1: (1/5 + 1/5) / 2
    assert out.separation.item() == pytest.approx(0.2)
    assert out.total.item() == pytest.approx(0.2 + 0.1 * 11.0 / 6.0)

    alpha[1, 2] = 0.5  # the 7 no longer enters mask 5's mean: mean 1, distances 0, 0, 6
    out = mask_losses(feats, alpha[..., 0], ids, CFG)
    assert out.cohesion.item() == pytest.approx((1.0 + 2.0) / 2.0)
    assert out.separation.item() == pytest.approx(1.0 / 1.0)  # equal means: 1 / (0 + 1)

    alpha[1] = 0.1  # no opaque pixel in mask 5: its mean falls back to all its pixels
    out = mask_losses(feats, alpha, ids, CFG)
    assert out.cohesion.item() == pytest.approx((1.0 + 8.0 / 3.0) / 2.0)


def test_rank_weights_by_hand():
    means = torch.tensor([[0.0], [1.0], [3.0]])
    sq = (means - means.T).square()
    inverse = (1 / (sq + 1)).masked_fill(torch.eye(3, dtype=torch.bool), 0)
    expected = torch.tensor([[0.1, 1.0, 0.55], [1.0, 0.1, 0.55], [0.55, 1.0, 0.1]])
    torch.testing.assert_close(separation_weights(inverse, CFG), expected)
    late = torch.tensor([[0.1, 1.0, 0.1], [1.0, 0.1, 0.1], [0.1, 1.0, 0.1]])
    torch.testing.assert_close(separation_weights(inverse, CFG, late=True), late)


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_dense_reference(seed: int, late: bool):
    g = torch.Generator().manual_seed(seed)
    h, w, d = 9, 11, 4
    feats = torch.randn(h, w, d, generator=g, dtype=torch.float64) * 0.5
    alpha = torch.rand(h, w, generator=g, dtype=torch.float64)
    ids = torch.tensor([-1, 2, 7, 8, 30, 31])[torch.randint(0, 6, (h, w), generator=g)]
    out = mask_losses(feats, alpha[..., None], ids, CFG, late=late)
    cohesion, separation = _reference(feats, alpha, ids, CFG, late)
    assert out.n_masks == 5
    torch.testing.assert_close(out.cohesion, cohesion)
    torch.testing.assert_close(out.separation, separation)
    torch.testing.assert_close(out.total, separation + 0.1 * cohesion)
    if late:
        early = mask_losses(feats, alpha, ids, CFG, late=False).separation
        assert out.separation < early  # some weights dropped to 0.1


def test_gradcheck_and_ignored_pixels():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    alpha = torch.rand(3, 4, generator=g, dtype=torch.float64)
    ids = torch.tensor([[0, 0, 1, -1], [0, 4, 1, 1], [4, 4, -1, 1]])

    def total(f):
        return mask_losses(f, alpha, ids, CFG, late=False).total

    assert torch.autograd.gradcheck(total, (feats,))
    total(feats).backward()
    assert feats.grad[ids < 0].abs().max() == 0
    assert feats.grad[ids >= 0].abs().max() > 0
    moved = feats.detach().clone()
    moved[ids < 0] += 10.0
    torch.testing.assert_close(total(moved), total(feats.detach()))


def test_contiguous_ids_and_degenerate_views():
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(5, 5, 3, generator=g)
    ids = torch.randint(0, 3, (5, 5), generator=g)
    a = mask_losses(feats, None, ids, CFG)
    b = mask_losses(feats, None, ids * 10 + 3, CFG)
    torch.testing.assert_close(a.total, b.total)

    one = mask_losses(feats, None, torch.zeros(5, 5, dtype=torch.long), CFG)
    assert one.n_masks == 1 and one.separation.item() == 0 and one.cohesion.item() > 0

    leaf = feats.clone().requires_grad_(True)
    none = mask_losses(leaf, torch.ones(5, 5), torch.full((5, 5), -1), CFG)
    assert none.n_masks == 0 and none.total.item() == 0 and none.cohesion.item() == 0
    none.total.backward()
    assert leaf.grad is not None and leaf.grad.abs().max() == 0

    with pytest.raises(ValueError):
        mask_losses(feats, None, ids[:4], CFG)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_large_view_is_fast_and_never_dense():
    g = torch.Generator().manual_seed(5)
    h = w = 512
    d, masks = 6, 200
    feats = torch.randn(h, w, d, generator=g).requires_grad_(True)
    alpha = torch.rand(h, w, 1, generator=g)
    blocks = torch.randint(-1, masks, (16, 16), generator=g)
    blocks[0, : min(16, masks)] = torch.arange(16)
    ids = blocks.repeat_interleave(32, 0).repeat_interleave(32, 1)
    ids[:, ::7] = torch.randint(0, masks, (h, (w + 6) // 7), generator=g)
    with _LargestTensor() as probe:
        out = mask_losses(feats, alpha, ids, CFG, late=True)
        out.total.backward()
    assert probe.largest <= h * w * d  # a [masks, H, W] tensor would hold 200 * 512 * 512
    assert out.n_masks == masks
    assert torch.isfinite(feats.grad).all()
    start = time.perf_counter()
    mask_losses(feats, alpha, ids, CFG, late=True).total.backward()
    assert time.perf_counter() - start < 1.0  # about 0.05 s on one thread
