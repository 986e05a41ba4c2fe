"""Export a decoded scene (or one object of it) as a 3DGS PLY or a ``.splat`` file."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..ply import write_sh_ply
from ..scene.decoded import Scene
from ..semantics.query import QueryError, select
from .fit import ExportConfig, ExportedGaussians, describe_views, fit_export
from .splat import write_splat

FORMATS = (".ply", ".splat")


def semantic_columns(scene: Scene, gaussians: ExportedGaussians) -> dict[str, np.ndarray]:
    """PLY extras of the exported Gaussians: ``instance_id`` (the language-table entry, i.e.
    the object, of the slot's codebook leaf), ``leaf_id`` and ``sem_*`` (the unit instance
    feature); empty for a base-only scene."""
    if scene.semantics is None:
        return {}
    slot = (gaussians.anchor_index, gaussians.offset_index)
    leaves = scene.semantics.slot_leaves(scene.model)[slot]
    entry = scene.semantics.leaf_entry[leaves.clamp_min(0)]
    instance = np.where(leaves.numpy() >= 0, entry.numpy(), -1).astype(np.int32)
    features = scene.semantics.slot_features(scene.model)[slot].numpy().astype(np.float32)
    columns = {"instance_id": instance, "leaf_id": leaves.numpy().astype(np.int32)}
    columns.update({f"sem_{i}": features[:, i] for i in range(features.shape[1])})
    return columns


def export_scene(
    scene: Scene,
    path: Path,
    config: ExportConfig = ExportConfig(),  # noqa: B008 (frozen dataclass)
    select_text: str | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Fit the scene's SH export and write it to ``path`` (``.ply`` or ``.splat``).

    ``select_text`` keeps only the Gaussians of the object it names (the fit is made on the
    whole scene, so the object keeps the colours it has in context). Returns a JSON-ready
    report.
    """
    if path.suffix not in FORMATS:
        raise ValueError(f"{path}: unknown export format (use {' or '.join(FORMATS)})")
    if path.suffix == ".splat":
        config = replace(config, sh_degree=0)  # the layout holds the DC colour only
    report: dict[str, Any] = {}
    selection = None
    if select_text is not None:  # before the fit: a query that matches nothing fails fast
        selection = select(scene, select_text)
        if not selection.matched:
            raise QueryError(
                f"'{select_text}' matches no object (best score {selection.best_score:.2f})"
            )
        report["selected"] = selection.summary()
    started = time.perf_counter()
    gaussians = fit_export(scene.model, config, quiet, scene.cameras)
    report["fit_seconds"] = round(time.perf_counter() - started, 1)
    if selection is not None:
        slot = (gaussians.anchor_index, gaussians.offset_index)
        gaussians = gaussians.subset(selection.slots[slot])
    g = gaussians
    if path.suffix == ".splat":
        write_splat(path, g.means, g.scales, g.quats, g.opacities, g.sh[:, 0])
    else:
        extras = semantic_columns(scene, g)
        write_sh_ply(path, g.means, g.scales, g.quats, g.opacities, g.sh, extras)
    report.update(
        {
            "path": str(path),
            "gaussians": len(g),
            "sh_degree": config.sh_degree,
            "fit_iterations": config.fit_iterations,
            "views": describe_views(len(scene.cameras), config),
            "bytes": path.stat().st_size,
        }
    )
    return report
