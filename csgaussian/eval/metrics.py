"""Image quality metrics on ``[H, W, 3]`` images in ``[0, 1]``: PSNR, SSIM and LPIPS (AlexNet).

All metric functions clamp both images to ``[0, 1]`` first (renders can overshoot), so they
score what a viewer would display.

SSIM uses ``pytorch_msssim`` with an 11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03),
``data_range = 1`` (Wang et al. 2004, the setting of the 3DGS evaluation). ``pytorch_msssim``
filters with *valid* padding (no border), so the SSIM map is ``(H - 10) x (W - 10)`` and the
border pixels weigh less; the 3DGS reference code zero-pads by 5 (same size map). On a
400x400 synthetic pair with added noise the two gave 0.9494 vs 0.9507 and 0.5038 vs 0.5145
(the gap shrinks as images grow), so compare SSIM numbers across papers with care. Images smaller
than the window on either side raise ``ValueError`` (pytorch_msssim would silently skip the
smoothing along that side and return a different quantity).

LPIPS is version 0.1 with the AlexNet trunk (Zhang et al., CVPR 2018), implemented here in plain
torch (no torchvision, nothing downloaded). The weights come from ONE local file named by the
``weights_path`` argument or the ``CSGAUSSIAN_LPIPS_WEIGHTS`` environment variable: the full
state dict of the ``lpips`` pip package's model, made once on a machine that has ``lpips``::

    import lpips, torch  # pip install lpips (it downloads the AlexNet trunk once)

    torch.save(lpips.LPIPS(net="alex").state_dict(), "lpips_alex.pth")

Without that file :func:`load_lpips` returns ``None`` and callers report ``lpips: null``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from csgaussian.render.ssim import check_image_pair, ssim_value, to_nchw
from csgaussian.types import DataError

LPIPS_ENV_VAR = "CSGAUSSIAN_LPIPS_WEIGHTS"


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for peak 1, accumulated in float64.

    Args:
        pred: ``[H, W, 3]`` image, clamped to ``[0, 1]``.
        target: ``[H, W, 3]`` image, clamped to ``[0, 1]``.

    Returns:
        ``-10 log10(MSE)``; ``inf`` when the clamped images are identical (MSE = 0).
    """
    check_image_pair(pred, target)
    diff = pred.detach().double().clamp(0, 1) - target.detach().double().clamp(0, 1)
    mse = float(diff.square().mean())
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


def ssim(pred: Tensor, target: Tensor) -> float:
    """Mean SSIM over the valid window positions and the 3 channels, in float64.

    Args:
        pred: ``[H, W, 3]`` image, clamped to ``[0, 1]``; ``H, W >= 11``.
        target: ``[H, W, 3]`` image, clamped to ``[0, 1]``.
    """
    pred64 = pred.detach().double().clamp(0, 1)
    target64 = target.detach().double().clamp(0, 1)
    return float(ssim_value(pred64, target64))


@dataclass(frozen=True)
class _AlexConv:
    """One conv of AlexNet ``features`` as sliced by ``lpips.pretrained_networks.alexnet``."""

    key: str  # state-dict prefix, e.g. "net.slice2.3" (slice 2, index 3 in features)
    c_in: int
    c_out: int
    kernel: int
    stride: int
    padding: int
    pool_before: bool  # a 3x3 stride-2 max-pool precedes this conv (features[2], features[5])


# torchvision AlexNet `features`; LPIPS taps the ReLU after each conv (lpips/pretrained_networks.py)
_ALEX_CONVS = (
    _AlexConv("net.slice1.0", 3, 64, 11, 4, 2, False),
    _AlexConv("net.slice2.3", 64, 192, 5, 1, 2, True),
    _AlexConv("net.slice3.6", 192, 384, 3, 1, 1, True),
    _AlexConv("net.slice4.8", 384, 256, 3, 1, 1, False),
    _AlexConv("net.slice5.10", 256, 256, 3, 1, 1, False),
)
_POOL_KERNEL, _POOL_STRIDE = 3, 2
# LPIPS v0.1 ScalingLayer constants (lpips/lpips.py), applied to inputs mapped to [-1, 1]
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_NORM_EPS = 1e-10  # lpips.normalize_tensor
# Smallest side that survives conv1 (11/4/2) and two 3x3/2 pools: 31 -> 7 -> 3 -> 3 -> 1.
LPIPS_MIN_SIDE = 31


