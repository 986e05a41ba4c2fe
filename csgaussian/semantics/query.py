"""Open-vocabulary selection on a decoded scene (docs/method.md §6).

A text is embedded by the encoder that made the stream's language features, compared by cosine
with the language table; the best entry and those within ``margin`` of it are selected, and with
them every anchor slot whose codebook leaf maps to one of them. A best score under ``min_score``
selects nothing: the receiver says so instead of picking at random.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene.decoded import Scene
from ..scene.rendering import GaussianEdit, render_view
from ..scene.scaffold import NeuralGaussians, ScaffoldModel
from ..types import Camera
from .encoders import TextEncoder, get_text_encoder
from .layer import SemanticLayer

# "3d_selection": the selected Gaussians rendered alone; a pixel is predicted where their
# silhouette alpha > 0.7, strictly (OpenGaussian b70dcc6 query rendering, docs/method.md §10).
SILHOUETTE_ALPHA = 0.7

# "visible_selection" (ours, docs/method.md §6): a pixel is predicted where the selected Gaussians
# contribute more than half, strictly, of the rendered weight of the full scene at that pixel.
VISIBLE_SHARE = 0.5


class QueryError(ValueError):
    """A query that cannot be answered (no semantic layer, another text space)."""


@dataclass(frozen=True)
class QueryConfig:
    """Selection thresholds (ours).

    Set from MiniLM's scores on kitchen (benchmarks/results/notes/measurements.md#query-scores).
    """

    min_score: float = 0.45
    """Below this best cosine the query matches nothing."""
    margin: float = 0.05
    """Entries within this cosine of the best are selected too (near-identical ones)."""


@dataclass
class Selection:
    """The answer to one text query."""

    text: str
    matched: bool
    best_score: float
    entries: list[int]  # selected rows of the language table
    scores: list[float]  # their cosines with the query
    leaves: list[int]  # codebook leaves mapped to them
    slots: Tensor  # [N, K] bool: the selected anchor slots (neural Gaussians)

    @property
    def n_gaussians(self) -> int:
        """Selected anchor slots (each spawns at most one Gaussian per view)."""
        return int(self.slots.sum())

    def summary(self) -> dict[str, object]:
        """A JSON-ready record of the selection."""
        return {
            "text": self.text,
            "matched": self.matched,
            "best_score": round(self.best_score, 4),
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
    embedding = torch.from_numpy(encoder.encode([text])[0]).to(layer.language)
    leaves = layer.slot_leaves(scene.model) if slot_leaves is None else slot_leaves
    scores = layer.language @ embedding  # [E]
    best = float(scores.max()) if scores.numel() else -1.0
    matched = best >= config.min_score
    entries = (scores >= best - config.margin).nonzero().squeeze(1) if matched else scores[:0]
    chosen_leaves = torch.isin(layer.leaf_entry, entries.long()).nonzero().squeeze(1)
    slots = torch.isin(leaves, chosen_leaves) & (leaves >= 0)
    return Selection(
        text=text,
        matched=matched,
        best_score=best,
        entries=entries.tolist(),
        scores=scores[entries.long()].tolist(),
        leaves=chosen_leaves.tolist(),
        slots=slots,
    )


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
