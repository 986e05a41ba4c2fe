"""SAM masks at three levels and CLIP features of their crops, as LangSplat prepares a scene.

Runs the ``transformers`` implementations (``SamModel``, ``CLIPModel``: pure torch, no
torchvision, which cannot be imported beside torch 2.13 here) from local folders written by
``save_pretrained`` (e.g. facebook/sam-vit-huge and laion/CLIP-ViT-B-16-laion2B-s34B-b88K, the
models LangSplat uses). Images are preprocessed here in torch (resize, normalise, pad) so that
no image processor is needed. ``transformers`` is the optional extra ``sam``; nothing is ever
downloaded.

Automatic masks (SAM's generator, as LangSplat d70edb8 configures it): a 32 x 32 point grid,
three masks per point (SAM's multimask outputs = LangSplat's levels subpart / part / whole),
kept when predicted IoU >= 0.7 and stability >= 0.85, then box NMS at 0.7 per level; the
default level pools all three. Not done: SAM's crop layers and small-region removal.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from csgaussian.preprocess.mask_filter import box_nms, mask_boxes
from csgaussian.semantics.encoders import EncoderError

EXTRA = "pip install 'csgaussian[sam]' (adds transformers)"
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)  # SAM's normalisation, 0-255 scale
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI / OpenCLIP image normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_CONTEXT = 77  # CLIP's text context length


@dataclass(frozen=True)
class MaskGeneratorConfig:
    """SAM's automatic mask generator with LangSplat's settings (d70edb8 preprocess.py)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.85
    stability_offset: float = 1.0  # SAM's stability_score_offset
    box_nms_thresh: float = 0.7
    mask_threshold: float = 0.0  # SAM's logit threshold


@functools.cache
def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise EncoderError(f"SAM and CLIP need the optional extra: {EXTRA}") from None
    return transformers


def _model_folder(path: str | Path, what: str, example: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise EncoderError(
            f"{folder}: not a {what} model folder (config.json missing); give a folder written "
            f"by transformers' save_pretrained, e.g. {example}"
        )
    return folder


def load_sam(path: str | Path) -> Any:
    """A ``SamModel`` from a local folder, in eval mode."""
    folder = _model_folder(path, "SAM", "facebook/sam-vit-huge")
    model = _transformers().SamModel.from_pretrained(folder, local_files_only=True)
    return model.eval()


def _pad_square(image: Tensor) -> Tensor:
    """``[3, h, w]`` centred on a zero square (LangSplat's ``pad_img``)."""
    _, h, w = image.shape
    side = max(h, w)
    out = image.new_zeros(3, side, side)
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top : top + h, left : left + w] = image
    return out


