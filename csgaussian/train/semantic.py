"""Stages 2 and 3: compression-guided segmentation learning and semantic compression
(docs/method.md §4-§5).

Stage 2 learns the semantic field on the *decoded* base layer (what the receiver will have):
per-anchor latents, quantized at the step stage 3 codes them with (QAT), and a feature MLP,
trained with OpenGaussian's cohesion and separation losses against the 2D masks, each Gaussian's
gradient scaled by its quality weight. Stage 3 adds hyperprior MLP #2 and the rate term
``lambda_s * bits(ŝ)``. The end of stage 3 codes the field, fits the codebook on the decoded
features, associates its leaves with the training masks and writes the progressive stream.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..codec.container import optional_sections, read_container, write_container
from ..codec.semantic_layer import (
    encode_semantic_field,
    semantic_sections,
    transmitted_codebook,
)
from ..codec.stream import decode_scene
from ..dataclass_io import matches_saved
from ..entropy.quantize import QuantMode, quantize
from ..preprocess.features import ViewMasks, view_stem
from ..progress import TrainProgress
from ..render import rasterize_gaussians
from ..scene.io import (
    BASE_STREAM_NAME,
    SEMANTIC_CHECKPOINT_NAME,
    RunError,
    load_torch,
    save_torch,
)
from ..scene.rendering import render_view
from ..scene.scaffold import NeuralGaussians, ScaffoldModel
from ..semantics.codebook import fit_codebook
from ..semantics.field import SemanticEntropyModel, SemanticField
from ..semantics.layer import SemanticLayer, slot_positions
from ..types import Camera, DataError, Dataset, View
from .config import SemanticTrainConfig
from .semantic_association import LeafMaskVotes, dedupe_language
from .semantic_losses import mask_losses
from .semantic_quality import QualityAccumulator, scale_gradient

Stage = Literal[2, 3]


@dataclass
class SemanticResult:
    """What stages 2 and 3 report."""

    stage2_iterations: int
    stage3_iterations: int
    seconds: float  # wall time of this invocation (set-up, stages 2-3, codebook, association)
    semantic_bytes: int
    base_bytes: int
    n_leaves_matched: int
    n_language_entries: int
    stream_path: Path


@dataclass
class _TrainingView:
    """A training view's frozen Gaussians and its masks (the decoded scene does not change)."""

    gaussians: NeuralGaussians
    camera: Camera
    source: View  # the training image, as the dataset keeps it
    masks: ViewMasks


