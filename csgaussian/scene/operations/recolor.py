"""Give the object a text names the hue of a colour, keeping its luminance.

Recolouring keeps each Gaussian's luma and takes the target's chroma (BT.601 Y'CbCr, where an RGB
colour is its luma on every channel plus a chroma part): ``c' = clamp(t + (Y(c) - Y(t)), 0, 1)``
with ``Y(rgb) = 0.299 r + 0.587 g + 0.114 b``. The luminance texture stays (up to clamping), the
hue becomes the target's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Operation, Value, replaced

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma coefficients."""
COLOR_LEVELS = 255
"""Recolour targets are 8-bit RGB (as the edit layer stores them)."""


def quantize_color(color: Sequence[float]) -> tuple[float, float, float]:
    """``color`` (RGB in [0, 1]) as the edit layer stores it (8 bits per channel)."""
    r, g, b = (round(min(max(float(c), 0.0), 1.0) * COLOR_LEVELS) / COLOR_LEVELS for c in color)
    return (r, g, b)


def parse_color(color: tuple[float, float, float] | str) -> tuple[float, float, float]:
    """RGB in [0, 1] from ``#RRGGBB`` (or a 3-tuple in [0, 1]); ValueError otherwise."""
    if isinstance(color, str):
        text = color.removeprefix("#")
        if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise ValueError(f"colour {color!r} is not #RRGGBB")
        return quantize_color([int(text[i : i + 2], 16) / 255 for i in (0, 2, 4)])
    values = tuple(float(c) for c in color)
    if len(values) != 3 or not all(0.0 <= c <= 1.0 for c in values):
        raise ValueError(f"colour {color!r} is not three values in [0, 1]")
    return quantize_color(values)


def luma(colors: Tensor) -> Tensor:
    """BT.601 luma ``[...]`` of RGB ``[..., 3]``."""
    return colors @ torch.tensor(LUMA_WEIGHTS, dtype=colors.dtype)


def recolor(colors: Tensor, target: Tensor) -> Tensor:
    """``colors`` ``[G, 3]`` with their luma kept and the chroma of ``target`` ``[3]`` (module
    docstring)."""
    target = target.to(colors)
    return (target + (luma(colors) - luma(target))[:, None]).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Recolor(Operation):
    """Give the object ``text`` names the hue of ``color`` (RGB in [0, 1], or ``#RRGGBB``),
    keeping its luminance."""

    color: tuple[float, float, float] | str

    code = "recolor"
    order = 30
    label = "Recolour"
    help = "give the object TEXT names the hue of the following --color"
    effect = "keep"
    value = Value(
        flag="--color",
        metavar="#RRGGBB",
        help="target colour of the preceding --recolor",
        control="rgb",
        label="Colour",
        default=(32, 64, 255),
    )

    def stored(self):
        return {"color": parse_color(self.color)}

    @classmethod
    def from_value(cls, text, value):
        return cls(text, parse_color(value))

    @classmethod
    def from_control(cls, text, value):
        return cls(text, tuple(c / COLOR_LEVELS for c in value))

    @staticmethod
    def summary(edit):
        return {"color": list(edit.color)}

    @staticmethod
    def apply(gaussians, chosen, edit):
        colors = gaussians.colors.clone()
        colors[chosen] = recolor(colors[chosen], torch.tensor(edit.color))
        return replaced(gaussians, colors=colors)

    @classmethod
    def apply_splats(cls, splats, chosen, edit):
        rgbs = splats.rgbs.clone()
        rgbs[chosen] = recolor(rgbs[chosen], torch.tensor(edit.color))
        return replaced(splats, rgbs=rgbs)
