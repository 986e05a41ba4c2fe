"""The dense torch oracle: hand-computed compositing, 3DGS cut-offs and gradcheck in float64."""

from __future__ import annotations

import torch

from csgaussian.render import RasterConfig, rasterize_gaussians
from csgaussian.render.reference import composite_dense

# Cut-offs pushed far out so the image is a smooth function of the inputs (for gradcheck).
SMOOTH = RasterConfig(alpha_min=1e-9, transmittance_min=1e-9, radius_sigmas=7.0)


def _stack(n: int, opacity: float, channels: int = 3) -> list[torch.Tensor]:
    """``n`` wide Gaussians at the image centre, depths 1..n, colour channel k = depth index."""
    means2d = torch.tensor([[8.0, 6.0]]).repeat(n, 1)
    conics = torch.tensor([[1e-4, 0.0, 1e-4]]).repeat(n, 1)
    opacities = torch.full((n,), opacity)
    colors = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, channels)
    depths = torch.arange(n, dtype=torch.float32) + 1
    background = torch.full((channels,), 100.0)
    radii = torch.full((n,), 100, dtype=torch.int32)
    return [means2d, conics, opacities, colors, depths, background, radii]


def test_front_to_back_by_hand() -> None:
    # Listed back to front, so the oracle must sort: front colour 1 (alpha .5), back 2 (alpha .25)
    args = _stack(2, 0.5)
    args[2] = torch.tensor([0.25, 0.5])
    args[3] = torch.tensor([[2.0], [1.0]])
    args[4] = torch.tensor([5.0, 4.0])
    args[5] = torch.tensor([10.0])
    colors, alpha, depth = composite_dense(*args, 16, 12, RasterConfig())
    # centre pixel centre (8.5, 6.5): exp(-0.5 * 1e-4 * 0.5) ~ 1 - 2.5e-5
    t_final = (1 - 0.5) * (1 - 0.25)
    expect = torch.tensor([0.5 * 1 + 0.5 * 0.25 * 2 + t_final * 10])
    torch.testing.assert_close(colors[6, 8], expect, rtol=1e-4, atol=0)
    torch.testing.assert_close(alpha[6, 8], torch.tensor([1 - t_final]), rtol=1e-4, atol=0)
    torch.testing.assert_close(depth[6, 8], torch.tensor([0.5 * 4 + 0.125 * 5]), rtol=1e-4, atol=0)


def test_early_termination_excludes_the_crossing_gaussian() -> None:
    # T after k Gaussians of alpha .95 is .05^k: 1.25e-4 after 3, 6.25e-6 (< 1e-4) after 4.
    colors, alpha, _ = composite_dense(*_stack(6, 0.95), 16, 12, RasterConfig())
    a = 0.95 * torch.exp(torch.tensor(-0.5 * 1e-4 * 0.5))
    expect = sum(a * (1 - a) ** k * k for k in range(3)) + (1 - a) ** 3 * 100.0
    torch.testing.assert_close(colors[6, 8, 0], expect, rtol=1e-5, atol=0)
    torch.testing.assert_close(alpha[6, 8, 0], 1 - (1 - a) ** 3, rtol=1e-6, atol=0)


def test_alpha_max_clamp_and_alpha_min_skip() -> None:
    args = _stack(1, 1.0)
    colors, alpha, _ = composite_dense(*args, 16, 12, RasterConfig())
    torch.testing.assert_close(alpha[6, 8, 0], torch.tensor(0.99))
    args[2] = torch.tensor([0.9 / 255])  # below alpha_min everywhere: invisible
    colors, alpha, _ = composite_dense(*args, 16, 12, RasterConfig())
    assert float(alpha.abs().max()) == 0.0
    torch.testing.assert_close(colors, torch.full_like(colors, 100.0))


def test_gradcheck_compositor_float64() -> None:
    g = torch.Generator().manual_seed(0)
    n = 12
    means2d = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([10.0, 7.0])
    conics = torch.tensor([[0.3, 0.05, 0.2]], dtype=torch.float64).repeat(n, 1)
    conics = conics * (0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64))
    opac = torch.rand(n, generator=g, dtype=torch.float64) * 0.8 + 0.1
    colors = torch.rand(n, 2, generator=g, dtype=torch.float64)
    depths = torch.rand(n, generator=g, dtype=torch.float64) + 1
    bg = torch.rand(2, generator=g, dtype=torch.float64)
    radii = torch.full((n,), 30, dtype=torch.int32)
    inputs = [x.requires_grad_(True) for x in (means2d, conics, opac, colors, depths, bg)]

    def fn(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return composite_dense(*xs, radii, 10, 7, SMOOTH)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_full_pipeline_float64(scene) -> None:
    params, cam = scene(8, channels=2, seed=4, width=10, height=8)
    inputs = [p.double().requires_grad_(True) for p in params]

    def fn(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = rasterize_gaussians(*xs[:5], cam, xs[5], SMOOTH, backend="torch")
        return out.colors, out.alpha, out.depth

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
