"""Deterministic two-level codebook: recovery, determinism, receiver-side assignment, edge cases."""

from __future__ import annotations

import torch

from csgaussian.semantics.codebook import (
    Codebook,
    CodebookConfig,
    assign_leaves,
    fit_codebook,
)


def _blobs(n_per: int, n_blobs: int, dim: int = 6, seed: int = 0, noise: float = 0.05):
    """Well-separated blobs in feature and position; returns features, positions, truth."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_blobs, dim, generator=g) * 3.0
    places = torch.randn(n_blobs, 3, generator=g) * 3.0
    truth = torch.arange(n_blobs).repeat_interleave(n_per)
    feats = centres[truth] + noise * torch.randn(len(truth), dim, generator=g)
    pos = places[truth] + noise * torch.randn(len(truth), 3, generator=g)
    return feats, pos, truth


def _random(n: int, seed: int, dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.rand(n, 3, generator=g)


def _same(a: Codebook, b: Codebook) -> bool:
    return (
        torch.equal(a.coarse, b.coarse)
        and torch.equal(a.fine, b.fine)
        and torch.equal(a.fine_valid, b.fine_valid)
        and torch.equal(a.labels, b.labels)
    )


def test_recovers_separated_clusters():
    feats, pos, truth = _blobs(150, 5)
    cb = fit_codebook(feats, pos, CodebookConfig(n_coarse=5, n_fine=3))
    assert cb.coarse.shape == (5, 9) and cb.fine.shape == (5, 3, 6) and cb.n_leaves == 15
    assert bool(cb.fine_valid.all())
    coarse_of = cb.labels // 3
    owners = []
    for blob in range(5):
        ids = torch.unique(coarse_of[truth == blob])
        assert ids.numel() == 1, f"blob {blob} spread over coarse clusters {ids.tolist()}"
        owners.append(int(ids))
    assert sorted(owners) == list(range(5))
    # the coarse centres sit on the blob means in the joint space
    for blob, c in enumerate(owners):
        mean = torch.cat([feats[truth == blob], 0.5 * pos[truth == blob]], 1).mean(0)
        torch.testing.assert_close(cb.coarse[c], mean, atol=1e-5, rtol=0)


def test_deterministic_and_thread_independent():
    feats, pos = _random(40_000, seed=1)
    cfg = CodebookConfig(n_coarse=16, n_fine=4, iterations=8, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = fit_codebook(feats, pos, cfg)
        torch.set_num_threads(1)
        one = fit_codebook(feats, pos, cfg)
        again = fit_codebook(feats, pos, cfg)
    finally:
        torch.set_num_threads(before)
    assert _same(one, again)
    assert _same(one, two)
    other = fit_codebook(feats, pos, CodebookConfig(n_coarse=16, n_fine=4, iterations=8, seed=4))
    assert not torch.equal(other.coarse, one.coarse)


def test_assign_reproduces_fit_labels():
    feats, pos = _random(3000, seed=2)
    for iterations in (1, 30):  # stopped early and (nearly) converged
        cb = fit_codebook(feats, pos, CodebookConfig(n_coarse=8, n_fine=5, iterations=iterations))
        leaves = assign_leaves(cb, feats, pos)
        assert leaves.dtype == torch.int64
        assert torch.equal(leaves, cb.labels)
        assert bool(cb.fine_valid.view(-1)[leaves].all())
    # a decoded codebook (no labels, centres only) assigns the same way
    decoded = Codebook(cb.coarse.clone(), cb.fine.clone(), cb.fine_valid.clone(), 0.5)
    assert torch.equal(assign_leaves(decoded, feats, pos), cb.labels)


def test_weights_shift_centres():
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    pos = torch.zeros(2, 3)
    cfg = CodebookConfig(n_coarse=1, n_fine=1)
    plain = fit_codebook(feats, pos, cfg)
    heavy = fit_codebook(feats, pos, cfg, weights=torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(plain.fine[0, 0], torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(heavy.fine[0, 0], torch.tensor([0.75, 0.0]))
    torch.testing.assert_close(heavy.coarse[0, :2], torch.tensor([0.75, 0.0]))


def test_duplicates_and_fewer_points_than_clusters():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    pos = torch.zeros(5, 3)
    cb = fit_codebook(feats, pos, CodebookConfig(n_coarse=16, n_fine=4))
    assert torch.isfinite(cb.coarse).all() and torch.isfinite(cb.fine).all()
    assert cb.coarse.shape[0] == 2  # two distinct points: two coarse clusters
    assert cb.fine_valid.sum(1).tolist() == [1, 1]
    assert cb.n_leaves == 8
    leaves = assign_leaves(cb, feats, pos)
    assert torch.equal(leaves, cb.labels)
    assert leaves[0] == leaves[1] == leaves[2] != leaves[3] == leaves[4]
    assert bool(cb.fine_valid.view(-1)[leaves].all())

    single = fit_codebook(feats[:1], pos[:1], CodebookConfig(n_coarse=4, n_fine=4))
    assert single.coarse.shape == (1, 5) and single.labels.tolist() == [0]

    zero = fit_codebook(feats, pos, CodebookConfig(n_coarse=2, n_fine=2), weights=torch.zeros(5))
    assert torch.isfinite(zero.coarse).all() and torch.isfinite(zero.fine).all()
    assert torch.equal(assign_leaves(zero, feats, pos), zero.labels)
