"""The independent 3DGS renderer of ``benchmarks/splat_reference.py`` against ours and against
the published conventions (INRIA ``point_cloud.ply`` layout, 3DGS SH basis and quaternions).

PLY files for the convention checks are written here with ``plyfile`` from the INRIA layout,
not with our writer, so that a mistake shared by our writer and reader cannot pass unseen.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from csgaussian.ply import read_gaussians_ply, write_sh_ply
from csgaussian.render.sh import rasterize_sh
from csgaussian.types import Camera

from ..benchmark_scripts import load_benchmark

K = torch.tensor([[150.0, 0.0, 64.0], [0.0, 150.0, 64.0], [0.0, 0.0, 1.0]])
SIZE = 128
MIN_PSNR = 65.0
"""Between the two renderers on a random degree-3 scene (measured 81.3-86.2 dB on three seeds).
They differ by design in one thing: which 16 px tiles a Gaussian's 3-sigma box reaches (3DGS's
``getRect`` works half a pixel shifted and rounds the far edge with ``+15`` then floor; ours
floors/ceils the box itself). A Gaussian is thus drawn on a tile or two more or less in one of
them, where its alpha is at most ``opacity * exp(-4.5) < 0.011``: a few pixels differ by up to
about 0.008, the mean absolute difference is 3e-6 to 8e-6 (a transmittance threshold of 1e-3
instead of 1e-4 makes it 2.4e-4)."""
MAX_MEAN_ABS = 5e-5
MAX_ABS_SAME_TILES = 1e-5
"""With our tile rectangle swapped into the reference, only float32 rounding in ours is left
(measured max 2.7e-6)."""


ref = load_benchmark("splat_reference")


def look_at(eye: list[float]) -> torch.Tensor:
    """World->camera (OpenCV axes) for a camera at ``eye`` looking at the origin."""
    eye_t = torch.tensor(eye)
    forward = torch.nn.functional.normalize(-eye_t, dim=0)
    right = torch.nn.functional.normalize(
        torch.linalg.cross(forward, torch.tensor([0.0, -1, 0])), dim=0
    )
    down = torch.linalg.cross(forward, right)
    R = torch.stack([right, down, forward])
    viewmat = torch.eye(4)
    viewmat[:3, :3], viewmat[:3, 3] = R, -R @ eye_t
    return viewmat


def write_inria_ply(path: Path, columns: dict[str, list[float]]) -> Path:
    """One-vertex-per-row PLY with the given float32 columns, in the given order."""
    n = len(next(iter(columns.values())))
    vertex = np.empty(n, dtype=[(name, "<f4") for name in columns])
    for name, values in columns.items():
        vertex[name] = values
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    return path


def one_gaussian(
    mean=(0.0, 0.0, 0.0), scale=(0.3, 0.3, 0.3), rot=(1.0, 0, 0, 0), opacity=0.8, rest=None
) -> dict[str, list[float]]:
    """A 3DGS row: ``f_dc = 0`` (colour 0.5 before the higher degrees), ``rest`` = f_rest values."""
    columns = {"x": [mean[0]], "y": [mean[1]], "z": [mean[2]]}
    columns |= {"nx": [0.0], "ny": [0.0], "nz": [0.0]}
    columns |= {f"f_dc_{i}": [0.0] for i in range(3)}
    columns |= {f"f_rest_{i}": [v] for i, v in enumerate(rest or [])}
    columns["opacity"] = [math.log(opacity / (1 - opacity))]
    columns |= {f"scale_{i}": [math.log(s)] for i, s in enumerate(scale)}
    columns |= {f"rot_{i}": [q] for i, q in enumerate(rot)}
    return columns


def draw(splats, viewmat=None, background=(0.0, 0.0, 0.0)) -> torch.Tensor:
    viewmat = look_at([0.0, 0.0, -3.0]) if viewmat is None else viewmat
    return ref.render(splats, viewmat, K, SIZE, SIZE, torch.as_tensor(background))


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_our_sh_rasterizer_on_a_random_scene(tmp_path, seed, monkeypatch):
    gen = torch.Generator().manual_seed(seed)
    n = 600  # dense enough that about half the pixels end on the transmittance test
    means = (torch.rand(n, 3, generator=gen) - 0.5) * 2
    scales = torch.empty(n, 3).uniform_(-3.5, -1.5, generator=gen).exp()
    quats = torch.randn(n, 4, generator=gen) * torch.rand(n, 1, generator=gen) * 3
    opacities = torch.rand(n, generator=gen) ** 0.2
    sh = torch.randn(n, 16, 3, generator=gen) * 0.3
    path = tmp_path / "scene.ply"
    extras = {"instance_id": np.arange(n, dtype=np.int32), "sem_0": np.ones(n, np.float32)}
    write_sh_ply(path, means, scales, quats, opacities, sh, extras)  # extras must be ignored

    ours = read_gaussians_ply(path)
    viewmat = look_at([0.3, -0.5, -3.0])
    camera = Camera(viewmat, K, SIZE, SIZE)
    bg = torch.tensor([0.2, 0.4, 0.6])
    args = (ours["means"], ours["quats"], ours["scales"], ours["opacities"], ours["sh"])
    expected = rasterize_sh(*args, camera, bg).colors.double()

    splats = ref.read_3dgs_ply(path)
    image = draw(splats, viewmat, bg)
    diff = (image - expected).abs()
    psnr = -10 * math.log10(float(((image.clamp(0, 1) - expected.clamp(0, 1)) ** 2).mean()))
    assert psnr > MIN_PSNR
    assert float(diff.mean()) < MAX_MEAN_ABS

    def our_tile_rect(mean2d, radius, tiles):
        r = radius[:, None]
        hi = torch.minimum(((mean2d + r) / 16).ceil(), torch.tensor(tiles, dtype=r.dtype))
        return ((mean2d - r) / 16).floor().clamp_min(0), hi.clamp_min(0)

    monkeypatch.setattr(ref, "tile_rect", our_tile_rect)
    assert float((draw(splats, viewmat, bg) - expected).abs().max()) < MAX_ABS_SAME_TILES


def test_green_first_coefficient_changes_green_as_y_1_minus_1(tmp_path):
    """f_rest_15 is green's first higher coefficient (channel-major, degree 3), basis -C1 y."""
    mean = (0.0, 0.5, 0.0)
    coef = 0.4
    base = ref.read_3dgs_ply(write_inria_ply(tmp_path / "a.ply", one_gaussian(mean, rest=[0] * 45)))
    rest = [0.0] * 45
    rest[15] = coef
    tinted = ref.read_3dgs_ply(write_inria_ply(tmp_path / "b.ply", one_gaussian(mean, rest=rest)))
    a, b = draw(base), draw(tinted)
    assert torch.equal(a[..., 0], b[..., 0]) and torch.equal(a[..., 2], b[..., 2])
    y = mean[1] / math.hypot(mean[1], 3.0)  # direction from the camera at (0, 0, -3)
    covered = a[..., 1] > 1e-3
    ratio = b[..., 1][covered] / a[..., 1][covered]  # (0.5 - coef C1 y) / 0.5 at every pixel
    assert torch.allclose(ratio, torch.tensor(1 - 2 * coef * ref.C1 * y, dtype=ratio.dtype))
    assert float(ratio.mean()) < 1  # y > 0: green darkens

    # Our writer puts green's first coefficient in f_rest_15 too.
    ours = tmp_path / "ours.ply"
    sh = torch.zeros(1, 16, 3)
    sh[0, 1, 1] = coef
    write_sh_ply(
        ours,
        torch.tensor([mean]),
        torch.full((1, 3), 0.3),
        torch.tensor([[1.0, 0, 0, 0]]),
        torch.tensor([0.8]),
        sh,
    )
    vertex = PlyData.read(str(ours))["vertex"]
    assert [i for i in range(45) if vertex[f"f_rest_{i}"][0] != 0] == [15]


