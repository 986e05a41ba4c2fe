"""Open-vocabulary segmentation of a decoded scene under every protocol of :data:`PROTOCOLS`.

The ground truth comes from whichever layout the dataset has (:mod:`.ground_truth`); each
protocol's figures are reported under its name with its description beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from csgaussian.eval.ground_truth import GroundTruth, ground_truth, query_texts
from csgaussian.eval.segmentation import (
    PROTOCOLS,
    RELEVANCY_NEGATIVES,
    SegmentationTarget,
    argmax_ious,
    argmax_report,
    mask_iou,
    protocol_report,
    read_queries,
    relevancy,
    relevancy_mask,
)
from csgaussian.scene.decoded import Scene
from csgaussian.semantics.encoders import EncoderError, TextEncoder
from csgaussian.semantics.query import (
    render_language,
    render_selection,
    select,
    text_encoder_for,
)
from csgaussian.types import Dataset


def _embed(encoder: TextEncoder, texts: list[str]) -> torch.Tensor:
    return torch.from_numpy(encoder.encode(texts)).float()


@torch.no_grad()
def score_segmentation(
    scene: Scene,
    data: Dataset,
    queries: str | Path | None = None,
    encoder: TextEncoder | None = None,
) -> dict[str, Any]:
    """mIoU and acc per protocol; ``{"miou": None, ...}`` without semantics or ground truth.

    Top-level ``miou`` and ``acc`` are the visible selection's; ``ground_truth`` names the
    source (instance maps, LERF-OVS labels or 3D-OVS masks). A protocol that cannot be scored
    (a text-feature cache without LangSplat's negatives) is reported as ``{"skipped": why}``.
    """
    if scene.semantics is None:
        return {"miou": None, "acc": None}
    texts = None if queries is None else read_queries(Path(queries), data.class_names)
    gt = ground_truth(data, texts)
    if gt is None or not gt.targets:
        return {"miou": None, "acc": None, "segmentation": "no segmentation ground truth"}
    encoder = text_encoder_for(scene.semantics, encoder)
    leaves = scene.semantics.slot_leaves(scene.model)
    selections = {q: select(scene, q, encoder=encoder, slot_leaves=leaves) for q in query_texts(gt)}
    protocols = _selection_protocols(scene, gt, selections)
    languages = [render_language(scene, v.camera, leaves) for v in gt.views]
    protocols["langsplat_relevancy"] = _relevancy_protocol(gt, languages, encoder)
    protocols["3dovs_argmax"] = _argmax_protocol(gt, languages, encoder, texts)
    for name, report in protocols.items():
        report["protocol"] = PROTOCOLS[name]
    return {
        "miou": protocols["visible_selection"]["miou"],
        "acc": protocols["visible_selection"]["acc"],
        "ground_truth": gt.source,
        "annotated_views": [v.camera.name or v.image_path.name for v in gt.views],
        "protocols": protocols,
        "unmatched_queries": sorted(q for q, s in selections.items() if not s.matched),
    }


def _selection_protocols(scene: Scene, gt: GroundTruth, selections: dict) -> dict[str, Any]:
    scored: dict[str, list[tuple[SegmentationTarget, float]]] = {
        "visible_selection": [],
        "3d_selection": [],
    }
    rendered: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for target in gt.targets:
        key = (target.view_index, target.query)
        if key not in rendered:
            camera = gt.views[target.view_index].camera
            rendered[key] = render_selection(scene.model, camera, selections[target.query].slots)
        masks = rendered[key]
        scored["visible_selection"].append((target, mask_iou(masks["visible"], target.gt)))
        scored["3d_selection"].append((target, mask_iou(masks["silhouette"], target.gt)))
    return {name: protocol_report(items) for name, items in scored.items()}


def _relevancy_protocol(
    gt: GroundTruth, languages: list[torch.Tensor], encoder: TextEncoder
) -> dict[str, Any]:
    try:
        negatives = _embed(encoder, list(RELEVANCY_NEGATIVES))
    except EncoderError as err:
        return {"skipped": f"the negatives cannot be embedded ({err})"}
    queries = query_texts(gt)
    embedded = dict(zip(queries, _embed(encoder, queries), strict=True))
    scored = []
    for target in gt.targets:
        relevance = relevancy(languages[target.view_index], embedded[target.query], negatives)
        scored.append((target, mask_iou(relevancy_mask(relevance), target.gt)))
    return protocol_report(scored)


def _argmax_protocol(
    gt: GroundTruth,
    languages: list[torch.Tensor],
    encoder: TextEncoder,
    texts: dict[str, list[str]] | None,
) -> dict[str, Any]:
    """Each class is asked by its first query text (its name without ``--queries``)."""
    classes = [c for c in gt.class_names if texts is None or c in texts]
    class_texts = _embed(encoder, [c if texts is None else texts[c][0] for c in classes])
    per_view = []
    for index, language in enumerate(languages):
        annotated = {t.class_name: t.gt for t in gt.targets if t.view_index == index}
        masks = {classes.index(c): m for c, m in annotated.items() if c in classes}
        ious = argmax_ious(language, class_texts, masks)
        per_view.append({classes[k]: iou for k, iou in ious.items()})
    return argmax_report(per_view)
