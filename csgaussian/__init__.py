"""csgaussian: CSGaussian compression and segmentation of 3D Gaussian Splatting, on the CPU.

The public names are :mod:`csgaussian.api`'s ``__all__``; the training side's are imported on
first use (``api.LAZY``).
"""

from typing import Any

from . import api
from .api import (
    DEFAULT_MAX_MEMORY,
    MIN_SLOT_SHARE,
    OPERATIONS,
    SPLITS,
    Duplicate,
    EditRequest,
    EncodedScene,
    Extract,
    Recolor,
    Remove,
    check_output,
    decode,
    decode_to,
    edit,
    edit_file,
    evaluate,
    export,
    layer_bytes,
    load,
    load_model,
    load_scene,
    load_trained,
    memory_limit,
    parse_color,
    parse_offset,
    query,
    query_view,
    render,
    render_camera,
    render_scene,
    save_edited,
    save_png,
    segmentation_report,
    static_gaussians,
    viewer,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "MIN_SLOT_SHARE",
    "OPERATIONS",
    "SPLITS",
    "Duplicate",
    "EditRequest",
    "EncodedScene",
    "Extract",
    "Recolor",
    "Remove",
    "check_output",
    "decode",
    "decode_to",
    "demo",
    "edit",
    "edit_file",
    "encode",
    "evaluate",
    "export",
    "layer_bytes",
    "load",
    "load_model",
    "load_scene",
    "load_trained",
    "memory_limit",
    "parse_color",
    "parse_offset",
    "prepare",
    "query",
    "query_view",
    "render",
    "render_camera",
    "render_scene",
    "save_edited",
    "save_png",
    "segmentation_report",
    "static_gaussians",
    "text_features",
    "train",
    "viewer",
]


def __getattr__(name: str) -> Any:
    if name in api.LAZY:  # bound here once imported: ``train`` is also a subpackage's name
        value = globals()[name] = getattr(api, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
