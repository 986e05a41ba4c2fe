"""Render a Scaffold-GS scene from one camera: spawn the visible anchors' Gaussians, rasterize.

Extra per-Gaussian channels (semantic features, selection indicators) go through the same
rasterizer pass as the colours (docs/method.md §2), composited over a zero background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..entropy.anchors import AnchorEntropyModel, QuantizedAnchors
from ..entropy.quantize import QuantMode
from ..render import RasterConfig, RenderOutput, rasterize_gaussians
from ..types import Camera
from .scaffold import NeuralGaussians, ScaffoldModel

ExtraChannels = Callable[[NeuralGaussians], Tensor]
"""Maps the spawned Gaussians to extra channels ``[G, E]`` rendered beside RGB."""
GaussianEdit = Callable[[NeuralGaussians], NeuralGaussians]
"""Changes the spawned Gaussians before rasterization (keep a selection, remove, recolour)."""


@dataclass
class ViewRender:
    """What rendering one view returns."""

    image: Tensor  # [H, W, 3]
    extra: Tensor | None  # [H, W, E] the extra channels, or None
    raster: RenderOutput  # alpha, depth, screen-space means and radii
    gaussians: NeuralGaussians
    rate: QuantizedAnchors | None  # the anchors' quantized attributes and bits, if priced


def render_view(
    model: ScaffoldModel,
    camera: Camera,
    raster: RasterConfig = RasterConfig(),  # noqa: B008 (frozen dataclass)
    use_mask: bool = True,
    entropy: AnchorEntropyModel | None = None,
    mode: QuantMode = "noise",
    extra: ExtraChannels | None = None,
    edit: GaussianEdit | None = None,
) -> ViewRender:
    """Render one view, with its anchors quantized and priced when ``entropy`` is given.

    ``edit`` changes the spawned Gaussians first; ``extra`` adds channels composited over zero.
    """
    visible = model.visible_anchors(camera).nonzero().squeeze(1)
    quantized = None
    if entropy is not None:
        quantized = entropy(model, visible, mode, model.offset_mask(use_mask)[visible])
    gaussians = model.spawn(
        visible,
        camera.center,
        quantized.attributes if quantized is not None else None,
        use_mask=use_mask,
    )
    if edit is not None:
        gaussians = edit(gaussians)
    colors, background = gaussians.colors, model.background_color()
    n_extra = 0
    if extra is not None:
        channels = extra(gaussians)
        n_extra = channels.shape[1]
        colors = torch.cat([colors, channels.to(colors)], dim=1)
        background = torch.cat([background, background.new_zeros(n_extra)])
    out = rasterize_gaussians(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        colors,
        camera,
        background=background,
        config=raster,
    )
    image = out.colors[..., :3]
    return ViewRender(image, out.colors[..., 3:] if n_extra else None, out, gaussians, quantized)
