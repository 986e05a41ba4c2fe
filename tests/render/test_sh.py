"""SH colours: the fused numba path against the torch reference, and the basis itself."""

from __future__ import annotations

import math

import pytest
import torch

from csgaussian.render.sh import eval_sh, rasterize_sh, sh_basis, sh_coefficient_count


def _dirs(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)


def test_basis_is_orthonormal_on_the_sphere() -> None:
    """The 3DGS constants give an orthonormal basis: a wrong constant or sign of a term breaks
    it. Fibonacci points integrate the products (area 4 pi)."""
    n = 20_000
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = (1 - z * z).sqrt()
    dirs = torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)
    basis = sh_basis(dirs, 3)
    gram = basis.T @ basis * (4 * math.pi / n)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_numba_matches_torch_values_and_coefficient_gradients(degree: int) -> None:
    n, m = 300, sh_coefficient_count(degree)
    g = torch.Generator().manual_seed(degree)
    coeffs = torch.randn(n, m, 3, generator=g)
    dirs = _dirs(n, degree)
    weights = torch.randn(n, 3, generator=g)
    outs, grads = [], []
    for backend in ("torch", "numba"):
        c = coeffs.clone().requires_grad_(True)
        out = eval_sh(c, dirs, backend)
        (out * weights).sum().backward()
        outs.append(out.detach())
        grads.append(c.grad)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-5)


def test_sh_render_fast_path_matches_reference(scene) -> None:
    (means, quats, scales, opacities, _, background), camera = scene(40, seed=2)
    g = torch.Generator().manual_seed(5)
    coeffs = 0.3 * torch.randn(40, 16, 3, generator=g)
    images, grads = [], []
    for backend in ("torch", "numba"):
        c = coeffs.clone().requires_grad_(True)
        out = rasterize_sh(means, quats, scales, opacities, c, camera, background, backend=backend)
        out.colors.square().sum().backward()
        images.append(out.colors.detach())
        grads.append(c.grad)
    torch.testing.assert_close(images[1], images[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-3, rtol=1e-3)
    assert images[0].std() > 0.01  # the scene is not empty


def test_view_dependence_follows_the_direction() -> None:
    """A Gaussian whose only non-DC coefficient is the z term looks brighter from below
    (direction +z from the camera to it) than from above."""
    coeffs = torch.zeros(1, 4, 3)
    coeffs[0, 2] = 1.0  # Y_2 = C1 z
    up, down = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    assert float(eval_sh(coeffs, up).sum()) > 0 > float(eval_sh(coeffs, down).sum())
