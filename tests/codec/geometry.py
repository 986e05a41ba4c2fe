"""Synthetic anchor geometry for the codec's tests and ``benchmarks/codec.py`` (test data, not
part of the package).

Scaffold-GS anchors lie on surfaces: here points are sampled on two spheres, a box and a ground
plane inside the unit cube, then voxelised like Scaffold-GS (``octree.voxelize``).
"""

from __future__ import annotations

import numpy as np

from csgaussian.codec.octree import voxelize


def surface_points(n_samples: int, seed: int = 0) -> np.ndarray:
    """``n_samples`` points [n, 3] on the surfaces of two spheres, a box and a plane in [0, 1]^3."""
    rng = np.random.default_rng(seed)
    parts = rng.multinomial(n_samples, [0.25, 0.2, 0.25, 0.3])
    d = rng.normal(size=(parts[0] + parts[1], 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sphere_a = 0.3 + 0.18 * d[: parts[0]]
    sphere_b = np.array([0.72, 0.35, 0.4]) + 0.12 * d[parts[0] :]
    u = rng.random((parts[2], 3))
    axis = rng.integers(0, 3, parts[2])
    u[np.arange(parts[2]), axis] = rng.integers(0, 2, parts[2])
    box = np.array([0.45, 0.6, 0.05]) + u * np.array([0.35, 0.25, 0.3])
    plane = np.column_stack([rng.random(parts[3]), rng.random(parts[3]), np.zeros(parts[3])])
    return np.concatenate([sphere_a, sphere_b, box, plane])


def surface_anchor_grid(n_samples: int, voxel_fraction: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Anchor grid [N, 3] uint16 of ``surface_points`` voxelised at ``voxel_fraction`` x extent."""
    return voxelize(surface_points(n_samples, seed), voxel_fraction)[0]