def _lin_key(layer: int) -> str:
    return f"lin{layer}.model.1.weight"  # NetLinLayer(use_dropout=True): [Dropout, Conv1x1]


def lpips_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """The required keys of ``lpips.LPIPS(net='alex').state_dict()`` and their shapes."""
    shapes: dict[str, tuple[int, ...]] = {}
    for conv in _ALEX_CONVS:
        shapes[f"{conv.key}.weight"] = (conv.c_out, conv.c_in, conv.kernel, conv.kernel)
        shapes[f"{conv.key}.bias"] = (conv.c_out,)
    for layer, conv in enumerate(_ALEX_CONVS):
        shapes[_lin_key(layer)] = (1, conv.c_out, 1, 1)
    return shapes


class LPIPS:
    """LPIPS v0.1, AlexNet trunk, on ``[H, W, 3]`` images in ``[0, 1]``; build with
    :func:`load_lpips` or :meth:`from_state_dict`."""

    def __init__(self, weights: dict[str, Tensor]) -> None:
        self.weights = weights  # validated state dict, float32 on the CPU
        self.shift = torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1)
        self.scale = torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1)

    @classmethod
    def from_state_dict(cls, state: object, source: Path | str = "<state dict>") -> LPIPS:
        """Validate a state dict in the ``lpips`` package layout; ``DataError`` names ``source``.

        Required keys are :func:`lpips_state_dict_shapes`; the optional ``scaling_layer.*``
        buffers must hold the LPIPS constants and the optional ``lins.{k}.*`` duplicates
        (lpips >= 0.1.4 registers the linear layers twice) must equal ``lin{k}``.
        """
        if not isinstance(state, Mapping):
            raise DataError(f"{source}: LPIPS weights must be a state dict, got {type(state)}")
        shapes = lpips_state_dict_shapes()
        optional = {"scaling_layer.shift": _LPIPS_SHIFT, "scaling_layer.scale": _LPIPS_SCALE}
        duplicates = {f"lins.{k}.model.1.weight": _lin_key(k) for k in range(len(_ALEX_CONVS))}
        for key in state:
            if key not in shapes and key not in optional and key not in duplicates:
                raise DataError(
                    f"{source}: unexpected key {key!r} in LPIPS weights "
                    "(expected torch.save(lpips.LPIPS(net='alex').state_dict(), path))"
                )
        weights: dict[str, Tensor] = {}
        for key, shape in shapes.items():
            value = state.get(key)
            if not isinstance(value, Tensor):
                raise DataError(f"{source}: LPIPS weights lack tensor {key!r} (net='alex' layout)")
            if tuple(value.shape) != shape:
                raise DataError(
                    f"{source}: LPIPS weight {key!r} has shape {tuple(value.shape)}, "
                    f"expected {shape}"
                )
            weights[key] = value.detach().to("cpu", torch.float32)
        for key, constant in optional.items():
            if key in state and not torch.allclose(
                torch.as_tensor(state[key]).flatten().float(), torch.tensor(constant)
            ):
                raise DataError(f"{source}: {key!r} differs from the LPIPS v0.1 constants")
        for key, original in duplicates.items():
            if key in state and not torch.equal(torch.as_tensor(state[key]), state[original]):
                raise DataError(f"{source}: {key!r} differs from {original!r}")
        return cls(weights)

    def _features(self, x: Tensor) -> list[Tensor]:
        """ReLU taps of the AlexNet trunk for ``x`` ``[B, 3, H, W]``, already scaled."""
        taps = []
        for conv in _ALEX_CONVS:
            if conv.pool_before:
                x = F.max_pool2d(x, _POOL_KERNEL, _POOL_STRIDE)
            x = F.conv2d(
                x,
                self.weights[f"{conv.key}.weight"],
                self.weights[f"{conv.key}.bias"],
                stride=conv.stride,
                padding=conv.padding,
            )
            x = F.relu(x)
            taps.append(x)
        return taps

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """LPIPS distance (0 = identical), differentiable w.r.t. in-range pixels.

        Args:
            pred: ``[H, W, 3]`` image, clamped to ``[0, 1]``; ``H, W >= 31``.
            target: ``[H, W, 3]`` image, clamped to ``[0, 1]``.

        Returns:
            0-dim float32 tensor.
        """
        check_image_pair(pred, target)
        height, width = pred.shape[:2]
        if min(height, width) < LPIPS_MIN_SIDE:
            raise ValueError(
                f"LPIPS (AlexNet) needs images of at least {LPIPS_MIN_SIDE}x{LPIPS_MIN_SIDE} "
                f"pixels, got {height}x{width}"
            )
        pair = torch.cat([to_nchw(pred), to_nchw(target)]).float().clamp(0, 1)  # [2, 3, H, W]
        pair = (pair * 2.0 - 1.0 - self.shift) / self.scale
        total = pair.new_zeros(())
        for layer, feat in enumerate(self._features(pair)):
            unit = feat / (feat.square().sum(dim=1, keepdim=True).sqrt() + _NORM_EPS)
            diff = (unit[0:1] - unit[1:2]).square()  # [1, C, h, w]
            total = total + F.conv2d(diff, self.weights[_lin_key(layer)]).mean()
        return total


