"""Open-vocabulary selection on a decoded scene (docs/method.md §6).

A text is embedded by the encoder that made the stream's language features, compared by cosine
with the language table; the best entry and those within ``margin`` of it are selected, and with
them every anchor slot whose codebook leaf maps to one of them. Whether the best entry answers
the query at all is decided against the scene's whole vocabulary (:class:`QueryConfig`): its
cosine, its margin over the other entries and its relevancy against LangSplat's canonical
negatives. A query that fails selects nothing: the receiver says so instead of picking at random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..scene.decoded import Scene
from ..scene.scaffold import NeuralGaussians, ScaffoldModel
from ..types import Camera
from .encoders import (
    RELEVANCY_NEGATIVES,
    RELEVANCY_TEMPERATURE,
    CachedTextEncoder,
    TextEncoder,
    get_text_encoder,
)
from .layer import SemanticLayer

# "3d_selection": the selected Gaussians rendered alone; a pixel is predicted where their
# silhouette alpha > 0.7, strictly (OpenGaussian b70dcc6 query rendering, docs/method.md §10).
SILHOUETTE_ALPHA = 0.7

# "visible_selection" (ours, docs/method.md §6): a pixel is predicted where the selected Gaussians
# contribute more than half, strictly, of the rendered weight of the full scene at that pixel.
VISIBLE_SHARE = 0.5

if TYPE_CHECKING:  # the renderer (numba) loads when a selection is rendered, not for a query
    from ..scene.rendering import GaussianEdit


class QueryError(ValueError):
    """A query that cannot be answered (no semantic layer, another text space)."""


@dataclass(frozen=True)
class QueryConfig:
    """When the best entry of the language table answers a query (ours).

    A query matches when its best cosine is at least ``min_score`` and either that cosine is at
    least ``sure_score`` or the best entry both leads the other entries by ``min_margin`` and
    has a relevancy of at least ``min_relevancy`` (LangSplat's: the minimum over the canonical
    negatives of ``softmax(T [cos(q, e), cos(q, neg)])[0]``). Calibrated by a grid search on
    the paraphrase sets ``benchmarks/paraphrases/*.json`` (kitchen and the built-in scene with
    MiniLM: paraphrases of each object and out-of-scene queries that must select nothing; the
    rule maximises the mean of the two accuracies over both scenes; the search put no weight on
    the margin, relevancy doing its work; figures and the search in ``benchmarks/query_rule.py``
    and ``benchmarks/results/query_rule/``).
    """

    min_score: float = 0.35
    """Below this best cosine the query matches nothing."""
    sure_score: float = 0.45
    """At or above this best cosine the query matches whatever its margin and relevancy."""
    min_margin: float = 0.0
    """Least lead of the best cosine over the best entry not selected (below ``sure_score``)."""
    min_relevancy: float = 0.5
    """Least relevancy of the best entry against the canonical negatives (below
    ``sure_score``)."""
    negatives: tuple[str, ...] = RELEVANCY_NEGATIVES
    """Canonical negatives (LangSplat's four)."""
    temperature: float = RELEVANCY_TEMPERATURE
    """Softmax temperature of the relevancy (LangSplat's)."""
    margin: float = 0.05
    """Entries within this cosine of the best are selected too (near-identical ones)."""


@dataclass
class Selection:
    """The answer to one text query."""

    text: str
    matched: bool
    best_score: float
    best_margin: float  # lead of the best cosine over the best entry not selected
    relevancy: float  # of the best entry against the canonical negatives (1 without them)
    entries: list[int]  # selected rows of the language table
    scores: list[float]  # their cosines with the query
    leaves: list[int]  # codebook leaves mapped to them
    slots: Tensor  # [N, K] bool: the selected anchor slots (neural Gaussians)

    @property
    def n_gaussians(self) -> int:
        """Selected anchor slots (each spawns at most one Gaussian per view)."""
        return int(self.slots.sum())

    def scores_note(self) -> str:
        """The figures the rule of :class:`QueryConfig` decided on, for messages."""
        return (
            f"best score {self.best_score:.2f}, margin {self.best_margin:.2f} over the other "
            f"entries, relevancy {self.relevancy:.2f}"
        )

    def summary(self) -> dict[str, object]:
        """A JSON-ready record of the selection."""
        return {
            "text": self.text,
            "matched": self.matched,
            "best_score": round(self.best_score, 4),
            "margin": round(self.best_margin, 4),
            "relevancy": round(self.relevancy, 4),
            "entries": self.entries,
            "scores": [round(s, 4) for s in self.scores],
            "leaves": self.leaves,
            "gaussians_selected": self.n_gaussians,
        }


def require_semantics(scene: Scene) -> SemanticLayer:
    """The scene's semantic layer, or a QueryError that says why there is none."""
    if scene.semantics is None:
        why = "; ".join(scene.notes) or "the stream has no semantic layer"
        raise QueryError(f"no semantics to query ({why})")
    return scene.semantics


def text_encoder_for(layer: SemanticLayer, encoder: TextEncoder | None = None) -> TextEncoder:
    """The encoder of the stream's text space; another one is refused."""
    if encoder is None:
        return get_text_encoder(layer.text_space)
    if getattr(encoder, "adopts_space", False):
        return encoder
    if encoder.name != layer.text_space:
        raise QueryError(
            f"the query encoder is {encoder.name}, but the stream's language features were "
            f"made by {layer.text_space}: embed queries with that encoder"
        )
    return encoder


def select(
    scene: Scene,
    text: str,
    encoder: TextEncoder | None = None,
    config: QueryConfig = QueryConfig(),  # noqa: B008 (frozen dataclass)
    slot_leaves: Tensor | None = None,
) -> Selection:
    """Select the object ``text`` names; ``slot_leaves`` ([N, K]) may be passed when cached."""
    layer = require_semantics(scene)
    encoder = text_encoder_for(layer, encoder)
    if encoder.dim != layer.language.shape[1]:
        raise QueryError(
            f"the stream's language features have {layer.language.shape[1]} values, "
            f"its text encoder {encoder.name} gives {encoder.dim}"
        )
    negatives = _embeddable(encoder, config.negatives)
    rows = torch.from_numpy(encoder.encode([text, *negatives])).to(layer.language)
    leaves = layer.slot_leaves(scene.model) if slot_leaves is None else slot_leaves
    scores = layer.language @ rows[0]  # [E]
    decision = match_decision(scores, rows[0] @ rows[1:].T, config)
    entries = decision.entries if decision.matched else scores[:0].long()
    chosen_leaves = torch.isin(layer.leaf_entry, entries).nonzero().squeeze(1)
    slots = torch.isin(leaves, chosen_leaves) & (leaves >= 0)
    return Selection(
        text=text,
        matched=decision.matched,
        best_score=decision.best,
        best_margin=decision.margin,
        relevancy=decision.relevancy,
        entries=entries.tolist(),
        scores=scores[entries].tolist(),
        leaves=chosen_leaves.tolist(),
        slots=slots,
    )


@dataclass(frozen=True)
class MatchDecision:
    """The rule of :class:`QueryConfig` applied to one query's cosines."""

    matched: bool
    best: float
    margin: float
    relevancy: float
    entries: Tensor  # int64: the best entry and those within ``margin`` of it


def match_decision(scores: Tensor, negative_scores: Tensor, config: QueryConfig) -> MatchDecision:
    """Decide from the query's cosines with the table's entries (``scores`` [E]) and with the
    canonical negatives (``negative_scores`` [G], G may be 0: relevancy 1)."""
    if not scores.numel():
        return MatchDecision(False, -1.0, 0.0, 0.0, scores.long()[:0])
    best = float(scores.max())
    near = scores >= best - config.margin
    others = scores[~near]
    margin = best - float(others.max()) if others.numel() else 1.0
    relevancy = 1.0
    if negative_scores.numel():
        logits = config.temperature * (negative_scores - best)
        relevancy = float(torch.sigmoid(-logits).min())
    matched = best >= config.min_score and (
        best >= config.sure_score
        or (margin >= config.min_margin and relevancy >= config.min_relevancy)
    )
    return MatchDecision(matched, best, margin, relevancy, near.nonzero().squeeze(1))


def _embeddable(encoder: TextEncoder, texts: tuple[str, ...]) -> list[str]:
    """``texts``, or none of them when the encoder is a cache that lacks one (a cache written
    by ``csgaussian text-features`` holds the canonical negatives; others may not)."""
    if isinstance(encoder, CachedTextEncoder) and not all(t in encoder.rows for t in texts):
        return []
    return list(texts)


@torch.no_grad()
def render_selection(
    model: ScaffoldModel, camera: Camera, slots: Tensor, edit: GaussianEdit | None = None
) -> dict[str, Tensor]:
    """Masks of a selection in one view, under both protocols, and the full render (after
    ``edit``, e.g. a scene's edits, when given).

    Returns ``image`` [H, W, 3], ``visible`` [H, W] bool (the selected Gaussians hold most of
    the pixel's weight in the full scene) and ``silhouette`` [H, W] bool (the selection rendered
    alone has alpha > 0.7: occluded parts count).
    """
    from ..scene.rendering import render_view

    edit = edit or (lambda g: g)
    full = render_view(model, camera, extra=lambda g: g.at_slots(slots).float()[:, None], edit=edit)
    alone = render_view(model, camera, edit=lambda g: (e := edit(g)).subset(e.at_slots(slots)))
    return {
        "image": full.image.clamp(0, 1),
        "visible": full.extra[..., 0] > VISIBLE_SHARE,
        "silhouette": alone.raster.alpha[..., 0] > SILHOUETTE_ALPHA,
    }


@torch.no_grad()
def render_language(scene: Scene, camera: Camera, slot_leaves: Tensor | None = None) -> Tensor:
    """Per-pixel language features ``[H, W, D]`` of a decoded scene: each Gaussian carries the
    language row of its leaf (none for unmatched leaves), blended like colour.

    Rendered as one channel per language row, then mixed by the table, so the rasteriser carries
    ``E`` channels instead of ``D``.
    """
    from ..scene.rendering import render_view

    layer = require_semantics(scene)
    leaves = layer.slot_leaves(scene.model) if slot_leaves is None else slot_leaves
    n_entries = layer.language.shape[0]

    def weights(g: NeuralGaussians) -> Tensor:
        leaf = g.at_slots(leaves)
        entry = torch.where(leaf >= 0, layer.leaf_entry[leaf.clamp(min=0)], -1)
        onehot = torch.zeros(len(entry), n_entries + 1)
        onehot[torch.arange(len(entry)), entry.clamp(min=-1) + 1] = 1.0
        return onehot[:, 1:]

    rendered = render_view(scene.model, camera, extra=weights)
    return rendered.extra @ layer.language.float()


def highlight(image: Tensor, mask: Tensor, color: tuple[float, float, float] = (1.0, 0.2, 0.1)):
    """``image`` [H, W, 3] with ``mask`` [H, W] tinted half-way to ``color``."""
    tint = torch.tensor(color, dtype=image.dtype)
    return torch.where(mask[..., None], 0.5 * image + 0.5 * tint, image)
