"""Tile rasterizer (numba) against the dense torch oracle, finite differences and edge cases."""

from __future__ import annotations

import pytest
import torch

from csgaussian.render import RasterConfig, RasterError, rasterize_gaussians

NAMES = ["means", "quats", "scales", "opacities", "colors", "background"]


def _render_and_grads(params, cam, backend, config=RasterConfig(), seed=0):  # noqa: B008
    """Outputs and gradients of a random weighted sum of colours, alpha and depth."""
    params = [p.detach().clone().requires_grad_(True) for p in params]
    out = rasterize_gaussians(*params[:5], cam, params[5], config, backend)
    out.means2d.retain_grad()
    g = torch.Generator().manual_seed(seed)
    loss = (
        (out.colors * torch.randn(out.colors.shape, generator=g)).sum()
        + (out.alpha * torch.randn(out.alpha.shape, generator=g)).sum()
        + (out.depth * torch.randn(out.depth.shape, generator=g)).sum()
    )
    loss.backward()
    return out, [p.grad for p in params] + [out.means2d.grad]


def _assert_match(params, cam, config=RasterConfig()) -> None:  # noqa: B008
    fast, g_fast = _render_and_grads(params, cam, "numba", config)
    ref, g_ref = _render_and_grads(params, cam, "torch", config)
    for name in ("colors", "alpha", "depth"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.radii, ref.radii)
    for name, a, b in zip([*NAMES, "means2d"], g_fast, g_ref, strict=True):
        scale = float(b.abs().max()) + 1e-6
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5 * scale, msg=f"grad {name}")


@pytest.mark.parametrize(("n", "channels", "seed"), [(50, 3, 0), (300, 3, 1), (150, 7, 2)])
def test_fast_matches_reference(scene, n: int, channels: int, seed: int) -> None:
    params, cam = scene(n, channels=channels, seed=seed)
    _assert_match(params, cam)


def test_fast_matches_reference_non_square_small_tiles(scene) -> None:
    params, cam = scene(120, seed=5, width=37, height=21)
    _assert_match(params, cam, RasterConfig(tile_size=8))


def test_fast_matches_reference_elongated_gaussians(scene) -> None:
    # Needles and wide discs at every angle, over many small tiles: the kernels evaluate a
    # Gaussian only on the rows where its ellipse crosses a tile, so a wrong cut shows here.
    params, cam = scene(80, seed=13, width=48, height=40)
    g = torch.Generator().manual_seed(13)
    stretch = torch.exp(torch.randn(80, 3, generator=g) * 1.2)
    params[2] = params[2] * stretch * 3.0
    params[3] = torch.rand(80, generator=g) * 0.5 + 0.5
    _assert_match(params, cam, RasterConfig(tile_size=8))


def test_fast_gradients_match_central_differences(scene) -> None:
    # Cut-offs pushed out so the image is smooth; float32 so tolerances are loose.
    config = RasterConfig(alpha_min=1e-7, transmittance_min=1e-7, radius_sigmas=6.0)
    params, cam = scene(20, channels=3, seed=7, width=16, height=12)
    _, grads = _render_and_grads(params, cam, "numba", config, seed=1)

    def loss(ps: list[torch.Tensor]) -> float:
        out = rasterize_gaussians(*ps[:5], cam, ps[5], config)
        g = torch.Generator().manual_seed(1)
        total = (out.colors.double() * torch.randn(out.colors.shape, generator=g)).sum()
        total += (out.alpha.double() * torch.randn(out.alpha.shape, generator=g)).sum()
        return float(total + (out.depth.double() * torch.randn(out.depth.shape, generator=g)).sum())

    g = torch.Generator().manual_seed(2)
    for i, name in enumerate(NAMES):
        direction = torch.randn(params[i].shape, generator=g)
        h = 1e-3 * float(params[i].abs().mean())
        plus = [p + h * direction if j == i else p for j, p in enumerate(params)]
        minus = [p - h * direction if j == i else p for j, p in enumerate(params)]
        numeric = (loss(plus) - loss(minus)) / (2 * h)
        analytic = float((grads[i] * direction).sum())
        assert abs(numeric - analytic) <= 2e-2 * abs(analytic) + 1e-2, name


def test_single_gaussian_at_principal_point(camera) -> None:
    cam = camera(33, 25)
    cam.K[0, 2], cam.K[1, 2] = 16.5, 12.5  # principal point at the centre of pixel (16, 12)
    out = rasterize_gaussians(
        torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        torch.full((1, 3), 0.1), torch.tensor([0.7]), torch.tensor([[1.0, 0.5, 0.0]]), cam,
        background=torch.tensor([0.0, 0.0, 1.0]),
    )  # fmt: skip
    torch.testing.assert_close(out.alpha[12, 16], torch.tensor([0.7]))
    torch.testing.assert_close(out.colors[12, 16], torch.tensor([0.7, 0.35, 0.3]))
    torch.testing.assert_close(out.depth[12, 16], torch.tensor([1.4]))
    assert float(out.alpha[12, 16]) > float(out.alpha[12, 20]) > float(out.alpha[12, 24])
    torch.testing.assert_close(out.alpha, out.alpha.flip(0).flip(1))  # symmetric about centre


