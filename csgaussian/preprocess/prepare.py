"""Language features in the ``language_features/`` layout, beside an ``encoder.json`` naming
the text space: from a dataset's instance maps (one mask per object, its name as its text: our
stand-in on scenes that ship them, such as kitchen), or from SAM and CLIP as LangSplat makes them
(:func:`prepare_sam_clip`, optional extra).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from csgaussian.data import load_scene
from csgaussian.data.common import fail, read_json
from csgaussian.fileio import write_bytes_atomic
from csgaussian.preprocess.features import LEVELS, view_stem, write_view
from csgaussian.progress import TrainProgress
from csgaussian.semantics.encoders import (
    DEFAULT_ENCODER,
    RELEVANCY_NEGATIVES,
    get_text_encoder,
    write_text_cache,
)
from csgaussian.types import View

if TYPE_CHECKING:
    from csgaussian.preprocess.sam_clip import MaskGeneratorConfig

ENCODER_FILE = "encoder.json"
BACKGROUND_TEXT = "background"  # the text of instance id 0


def prepare_features(
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    encoder: str = DEFAULT_ENCODER,
    downscale: int = 1,
) -> dict:
    """Write ``language_features`` files for every view of ``data`` that has an instance map.

    Each instance id present in a view (background 0 included) is one mask, written identically
    at all four levels so that any level selects whole objects; its feature is the encoder's
    embedding of the object's name (each distinct name is embedded once). Train views come first;
    a test view whose file stem is already taken by a train view (Blender layouts name both
    ``r_000``) is skipped, as the layout has one file pair per stem.

    Args:
        data: scene folder (any layout :func:`csgaussian.data.load_scene` reads).
        out_dir: the ``language_features`` folder to write.
        encoder: a name accepted by :func:`~csgaussian.semantics.encoders.get_text_encoder`.

    Returns:
        Summary: ``views`` written, ``masks`` (per level, summed over views), ``skipped_views``,
        ``text_space``, ``dim``, ``seconds``.

    Raises:
        DataError: the dataset has no instance maps, or bad data.
        EncoderError: unknown encoder or its model package is missing.
    """
    start = time.perf_counter()
    text_encoder = get_text_encoder(encoder)
    scene = load_scene(data, downscale=downscale, load_instances=True)
    views: dict[str, View] = {}
    for view in scene.train + scene.test:
        if view.instance is not None:
            views.setdefault(view_stem(view.image_path), view)
    if not views:
        raise fail(Path(data), "no instance maps; give --features")
    texts = [BACKGROUND_TEXT, *scene.class_names]  # text of instance id i
    names = sorted(set(texts))
    embeddings = text_encoder.encode(names)  # [len(names), dim]
    by_id = embeddings[[names.index(t) for t in texts]]  # [1 + classes, dim]
    masks = 0
    for stem, view in views.items():
        instance = view.instance.numpy()  # [H, W]
        present, local = np.unique(instance, return_inverse=True)
        ids = local.reshape(instance.shape)
        features = by_id[present]
        write_view(out_dir, stem, [ids] * len(LEVELS), [features] * len(LEVELS))
        masks += len(present)
    meta = {"text_space": text_encoder.name, "dim": text_encoder.dim, "level_names": list(LEVELS)}
    write_bytes_atomic(Path(out_dir) / ENCODER_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    with_instances = sum(v.instance is not None for v in scene.train + scene.test)
    return {
        "views": len(views),
        "masks": masks,
        "skipped_views": with_instances - len(views),
        "text_space": text_encoder.name,
        "dim": text_encoder.dim,
        "seconds": round(time.perf_counter() - start, 3),
    }


def read_text_space(features_dir: str | os.PathLike[str]) -> str | None:
    """The text-space id recorded in ``features_dir/encoder.json``; None when absent (unknown,
    e.g. user-brought CLIP features).

    Raises:
        DataError: the file exists but is malformed.
    """
    path = Path(features_dir) / ENCODER_FILE
    if not path.is_file():
        return None
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("text_space"), str):
        raise fail(path, "missing string 'text_space'")
    return meta["text_space"]


def prepare_sam_clip(
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    sam: str | os.PathLike[str],
    clip: str | os.PathLike[str],
    downscale: int = 1,
    quiet: bool = True,
    generator: MaskGeneratorConfig | None = None,
) -> dict:
    """LangSplat's preprocessing: SAM masks at four levels, filtered by LangSplat's mask NMS,
    each kept mask's crop embedded by CLIP; one file pair per view stem (train views first).

    Args:
        data: scene folder (any layout :func:`csgaussian.data.load_scene` reads).
        out_dir: the ``language_features`` folder to write.
        sam, clip: local ``transformers`` model folders (see :mod:`.sam_clip`).
        generator: the automatic mask generator's settings (LangSplat's by default).

    Returns:
        Summary: ``views``, ``masks_<level>`` (summed over views), ``text_space``, ``dim``,
        ``seconds`` (all) and ``seconds_per_view`` (models loaded).

    Raises:
        EncoderError: the ``sam`` extra is missing or a model folder is not one.
    """
    from .mask_filter import id_map, mask_nms
    from .sam_clip import ClipModel, MaskGeneratorConfig, SamMasks, load_sam

    start = time.perf_counter()
    masker = SamMasks(load_sam(sam), generator or MaskGeneratorConfig())
    encoder = ClipModel(clip)
    scene = load_scene(data, downscale=downscale, load_instances=False)
    views: dict[str, View] = {}
    for view in scene.train + scene.test:
        views.setdefault(view_stem(view.image_path), view)
    counts = dict.fromkeys(LEVELS, 0)
    loop_start = time.perf_counter()
    with TrainProgress(len(views), quiet=quiet, description="prepare") as progress:
        for done, (stem, view) in enumerate(views.items(), start=1):
            image = view.image
            by_level = masker.generate(image)
            ids, features = [], []
            for level in LEVELS:
                masks, scores = by_level[level]
                kept = masks[mask_nms(masks, scores)]
                level_ids, order = id_map(kept)
                ids.append(level_ids.numpy())
                features.append(encoder.encode_crops(image, kept[order]).numpy())
                counts[level] += len(order)
            write_view(out_dir, stem, ids, features)
            progress.update(done, masks=sum(len(f) for f in features))
    meta = {"text_space": encoder.name, "dim": encoder.dim, "level_names": list(LEVELS)}
    write_bytes_atomic(Path(out_dir) / ENCODER_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    now = time.perf_counter()
    return {
        "views": len(views),
        **{f"masks_{level}": n for level, n in counts.items()},
        "text_space": encoder.name,
        "dim": encoder.dim,
        "seconds": round(now - start, 3),
        "seconds_per_view": round((now - loop_start) / max(len(views), 1), 3),
    }


def make_text_features(
    texts: list[str], clip: str | os.PathLike[str], out: str | os.PathLike[str]
) -> dict:
    """Write a ``{text: vector}`` cache of ``texts`` and LangSplat's relevancy negatives,
    embedded by the CLIP model folder ``clip``."""
    from .sam_clip import ClipModel

    encoder = ClipModel(clip)
    every = list(dict.fromkeys([*texts, *RELEVANCY_NEGATIVES]))
    write_text_cache(out, every, encoder.encode(every))
    return {"texts": len(every), "text_space": encoder.name, "dim": encoder.dim, "file": str(out)}