class SemanticTrainer:
    """Owns the field, hyperprior #2, optimizer and checkpoints of stages 2 and 3."""

    def __init__(
        self,
        scene: Dataset,
        masks: dict[str, ViewMasks],
        text_space: str,
        config: SemanticTrainConfig,
        run_dir: Path,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.text_space = text_space
        base = decode_scene(self.base_stream.read_bytes(), base_only=True)
        self.model: ScaffoldModel = base.model
        self.model.requires_grad_(False)
        self.views = self._training_views(scene, masks)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        k = self.model.config.n_offsets if config.per_slot_baseline else 0
        self.field = SemanticField(self.model.n_anchors, config.semantic_field, config.seed, k)
        self.entropy = SemanticEntropyModel(
            config.semantic_field, config.rate, self.model.config.feature_dim
        )
        self.positions = self.model.grid.unit_cube(self.model.anchor_cells).float()
        self.quality: Tensor | None = None  # made by the first stage run, or read on resume
        self.optimizer = self._optimizer()
        self.stage: Stage = 2
        self.iteration = 0
        self.elapsed = 0.0
        self.order: list[int] = []

    @property
    def base_stream(self) -> Path:
        return self.run_dir / BASE_STREAM_NAME

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / SEMANTIC_CHECKPOINT_NAME

    def _training_views(self, scene: Dataset, masks: dict[str, ViewMasks]) -> list[_TrainingView]:
        views = []
        with torch.no_grad():
            for view in scene.train:
                view_masks = masks[view_stem(view.image_path)]
                shape = view.size
                if tuple(view_masks.ids.shape) != shape:
                    raise DataError(
                        f"{view.image_path}: masks are {tuple(view_masks.ids.shape)}, "
                        f"the image is {shape}"
                    )
                gaussians = self.model.neural_gaussians(view.camera)
                views.append(_TrainingView(gaussians, view.camera, view, view_masks))
        return views

    def _quality_weights(self) -> Tensor:
        """One render per view, each added and let go (a list of renders would hold every
        view's float image at once)."""
        accumulator = QualityAccumulator(self.model.n_anchors, self.model.config.n_offsets)
        for view in self.views:
            with torch.no_grad():
                image = render_view(self.model, view.camera, self.config.raster).image
            accumulator.add_view(
                view.gaussians, view.camera, image, view.source.image, self.config.raster
            )
        return accumulator.weights(self.config.quality)

    def _optimizer(self) -> torch.optim.Adam:
        groups = [
            {"params": [self.field.latents], "lr": self.config.lr_latents},
            {"params": list(self.field.mlp.parameters()), "lr": self.config.lr_mlp},
            {"params": list(self.entropy.parameters()), "lr": self.config.rate.lr},
        ]
        return torch.optim.Adam(groups, eps=1e-15)

    def next_view(self) -> _TrainingView:
        if not self.order:
            self.order = torch.randperm(len(self.views), generator=self.generator).tolist()
        return self.views[self.order.pop()]

    def quantized_latents(self, anchor_ids: Tensor, mode: QuantMode) -> tuple[Tensor, Tensor]:
        """Latents of ``anchor_ids`` as training sees them, and their bits (0 in stage 2)."""
        latents = self.field.latents[anchor_ids]
        if self.stage == 3:
            out = self.entropy(
                self.positions[anchor_ids], latents, mode, self.model.features[anchor_ids]
            )
            return out.x_hat, out.bits.sum()
        if self.config.qat:
            latents = quantize(latents, self.config.rate.q0, "round")
        return latents, latents.new_zeros(())

    def step(self) -> dict[str, float]:
        """One iteration of the current stage."""
        cfg = self.config
        self.iteration += 1
        view = self.next_view()
        g = view.gaussians
        anchors, inverse = torch.unique(g.anchor_index, return_inverse=True)
        total = cfg.stage3_iterations if self.stage == 3 else cfg.stage2_iterations
        rounding = self.iteration > (1 - cfg.round_fraction) * total
        mode: QuantMode = "round" if rounding else "noise"
        latents, bits = self.quantized_latents(anchors, mode)
        offsets = self.model.offsets[g.anchor_index, g.offset_index]
        features = self.field.gaussian_features(latents[inverse], offsets, g.offset_index)
        if cfg.quality_weighting:
            features = scale_gradient(features, self.quality[g.anchor_index, g.offset_index, None])
        out = rasterize_gaussians(
            g.means, g.quats, g.scales, g.opacities, features, view.camera, config=cfg.raster
        )
        late = self.stage == 3 or self.iteration > cfg.late_fraction * cfg.stage2_iterations
        ids = torch.from_numpy(view.masks.ids)
        losses = mask_losses(out.colors, out.alpha, ids, cfg.loss, late=late)
        loss = losses.total
        n_values = anchors.numel() * cfg.semantic_field.latent_dim
        if self.stage == 3:
            loss = loss + cfg.rate.lambda_rate * bits / n_values
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "bits": bits.item() / n_values, "masks": losses.n_masks}

    def save_checkpoint(self) -> None:
        save_torch(
            self.checkpoint_path,
            {
                "stage": self.stage,
                "iteration": self.iteration,
                "elapsed": self.elapsed,
                "field": self.field.state_dict(),
                "entropy": self.entropy.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "quality": self.quality,
                "order": list(self.order),
                "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "config": asdict(self.config),
                "text_space": self.text_space,
            },
        )

    def load_checkpoint(self) -> None:
        state = load_torch(self.checkpoint_path)
        if not matches_saved(self.config, state.get("config")):
            raise RunError(f"{self.checkpoint_path}: was written with another configuration")
        if state.get("text_space") != self.text_space:
            raise RunError(f"{self.checkpoint_path}: was trained with other language features")
        try:
            self.field.load_state_dict(state["field"])
            self.entropy.load_state_dict(state["entropy"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.quality = state["quality"]
            self.stage, self.iteration = state["stage"], state["iteration"]
            self.elapsed = state["elapsed"]
            self.order = list(state["order"])
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            message = f"{self.checkpoint_path}: does not fit this run ({type(err).__name__})"
            raise RunError(message) from None

    def run_stage(self, stage: Stage, progress: TrainProgress) -> None:
        """Train ``stage`` to its iteration count (continuing a resumed one)."""
        if self.stage != stage:
            self.stage, self.iteration = stage, 0
        if self.quality is None:
            self.quality = (
                self._quality_weights()
                if self.config.quality_weighting
                else torch.ones(self.model.n_anchors, self.model.config.n_offsets)
            )
        total = self.config.stage3_iterations if stage == 3 else self.config.stage2_iterations
        started = time.perf_counter() - self.elapsed
        recent: list[dict[str, float]] = []
        with progress:
            progress.start_at(self.iteration)
            while self.iteration < total:
                recent = (recent + [self.step()])[-self.config.log_every :]
                if self.iteration % self.config.log_every == 0 or self.iteration == total:
                    shown = {k: sum(r[k] for r in recent) / len(recent) for k in recent[0]}
                    if stage == 2:
                        shown.pop("bits")
                    progress.update(self.iteration, **shown)
                if self.iteration % self.config.checkpoint_every == 0:
                    self.elapsed = time.perf_counter() - started
                    self.save_checkpoint()
        self.elapsed = time.perf_counter() - started
        self.save_checkpoint()

    @torch.no_grad()
    def finish(self) -> tuple[bytes, dict[str, Any]]:
        """Code the field, build the codebook and language table, write the full stream."""
        if self.config.per_slot_baseline:
            raise RunError("the per-slot baseline field is not coded (see benchmarks/table2.py)")
        payloads, latent_bits, decoded = encode_semantic_field(self.model, self.field, self.entropy)
        layer = self.index(decoded)
        sections = semantic_sections(payloads, layer, self.config.rate)
        base_data = self.base_stream.read_bytes()
        base = read_container(base_data)
        layers = {name: "semantic" for name, _ in sections}
        data = write_container([*base.items(), *sections], layers, optional_sections(base_data))
        report = {
            "section_bytes": {name: len(p) for name, p in [*base.items(), *sections]},
            "estimated_bits": {"semantic": latent_bits},
            "n_leaves_matched": int((layer.leaf_entry >= 0).sum()),
            "n_language_entries": int(layer.language.shape[0]),
        }
        return data, report

    def index(self, decoded: SemanticField) -> SemanticLayer:
        """The receiver's semantics of a field: codebook over its features, then the leaf-mask
        association."""
        active = self.model.active_slots()
        features = decoded.slot_features(self.model.offsets)
        fitted = fit_codebook(
            features[active], slot_positions(self.model)[active], self.config.codebook
        )
        codebook = transmitted_codebook(fitted)
        layer = SemanticLayer(
            decoded, codebook, torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), ""
        )
        leaves = layer.slot_leaves(self.model)
        dim = next(iter(self.views)).masks.features.shape[1]
        votes = LeafMaskVotes(codebook.n_leaves, dim, self.config.association)
        for view in self.views:
            leaf_map = dominant_leaf_map(
                view.gaussians, leaves, codebook.n_leaves, view.camera, self.config
            )
            votes.add_view(
                leaf_map,
                torch.from_numpy(view.masks.ids),
                torch.from_numpy(view.masks.features),
            )
        language, matched = votes.language()
        table, entries = dedupe_language(language, matched, self.config.association.merge_cosine)
        return SemanticLayer(decoded, codebook, table, entries, self.text_space)


def dominant_leaf_map(
    gaussians: NeuralGaussians,
    slot_leaves: Tensor,
    n_leaves: int,
    camera: Camera,
    config: SemanticTrainConfig,
) -> Tensor:
    """``[H, W]`` leaf holding the largest share of each pixel's rendered weight; -1 where the
    pixel's alpha is at most ``association.min_alpha`` (one render, a one-hot channel per leaf)."""
    leaf = slot_leaves[gaussians.anchor_index, gaussians.offset_index]
    one_hot = torch.zeros(leaf.shape[0], n_leaves)
    has_leaf = leaf >= 0
    one_hot[has_leaf.nonzero().squeeze(1), leaf[has_leaf]] = 1.0
    g = gaussians
    out = rasterize_gaussians(
        g.means, g.quats, g.scales, g.opacities, one_hot, camera, config=config.raster
    )
    best = out.colors.argmax(dim=-1)
    return torch.where(out.alpha[..., 0] > config.association.min_alpha, best, -1)
