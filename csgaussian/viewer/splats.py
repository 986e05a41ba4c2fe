"""The decoded scene as plain Gaussian splats for the browser to draw (issue 18 item 1).

Scaffold-GS spawns its Gaussians per view; the browser needs one fixed set. It gets the export's
closed form (:func:`csgaussian.export.fit.fit_export` with no fit step: one Gaussian per anchor
slot drawn from some view, averaged opacity, scale and rotation, the Gaussians a static scene
would show as fog pruned) with its DC colour, sent once per client. Its views are the capture
cameras the stream holds and ``ViewerConfig.splat_views`` orbit views; for a stream without
cameras, whose orbit-only closed form turned the anchors' far background shell into a fog, only
the splats within the anchors' bulk are sent (``ViewerConfig.splat_bulk_share``). The server's
refine at rest shows the whole model. Queries and edits act on the splats by anchor slot, as
they act on the neural Gaussians (:mod:`csgaussian.scene.edits`), so the browser's picture and
the server's exact render (the "refine" at rest) show the same edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

from ..export.fit import ExportConfig, fit_export
from ..render.projection import covariance_3d
from ..render.sh import SH_C0
from ..scene.edits import SceneEdit
from ..scene.operations import operation
from ..scene.scaffold import ScaffoldModel
from ..types import Camera


@dataclass
class Splats:
    """Gaussians as viser's splat object takes them, with the anchor slot of each."""

    centers: Tensor  # [S, 3]
    covariances: Tensor  # [S, 3, 3]
    rgbs: Tensor  # [S, 3] in [0, 1]
    opacities: Tensor  # [S, 1] in [0, 1]
    anchor_index: Tensor  # [S] int64
    offset_index: Tensor  # [S] int64

    def __len__(self) -> int:
        return self.centers.shape[0]

    def subset(self, keep: Tensor) -> Splats:
        return Splats(*(getattr(self, f.name)[keep] for f in fields(self)))

    def at_slots(self, table: Tensor) -> Tensor:
        """``table`` (``[N, K]``) read at each splat's anchor slot."""
        return table[self.anchor_index, self.offset_index]

    def arrays(self, rgbs: Tensor | None = None) -> dict[str, np.ndarray]:
        """The keyword arguments of ``viser``'s ``add_gaussian_splats`` (float32 arrays)."""
        rgbs = self.rgbs if rgbs is None else rgbs
        return {
            "centers": self.centers.numpy().astype(np.float32),
            "covariances": self.covariances.numpy().astype(np.float32),
            "rgbs": rgbs.numpy().astype(np.float32),
            "opacities": self.opacities.numpy().astype(np.float32),
        }


@torch.no_grad()
def splats_of(
    model: ScaffoldModel, cameras: list[Camera], n_views: int, bulk_share: float = 1.0
) -> Splats:
    """The splats of ``model``: the export's closed form (no fit step) with DC colours, from
    the capture ``cameras`` and ``n_views`` orbit views. With capture cameras every splat is
    kept; without them only those no farther from the anchors' median than ``bulk_share`` of
    the anchors are (the orbit's closed form makes the background shell a fog)."""
    config = replace(ExportConfig(), fit_iterations=0, sh_degree=0, n_views=n_views)
    gaussians = fit_export(model, config, cameras=cameras)
    if not cameras:
        centre = model.anchors.median(dim=0).values
        reach = torch.quantile((model.anchors - centre).norm(dim=1), bulk_share)
        gaussians = gaussians.subset((gaussians.means - centre).norm(dim=1) <= reach)
    rgbs = (0.5 + SH_C0 * gaussians.sh[:, 0]).clamp(0.0, 1.0)
    return Splats(
        centers=gaussians.means.float(),
        covariances=covariance_3d(gaussians.quats, gaussians.scales).float(),
        rgbs=rgbs.float(),
        opacities=gaussians.opacities.float()[:, None],
        anchor_index=gaussians.anchor_index,
        offset_index=gaussians.offset_index,
    )


def edited(splats: Splats, edits: Sequence[SceneEdit]) -> Splats:
    """``splats`` after ``edits`` in order, as :func:`csgaussian.scene.edits.apply_edit` edits
    the neural Gaussians (a copy keeps its slot)."""
    for edit in edits:
        splats = operation(edit.kind).apply_splats(splats, splats.at_slots(edit.slots), edit)
    return splats


def highlighted(splats: Splats, slots: Tensor | None, color: Sequence[float]) -> Tensor:
    """The splats' colours with those of ``slots`` moved half-way to ``color`` (as the server's
    highlight tints its pixels)."""
    if slots is None:
        return splats.rgbs
    chosen = splats.at_slots(slots)
    rgbs = splats.rgbs.clone()
    rgbs[chosen] = 0.5 * rgbs[chosen] + 0.5 * torch.tensor(color, dtype=rgbs.dtype)
    return rgbs