class SamMasks:
    """Automatic masks of one image at LangSplat's four levels."""

    def __init__(self, model: Any, config: MaskGeneratorConfig = MaskGeneratorConfig()) -> None:  # noqa: B008
        self.model = model
        self.config = config
        self.size = int(model.config.vision_config.image_size)

    @torch.no_grad()
    def generate(self, image: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """``{level: (masks bool [N, H, W], scores [N])}`` for the levels default, subpart,
        part, whole; score = stability x predicted IoU (LangSplat's NMS score).

        Args:
            image: ``[H, W, 3]`` float in [0, 1].
        """
        cfg = self.config
        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        pixels = F.interpolate(
            image.permute(2, 0, 1)[None] * 255, size=(rh, rw), mode="bilinear", antialias=True
        )
        mean = torch.tensor(SAM_PIXEL_MEAN)[None, :, None, None]
        std = torch.tensor(SAM_PIXEL_STD)[None, :, None, None]
        pixels = F.pad((pixels - mean) / std, (0, self.size - rw, 0, self.size - rh))
        embeddings = self.model.get_image_embeddings(pixels)
        n = cfg.points_per_side
        grid = (torch.arange(n) + 0.5) / n
        points = torch.stack(torch.meshgrid(grid * rw, grid * rh, indexing="xy"), -1).reshape(-1, 2)
        logits, ious = [], []
        for start in range(0, len(points), cfg.points_per_batch):
            batch = points[start : start + cfg.points_per_batch]
            out = self.model(
                image_embeddings=embeddings,
                input_points=batch[None, :, None, :],
                input_labels=torch.ones(1, len(batch), 1, dtype=torch.long),
                multimask_output=True,
            )
            low = out.pred_masks[0]  # [B, 3, s, s] over the padded square
            full = F.interpolate(low, size=(self.size, self.size), mode="bilinear")
            full = F.interpolate(full[..., :rh, :rw], size=(h, w), mode="bilinear")
            logits.append(full)
            ious.append(out.iou_scores[0])
        logits_all, iou_all = torch.cat(logits), torch.cat(ious)  # [P, 3, H, W], [P, 3]
        high = (logits_all > cfg.mask_threshold + cfg.stability_offset).flatten(2).sum(-1)
        low = (logits_all > cfg.mask_threshold - cfg.stability_offset).flatten(2).sum(-1)
        stability = high / low.clamp(min=1)
        masks = logits_all > cfg.mask_threshold
        good = (
            (iou_all >= cfg.pred_iou_thresh)
            & (stability >= cfg.stability_score_thresh)
            & masks.flatten(2).any(-1)
        )
        levels = {"subpart": [0], "part": [1], "whole": [2], "default": [0, 1, 2]}
        result = {}
        for level, outputs in levels.items():
            chosen = good[:, outputs]
            level_masks = masks[:, outputs][chosen]  # [N, H, W]
            level_iou = iou_all[:, outputs][chosen]
            level_stability = stability[:, outputs][chosen]
            keep = box_nms(mask_boxes(level_masks), level_iou, cfg.box_nms_thresh)
            result[level] = (level_masks[keep], (level_stability * level_iou)[keep])
        return result


class ClipModel:
    """CLIP image and text features (unit rows) from a local ``CLIPModel`` folder with its
    ``tokenizer.json``; as a text encoder its space is ``clip:<folder name>``."""

    def __init__(self, path: str | Path) -> None:
        folder = _model_folder(path, "CLIP", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K")
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise EncoderError(f"{tokenizer_file}: missing (the CLIP tokenizer of the model)")
        from tokenizers import Tokenizer

        self.model = _transformers().CLIPModel.from_pretrained(folder, local_files_only=True)
        self.model.eval()
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.context = min(CLIP_CONTEXT, self.model.config.text_config.max_position_embeddings)
        self.tokenizer.enable_truncation(self.context)
        self.tokenizer.enable_padding(length=self.context)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.dim = int(self.model.config.projection_dim)
        self.name = f"clip:{folder.resolve().name}"

    @staticmethod
    def _tensor(output: Any) -> Tensor:
        """Projected features: transformers 4 returns a tensor, 5 a model output."""
        return output if isinstance(output, Tensor) else output.pooler_output

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 ``[len(texts), dim]`` unit rows."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        batch = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([b.ids for b in batch])
        mask = torch.tensor([b.attention_mask for b in batch])
        rows = self._tensor(self.model.get_text_features(input_ids=ids, attention_mask=mask))
        return F.normalize(rows, dim=-1).numpy().astype(np.float32)

    @torch.no_grad()
    def encode_crops(self, image: Tensor, masks: Tensor, batch: int = 32) -> Tensor:
        """Unit features ``[N, dim]`` of mask crops as LangSplat embeds them: the mask's box,
        pixels outside the mask zeroed, centred on a square, resized to the model's input.

        Args:
            image: ``[H, W, 3]`` in [0, 1]; masks: bool ``[N, H, W]``, non-empty.
        """
        boxes = mask_boxes(masks).long()
        chw = image.permute(2, 0, 1)
        mean = torch.tensor(CLIP_MEAN)[:, None, None]
        std = torch.tensor(CLIP_STD)[:, None, None]
        crops = []
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.tolist(), strict=True):
            crop = (chw * mask)[:, y0 : y1 + 1, x0 : x1 + 1]
            square = _pad_square(crop)[None]
            size = (self.image_size, self.image_size)
            crops.append(F.interpolate(square, size=size, mode="bilinear", antialias=True)[0])
        rows = []
        for start in range(0, len(crops), batch):
            pixels = (torch.stack(crops[start : start + batch]) - mean) / std
            rows.append(self._tensor(self.model.get_image_features(pixel_values=pixels)))
        if not rows:
            return torch.zeros(0, self.dim)
        return F.normalize(torch.cat(rows), dim=-1)
