"""The stage-1 rate model: what it quantizes, what it prices, and what masking saves."""

import pytest
import torch

from csgaussian.entropy.anchors import AnchorEntropyModel, RateConfig
from csgaussian.entropy.quantize import adaptive_step
from csgaussian.scene.scaffold import AnchorGrid, ScaffoldConfig, scaffold_from_points


@pytest.fixture
def model():
    torch.manual_seed(0)
    grid = AnchorGrid.covering(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.05, margin=0.2)
    model = scaffold_from_points(torch.rand(200, 3) * 2 - 1, grid, ScaffoldConfig())
    model.features.data.normal_(0, 3)
    model.offsets.data.normal_(0, 1)
    return model


@pytest.mark.parametrize("kind", ["inr", "hashgrid"])
def test_round_mode_puts_every_attribute_on_its_step_grid(model, kind):
    entropy = AnchorEntropyModel(model, RateConfig(hyperprior=kind))
    ids = torch.arange(model.n_anchors)
    mask = torch.ones(model.n_anchors, model.config.n_offsets)
    out = entropy(model, ids, "round", mask)
    positions = model.grid.unit_cube(model.anchor_cells).float()
    feature_params = entropy.hyperprior.params(positions)["feature"]
    step = adaptive_step(entropy.config.quant.q0("feature"), feature_params.r)
    features = out.attributes["features"]
    assert features.shape == model.features.shape
    ratio = features / step
    assert torch.allclose(ratio, ratio.round(), atol=1e-3)
    assert out.attributes["offsets"].shape == model.offsets.shape
    assert out.bits > 0 and out.n_values == model.n_anchors * (50 + 6 + 30)


def test_masked_offsets_cost_nothing(model):
    entropy = AnchorEntropyModel(model, RateConfig())
    ids = torch.arange(model.n_anchors)
    k = model.config.n_offsets
    full = entropy(model, ids, "round", torch.ones(model.n_anchors, k))
    half_mask = torch.ones(model.n_anchors, k)
    half_mask[:, : k // 2] = 0
    half = entropy(model, ids, "round", half_mask)
    assert half.n_values == full.n_values - model.n_anchors * 3 * (k // 2)
    assert half.bits < full.bits


def test_rate_gradient_reaches_attributes_and_hyperprior(model):
    entropy = AnchorEntropyModel(model, RateConfig())
    ids = torch.arange(50)
    out = entropy(model, ids, "noise", torch.ones(50, model.config.n_offsets))
    out.bits_per_value.backward()
    assert model.features.grad[:50].abs().sum() > 0
    assert model.features.grad[50:].abs().sum() == 0
    assert all(p.grad is not None for p in entropy.parameters())