def test_no_gaussians_returns_background(camera) -> None:
    bg = torch.tensor([0.2, 0.4, 0.6], requires_grad=True)
    for backend in ("numba", "torch"):
        empty = [torch.zeros(0, k, requires_grad=True) for k in (3, 4, 3)]
        out = rasterize_gaussians(*empty, torch.zeros(0), torch.zeros(0, 3), camera(), bg,
                                  backend=backend)  # fmt: skip
        assert out.colors.shape == (24, 32, 3) and out.radii.shape == (0,)
        torch.testing.assert_close(out.colors, bg.detach().expand(24, 32, 3))
        assert float(out.alpha.detach().abs().max()) == 0.0
        assert float(out.depth.detach().abs().max()) == 0.0
        (grad,) = torch.autograd.grad(out.colors.sum(), [bg])
        torch.testing.assert_close(grad, torch.full((3,), 24.0 * 32))


def test_all_behind_camera_renders_background_with_zero_grads(scene) -> None:
    params, cam = scene(30, seed=8)
    params[0] = params[0] * torch.tensor([1.0, 1.0, -1.0])
    out, grads = _render_and_grads(params, cam, "numba")
    assert int(out.radii.count_nonzero()) == 0
    torch.testing.assert_close(out.colors, params[5].expand_as(out.colors))
    for name, g in zip(NAMES[:5], grads[:5], strict=True):
        assert torch.isfinite(g).all() and float(g.abs().max()) == 0.0, name


def test_gaussian_straddling_tile_borders(camera) -> None:
    cam = camera(32, 32, focal=32.0)  # principal point (16, 16) is a corner of four tiles
    g = torch.Generator().manual_seed(3)
    params = [
        torch.tensor([[0.0, 0.0, 2.0], [0.3, -0.2, 2.5]]), torch.tensor([[1.0, 0, 0, 0]] * 2),
        torch.tensor([[0.2, 0.1, 0.1], [0.05, 0.3, 0.1]]), torch.tensor([0.8, 0.6]),
        torch.rand(2, 3, generator=g), torch.rand(3, generator=g),
    ]  # fmt: skip
    _assert_match(params, cam)
    out = rasterize_gaussians(*params[:5], cam, params[5])
    # Continuous across the tile border: neighbouring pixels on both sides of x = 16 agree.
    torch.testing.assert_close(out.alpha[10:22, 15], out.alpha[10:22, 16], rtol=0.05, atol=0)


def test_opacity_at_alpha_max(scene) -> None:
    params, cam = scene(40, seed=9)
    params[3] = torch.full_like(params[3], 1.0)  # alpha clamped to 0.99 near every centre
    _assert_match(params, cam)
    out = rasterize_gaussians(*params[:5], cam, params[5])
    assert float(out.alpha.max()) > 0.99


def test_far_off_screen_gaussian_is_culled(scene) -> None:
    params, cam = scene(30, seed=10)
    params[0][0] = torch.tensor([100.0, 0.0, 3.0])
    out, grads = _render_and_grads(params, cam, "numba")
    assert int(out.radii[0]) == 0
    assert float(grads[0][0].abs().max()) == 0.0
    _assert_match(params, cam)


def test_many_overlapping_gaussians_terminate_early(scene) -> None:
    params, cam = scene(200, seed=11)
    params[0][:, 2] = 3.0 + torch.linspace(0.0, 1.0, 200)
    params[0][:, :2] *= 0.1  # all stacked near the image centre
    params[2] = params[2] * 3.0
    params[3] = torch.full_like(params[3], 0.9)
    _assert_match(params, cam)
    out = rasterize_gaussians(*params[:5], cam, params[5])
    t_final = 1 - out.alpha
    assert float(t_final[12, 16]) < 1e-3  # the centre is saturated: compositing terminated
    assert float(t_final.min()) >= RasterConfig().transmittance_min * (1 - 1e-4)


def test_float64_inputs_keep_dtype(scene) -> None:
    params, cam = scene(20, seed=12)
    out = rasterize_gaussians(*[p.double() for p in params[:5]], cam, params[5].double())
    assert out.colors.dtype == torch.float64 and out.alpha.dtype == torch.float64


def test_bad_shapes_raise(scene) -> None:
    params, cam = scene(10)
    with pytest.raises(RasterError, match="quats"):
        rasterize_gaussians(params[0], params[1][:, :3], *params[2:5], cam)
    with pytest.raises(RasterError, match="background"):
        rasterize_gaussians(*params[:5], cam, torch.zeros(4))
    with pytest.raises(RasterError, match="backend"):
        rasterize_gaussians(*params[:5], cam, backend="cuda")  # type: ignore[arg-type]
