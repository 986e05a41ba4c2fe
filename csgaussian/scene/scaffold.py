"""Scaffold-GS anchors and the neural Gaussians they spawn per view (docs/method.md §1).

Each anchor holds a position on a voxel grid, a feature ``f`` (50), a scaling ``l`` (6, stored as
log), K offsets (K x 3) and K mask logits. Per view, three MLPs map ``[f, d, |x - c|]`` to the
opacity, colour and covariance of the anchor's K neural Gaussians.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..types import Camera

MAX_DEPTH = 62
"""Deepest lattice: cell indices ``< 2^depth`` stay int64."""


@dataclass(frozen=True)
class ScaffoldConfig:
    """Shape of the anchor representation.

    Sources: feature 50, K = 10 and MLP width 50 [paper, supp Table 1]; mask threshold 0.01
    [supp Table 1]; the frustum margin is ours.
    """

    feature_dim: int = 50
    """Anchor feature size (docs/method.md §1)."""
    n_offsets: int = 10
    """K, neural Gaussians per anchor (supp Table 1)."""
    hidden_dim: int = 50
    """Width of the one hidden layer of each MLP."""
    mask_threshold: float = 0.01
    """epsilon of M = 1(sigmoid(m) > epsilon) (supp Table 1)."""
    mask_logit_init: float = 2.0
    """Initial mask logit (sigmoid 0.88: every offset starts switched on)."""
    frustum_margin: float = 0.15
    """Anchors up to this fraction of the image size outside the frame still spawn Gaussians."""

    @property
    def mlp_input_dim(self) -> int:
        """f, unit view direction (3) and camera distance (1)."""
        return self.feature_dim + 4


@dataclass(frozen=True)
class AnchorGrid:
    """The integer lattice anchors live on: world = (origin + cell) * voxel_size.

    Cells lie in ``[0, 2^depth)^3``; the lattice is fixed for a scene, so that anchor positions
    are coded losslessly and the hyperprior sees the same normalised positions throughout.
    """

    voxel_size: float
    origin: tuple[int, int, int]
    depth: int

    def __post_init__(self) -> None:
        """Refuse a lattice that cannot place anchors (it may come from a file)."""
        size = self.voxel_size
        if isinstance(size, bool) or not isinstance(size, numbers.Real) or not size > 0:
            raise ValueError(f"voxel_size must be a positive number, got {size!r}")
        if not math.isfinite(size):
            raise ValueError(f"voxel_size must be finite, got {size!r}")
        origin = self.origin
        if not isinstance(origin, tuple) or len(origin) != 3:
            raise ValueError(f"origin must be a tuple of 3 integers, got {origin!r}")
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in origin):
            raise ValueError(f"origin must be a tuple of 3 integers, got {origin!r}")
        depth = self.depth
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
            raise ValueError(f"depth must be an integer, got {depth!r}")
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must lie in 0..{MAX_DEPTH}, got {depth}")

    @classmethod
    def covering(cls, bounds: Tensor, voxel_size: float, margin: float) -> AnchorGrid:
        """The smallest power-of-two cube of voxels holding ``bounds`` ([2, 3]) plus ``margin``."""
        center = (bounds[0] + bounds[1]) / 2
        half = float((bounds[1] - bounds[0]).max()) / 2 * (1 + margin)
        low = torch.floor((center - half) / voxel_size).long()
        depth = max(1, math.ceil(math.log2(max(2 * half / voxel_size, 1.0)) + 1e-9))
        return cls(voxel_size, tuple(int(v) for v in low), depth)

    def cells(self, points: Tensor) -> Tensor:
        """Integer cells ``[P, 3]`` of world points ``[P, 3]`` (nearest lattice point)."""
        return torch.round(points / self.voxel_size).long() - torch.tensor(self.origin)

    def inside(self, cells: Tensor) -> Tensor:
        """``[P]`` bool: cells inside the lattice cube."""
        return ((cells >= 0) & (cells < 2**self.depth)).all(dim=1)

    def positions(self, cells: Tensor) -> Tensor:
        """World positions ``[P, 3]`` (float32) of ``cells``: the decoder computes the same."""
        return (cells + torch.tensor(self.origin)).double().mul(self.voxel_size).float()

    def unit_cube(self, cells: Tensor) -> Tensor:
        """Cell centres mapped to [-1, 1]^3, float64 and exact (the hyperprior input)."""
        return (2.0 * cells.double() + 1.0) / float(2**self.depth) - 1.0


def _mlp(in_dim: int, hidden: int, out_dim: int, head: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)]
    if head is not None:
        layers.append(head)
    return nn.Sequential(*layers)


@dataclass
class NeuralGaussians:
    """The Gaussians one view sees, ready for the rasterizer."""

    means: Tensor  # [G, 3]
    scales: Tensor  # [G, 3]
    quats: Tensor  # [G, 4] normalised (w, x, y, z)
    opacities: Tensor  # [G]
    colors: Tensor  # [G, 3]
    anchor_index: Tensor  # [G] int64 index into the model's anchors
    offset_index: Tensor  # [G] int64 in [0, K)

    def subset(self, keep: Tensor) -> NeuralGaussians:
        """The Gaussians where ``keep`` ([G] bool or int64 indices) holds."""
        return NeuralGaussians(*(getattr(self, f.name)[keep] for f in fields(self)))

    def at_slots(self, table: Tensor) -> Tensor:
        """``table`` (``[N, K, ...]``, one entry per anchor slot) read at each Gaussian's slot:
        ``[G, ...]``."""
        return table[self.anchor_index, self.offset_index]


class ScaffoldModel(nn.Module):
    """Anchors plus the opacity, colour and covariance MLPs."""

    def __init__(self, cells: Tensor, grid: AnchorGrid, config: ScaffoldConfig) -> None:
        """Create anchors at lattice ``cells`` ([N, 3] int64) of ``grid`` with zero features."""
        super().__init__()
        self.config = config
        self.grid = grid
        n, k = cells.shape[0], config.n_offsets
        self.register_buffer("anchor_cells", cells.long().clone())  # [N, 3]
        self.register_buffer("anchors", grid.positions(cells))  # [N, 3], fixed (Scaffold-GS)
        self.features = nn.Parameter(torch.zeros(n, config.feature_dim))
        self.log_scaling = nn.Parameter(torch.full((n, 6), math.log(grid.voxel_size)))
        self.offsets = nn.Parameter(torch.zeros(n, k, 3))
        self.mask_logits = nn.Parameter(torch.full((n, k), config.mask_logit_init))
        d, h = config.mlp_input_dim, config.hidden_dim
        self.opacity_mlp = _mlp(d, h, k, nn.Tanh())
        self.color_mlp = _mlp(d, h, 3 * k, nn.Sigmoid())
        self.cov_mlp = _mlp(d, h, 7 * k, None)
        self.background = nn.Parameter(torch.zeros(3))  # logit of the colour behind everything

    @property
    def n_anchors(self) -> int:
        return self.anchors.shape[0]

    @property
    def voxel_size(self) -> float:
        return self.grid.voxel_size

    def anchor_parameters(self) -> dict[str, nn.Parameter]:
        """The per-anchor parameters, the ones growing and pruning edit (first dim = anchor)."""
        return {
            "features": self.features,
            "log_scaling": self.log_scaling,
            "offsets": self.offsets,
            "mask_logits": self.mask_logits,
        }

    def background_color(self) -> Tensor:
        """``[3]`` colour composited behind the Gaussians."""
        return torch.sigmoid(self.background)

    def zero_unused_slot_outputs(self, in_use: Tensor) -> None:
        """Zero the output rows of the three MLPs for the offset slots not ``in_use`` ([K] bool).

        No Gaussian of such a slot is drawn (opacity ``tanh(0) = 0`` is dropped), so for slots
        whose mask is off everywhere nothing rendered changes; the codec stores a zero row in two
        bytes.
        """
        unused = ~in_use.bool()
        with torch.no_grad():
            for mlp in (self.opacity_mlp, self.color_mlp, self.cov_mlp):
                out_layer = mlp[2]  # rows grouped by slot: [K * outputs per slot]
                rows = unused.repeat_interleave(out_layer.out_features // self.config.n_offsets)
                out_layer.weight[rows] = 0.0
                out_layer.bias[rows] = 0.0

    def active_slots(self) -> Tensor:
        """``[N, K]`` bool: the offsets whose mask is on (the ones a stream transmits)."""
        return self.offset_mask(use_mask=True) > 0.5

    def offset_mask(self, use_mask: bool) -> Tensor:
        """M of docs/method.md §1 with a straight-through gradient to sigmoid(m), ``[N, K]``."""
        soft = torch.sigmoid(self.mask_logits)
        if not use_mask:
            return torch.ones_like(soft)
        hard = (soft > self.config.mask_threshold).to(soft.dtype)
        return hard + soft - soft.detach()

    def visible_anchors(self, camera: Camera) -> Tensor:
        """Boolean ``[N]``: anchors in front of the camera and inside the widened frustum."""
        cam = (self.anchors @ camera.viewmat[:3, :3].T) + camera.viewmat[:3, 3]
        z = cam[:, 2]
        in_front = z > 1e-3
        uv = (cam[:, :2] / z.clamp_min(1e-3)[:, None]) @ camera.K[:2, :2].T + camera.K[:2, 2]
        margin_u = self.config.frustum_margin * camera.width
        margin_v = self.config.frustum_margin * camera.height
        inside_u = (uv[:, 0] > -margin_u) & (uv[:, 0] < camera.width + margin_u)
        inside_v = (uv[:, 1] > -margin_v) & (uv[:, 1] < camera.height + margin_v)
        return in_front & inside_u & inside_v

    def neural_gaussians(self, camera: Camera, use_mask: bool = True) -> NeuralGaussians:
        """Spawn the Gaussians of the anchors visible from ``camera``.

        ``use_mask`` applies the learnable offset mask (from the masking iteration on).
        """
        visible = self.visible_anchors(camera).nonzero().squeeze(1)  # [V]
        return self.spawn(visible, camera.center.to(self.anchors), use_mask=use_mask)

    def spawn(
        self,
        anchor_ids: Tensor,
        eye: Tensor,
        attributes: dict[str, Tensor] | None = None,
        use_mask: bool = True,
    ) -> NeuralGaussians:
        """Neural Gaussians of the anchors ``anchor_ids`` ([V]) seen from the point ``eye`` ([3]).

        ``attributes`` replaces ``features``/``log_scaling``/``offsets`` of those anchors with
        ``[V, ...]`` values (their quantized versions in rate-distortion training).
        """
        attrs = {
            "features": self.features[anchor_ids],
            "log_scaling": self.log_scaling[anchor_ids],
            "offsets": self.offsets[anchor_ids],
        }
        attrs.update(attributes or {})
        anchors = self.anchors[anchor_ids]
        features = attrs["features"]  # [V, F]
        scaling = torch.exp(attrs["log_scaling"])  # [V, 6]
        offsets = attrs["offsets"]  # [V, K, 3]
        mask = self.offset_mask(use_mask)[anchor_ids]  # [V, K]

        to_anchor = anchors - eye
        distance = to_anchor.norm(dim=1, keepdim=True).clamp_min(1e-8)
        mlp_input = torch.cat([features, to_anchor / distance, distance], dim=1)  # [V, 54]
        k = self.config.n_offsets
        opacity = self.opacity_mlp(mlp_input) * mask  # [V, K]
        color = self.color_mlp(mlp_input).view(-1, k, 3)
        cov = self.cov_mlp(mlp_input).view(-1, k, 7)

        keep = opacity > 0  # Gaussians with opacity <= 0 are dropped (Scaffold-GS)
        anchor_local, offset_index = keep.nonzero(as_tuple=True)
        anchor_scale = scaling[anchor_local]  # [G, 6]
        means = anchors[anchor_local] + offsets[anchor_local, offset_index] * anchor_scale[:, :3]
        cov_kept = cov[anchor_local, offset_index]
        scales = anchor_scale[:, 3:] * torch.sigmoid(cov_kept[:, :3])
        scales = scales * mask[anchor_local, offset_index, None]
        return NeuralGaussians(
            means=means,
            scales=scales,
            quats=F.normalize(cov_kept[:, 3:], dim=1),
            opacities=opacity[anchor_local, offset_index],
            colors=color[anchor_local, offset_index],
            anchor_index=anchor_ids[anchor_local],
            offset_index=offset_index,
        )


def nearest_neighbour_distance(points: Tensor, k: int = 3, chunk: int = 4096) -> Tensor:
    """Root mean squared distance of each point to its ``k`` nearest others, ``[P]``.

    Used for the initial anchor scaling, as 3DGS and Scaffold-GS do.
    """
    out = torch.empty(points.shape[0])
    for start in range(0, points.shape[0], chunk):
        block = points[start : start + chunk]
        d2 = torch.cdist(block, points).square()
        nearest = d2.topk(min(k + 1, points.shape[0]), largest=False).values[:, 1:]
        out[start : start + chunk] = nearest.mean(dim=1).sqrt() if nearest.numel() else 1.0
    return out


def scaffold_from_points(points: Tensor, grid: AnchorGrid, config: ScaffoldConfig) -> ScaffoldModel:
    """Anchors at the lattice cells of ``points`` (deduplicated, outside ones dropped) with
    nearest-neighbour initial scaling (Scaffold-GS)."""
    cells = grid.cells(points)
    cells = torch.unique(cells[grid.inside(cells)], dim=0)
    model = ScaffoldModel(cells, grid, config)
    spacing = nearest_neighbour_distance(model.anchors).clamp_min(grid.voxel_size * 0.1)
    model.log_scaling.data[:] = torch.log(spacing)[:, None]
    return model
