"""The browser's splats: the export's closed-form start, edited and highlighted by anchor slot as
the server edits its neural Gaussians."""

import torch

from csgaussian import api
from csgaussian.scene.edits import SceneEdit
from csgaussian.viewer.splats import edited, highlighted, splats_of


def test_splats_follow_edits_and_highlights_by_slot(tiny_run):
    scene = api.decode(tiny_run / "stream.csg")
    splats = splats_of(scene.model, scene.cameras, n_views=4)
    n = len(splats)
    assert n > 0 and splats.covariances.shape == (n, 3, 3)
    assert torch.linalg.eigvalsh(splats.covariances).min() > 0  # positive definite
    assert splats.rgbs.min() >= 0 and splats.rgbs.max() <= 1
    slots = torch.zeros_like(scene.model.active_slots())
    slots[splats.anchor_index[: n // 2], splats.offset_index[: n // 2]] = True
    chosen = splats.at_slots(slots)
    k = int(chosen.sum())
    assert 0 < k < n
    assert len(edited(splats, [SceneEdit("remove", slots)])) == n - k
    assert len(edited(splats, [SceneEdit("extract", slots)])) == k
    copied = edited(splats, [SceneEdit("duplicate", slots, offset=(1.0, 0.0, 0.0))])
    assert len(copied) == n + k
    assert torch.allclose(copied.centers[n:], splats.centers[chosen] + torch.tensor([1.0, 0, 0]))
    twice = edited(copied, [SceneEdit("remove", slots)])  # a copy keeps its slot
    assert len(twice) == n - k
    red = edited(splats, [SceneEdit("recolor", slots, color=(1.0, 0.0, 0.0))])
    assert torch.equal(red.rgbs[~chosen], splats.rgbs[~chosen])
    assert not torch.equal(red.rgbs[chosen], splats.rgbs[chosen])
    tinted = highlighted(splats, slots, (1.0, 0.0, 0.0))
    assert torch.equal(tinted[~chosen], splats.rgbs[~chosen])
    assert torch.allclose(tinted[chosen, 0], 0.5 * splats.rgbs[chosen, 0] + 0.5)
    assert highlighted(splats, None, (1.0, 0.0, 0.0)) is splats.rgbs
