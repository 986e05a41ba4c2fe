"""The receiver's semantics: decoded latents, feature MLP, codebook and leaf language table.

Everything here is computed from the decoded stream alone (docs/method.md §4-§6): each anchor slot's
feature, its codebook leaf, and through the leaf its language feature. Nothing is trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene.scaffold import ScaffoldModel
from .codebook import Codebook, assign_leaves
from .field import SemanticField


@dataclass
class SemanticLayer:
    """The semantic layer of a stream, decoded.

    ``language`` rows are the distinct language features of the matched leaves; ``leaf_entry``
    maps each codebook leaf to its row (-1: the leaf matched no training mask).
    """

    field: SemanticField
    codebook: Codebook
    language: Tensor  # [E, D] unit rows
    leaf_entry: Tensor  # [L] int64 in [-1, E)
    text_space: str  # id of the text encoder that made ``language`` (e.g. "minilm:...")

    @torch.no_grad()
    def slot_features(self, model: ScaffoldModel) -> Tensor:
        """Unit instance features ``[N, K, feature_dim]`` of every anchor slot."""
        return self.field.slot_features(model.offsets)

    @torch.no_grad()
    def slot_leaves(self, model: ScaffoldModel) -> Tensor:
        """Codebook leaf ``[N, K]`` int64 of every anchor slot (-1 for masked slots)."""
        active = model.active_slots()
        features = self.slot_features(model)[active]
        positions = slot_positions(model)[active]
        leaves = torch.full(active.shape, -1, dtype=torch.int64)
        leaves[active] = assign_leaves(self.codebook, features, positions)
        return leaves


@torch.no_grad()
def slot_positions(model: ScaffoldModel) -> Tensor:
    """Means of every anchor slot's Gaussian ``[N, K, 3]`` in the lattice's unit cube.

    ``x + O_k * l[0:3]`` does not depend on the view (docs/method.md §1), so it places each Gaussian
    for clustering; the unit cube makes the codebook's position weight scene-independent.
    """
    scale = torch.exp(model.log_scaling[:, None, :3])
    world = model.anchors[:, None, :] + model.offsets * scale
    grid = model.grid
    cells = world.double() / grid.voxel_size - torch.tensor(grid.origin, dtype=torch.float64)
    return grid.unit_cube(cells).float()  # fractional cells: the anchors' own mapping
