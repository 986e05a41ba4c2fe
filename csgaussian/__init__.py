"""csgaussian: CSGaussian compression and segmentation of 3D Gaussian Splatting, on the CPU.

The API's names load on first use (PEP 562), so that ``import csgaussian.<module>`` and the
receiver's commands do not pay for modules they do not use (the rasterizer's numba kernels, the
dataset readers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Duplicate",
    "Extract",
    "Recolor",
    "Remove",
    "decode",
    "demo",
    "edit",
    "edit_file",
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
    "render_scene",
    "save_edited",
    "train",
]

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "load_scene":
        return importlib.import_module(".data", __name__).load_scene
    if name in __all__:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
