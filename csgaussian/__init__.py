"""csgaussian: CSGaussian compression and segmentation of 3D Gaussian Splatting, on the CPU."""

from .api import (
    decode,
    demo,
    encode,
    evaluate,
    export,
    load,
    load_model,
    prepare,
    query,
    render,
    render_camera,
    train,
)
from .data import load_scene

__version__ = "0.1.0"

__all__ = [
    "decode",
    "demo",
    "encode",
    "evaluate",
    "export",
    "load",
    "load_model",
    "load_scene",
    "prepare",
    "query",
    "render",
    "render_camera",
    "train",
]
