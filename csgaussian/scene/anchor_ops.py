"""Anchor growing and pruning (Scaffold-GS), editing parameters and optimizer moments together."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .scaffold import NeuralGaussians, ScaffoldModel


def edit_anchors(
    model: ScaffoldModel,
    optimizer: torch.optim.Optimizer,
    keep: Tensor | None = None,
    new_cells: Tensor | None = None,
    new_values: dict[str, Tensor] | None = None,
) -> None:
    """Drop anchors (``keep`` [N] bool) and/or append new ones, keeping Adam moments aligned.

    New anchors sit at lattice ``new_cells`` ([M, 3] int64) and get zero moments.
    ``new_values`` maps every name of ``model.anchor_parameters()`` to their ``[M, ...]`` values.
    """
    params = model.anchor_parameters()
    for name, param in params.items():
        data = param.data if keep is None else param.data[keep]
        if new_cells is not None:
            data = torch.cat([data, new_values[name].to(data)], dim=0)
        state = optimizer.state.pop(param, None)
        new_param = torch.nn.Parameter(data)
        if state is not None:
            for key in ("exp_avg", "exp_avg_sq"):
                moment = state[key] if keep is None else state[key][keep]
                if new_cells is not None:
                    pad = torch.zeros((new_cells.shape[0],) + moment.shape[1:]).to(moment)
                    moment = torch.cat([moment, pad], dim=0)
                state[key] = moment
            optimizer.state[new_param] = state
        for group in optimizer.param_groups:
            group["params"] = [new_param if p is param else p for p in group["params"]]
        setattr(model, name, new_param)
    cells = model.anchor_cells if keep is None else model.anchor_cells[keep]
    if new_cells is not None:
        cells = torch.cat([cells, new_cells.to(cells)], dim=0)
    model.anchor_cells = cells
    model.anchors = model.grid.positions(cells)


@dataclass(frozen=True)
class DensifyConfig:
    """When and how anchors grow and are pruned.

    Sources: Scaffold-GS defaults (statistics from 500, every 100 iterations, until 15k;
    update_depth 3, hierarchy factor 4, init factor 16, success threshold 0.8, min opacity 0.005).
    The gradient threshold is in NDC units like 3DGS; ours is calibrated for small images.
    """

    start: int = 500
    """First iteration at which statistics are gathered."""
    interval: int = 100
    """Iterations between two grow/prune steps."""
    until: int = 15_000
    """Last iteration at which anchors grow or are pruned."""
    grad_threshold: float = 0.0002
    """Mean screen-space gradient (NDC) above which a neural Gaussian spawns an anchor."""
    update_depth: int = 3
    hierarchy_factor: int = 4
    init_factor: int = 16
    success_threshold: float = 0.8
    min_opacity: float = 0.005
    max_anchors: int = 200_000
    """Safety cap on anchor count (CPU memory and time)."""


@dataclass
class AnchorDensifier:
    """Scaffold-GS statistics and the grow/prune step; ``state_dict`` makes it resumable."""

    config: DensifyConfig
    opacity_accum: Tensor = field(default_factory=lambda: torch.zeros(0))  # [N]
    anchor_visits: Tensor = field(default_factory=lambda: torch.zeros(0))  # [N]
    grad_accum: Tensor = field(default_factory=lambda: torch.zeros(0))  # [N, K]
    grad_visits: Tensor = field(default_factory=lambda: torch.zeros(0))  # [N, K]

    def reset(self, n_anchors: int, n_offsets: int) -> None:
        self.opacity_accum = torch.zeros(n_anchors)
        self.anchor_visits = torch.zeros(n_anchors)
        self.grad_accum = torch.zeros(n_anchors, n_offsets)
        self.grad_visits = torch.zeros(n_anchors, n_offsets)

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "opacity_accum": self.opacity_accum,
            "anchor_visits": self.anchor_visits,
            "grad_accum": self.grad_accum,
            "grad_visits": self.grad_visits,
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name, value in state.items():
            setattr(self, name, value.clone())

    def active(self, iteration: int) -> bool:
        return self.config.start <= iteration <= self.config.until

    @torch.no_grad()
    def accumulate(
        self,
        gaussians: NeuralGaussians,
        visible_anchors: Tensor,
        means2d_grad: Tensor,
        radii: Tensor,
        width: int,
        height: int,
    ) -> None:
        """Add one view's statistics.

        Args:
            gaussians: the view's neural Gaussians.
            visible_anchors: ``[N]`` bool, anchors that spawned Gaussians in this view.
            means2d_grad: ``[G, 2]`` gradient of the loss w.r.t. the pixel centres.
            radii: ``[G]`` rasterizer radii (0 = not drawn).
        """
        a, k = gaussians.anchor_index, gaussians.offset_index
        self.anchor_visits[visible_anchors] += 1
        self.opacity_accum.index_add_(0, a, gaussians.opacities.detach().clamp_min(0))
        drawn = radii > 0
        ndc_grad = means2d_grad * torch.tensor([width / 2.0, height / 2.0])
        norm = ndc_grad.norm(dim=1)
        flat = (a * self.grad_accum.shape[1] + k)[drawn]
        self.grad_accum.view(-1).index_add_(0, flat, norm[drawn])
        self.grad_visits.view(-1).index_add_(0, flat, torch.ones_like(norm[drawn]))

    @torch.no_grad()
    def step(self, model: ScaffoldModel, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
        """Grow anchors where gradients are large, prune transparent ones; (grown, pruned)."""
        cfg = self.config
        grown = self._grow(model, optimizer)
        min_visits = cfg.interval * cfg.success_threshold
        prune = (self.opacity_accum < cfg.min_opacity * self.anchor_visits) & (
            self.anchor_visits > min_visits
        )
        all_masked = ~(torch.sigmoid(model.mask_logits) > model.config.mask_threshold).any(dim=1)
        prune |= all_masked
        n_pruned = int(prune.sum())
        if n_pruned and n_pruned < model.n_anchors:
            keep = ~prune
            edit_anchors(model, optimizer, keep=keep)
            for name, value in self.state_dict().items():
                setattr(self, name, value[keep])
        visited = self.anchor_visits > min_visits
        self.opacity_accum[visited] = 0
        self.anchor_visits[visited] = 0
        return grown, n_pruned

    def _grow(self, model: ScaffoldModel, optimizer: torch.optim.Optimizer) -> int:
        """Scaffold-GS anchor growing on ``update_depth`` lattice levels, coarse to fine.

        Level ``i`` groups candidate neural Gaussians into cells of ``init_factor /
        hierarchy_factor**i`` voxels; an empty cell becomes an anchor at its centre voxel.
        """
        cfg = self.config
        grid = model.grid
        grads = torch.nan_to_num(self.grad_accum / self.grad_visits)  # [N, K]
        seen = self.grad_visits > cfg.interval * cfg.success_threshold * 0.5
        k = model.config.n_offsets
        scaling = torch.exp(model.log_scaling.data)
        positions = model.anchors[:, None] + model.offsets.data * scaling[:, None, :3]  # [N, K, 3]
        voxel_cells = grid.cells(positions.reshape(-1, 3)).view(-1, k, 3)  # [N, K, 3]
        existing = model.anchor_cells
        new_cells, new_features, new_sizes = [], [], []
        for level in range(cfg.update_depth):
            threshold = cfg.grad_threshold * (cfg.hierarchy_factor // 2) ** level
            candidate = (grads >= threshold) & seen
            candidate &= torch.rand_like(grads) > 0.5 ** (level + 1)
            candidate &= grid.inside(voxel_cells.view(-1, 3)).view(-1, k)
            if not candidate.any():
                continue
            factor = max(1, cfg.init_factor // cfg.hierarchy_factor**level)  # voxels per cell
            coarse, inverse = torch.unique(
                torch.div(voxel_cells[candidate], factor, rounding_mode="floor"),
                dim=0,
                return_inverse=True,
            )
            fresh = ~_rows_in(coarse, torch.div(existing, factor, rounding_mode="floor"))
            if not fresh.any():
                continue
            source_features = model.features.data[:, None].expand(-1, k, -1)[candidate]
            index = inverse[:, None].expand_as(source_features)
            pooled = torch.zeros(coarse.shape[0], source_features.shape[1])
            pooled.scatter_reduce_(0, index, source_features, "amax", include_self=False)
            cells = coarse[fresh] * factor + factor // 2
            new_cells.append(cells)
            new_features.append(pooled[fresh])
            new_sizes.append(torch.full((cells.shape[0],), factor * grid.voxel_size))
            existing = torch.cat([existing, cells])
        self.grad_accum[seen] = 0
        self.grad_visits[seen] = 0
        budget = max(0, cfg.max_anchors - model.n_anchors)
        m = min(budget, sum(c.shape[0] for c in new_cells))
        if m == 0:
            return 0
        values = {
            "features": torch.cat(new_features)[:m],
            "log_scaling": torch.log(torch.cat(new_sizes)[:m])[:, None].expand(m, 6).clone(),
            "offsets": torch.zeros(m, k, 3),
            "mask_logits": torch.full((m, k), model.config.mask_logit_init),
        }
        edit_anchors(model, optimizer, new_cells=torch.cat(new_cells)[:m], new_values=values)
        for name, value in self.state_dict().items():
            pad = torch.zeros((m,) + value.shape[1:])
            setattr(self, name, torch.cat([value, pad]))
        return m


def _rows_in(rows: Tensor, table: Tensor) -> Tensor:
    """``[R]`` bool: which integer rows of ``rows`` ([R, 3]) occur in ``table`` ([T, 3])."""
    if table.numel() == 0:
        return torch.zeros(rows.shape[0], dtype=torch.bool)
    lo = torch.minimum(rows.min(0).values, table.min(0).values)
    span = torch.maximum(rows.max(0).values, table.max(0).values) - lo + 1

    def key(x: Tensor) -> Tensor:
        x = x - lo
        return (x[:, 0] * span[1] + x[:, 1]) * span[2] + x[:, 2]

    return torch.isin(key(rows), key(table))
