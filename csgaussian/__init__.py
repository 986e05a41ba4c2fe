"""csgaussian: CSGaussian compression and segmentation of 3D Gaussian Splatting, on the CPU."""

from .api import (
    Duplicate,
    Extract,
    Recolor,
    Remove,
    decode,
    demo,
    edit,
    edit_file,
    encode,
    evaluate,
    export,
    load,
    load_model,
    prepare,
    query,
    render,
    render_camera,
    render_scene,
    save_edited,
    train,
)
from .data import load_scene

__version__ = "0.1.0"

__all__ = [
    "Duplicate",
    "Extract",
    "Recolor",
    "Remove",
    "decode",
    "edit",
    "edit_file",
    "render_scene",
    "save_edited",
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
