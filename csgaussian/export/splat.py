"""The ``.splat`` layout web splat viewers load (antimatter15/splat's ``convert.py``).

No header; 32 bytes per Gaussian, little-endian: position float32 x3, scale float32 x3
(activated), colour and opacity uint8 x4 (``(0.5 + C0 f_dc) * 255`` and ``sigmoid * 255``,
clipped, truncated), rotation uint8 x4 (``q / |q| * 128 + 128`` in w, x, y, z order, clipped,
truncated). Rows are sorted by ``scale_0 scale_1 scale_2 * opacity``, largest first, as
``convert.py`` sorts them (viewers draw the big opaque ones first while the file streams in).
Only the DC colour is kept: the layout has no view-dependent colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from ..fileio import write_bytes_atomic
from ..render.sh import SH_C0
from ..types import DataError

SPLAT_DTYPE = np.dtype(
    [("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)]
)
"""One row of a ``.splat`` file (32 bytes)."""


def splat_bytes(
    means: Tensor,  # [N, 3]
    scales: Tensor,  # [N, 3] activated
    quats: Tensor,  # [N, 4] (w, x, y, z)
    opacities: Tensor,  # [N] in [0, 1]
    sh_dc: Tensor,  # [N, 3] degree-0 SH coefficients
) -> bytes:
    """The ``.splat`` bytes of the Gaussians (layout in the module docstring)."""
    means, scales, quats = (t.detach().double().cpu().numpy() for t in (means, scales, quats))
    opacities = opacities.detach().double().cpu().numpy()
    rgb = 0.5 + SH_C0 * sh_dc.detach().double().cpu().numpy()
    order = np.argsort(-(scales.prod(axis=1) * opacities), kind="stable")
    rows = np.empty(means.shape[0], SPLAT_DTYPE)
    rows["position"] = means[order]
    rows["scale"] = scales[order]
    rgba = np.concatenate([rgb, opacities[:, None]], axis=1)[order]
    rows["rgba"] = np.clip(rgba * 255, 0, 255).astype(np.uint8)
    unit = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    rows["rotation"] = np.clip(unit[order] * 128 + 128, 0, 255).astype(np.uint8)
    return rows.tobytes()


def write_splat(path: Path | str, *tensors: Tensor) -> None:
    """Write :func:`splat_bytes` of ``(means, scales, quats, opacities, sh_dc)`` atomically."""
    write_bytes_atomic(path, splat_bytes(*tensors))


def read_splat(path: Path | str) -> np.ndarray:
    """The rows of a ``.splat`` file (structured ``SPLAT_DTYPE`` array)."""
    data = Path(path).read_bytes()
    if len(data) % SPLAT_DTYPE.itemsize:
        raise DataError(f"{path}: {len(data)} bytes is not a whole number of 32-byte rows")
    return np.frombuffer(data, SPLAT_DTYPE)
