"""The .splat layout: 32 bytes per Gaussian, antimatter15's field order, quantization and sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csgaussian.export.splat import SPLAT_DTYPE, read_splat, write_splat
from csgaussian.render.sh import SH_C0
from csgaussian.types import DataError


def test_byte_layout_and_order(tmp_path) -> None:
    means = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25], [0.0, 0.0, 0.0]])
    scales = torch.tensor([[0.1, 0.1, 0.1], [0.5, 0.5, 0.5], [0.2, 0.2, 0.2]])
    quats = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    opacities = torch.tensor([0.9, 0.5, 1.0])
    rgb = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.4, 0.6], [0.0, 1.0, 0.0]])
    path = tmp_path / "s.splat"
    write_splat(path, means, scales, quats, opacities, (rgb - 0.5) / SH_C0)
    data = path.read_bytes()
    assert len(data) == 3 * 32 and SPLAT_DTYPE.itemsize == 32
    # Largest scale product times opacity first: row 1 (0.125 * 0.5), row 2, row 0.
    first = data[:32]
    np.testing.assert_array_equal(np.frombuffer(first[:12], "<f4"), [-1.0, 0.5, 0.25])
    np.testing.assert_allclose(np.frombuffer(first[12:24], "<f4"), [0.5, 0.5, 0.5])
    assert list(first[24:28]) == [51, 102, 153, 127]  # truncated, as convert.py's astype
    assert list(first[28:32]) == [128, 255, 128, 128]  # w, x, y, z: x = 1 -> 256, clipped
    rows = read_splat(path)
    np.testing.assert_array_equal(rows["position"][1], [0.0, 0.0, 0.0])
    assert list(rows["rotation"][1]) == [192, 192, 192, 192]
    assert list(rows["rotation"][2]) == [255, 128, 128, 128]  # normalised before quantizing


def test_truncated_file_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.splat"
    path.write_bytes(b"\x00" * 33)
    with pytest.raises(DataError, match="bad.splat"):
        read_splat(path)
