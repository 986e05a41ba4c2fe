"""Export decoded Gaussians as the standard 3DGS (INRIA) PLY that splat viewers open.

Layout: one binary little-endian ``vertex`` element of float32 properties, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

Stored values are pre-activation, as the 3DGS training code saves them
(``gaussian_model.py::save_ply``): ``f_dc = (rgb - 0.5) / C0`` (SH degree 0), ``opacity =
logit(alpha)``, ``scale_i = log(s_i)``, ``rot = q / |q|`` in ``w, x, y, z`` order; normals are
zero. With SH degree ``d > 0`` (:func:`write_sh_ply`) the ``3 ((d + 1)^2 - 1)`` properties
``f_rest_*`` follow ``f_dc_2``, channel-major as 3DGS stores them (all of red's higher
coefficients, then green's, then blue's). A degree-0 file has no ``f_rest_*``: antimatter15/splat,
the PlayCanvas engine (SuperSplat) and mkkellogg/GaussianSplats3D look properties up by name and
treat such a file as SH degree 0, and gsplat's own ``exporter.py`` writes none when degree is 0.

Extra per-Gaussian properties may follow the standard ones (viewers ignore names they do not
know): ``instance_id`` and ``leaf_id`` (int32, -1 = none) and ``sem_0 .. sem_{D-1}`` (float32,
the unit instance feature) when the scene has a semantic layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError
from torch import Tensor

from csgaussian.fileio import atomic_write
from csgaussian.render.sh import SH_C0
from csgaussian.types import DataError

PLY_PROPERTIES = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip
_REQUIRED = tuple(name for name in PLY_PROPERTIES if name not in ("nx", "ny", "nz"))
# Opacities are clamped to [eps, 1 - eps] before the logit so a float32 sigmoid that rounded
# to exactly 0 or 1 still gives a finite value (|logit| <= 13.8).
OPACITY_EPS = 1e-6


def _check_inputs(
    means: Tensor, scales: Tensor, quats: Tensor, opacities: Tensor, rgb: Tensor
) -> None:
    n = means.shape[0] if means.ndim == 2 else -1
    checks = (
        ("means", means, (n, 3)),
        ("scales", scales, (n, 3)),
        ("quats", quats, (n, 4)),
        ("opacities", opacities, (n,)),
        ("rgb", rgb, (n, 3)),
    )
    for name, tensor, shape in checks:
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
    if bool((scales <= 0).any()):
        raise ValueError("scales must be activated (strictly positive) values")
    if bool(((opacities < 0) | (opacities > 1)).any()):
        raise ValueError("opacities must be activated values in [0, 1]")
    if bool((quats.norm(dim=1) == 0).any()):
        raise ValueError("quats contains a zero quaternion")


def write_gaussians_ply(
    path: Path | str,
    means: Tensor,  # [N, 3]
    scales: Tensor,  # [N, 3] activated, > 0
    quats: Tensor,  # [N, 4] w, x, y, z (any norm > 0)
    opacities: Tensor,  # [N] activated, in [0, 1]
    rgb: Tensor,  # [N, 3] in [0, 1]
) -> None:
    """Write Gaussians with view-independent colours as a degree-0 3DGS PLY, atomically.

    Raises:
        ValueError: a tensor has the wrong shape, a non-finite value, a scale ``<= 0``, an
            opacity outside ``[0, 1]`` or a zero quaternion.
    """
    _check_inputs(means, scales, quats, opacities, rgb)
    sh = ((rgb.detach().double() - 0.5) / SH_C0)[:, None, :]
    write_sh_ply(path, means, scales, quats, opacities, sh)


def write_sh_ply(
    path: Path | str,
    means: Tensor,  # [N, 3]
    scales: Tensor,  # [N, 3] activated, > 0
    quats: Tensor,  # [N, 4] w, x, y, z (any norm > 0)
    opacities: Tensor,  # [N] activated, in [0, 1]
    sh: Tensor,  # [N, M, 3] SH coefficients, M = (degree + 1)^2
    extras: dict[str, np.ndarray] | None = None,  # name -> [N] int32 or float32 column
) -> None:
    """Write Gaussians as a 3DGS PLY with SH colours and ``extras`` columns, atomically.

    The file is written to a temporary file in the same directory and moved over ``path`` with
    ``os.replace``, so readers never see a partial file and a failure leaves no temporary file.

    Raises:
        ValueError: a tensor has the wrong shape, a non-finite value, a scale ``<= 0``, an
            opacity outside ``[0, 1]``, a zero quaternion, or ``sh`` is not a degree 0-3 set.
    """
    n = means.shape[0] if means.ndim == 2 else -1
    m = sh.shape[1] if sh.ndim == 3 else 0
    if tuple(sh.shape) != (n, m, 3) or m not in (1, 4, 9, 16):
        raise ValueError(f"sh has shape {tuple(sh.shape)}, expected ({n}, 1|4|9|16, 3)")
    _check_inputs(means, scales, quats, opacities, sh[:, 0].float() * SH_C0 + 0.5)
    if not bool(torch.isfinite(sh).all()):
        raise ValueError("sh contains NaN or infinite values")
    q = quats.detach().double()
    rest = sh[:, 1:].detach().double().transpose(1, 2).reshape(n, -1)  # channel-major
    columns = {
        "means": means.detach().double(),
        "normals": torch.zeros_like(means, dtype=torch.float64),
        "f_dc": sh[:, 0].detach().double(),
        "f_rest": rest,
        "opacity": torch.logit(opacities.detach().double(), eps=OPACITY_EPS)[:, None],
        "scales": scales.detach().double().log(),
        "rots": q / q.norm(dim=1, keepdim=True),
    }
    values = torch.cat(list(columns.values()), dim=1).float().cpu().numpy()
    names = _column_names(rest.shape[1])
    extras = extras or {}
    dtype = [(name, "<f4") for name in names]
    dtype += [(name, "<i4" if col.dtype.kind in "iu" else "<f4") for name, col in extras.items()]
    vertex = np.empty(n, dtype=dtype)
    for i, name in enumerate(names):
        vertex[name] = values[:, i]
    for name, column in extras.items():
        if column.shape != (n,):
            raise ValueError(f"extra property {name} has shape {column.shape}, expected ({n},)")
        vertex[name] = column
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")

    atomic_write(path, ply.write)


def _column_names(n_rest: int) -> list[str]:
    """The standard properties in file order, with ``n_rest`` ``f_rest_*`` after ``f_dc_2``."""
    return [
        "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
        *(f"f_rest_{i}" for i in range(n_rest)),
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
    ]  # fmt: skip


def read_gaussians_ply(path: Path | str) -> dict[str, Tensor]:
    """Read a 3DGS PLY back to activated values (inverse of :func:`write_sh_ply`).

    Unknown properties are ignored, so PLYs from other 3DGS tools load too.

    Returns:
        float32 tensors: ``means`` [N, 3], ``scales`` [N, 3], ``quats`` [N, 4] (unit, wxyz),
        ``opacities`` [N], ``rgb`` [N, 3] (the DC colour), ``sh`` [N, M, 3] (all coefficients);
        when present, int64 ``instance_id`` and ``leaf_id`` [N] and float32 ``semantic`` [N, D].

    Raises:
        DataError: the file is missing, not a PLY, has no ``vertex`` element or lacks one of the
            required properties.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such PLY file")
    try:
        ply = PlyData.read(str(path))
    except (PlyParseError, ValueError, EOFError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable PLY file ({reason})") from exc
    if "vertex" not in ply:
        raise DataError(f"{path}: PLY has no 'vertex' element")
    vertex = ply["vertex"]
    present = {prop.name for prop in vertex.properties}
    missing = [name for name in _REQUIRED if name not in present]
    if missing:
        raise DataError(f"{path}: PLY vertex lacks 3DGS properties {', '.join(missing)}")

    def stack(names: list[str]) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[n], np.float64) for n in names], 1))

    q = stack([f"rot_{i}" for i in range(4)])
    out = {
        "means": stack(["x", "y", "z"]),
        "scales": stack([f"scale_{i}" for i in range(3)]).exp(),
        "quats": q / q.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny),
        "opacities": torch.sigmoid(stack(["opacity"])[:, 0]),
        "rgb": stack([f"f_dc_{i}" for i in range(3)]) * SH_C0 + 0.5,
    }
    n_rest = sum(1 for name in present if name.startswith("f_rest_"))
    if n_rest not in (0, 9, 24, 45):
        raise DataError(f"{path}: PLY has {n_rest} f_rest_* properties (not SH degree 1-3)")
    dc = stack([f"f_dc_{i}" for i in range(3)])
    rest = dc.new_zeros(dc.shape[0], 3, 0)
    if n_rest:
        rest = stack([f"f_rest_{i}" for i in range(n_rest)]).reshape(-1, 3, n_rest // 3)
    out["sh"] = torch.cat(
        [stack([f"f_dc_{i}" for i in range(3)])[:, None], rest.transpose(1, 2)], 1
    )
    result = {name: value.float() for name, value in out.items()}
    for name in ("instance_id", "leaf_id"):
        if name in present:
            result[name] = torch.from_numpy(np.asarray(vertex[name], np.int64))
    n_sem = sum(1 for name in present if name.startswith("sem_"))
    if n_sem:
        result["semantic"] = stack([f"sem_{i}" for i in range(n_sem)]).float()
    return result
