"""HAC-style peer of the INR hyperprior: a multi-resolution hash grid + the shared MLP heads.

Pure torch (Instant-NGP encoding: per level, trilinear interpolation of the 8 voxel-corner
features, looked up densely when the level's grid fits the table, through the spatial hash
otherwise). As in HAC, the tables are binarized: the forward pass uses the sign of each entry
(+-1, straight-through gradient to the latent value), so the stream spends one flag per entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from csgaussian.entropy.conditional import CodedGroup
from csgaussian.entropy.hyperprior import AttributeHyperprior, MLPConfig

_PRIMES = (1, 2654435761, 805459861)  # Instant-NGP spatial hash (Mueller et al. 2022)
_CORNERS = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)])  # [8, 3]


@dataclass(frozen=True)
class HashGridConfig:
    """Hash grid (source: HAC / Instant-NGP style defaults, scaled down for the CPU)."""

    n_levels: int = 12
    """Number of resolution levels."""
    n_features: int = 2
    """Features per level."""
    log2_table_size: int = 13
    """Entries per level = 2^log2_table_size."""
    min_resolution: int = 16
    """Grid cells per axis of the coarsest level over [-1, 1]."""
    max_resolution: int = 512
    """Grid cells per axis of the finest level."""
    init_scale: float = 1e-4
    """Uniform init range of the table entries (Instant-NGP)."""
    mlp: MLPConfig = field(default_factory=MLPConfig)


def level_sizes(config: HashGridConfig) -> tuple[list[int], list[int]]:
    """Cells per axis and table entries of each level (without building the tables).

    Raises:
        ValueError: a config whose levels are not defined (no level, a resolution below 1, a
            finest level coarser than the first, an empty table or feature).
    """
    ints = (config.n_levels, config.n_features, config.log2_table_size)
    resolutions = (config.min_resolution, config.max_resolution)
    if not all(type(v) is int for v in (*ints, *resolutions)):
        raise ValueError(f"hash grid sizes must be integers, got {config}")
    if config.n_levels < 1 or config.n_features < 1 or config.log2_table_size < 0:
        raise ValueError(f"hash grid needs >= 1 level and feature and a table, got {config}")
    if not 1 <= config.min_resolution <= config.max_resolution:
        raise ValueError(
            f"hash grid resolutions must satisfy 1 <= min <= max, got "
            f"{config.min_resolution}..{config.max_resolution}"
        )
    size = 2**config.log2_table_size
    growth = (
        math.exp(math.log(config.max_resolution / config.min_resolution) / (config.n_levels - 1))
        if config.n_levels > 1
        else 1.0
    )
    levels = [
        int(math.floor(config.min_resolution * growth**lvl)) for lvl in range(config.n_levels)
    ]
    return levels, [min(size, (r + 1) ** 3) for r in levels]


class HashGridEncoding(nn.Module):
    """Multi-resolution hash encoding: [N, 3] in [-1, 1]^3 -> [N, n_levels * n_features]."""

    def __init__(self, config: HashGridConfig) -> None:
        super().__init__()
        self.config = config
        self.out_dim = config.n_levels * config.n_features
        self.resolutions, self.table_sizes = level_sizes(config)
        self.tables = nn.ParameterList(
            nn.Parameter((torch.rand(n, config.n_features) * 2 - 1) * config.init_scale)
            for n in self.table_sizes
        )

    def _index(self, corner: Tensor, res: int, n: int) -> Tensor:
        """Table index of integer corners [..., 3] of a level with ``res`` cells per axis."""
        if (res + 1) ** 3 <= n:
            return (corner[..., 0] * (res + 1) + corner[..., 1]) * (res + 1) + corner[..., 2]
        h = corner[..., 0] * _PRIMES[0]
        h = torch.bitwise_xor(h, corner[..., 1] * _PRIMES[1])
        h = torch.bitwise_xor(h, corner[..., 2] * _PRIMES[2])
        return torch.remainder(h, n)

    def forward(self, x: Tensor) -> Tensor:
        u = (x.clamp(-1.0, 1.0) + 1.0) * 0.5  # [N, 3] in [0, 1]
        corners = _CORNERS.to(x.device)  # [8, 3]
        feats = []
        for res, n, table in zip(self.resolutions, self.table_sizes, self.tables, strict=True):
            pos = u * res
            base = torch.floor(pos).clamp(max=res - 1)  # [N, 3]
            frac = pos - base  # [N, 3]
            corner = base.long()[:, None, :] + corners[None]  # [N, 8, 3]
            w = torch.where(corners[None].bool(), frac[:, None, :], 1.0 - frac[:, None, :])
            w = w.prod(dim=2)  # [N, 8]
            binary = table + (torch.where(table >= 0, 1.0, -1.0) - table).detach()
            vals = binary[self._index(corner, res, n)]  # [N, 8, F]
            feats.append((w[..., None] * vals).sum(dim=1))  # [N, F]
        return torch.cat(feats, dim=1)


class HashGridHyperprior(AttributeHyperprior):
    """HAC-style hyperprior; same ``params`` / ``forward`` interface as ``INRHyperprior``."""

    def binary_parameters(self) -> list[str]:
        """The hash tables: only their signs are used, so only their signs are transmitted."""
        return [f"encoder.tables.{i}" for i in range(len(self.encoder.tables))]

    def __init__(self, groups: Sequence[CodedGroup], config: HashGridConfig | None = None) -> None:
        config = config or HashGridConfig()
        super().__init__(HashGridEncoding(config), groups, config.mlp)
