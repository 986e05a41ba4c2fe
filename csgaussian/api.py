"""The Python API under the CLI: prepare, train, encode, decode, render, query, evaluate, export.

A facade: it re-exports the training side (:mod:`csgaussian.train.commands`), the receiver
side (:mod:`csgaussian.receiver`, :mod:`csgaussian.codec.files`) and the demo
(:mod:`csgaussian.demo_pipeline`). Its public names are ``__all__``; the CLI uses nothing else
of the package but config dataclasses and registries for its defaults and choices. A
receiver's functions import no training code; the training side's names (``LAZY``) load it on
first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .codec.budget import DEFAULT_MAX_MEMORY, memory_limit
from .codec.files import decode, layer_bytes, save_edited
from .codec.stream import MIN_SLOT_SHARE, EncodedScene
from .data import load_scene
from .receiver import (
    SPLITS,
    decode_to,
    edit,
    edit_file,
    evaluate,
    export,
    load,
    load_model,
    query,
    query_view,
    render,
    render_camera,
    render_scene,
    save_png,
    segmentation_report,
    static_gaussians,
    viewer,
)
from .run import load_trained
from .scene.io import check_output
from .scene.operations import OPERATIONS
from .semantics.edit_requests import (
    Duplicate,
    EditRequest,
    Extract,
    Recolor,
    Remove,
    parse_color,
    parse_offset,
)

if TYPE_CHECKING:
    from .demo_pipeline import demo
    from .train.commands import encode, prepare, text_features, train

LAZY = {
    "demo": "csgaussian.demo_pipeline",
    "encode": "csgaussian.train.commands",
    "prepare": "csgaussian.train.commands",
    "text_features": "csgaussian.train.commands",
    "train": "csgaussian.train.commands",
}
"""The training side's names, imported on first use so that a receiver loads no training code."""

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
    """A training-side name of ``LAZY``, imported now and kept."""
    if name in LAZY:
        value = globals()[name] = getattr(import_module(LAZY[name]), name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