def load_lpips(weights_path: Path | None = None) -> LPIPS | None:
    """Load LPIPS weights from ``weights_path`` or ``$CSGAUSSIAN_LPIPS_WEIGHTS``.

    Returns:
        ``None`` when neither names an existing file (a named but missing file also warns);
        never a stand-in network.

    Raises:
        DataError: the file exists but is not a valid ``lpips`` AlexNet state dict.
    """
    if weights_path is None:
        env = os.environ.get(LPIPS_ENV_VAR, "").strip()
        if not env:
            return None
        weights_path = Path(env)
    path = Path(weights_path)
    if not path.is_file():
        warnings.warn(f"{path}: LPIPS weights file not found; LPIPS disabled", stacklevel=2)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means "not a torch state dict"
        raise DataError(
            f"{path}: cannot read LPIPS weights as a torch state dict ({type(exc).__name__})"
        ) from exc
    return LPIPS.from_state_dict(state, source=path)


@dataclass
class ImageMetrics:
    """Scores of one rendered view against its ground truth."""

    psnr: float  # dB; inf for identical images
    ssim: float
    lpips: float | None  # None when no LPIPS weights are available


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def evaluate_images(
    preds: list[Tensor], targets: list[Tensor], lpips: LPIPS | None
) -> dict[str, object]:
    """Score each ``[H, W, 3]`` render against its target and average over views.

    Returns:
        ``{"psnr": mean, "ssim": mean, "lpips": mean or None, "per_view": {"psnr": [...],
        "ssim": [...], "lpips": [...] or None}}``, lists in view order. PSNR is averaged per
        view in dB, as in the 3DGS evaluation; an identical pair makes it ``inf``.
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    if not preds:
        raise ValueError("evaluate_images needs at least one view")
    views = []
    with torch.no_grad():
        for pred, target in zip(preds, targets, strict=True):
            views.append(
                ImageMetrics(
                    psnr=psnr(pred, target),
                    ssim=ssim(pred, target),
                    lpips=None if lpips is None else float(lpips(pred, target)),
                )
            )
    per_view = {
        "psnr": [v.psnr for v in views],
        "ssim": [v.ssim for v in views],
        "lpips": None if lpips is None else [v.lpips for v in views],
    }
    return {
        "psnr": _mean(per_view["psnr"]),
        "ssim": _mean(per_view["ssim"]),
        "lpips": None if per_view["lpips"] is None else _mean(per_view["lpips"]),
        "per_view": per_view,
    }
