"""Tests for csgaussian.ply: the 3DGS PLY writer and reader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

import csgaussian.ply as ply_module
from csgaussian.ply import read_gaussians_ply, write_gaussians_ply
from csgaussian.types import DataError

C0 = 0.28209479177387814
EXPECTED_PROPERTIES = [
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
]  # fmt: skip


@pytest.fixture
def gaussians() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    n = 50
    quats = torch.randn(n, 4, generator=gen)
    return {
        "means": 3 * torch.randn(n, 3, generator=gen),
        "scales": torch.exp(torch.randn(n, 3, generator=gen) - 3),
        "quats": quats / quats.norm(dim=1, keepdim=True),
        "opacities": torch.sigmoid(2 * torch.randn(n, generator=gen)),
        "rgb": torch.rand(n, 3, generator=gen),
    }


def test_round_trip_within_float32_precision(tmp_path: Path, gaussians) -> None:
    path = tmp_path / "scene.ply"
    write_gaussians_ply(path, **gaussians)
    back = read_gaussians_ply(path)
    assert set(back) == set(gaussians) | {"sh"}
    torch.testing.assert_close(back["sh"][:, 0], (gaussians["rgb"] - 0.5) / C0)
    for name, value in gaussians.items():
        assert back[name].dtype == torch.float32
        torch.testing.assert_close(back[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_stored_values_are_pre_activation(tmp_path: Path, gaussians) -> None:
    path = tmp_path / "scene.ply"
    write_gaussians_ply(path, **gaussians)
    vertex = PlyData.read(str(path))["vertex"]
    op = gaussians["opacities"].double()
    np.testing.assert_allclose(vertex["opacity"], torch.log(op / (1 - op)).numpy(), rtol=1e-5)
    for i in range(3):
        np.testing.assert_allclose(
            vertex[f"scale_{i}"], gaussians["scales"][:, i].log().numpy(), rtol=1e-6
        )
        np.testing.assert_allclose(
            vertex[f"f_dc_{i}"], ((gaussians["rgb"][:, i] - 0.5) / C0).numpy(), rtol=1e-5
        )
        assert not vertex[f"n{'xyz'[i]}"].any()


def test_header_property_names_order_and_types(tmp_path: Path, gaussians) -> None:
    path = tmp_path / "scene.ply"
    write_gaussians_ply(path, **gaussians)
    ply = PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    assert [p.name for p in ply["vertex"].properties] == EXPECTED_PROPERTIES
    raw = path.read_bytes()
    header = raw[: raw.index(b"end_header\n") + len(b"end_header\n")].decode("ascii")
    expected = ["ply", "format binary_little_endian 1.0", "element vertex 50"]
    expected += [f"property float {name}" for name in EXPECTED_PROPERTIES] + ["end_header"]
    assert header.splitlines() == expected
    assert len(raw) - len(header) == 50 * len(EXPECTED_PROPERTIES) * 4


def test_quaternions_are_normalised_wxyz(tmp_path: Path, gaussians) -> None:
    quats = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 4.0]])
    small = {k: v[:2] for k, v in gaussians.items()} | {"quats": quats}
    path = tmp_path / "q.ply"
    write_gaussians_ply(path, **small)
    vertex = PlyData.read(str(path))["vertex"]
    stored = np.stack([vertex[f"rot_{i}"] for i in range(4)], 1)
    np.testing.assert_allclose(stored, [[1, 0, 0, 0], [0, 0, 0.6, 0.8]], atol=1e-7)


def test_extreme_opacities_stay_finite(tmp_path: Path, gaussians) -> None:
    ops = gaussians["opacities"].clone()
    ops[0], ops[1] = 0.0, 1.0
    path = tmp_path / "op.ply"
    write_gaussians_ply(path, **(gaussians | {"opacities": ops}))
    stored = PlyData.read(str(path))["vertex"]["opacity"]
    assert np.isfinite(stored).all()
    assert stored[1] == pytest.approx(math.log((1 - 1e-6) / 1e-6), rel=1e-5)


def test_atomic_write_leaves_no_temp_file(tmp_path: Path, gaussians, monkeypatch) -> None:
    path = tmp_path / "scene.ply"
    write_gaussians_ply(path, **gaussians)
    assert [p.name for p in tmp_path.iterdir()] == ["scene.ply"]
    before = path.read_bytes()

    def fail(self, stream):
        stream.write(b"ply\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(ply_module.PlyData, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        write_gaussians_ply(path, **gaussians)
    assert [p.name for p in tmp_path.iterdir()] == ["scene.ply"]
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("scales", torch.zeros(50, 3), "positive"),
        ("opacities", torch.full((50,), 1.5), r"\[0, 1\]"),
        ("quats", torch.zeros(50, 4), "zero quaternion"),
        ("rgb", torch.zeros(49, 3), "rgb has shape"),
        ("means", torch.full((50, 3), math.nan), "NaN"),
    ],
)
def test_bad_inputs_raise_before_writing(tmp_path, gaussians, name, value, match) -> None:
    with pytest.raises(ValueError, match=match):
        write_gaussians_ply(tmp_path / "bad.ply", **(gaussians | {name: value}))
    assert list(tmp_path.iterdir()) == []


def test_non_ply_and_missing_file_raise(tmp_path: Path) -> None:
    text = tmp_path / "notes.ply"
    text.write_text("hello, not a ply\n")
    with pytest.raises(DataError, match="notes.ply"):
        read_gaussians_ply(text)
    with pytest.raises(DataError, match="absent.ply"):
        read_gaussians_ply(tmp_path / "absent.ply")


def test_truncated_ply_raises(tmp_path: Path, gaussians) -> None:
    path = tmp_path / "cut.ply"
    write_gaussians_ply(path, **gaussians)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="cut.ply"):
        read_gaussians_ply(path)


def test_ply_missing_properties_raises(tmp_path: Path) -> None:
    from plyfile import PlyElement

    points = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("opacity", "<f4")])
    path = tmp_path / "points.ply"
    PlyData([PlyElement.describe(points, "vertex")]).write(str(path))
    with pytest.raises(DataError, match=r"points.ply.*f_dc_0.*scale_0.*rot_3"):
        read_gaussians_ply(path)
    faces = np.zeros(2, dtype=[("a", "<f4")])
    other = tmp_path / "faces.ply"
    PlyData([PlyElement.describe(faces, "face")]).write(str(other))
    with pytest.raises(DataError, match="faces.ply.*'vertex'"):
        read_gaussians_ply(other)


def test_reads_ply_with_extra_sh_properties(tmp_path: Path, gaussians) -> None:
    from plyfile import PlyElement

    names = EXPECTED_PROPERTIES + [f"f_rest_{i}" for i in range(45)]
    vertex = np.zeros(2, dtype=[(n, "<f4") for n in names])
    vertex["rot_0"] = 1.0
    vertex["f_rest_3"] = 7.0
    path = tmp_path / "full_sh.ply"
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    back = read_gaussians_ply(path)
    torch.testing.assert_close(back["rgb"], torch.full((2, 3), 0.5))
    torch.testing.assert_close(back["opacities"], torch.full((2,), 0.5))
    torch.testing.assert_close(back["scales"], torch.ones(2, 3))


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from csgaussian.fileio import write_bytes_atomic

    path = tmp_path / "out.bin"
    write_bytes_atomic(path, b"abc")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.read_bytes() == b"abc"


def test_sh_round_trip_and_3dgs_channel_major_f_rest(tmp_path: Path, gaussians) -> None:
    """Degree-3 SH and extra columns read back exactly; ``f_rest_*`` follow ``f_dc_2`` and hold
    red's 15 coefficients, then green's, then blue's (3DGS ``save_ply``)."""
    gen = torch.Generator().manual_seed(1)
    n = gaussians["means"].shape[0]
    sh = torch.randn(n, 16, 3, generator=gen)
    extras = {"instance_id": np.arange(n, dtype=np.int32) - 1, "sem_0": np.ones(n, np.float32)}
    path = tmp_path / "sh.ply"
    fields = {k: v for k, v in gaussians.items() if k != "rgb"}
    ply_module.write_sh_ply(path, **fields, sh=sh, extras=extras)
    names = [p.name for p in PlyData.read(str(path))["vertex"].properties]
    assert names[:9] == EXPECTED_PROPERTIES[:9] and names[9] == "f_rest_0"
    assert names[9 + 45 : 9 + 45 + 8] == EXPECTED_PROPERTIES[9:]
    assert names[-2:] == ["instance_id", "sem_0"]
    vertex = PlyData.read(str(path))["vertex"]
    np.testing.assert_allclose(vertex["f_rest_0"], sh[:, 1, 0].numpy(), rtol=1e-6)  # red, k=1
    np.testing.assert_allclose(vertex["f_rest_15"], sh[:, 1, 1].numpy(), rtol=1e-6)  # green
    back = read_gaussians_ply(path)
    torch.testing.assert_close(back["sh"], sh)
    assert back["instance_id"].tolist() == extras["instance_id"].tolist()
    assert back["semantic"].shape == (n, 1)
