"""Training configuration and its named presets (tiny, quick, paper)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..dataclass_io import dataclass_from_dict
from ..entropy.anchors import RateConfig
from ..render import RasterConfig
from ..scene.anchor_ops import DensifyConfig
from ..scene.scaffold import ScaffoldConfig
from ..semantics.codebook import CodebookConfig
from ..semantics.field import SemanticConfig, SemanticRateConfig
from .semantic_association import AssociationConfig
from .semantic_losses import MaskLossConfig
from .semantic_quality import QualityConfig


@dataclass(frozen=True)
class LearningRates:
    """Initial (and final, for decayed ones) Adam learning rates.

    Sources: offsets 0.01, mask 0.01, scaling 0.07, opacity MLP 0.002, colour MLP 0.08,
    covariance MLP 0.004 [supp Table 1]. Feature 0.0075, the final values and the exponential
    decay are Scaffold-GS defaults. The offset rate is multiplied by the scene radius.
    """

    features: float = 0.0075
    offsets: float = 0.01
    offsets_final: float = 0.0001
    mask: float = 0.01
    scaling: float = 0.07
    opacity_mlp: float = 0.002
    opacity_mlp_final: float = 0.00002
    color_mlp: float = 0.08
    color_mlp_final: float = 0.00005
    cov_mlp: float = 0.004
    cov_mlp_final: float = 0.004
    background: float = 0.01


@dataclass(frozen=True)
class LossWeights:
    """Colour loss: ``(1 - ssim) * L1 + ssim * (1 - SSIM) + volume * mean volume + mask * mean(m)``.

    Sources: SSIM weight 0.2 and volume 0.01 (Scaffold-GS, HAC); the mask weight is HAC's 0.0005.
    """

    ssim: float = 0.2
    volume: float = 0.01
    mask: float = 0.0005


@dataclass(frozen=True)
class SemanticTrainConfig:
    """Stages 2 and 3. Sources: 40k / 30k iterations and the semantic feature learning rate
    0.001 [supp A.2, Table 1]; everything else is ours and measured (benchmarks/semantics.py)."""

    stage2_iterations: int = 40_000
    stage3_iterations: int = 30_000
    lr_latents: float = 0.001
    """Latent learning rate: supp Table 1's semantic feature rate."""
    lr_mlp: float = 0.001
    """Feature MLP learning rate (ours, as the latents')."""
    qat: bool = True
    """Quantize the latents in stage 2 at the base step q0 ([paper], supp B.1): stage 3 codes them
    at ``q0 * (1 + tanh r)``, with r from hyperprior #2 (zero-centred at its start)."""
    per_slot_baseline: bool = False
    """Train the OpenGaussian-style baseline of supp Table 2 instead of the latent field: a free
    feature per anchor slot (see ``SemanticField``), uncompressed; such a run is not coded."""
    quality_weighting: bool = True
    """Scale each Gaussian's semantic gradient by its quality weight ([paper]; formula ours)."""
    round_fraction: float = 0.1
    """The last fraction of stage 3 quantizes by straight-through rounding instead of noise
    (as stage 1's ``RateConfig.round_fraction``)."""
    late_fraction: float = 0.5
    """From this fraction of stage 2 on, OpenGaussian's late separation weights apply."""
    level: str = "whole"
    """Mask level of LangSplat's files [supp A.1]."""
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    semantic_field: SemanticConfig = field(default_factory=SemanticConfig)
    rate: SemanticRateConfig = field(default_factory=SemanticRateConfig)
    loss: MaskLossConfig = field(default_factory=MaskLossConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    raster: RasterConfig = field(default_factory=RasterConfig)


@dataclass(frozen=True)
class TrainConfig:
    """Everything training reads; presets below fill it in."""

    iterations: int = 40_000
    """Stage-1 iterations [supp A.2]."""
    mask_start: int = 3_000
    """Iteration from which the learnable offset mask is applied [supp A.2]."""
    voxel_size_fraction: float = 0.004
    """Anchor voxel size as a fraction of the scene-bounds diagonal (ours)."""
    grid_margin: float = 0.5
    """The anchor lattice covers the scene bounds grown by this fraction; anchors never leave it."""
    random_init_points: int = 20_000
    """Points drawn uniformly in the bounds when the dataset has no point cloud (ours)."""
    checkpoint_every: int = 1_000
    """Iterations between two checkpoints (written atomically; ``--resume`` reads the last)."""
    log_every: int = 100
    """Iterations between two progress updates."""
    seed: int = 0
    torch_threads: int = 1
    """Intra-op threads of torch while training (ours: its tensors are small, the numba
    rasterizer uses the cores, and two OpenMP pools spinning against each other slow both)."""
    scaffold: ScaffoldConfig = field(default_factory=ScaffoldConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    lr: LearningRates = field(default_factory=LearningRates)
    loss: LossWeights = field(default_factory=LossWeights)
    raster: RasterConfig = field(default_factory=RasterConfig)
    rate: RateConfig | None = field(default_factory=RateConfig)
    """Rate term and hyperprior; None trains plain Scaffold-GS (the uncompressed baseline)."""
    semantic: SemanticTrainConfig = field(default_factory=SemanticTrainConfig)
    """Stages 2 and 3."""
    stream_cameras: int = 16
    """Training cameras stored in the stream's optional ``cameras`` section, spread over the
    capture (0 stores none; at most ``codec.cameras.MAX_CAMERAS``): a receiver without the dataset
    opens the viewer and fits an export at viewpoints the model was trained for (486 bytes for
    16 cameras of one capture, docs/format.md §3.7)."""

    @property
    def rate_start(self) -> int | None:
        """Iteration from which attributes are quantized and priced (None: never)."""
        if self.rate is None:
            return None
        return max(1, round(self.rate.start_fraction * self.iterations))

    @property
    def round_start(self) -> int | None:
        """Iteration from which quantization rounds (straight-through) instead of adding noise."""
        if self.rate is None:
            return None
        return max(1, round((1 - self.rate.round_fraction) * self.iterations))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, data)

    def with_iterations(self, iterations: int) -> TrainConfig:
        """Rescale every iteration-valued schedule to a new total, keeping their proportions."""
        ratio = iterations / self.iterations

        def scaled(value: int) -> int:
            return max(1, round(value * ratio))

        densify = replace(
            self.densify,
            start=scaled(self.densify.start),
            interval=scaled(self.densify.interval),
            until=scaled(self.densify.until),
        )
        return replace(
            self,
            iterations=iterations,
            mask_start=scaled(self.mask_start),
            densify=densify,
            checkpoint_every=min(self.checkpoint_every, iterations),
        )


SCAFFOLD_GS_RATES = replace(LearningRates(), scaling=0.007, color_mlp=0.008)
"""Scaffold-GS's scaling and colour-MLP rates, used by the ``quick`` and ``tiny`` presets.

Supp Table 1's 0.07 and 0.08 are ten times these; on kitchen's quick schedule they let anchor
scalings explode into view-dependent haze (measured:
benchmarks/results/notes/measurements.md#scaffold-gs-rates). ``paper-table1`` keeps Table 1."""

QUICK_LATENT_RATE = 0.01
"""Latent learning rate of the short schedules (ours): supp Table 1's 0.001 is for 40k + 30k
iterations; in 1.5k + 0.5k it left the latents near their start (measured:
benchmarks/results/notes/measurements.md#quick-latent-rate)."""

PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(lr=SCAFFOLD_GS_RATES),
    "paper-table1": TrainConfig(),
    "quick": TrainConfig(
        iterations=6_000,
        random_init_points=5_000,
        lr=SCAFFOLD_GS_RATES,
        mask_start=1_000,
        checkpoint_every=1_000,
        densify=DensifyConfig(start=300, interval=100, until=4_000),
        semantic=SemanticTrainConfig(
            stage2_iterations=1_500, stage3_iterations=500, lr_latents=QUICK_LATENT_RATE
        ),
    ),
    "tiny": TrainConfig(
        iterations=40,
        mask_start=20,
        checkpoint_every=20,
        log_every=10,
        random_init_points=2_000,
        lr=SCAFFOLD_GS_RATES,
        densify=DensifyConfig(start=10, interval=10, until=30),
        semantic=SemanticTrainConfig(
            stage2_iterations=40,
            stage3_iterations=20,
            checkpoint_every=10,
            log_every=5,
            lr_latents=QUICK_LATENT_RATE,
        ),
    ),
}
"""Named presets: ``paper`` (the paper's iteration counts, 40k / 40k / 30k [supp A.2], with the
learning rates that trained well here), ``paper-table1`` (the same with supp Table 1's rates,
which diverged on kitchen: see ``SCAFFOLD_GS_RATES``), ``quick`` (demo, CPU users),
``tiny`` (tests, seconds)."""


DEFAULT_PRESET = "quick"
"""The preset of ``train`` and ``demo`` when none is given."""


def preset(name: str, iterations: int | None = None) -> TrainConfig:
    """The named preset, optionally rescaled to ``iterations``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    config = PRESETS[name]
    return config if iterations is None else config.with_iterations(iterations)
