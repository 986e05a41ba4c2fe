"""SSIM of rendered images: the one implementation behind the training losses (``1 - SSIM``,
stage 1 and the SH export's fit) and the evaluation metric (:mod:`csgaussian.eval.metrics`).

``pytorch_msssim`` with an 11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03), ``data_range = 1``
(Wang et al. 2004, the setting of the 3DGS evaluation), on ``[H, W, 3]`` images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_msssim import ssim as _ms_ssim
from torch import Tensor


@dataclass(frozen=True)
class SSIMWindow:
    """SSIM constants (Wang et al. 2004; 3DGS ``utils/loss_utils.py`` uses the same)."""

    size: int = 11  # Gaussian window side, pixels
    sigma: float = 1.5  # Gaussian window standard deviation, pixels
    k1: float = 0.01  # luminance stabiliser
    k2: float = 0.03  # contrast stabiliser


SSIM_WINDOW = SSIMWindow()


def check_image_pair(pred: Tensor, target: Tensor) -> None:
    """Raise ``ValueError`` unless both are ``[H, W, 3]`` images of one shape."""
    if pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"image shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def to_nchw(image: Tensor) -> Tensor:
    """``[H, W, 3]`` -> ``[1, 3, H, W]``."""
    return image.permute(2, 0, 1).unsqueeze(0)


def _gaussian_window() -> Tensor:
    """Normalised 1-D Gaussian in float64, ``[3, 1, 1, size]`` as pytorch_msssim expects.

    pytorch_msssim builds its own window in float32, whose sum differs from 1 by ~1e-7; that
    error is divided by C2 = 9e-4 in the contrast term and shifts SSIM by ~1e-5.
    """
    coords = torch.arange(SSIM_WINDOW.size, dtype=torch.float64) - SSIM_WINDOW.size // 2
    gauss = torch.exp(-coords.square() / (2 * SSIM_WINDOW.sigma**2))
    return (gauss / gauss.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)


def ssim_value(pred: Tensor, target: Tensor) -> Tensor:
    """Differentiable mean SSIM (0-dim tensor) of two ``[H, W, 3]`` images, ``H, W >= 11``."""
    check_image_pair(pred, target)
    height, width = pred.shape[:2]
    if min(height, width) < SSIM_WINDOW.size:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW.size}x{SSIM_WINDOW.size} pixels "
            f"(the Gaussian window), got {height}x{width}"
        )
    return _ms_ssim(
        to_nchw(pred),
        to_nchw(target),
        data_range=1.0,
        win=_gaussian_window(),
        K=(SSIM_WINDOW.k1, SSIM_WINDOW.k2),
    )


def ssim_loss_term(pred: Tensor, target: Tensor) -> Tensor:
    """Differentiable ``1 - SSIM`` for training (no clamping, so gradients always flow).

    Args:
        pred: ``[H, W, 3]`` rendered image; ``H, W >= 11``.
        target: ``[H, W, 3]`` ground-truth image.

    Returns:
        0-dim tensor in the dtype of ``pred``.
    """
    return 1.0 - ssim_value(pred, target.to(pred.dtype))