def test_degree_0_file_logit_opacity_and_log_scale(tmp_path):
    zero_rest = ref.read_3dgs_ply(write_inria_ply(tmp_path / "d3.ply", one_gaussian(rest=[0] * 45)))
    degree0 = ref.read_3dgs_ply(write_inria_ply(tmp_path / "d0.ply", one_gaussian()))
    assert degree0.sh.shape == (1, 1, 3) and zero_rest.sh.shape == (1, 16, 3)
    image = draw(degree0)
    assert torch.equal(image, draw(zero_rest))
    # Seen head-on from 3 units, scale 0.3 is a 15 px sigma (+ the 0.3 px^2 low-pass); the
    # pixels around the centre are half a pixel off it in x and y; alpha there is 0.8 times that.
    var = (0.3 * float(K[0, 0]) / 3.0) ** 2 + ref.LOW_PASS
    expected = 0.5 * 0.8 * math.exp(-0.5 * (0.25 + 0.25) / var)
    centre = image[SIZE // 2 - 1 : SIZE // 2 + 1, SIZE // 2 - 1 : SIZE // 2 + 1]
    assert torch.allclose(centre, torch.full_like(centre, expected), rtol=1e-5)


def test_quaternion_is_w_x_y_z(tmp_path):
    """A Gaussian long along x, turned 90 degrees about z by ``(w, x, y, z) = (c, 0, 0, s)``,
    lies along the image's y axis; read as ``(x, y, z, w)`` it would stay along x."""
    c = math.sqrt(0.5)
    long_x = {"scale": (0.5, 0.05, 0.05), "rest": []}
    turned = write_inria_ply(tmp_path / "t.ply", one_gaussian(rot=(c, 0, 0, c), **long_x))
    swapped = write_inria_ply(tmp_path / "s.ply", one_gaussian(rot=(0, 0, c, c), **long_x))

    def extent(path: Path) -> tuple[int, int]:
        covered = draw(ref.read_3dgs_ply(path)).sum(-1) > 0.05
        return int(covered.any(1).sum()), int(covered.any(0).sum())  # rows, columns

    rows, cols = extent(turned)
    assert rows > 3 * cols
    rows_s, cols_s = extent(swapped)
    assert cols_s > 3 * rows_s


def test_missing_property_is_one_line_error(tmp_path):
    columns = one_gaussian()
    del columns["opacity"]
    with pytest.raises(ValueError, match="lacks opacity"):
        ref.read_3dgs_ply(write_inria_ply(tmp_path / "bad.ply", columns))


def test_gaussians_within_the_near_depth_are_culled(tmp_path):
    """3DGS's ``in_frustum`` drops view depth <= 0.2 (gsplat's default near plane is 0.01)."""
    close = ref.read_3dgs_ply(write_inria_ply(tmp_path / "c.ply", one_gaussian((0, 0, -2.85))))
    bg = (0.1, 0.2, 0.3)
    assert torch.equal(draw(close, background=bg), torch.tensor(bg).double().expand(SIZE, SIZE, 3))
    viewmat = look_at([0.0, 0.0, -3.0])
    near = ref.render(close, viewmat, K, SIZE, SIZE, torch.tensor(bg), near=0.01)
    assert float((near - torch.tensor(bg)).abs().max()) > 0.1
