"""Leaf-mask votes over views, their language features, and the dedupe of the language table."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from csgaussian.train.semantic_association import (
    AssociationConfig,
    LeafMaskVotes,
    dedupe_language,
)

N_LEAVES, DIM = 6, 5


def _view(pairs: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-row view from (leaf, mask, pixel count) runs; -1 = none."""
    leaf = torch.tensor([lf for lf, _, n in pairs for _ in range(n)])
    mask = torch.tensor([m for _, m, n in pairs for _ in range(n)])
    if len(leaf) % 2:
        leaf, mask = torch.cat([leaf, torch.tensor([-1])]), torch.cat([mask, torch.tensor([-1])])
    return leaf.view(2, -1), mask.view(2, -1)


# leaf 0: all in mask 0; leaf 1: 4/6 in mask 1; leaf 2: only 3 pixels; leaf 3: 2/4 in mask 1;
# leaf 4: best share 2/5; pixels without a leaf never count.
VIEW_A = _view([(0, 0, 6), (1, 1, 4), (1, 2, 2), (2, 2, 3), (3, 1, 2), (3, -1, 2), (4, 0, 2),
                (4, 1, 1), (4, 2, 1), (4, -1, 1), (-1, 0, 9), (-1, -1, 3)])  # fmt: skip
# leaf 0: all in mask 1; leaves 1 and 2: all in mask 0; leaf 3: one pixel.
VIEW_B = _view([(0, 1, 5), (1, 0, 4), (2, 0, 4), (3, 1, 1), (-1, 1, 2)])


def _features(seed: int, n: int) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed)) * 3.0


def _votes(config: AssociationConfig) -> tuple[LeafMaskVotes, list[list[int]], list[torch.Tensor]]:
    feats = [_features(0, 3), _features(1, 2)]
    votes = LeafMaskVotes(N_LEAVES, DIM, config)
    cast = [votes.add_view(*VIEW_A, feats[0]).tolist(), votes.add_view(*VIEW_B, feats[1]).tolist()]
    return votes, cast, feats


def test_two_views_votes_and_means():
    votes, cast, (fa, fb) = _votes(AssociationConfig())
    assert cast == [[0, 1, -1, 1, -1, -1], [1, 0, 0, -1, -1, -1]]
    assert votes.counts.tolist() == [2, 2, 1, 1, 0, 0]
    language, matched = votes.language()
    assert matched.tolist() == [True, True, False, False, False, False]
    expected = torch.zeros(N_LEAVES, DIM)
    expected[0] = F.normalize(fa[0] + fb[1], dim=0)
    expected[1] = F.normalize(fa[1] + fb[0], dim=0)
    torch.testing.assert_close(language, expected)

    language, matched = votes.language(AssociationConfig(min_views=1))
    assert matched.tolist() == [True, True, True, True, False, False]
    torch.testing.assert_close(language[2], F.normalize(fb[0], dim=0))
    torch.testing.assert_close(language[3], F.normalize(fa[1], dim=0))


def test_thresholds_take_effect():
    _, cast, _ = _votes(AssociationConfig(min_overlap=0.7))
    assert cast[0] == [0, -1, -1, -1, -1, -1]  # 4/6 and 2/4 shares no longer vote
    _, cast, _ = _votes(AssociationConfig(min_overlap=0.4, min_pixels=3))
    assert cast[0] == [0, 1, 2, 1, 0, -1]  # leaf 2 (3 pixels) and leaf 4 (2/5) now vote


def test_bad_inputs():
    votes = LeafMaskVotes(N_LEAVES, DIM)
    leaf, mask = VIEW_A
    with pytest.raises(ValueError):
        votes.add_view(leaf, mask[:, :-1], _features(0, 3))
    with pytest.raises(ValueError):
        votes.add_view(leaf, mask, _features(0, 2))  # mask id 2 has no feature
    with pytest.raises(ValueError):
        votes.add_view(leaf + N_LEAVES, mask, _features(0, 3))
    assert votes.add_view(leaf, torch.full_like(mask, -1), torch.zeros(0, DIM)).max() == -1


def test_dedupe_merges_near_identical_rows():
    a, b, c = torch.eye(3)
    near_a = F.normalize(a + 0.1 * c, dim=0)  # cosine 0.995 with a
    rows = torch.stack([a, b, a, near_a, c, 2.0 * b])
    matched = torch.tensor([True, True, True, True, False, True])
    table, index = dedupe_language(rows, matched, 0.98)
    assert index.tolist() == [0, 1, 0, 0, -1, 1]
    torch.testing.assert_close(table[0], F.normalize(a + a + near_a, dim=0))
    torch.testing.assert_close(table[1], b)
    assert table.shape == (2, 3)

    table, index = dedupe_language(rows, matched, 0.999)
    assert index.tolist() == [0, 1, 0, 2, -1, 1]
    torch.testing.assert_close(table[2], near_a)

    table, index = dedupe_language(rows, torch.zeros(6, dtype=torch.bool), 0.98)
    assert table.shape == (0, 3) and index.tolist() == [-1] * 6
