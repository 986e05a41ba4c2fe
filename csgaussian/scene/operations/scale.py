"""Scale the object a text names about its centre.

The selected Gaussians' positions move away from (or towards) their centroid by ``factor`` and
their extents grow by it (``scales`` of the neural Gaussians; ``factor^2`` on the viewer's
splat covariances). The centroid is that of the selected Gaussians a view holds (with the
viewer's splats, of the selected splats), so an object that has a copy scales with its copy as
one. The factor is bounded (``FACTOR_MIN``..``FACTOR_MAX``), when asked for and when read from a
stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Operation, Param, Value, replaced

FACTOR_MIN = 0.1
"""Smallest scale factor (a tenth of the size)."""
FACTOR_MAX = 10.0
"""Largest scale factor (ten times the size)."""


def check_factor(factor: float | str) -> float:
    """``factor`` as a number in ``[FACTOR_MIN, FACTOR_MAX]``; ValueError otherwise."""
    try:
        value = float(factor)
    except (TypeError, ValueError):
        raise ValueError(f"scale factor {factor!r} is not a number") from None
    if not FACTOR_MIN <= value <= FACTOR_MAX:
        raise ValueError(f"scale factor {factor!r} is outside {FACTOR_MIN:g}..{FACTOR_MAX:g}")
    return value


@dataclass(frozen=True)
class Scale(Operation):
    """Scale the object ``text`` names by ``factor`` about its centroid."""

    factor: float

    code = "scale"
    order = 50
    label = "Scale"
    help = "scale the object TEXT names about its centre by the following --factor"
    effect = "keep"
    value = Value(
        flag="--factor",
        metavar="F",
        help=f"scale factor of the preceding --scale ({FACTOR_MIN:g}..{FACTOR_MAX:g})",
        control="number",
        label="Factor",
        default=1.5,
        step=0.1,
        lo=FACTOR_MIN,
        hi=FACTOR_MAX,
    )
    params = (Param("factor", FACTOR_MIN, FACTOR_MAX),)

    def stored(self):
        return {"params": {"factor": check_factor(self.factor)}}

    @classmethod
    def from_value(cls, text, value):
        return cls(text, check_factor(value))

    @staticmethod
    def summary(edit):
        return {"factor": edit.params["factor"]}

    @staticmethod
    def apply(gaussians, chosen, edit):
        if not bool(chosen.any()):
            return gaussians
        factor = edit.params["factor"]
        means, scales = gaussians.means.clone(), gaussians.scales.clone()
        centre = means[chosen].mean(dim=0)
        means[chosen] = centre + (means[chosen] - centre) * factor
        scales[chosen] = scales[chosen] * factor
        return replaced(gaussians, means=means, scales=scales)

    @classmethod
    def apply_splats(cls, splats, chosen, edit):
        if not bool(chosen.any()):
            return splats
        factor = edit.params["factor"]
        centers, covariances = splats.centers.clone(), splats.covariances.clone()
        centre = centers[chosen].mean(dim=0)
        centers[chosen] = centre + (centers[chosen] - centre) * factor
        covariances[chosen] = covariances[chosen] * factor**2
        return replaced(splats, centers=centers, covariances=covariances)
