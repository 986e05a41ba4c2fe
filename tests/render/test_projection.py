"""EWA projection: rotations, covariances, screen positions, culling and tile rectangles."""

from __future__ import annotations

import math

import torch

from csgaussian.render import RasterConfig
from csgaussian.render.projection import (
    alpha_reach,
    covariance_3d,
    project_gaussians,
    quat_to_rotmat,
    tile_rects,
)


def test_rotmat_is_orthonormal_and_matches_known_rotation() -> None:
    q = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    R = quat_to_rotmat(q)
    eye = torch.eye(3, dtype=torch.float64).expand(10, 3, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(10, dtype=torch.float64))
    # 90 degrees about z, unnormalised quaternion: x -> y
    half = math.sqrt(0.5)
    Rz = quat_to_rotmat(torch.tensor([[2 * half, 0.0, 0.0, 2 * half]], dtype=torch.float64))[0]
    torch.testing.assert_close(Rz @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1, 0], dtype=torch.float64))  # fmt: skip


def test_covariance_eigenvalues_are_squared_scales() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(5, 4, dtype=torch.float64, generator=g)
    s = torch.rand(5, 3, dtype=torch.float64, generator=g) + 0.1
    eig = torch.linalg.eigvalsh(covariance_3d(q, s))
    torch.testing.assert_close(eig, torch.sort(s**2, dim=-1).values)


def test_isotropic_gaussian_on_axis(camera) -> None:
    cam = camera(32, 24, focal=30.0)
    s, z = 0.05, 2.0
    proj = project_gaussians(
        torch.tensor([[0.0, 0.0, z]]), torch.tensor([[1.0, 0, 0, 0]]),
        torch.full((1, 3), s), cam, RasterConfig(),
    )  # fmt: skip
    var = (30.0 * s / z) ** 2 + 0.3
    torch.testing.assert_close(proj.means2d, torch.tensor([[16.0, 12.0]]))
    torch.testing.assert_close(proj.conics, torch.tensor([[1 / var, 0.0, 1 / var]]))
    torch.testing.assert_close(proj.depths, torch.tensor([z]))
    assert proj.radii.dtype == torch.int32
    assert int(proj.radii[0]) == math.ceil(3 * math.sqrt(var))


def test_culling_behind_near_and_off_screen(camera) -> None:
    means = torch.tensor([[0.0, 0, -1.0], [0.0, 0, 0.005], [50.0, 0, 2.0], [0.1, 0.1, 2.0]])
    n = means.shape[0]
    quats = torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4)
    proj = project_gaussians(means, quats, torch.full((n, 3), 0.01), camera(), RasterConfig())
    assert proj.radii.tolist()[:3] == [0, 0, 0]
    assert int(proj.radii[3]) > 0
    assert torch.isfinite(proj.means2d).all() and torch.isfinite(proj.conics).all()


def test_tile_rects_straddling_and_clamped() -> None:
    means2d = torch.tensor([[16.0, 16.0], [2.0, 2.0], [40.0, 5.0], [8.0, 8.0]])
    radii = torch.tensor([3, 5, 100, 0], dtype=torch.int32)
    rects = tile_rects(means2d, radii, width=40, height=24, tile_size=16).tolist()
    assert rects[0] == [0, 0, 2, 2]  # straddles the corner of four tiles
    assert rects[1] == [0, 0, 1, 1]  # clamped at the image origin
    assert rects[2] == [0, 0, 3, 2]  # clamped to 3 x 2 tiles
    assert rects[3] == [0, 0, 0, 0]  # culled: empty


def test_alpha_reach_bounds_every_pixel_with_alpha_over_alpha_min() -> None:
    g = torch.Generator().manual_seed(3)
    n = 200
    L = torch.randn(n, 2, 2, generator=g) * 3
    cov = L @ L.transpose(1, 2) + 0.3 * torch.eye(2)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], dim=-1)
    opacities = torch.rand(n, generator=g)
    reach = alpha_reach(conics, opacities, 1 / 255)
    d = torch.stack(torch.meshgrid(torch.arange(-40.0, 41), torch.arange(-40.0, 41), indexing="xy"))
    d = d.reshape(2, -1).T  # [P, 2] offsets (x, y)
    q = torch.einsum("pi,nij,pj->np", d, inv, d)
    alpha = opacities[:, None] * torch.exp(-0.5 * q)
    outside = (d[None, :, 0].abs() > reach[:, None, 0]) | (d[None, :, 1].abs() > reach[:, None, 1])
    assert not (outside & (alpha >= 1 / 255)).any()
    assert outside.any()  # the bound is not vacuous


def test_faint_gaussians_touch_fewer_tiles() -> None:
    means2d = torch.tensor([[40.0, 40.0], [40.0, 40.0]])
    radii = torch.tensor([30, 30], dtype=torch.int32)  # 3 sigma of sigma = 10 px
    conics = torch.tensor([[0.01, 0.0, 0.01]] * 2)
    reach = alpha_reach(conics, torch.tensor([1.0, 0.02]), 1 / 255)
    rects = tile_rects(means2d, radii, 96, 96, 16, reach)
    area = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
    assert rects[0].tolist() == tile_rects(means2d, radii, 96, 96, 16)[0].tolist()
    assert area[1] < area[0]
