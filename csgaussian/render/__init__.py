"""Differentiable CPU Gaussian-splatting rasterizer (tile-based EWA splatting, 3DGS semantics)."""

from csgaussian.render.projection import RasterConfig, RasterError
from csgaussian.render.rasterize import RenderOutput, rasterize_gaussians

__all__ = ["RasterConfig", "RasterError", "RenderOutput", "rasterize_gaussians"]
