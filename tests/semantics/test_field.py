"""The semantic field: the latent + MLP field and the per-slot (OpenGaussian-style) baseline."""

from __future__ import annotations

import torch

from csgaussian.semantics.field import SemanticConfig, SemanticField


def test_per_slot_features_are_free_and_independent_per_slot() -> None:
    """The baseline's feature of slot k reads only its own values: a gradient through one
    Gaussian reaches no other slot of its anchor, and no MLP exists to share it."""
    config = SemanticConfig(feature_dim=6)
    field = SemanticField(5, config, seed=1, per_slot=4)
    assert field.latents.shape == (5, 4 * 6) and not list(field.mlp.parameters())
    offsets = torch.randn(5, 4, 3)
    slots = field.slot_features(offsets)
    torch.testing.assert_close(slots.norm(dim=-1), torch.ones(5, 4))
    anchors, k = torch.tensor([2, 2, 0]), torch.tensor([1, 3, 1])
    per_gaussian = field.gaussian_features(field.latents[anchors], offsets[anchors, k], k)
    torch.testing.assert_close(per_gaussian, slots[anchors, k])
    per_gaussian[0].sum().backward()
    touched = field.latents.grad.view(5, 4, 6).abs().sum(-1) > 0
    assert touched.nonzero().tolist() == [[2, 1]]


def test_latent_field_gaussian_features_match_slot_features() -> None:
    field = SemanticField(3, SemanticConfig(latent_dim=8, feature_dim=6), seed=0)
    offsets = torch.randn(3, 10, 3)
    slots = field.slot_features(offsets)
    anchors, k = torch.tensor([0, 2]), torch.tensor([4, 9])
    got = field.gaussian_features(field.latents[anchors], offsets[anchors, k], k)
    torch.testing.assert_close(got, slots[anchors, k])
