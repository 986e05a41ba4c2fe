"""Export decoded Gaussians as the standard 3DGS (INRIA) PLY that splat viewers open.

Layout: one binary little-endian ``vertex`` element of float32 properties, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

Stored values are pre-activation, as the 3DGS training code saves them
(``gaussian_model.py::save_ply``): ``f_dc = (rgb - 0.5) / C0`` (SH degree 0), ``opacity =
logit(alpha)``, ``scale_i = log(s_i)``, ``rot = q / |q|`` in ``w, x, y, z`` order; normals are
zero. No ``f_rest_*`` properties are written: antimatter15/splat, the PlayCanvas engine
(SuperSplat) and mkkellogg/GaussianSplats3D look properties up by name and treat a file without
``f_rest_*`` as SH degree 0, and gsplat's own ``exporter.py`` writes none when degree is 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError
from torch import Tensor

from csgaussian.fileio import atomic_write
from csgaussian.types import DataError

SH_C0 = 0.28209479177387814  # degree-0 real spherical harmonic, 1 / (2 sqrt(pi))
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
    """Write Gaussians as a 3DGS PLY (layout in the module docstring), atomically.

    The file is written to a temporary file in the same directory and moved over ``path`` with
    ``os.replace``, so readers never see a partial file and a failure leaves no temporary file.

    Raises:
        ValueError: a tensor has the wrong shape, a non-finite value, a scale ``<= 0``, an
            opacity outside ``[0, 1]`` or a zero quaternion.
    """
    _check_inputs(means, scales, quats, opacities, rgb)
    q = quats.detach().double()
    columns = {
        "means": means.detach().double(),
        "normals": torch.zeros_like(means, dtype=torch.float64),
        "f_dc": (rgb.detach().double() - 0.5) / SH_C0,
        "opacity": torch.logit(opacities.detach().double(), eps=OPACITY_EPS)[:, None],
        "scales": scales.detach().double().log(),
        "rots": q / q.norm(dim=1, keepdim=True),
    }
    values = torch.cat(list(columns.values()), dim=1).float().cpu().numpy()  # [N, 17]
    vertex = np.empty(values.shape[0], dtype=[(name, "<f4") for name in PLY_PROPERTIES])
    for i, name in enumerate(PLY_PROPERTIES):
        vertex[name] = values[:, i]
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")

    atomic_write(path, ply.write)


def read_gaussians_ply(path: Path | str) -> dict[str, Tensor]:
    """Read a 3DGS PLY back to activated values (inverse of :func:`write_gaussians_ply`).

    Extra properties (normals, ``f_rest_*``, ...) are ignored, so PLYs from other 3DGS tools
    load too (their colour is the SH DC term only).

    Returns:
        float32 tensors: ``means`` [N, 3], ``scales`` [N, 3], ``quats`` [N, 4] (unit, wxyz),
        ``opacities`` [N], ``rgb`` [N, 3].

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
    return {name: value.float() for name, value in out.items()}
