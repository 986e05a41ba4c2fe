"""render_view: the rasterizer backend of the configuration reaches the compositor."""

from __future__ import annotations

import pytest
import torch

from csgaussian.render import RasterConfig, RasterError
from csgaussian.render import rasterize as rasterize_module
from csgaussian.scene.rendering import render_view
from csgaussian.scene.scaffold import (
    AnchorGrid,
    ScaffoldConfig,
    ScaffoldModel,
    scaffold_from_points,
)
from csgaussian.types import Camera


def _scene() -> tuple[ScaffoldModel, Camera]:
    torch.manual_seed(0)
    grid = AnchorGrid.covering(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.1, 0.5)
    model = scaffold_from_points(torch.rand(40, 3) * 2 - 1, grid, ScaffoldConfig())
    model.features.data.normal_()
    viewmat = torch.eye(4)
    viewmat[2, 3] = 4.0
    K = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]])
    return model, Camera(viewmat, K, 32, 24)


def test_render_view_uses_the_configured_backend(monkeypatch):
    model, camera = _scene()
    calls = []
    dense = rasterize_module.BACKENDS["torch"]

    def spy(*args):
        calls.append(args[-1].backend)
        return dense(*args)

    monkeypatch.setitem(rasterize_module.BACKENDS, "torch", spy)
    with torch.no_grad():
        fast = render_view(model, camera, RasterConfig())
        ref = render_view(model, camera, RasterConfig(backend="torch"))
    assert calls == ["torch"]
    assert fast.gaussians.means.shape[0] > 0
    torch.testing.assert_close(fast.image, ref.image, rtol=1e-5, atol=1e-5)


def test_an_unknown_backend_is_one_clear_error():
    model, camera = _scene()
    with pytest.raises(RasterError, match="unknown backend 'cuda'"):
        render_view(model, camera, RasterConfig(backend="cuda"))
