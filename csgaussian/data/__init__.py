"""Scene loading: Blender/NeRF, COLMAP and LLFF layouts, masks, and the built-in synthetic scene."""

from __future__ import annotations

from pathlib import Path

from csgaussian.data.blender import load_blender
from csgaussian.data.colmap import load_colmap
from csgaussian.data.llff import load_llff
from csgaussian.data.masks import load_lerf_labels, load_segmentation_masks
from csgaussian.data.synthetic import SyntheticConfig, ensure_demo_scene, generate_scene
from csgaussian.types import DataError, Dataset

__all__ = [
    "SyntheticConfig",
    "ensure_demo_scene",
    "generate_scene",
    "load_lerf_labels",
    "load_scene",
    "load_segmentation_masks",
]


def load_scene(path: str | Path, downscale: int = 1, load_instances: bool = True) -> Dataset:
    """Load a scene folder, detecting its layout.

    Layouts, tried in order: Blender/NeRF (``transforms_train.json``), COLMAP (``sparse/0/`` in
    text or binary, images in ``images/``), LLFF (``poses_bounds.npy`` with ``images/``).
    Images are float32 ``[H, W, 3]`` in ``[0, 1]``; greyscale becomes three channels; for the
    Blender layout RGBA images are composited onto white (the NeRF convention) and the scene's
    ``background`` is white. ``downscale`` reduces images by area averaging (and instance maps by
    nearest sampling) and scales the intrinsics; ``images_<downscale>/`` is used when present.

    Args:
        path: scene folder.
        downscale: integer reduction factor, >= 1.
        load_instances: read per-view instance maps when the layout has them.

    Raises:
        DataError: unrecognised layout or bad data (one line naming the file).
    """
    root = Path(path)
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    if (root / "transforms_train.json").is_file():
        return load_blender(root, downscale, load_instances)
    if (root / "sparse" / "0").is_dir():
        return load_colmap(root, downscale, load_instances)
    if (root / "poses_bounds.npy").is_file():
        return load_llff(root, downscale, load_instances)
    raise DataError(
        f"{root}: not a recognised scene (expected transforms_train.json, sparse/0 or "
        "poses_bounds.npy)"
    )
