"""The Scaffold-GS model: spawning, the offset mask, anchor edits with optimizer state."""

import torch

from csgaussian.scene.anchor_ops import AnchorDensifier, DensifyConfig, edit_anchors
from csgaussian.scene.scaffold import (
    AnchorGrid,
    ScaffoldConfig,
    ScaffoldModel,
    scaffold_from_points,
)
from csgaussian.types import Camera


def _camera() -> Camera:
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0  # camera at z = -3 looking along +z at the origin
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    return Camera(viewmat=viewmat, K=K, width=64, height=48)


def _model(n: int = 50, seed: int = 0) -> ScaffoldModel:
    torch.manual_seed(seed)
    grid = AnchorGrid.covering(torch.tensor([[-0.5] * 3, [0.5] * 3]), 0.05, margin=0.5)
    model = scaffold_from_points(torch.rand(n, 3) - 0.5, grid, ScaffoldConfig())
    model.features.data.normal_()
    return model


def test_anchor_grid_snaps_dedupes_and_drops_outside_points():
    grid = AnchorGrid.covering(torch.tensor([[0.0] * 3, [1.0] * 3]), 0.1, margin=0.0)
    assert grid.depth == 4 and 2**grid.depth * 0.1 >= 1.0
    points = torch.tensor([[0.01, 0.0, 0.0], [0.02, 0.0, 0.0], [0.26, 0.0, 0.0], [9.0, 0.0, 0.0]])
    model = scaffold_from_points(points, grid, ScaffoldConfig())
    assert model.n_anchors == 2
    assert torch.allclose(model.anchors[:, 0].sort().values, torch.tensor([0.0, 0.3]))
    assert torch.equal(model.anchors, grid.positions(model.anchor_cells))
    cube = grid.unit_cube(model.anchor_cells)
    assert cube.dtype == torch.float64 and (cube.abs() < 1).all()


def test_neural_gaussians_geometry_follows_anchor_offsets_and_scaling():
    model = _model()
    g = model.neural_gaussians(_camera())
    k = model.config.n_offsets
    assert g.means.shape[0] == g.scales.shape[0] == g.opacities.shape[0] <= model.n_anchors * k
    assert (g.opacities > 0).all() and (g.scales > 0).all()
    assert torch.allclose(g.quats.norm(dim=1), torch.ones(len(g.quats)), atol=1e-5)
    scaling = torch.exp(model.log_scaling)[g.anchor_index]
    expected = (
        model.anchors[g.anchor_index]
        + model.offsets[g.anchor_index, g.offset_index] * scaling[:, :3]
    )
    assert torch.allclose(g.means, expected)
    assert (g.scales <= scaling[:, 3:] + 1e-6).all()  # sigmoid factor <= 1


def test_anchors_behind_the_camera_spawn_nothing():
    model = _model()
    model.anchors[:, 2] = -10.0  # behind the camera at z = -3
    assert model.neural_gaussians(_camera()).means.shape[0] == 0


def test_offset_mask_is_hard_forward_with_straight_through_gradient():
    model = _model()
    model.mask_logits.data[:, 0] = -10.0  # sigmoid < 0.01: masked
    mask = model.offset_mask(use_mask=True)
    assert (mask[:, 0] == 0).all() and (mask[:, 1:] == 1).all()
    mask.sum().backward()
    soft = torch.sigmoid(model.mask_logits.detach())
    assert torch.allclose(model.mask_logits.grad, soft * (1 - soft))
    g = model.neural_gaussians(_camera())
    assert (g.offset_index != 0).all()  # masked offsets are dropped


def test_edit_anchors_keeps_adam_moments_aligned():
    model = _model(n=20)
    optimizer = torch.optim.Adam(list(model.anchor_parameters().values()), lr=0.01)
    model.features.sum().backward()
    (model.offsets.sum() * 2).backward()
    optimizer.step()
    before = optimizer.state[model.features]["exp_avg"].clone()
    keep = torch.arange(model.n_anchors) % 2 == 0
    anchors_kept = model.anchors[keep].clone()
    new_values = {
        name: torch.ones((3,) + p.shape[1:]) for name, p in model.anchor_parameters().items()
    }
    edit_anchors(
        model,
        optimizer,
        keep=keep,
        new_cells=torch.ones(3, 3, dtype=torch.long),
        new_values=new_values,
    )
    n_kept = int(keep.sum())
    assert model.n_anchors == n_kept + 3
    assert torch.equal(model.anchors[:n_kept], anchors_kept)
    state = optimizer.state[model.features]
    assert torch.equal(state["exp_avg"][:n_kept], before[keep])
    assert (state["exp_avg"][n_kept:] == 0).all()
    params_in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in model.anchor_parameters().values()} <= params_in_optimizer
    loss = model.features.sum() + model.offsets.sum()
    loss.backward()
    optimizer.step()  # shapes agree after the edit


def test_densifier_grows_where_gradients_are_large_and_prunes_transparent_anchors():
    torch.manual_seed(0)
    model = _model(n=30)
    config = DensifyConfig(start=0, interval=10, grad_threshold=0.001)
    densifier = AnchorDensifier(config)
    densifier.reset(model.n_anchors, model.config.n_offsets)
    optimizer = torch.optim.Adam(list(model.anchor_parameters().values()), lr=0.01)
    model.offsets.data.uniform_(-3, 3)  # offsets reach beyond the anchor's own voxel
    densifier.grad_accum[:5] = 1.0  # anchors 0-4: large gradients on every offset
    densifier.grad_visits[:] = 10
    densifier.anchor_visits[:] = 10
    densifier.opacity_accum[:] = 1.0
    densifier.opacity_accum[10] = 0.0  # anchor 10 never shows: pruned
    n_before = model.n_anchors
    kept_anchor = model.anchors[11].clone()
    pruned_anchor = model.anchors[10].clone()
    grown, pruned = densifier.step(model, optimizer)
    assert grown > 0 and pruned == 1
    assert model.n_anchors == n_before + grown - 1
    assert not (model.anchors == pruned_anchor).all(dim=1).any()
    assert (model.anchors == kept_anchor).all(dim=1).any()
    assert densifier.grad_accum.shape[0] == model.n_anchors


def test_zeroing_unused_slot_outputs_leaves_the_drawn_gaussians_unchanged():
    model = _model()
    in_use = torch.ones(model.config.n_offsets, dtype=torch.bool)
    in_use[[0, 3]] = False
    with torch.no_grad():
        model.mask_logits[:, ~in_use] = -20.0  # no anchor uses slots 0 and 3
    before = model.neural_gaussians(_camera())
    model.zero_unused_slot_outputs(in_use)
    after = model.neural_gaussians(_camera())
    assert len(before.means) > 0 and not set(after.offset_index.tolist()) & {0, 3}
    for name in ("means", "scales", "quats", "opacities", "colors", "anchor_index"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    assert model.cov_mlp[2].weight[21:28].abs().sum() == 0  # slot 3's seven covariance rows
    assert model.cov_mlp[2].weight[28:35].abs().sum() > 0
