"""Where the viewer's camera starts (issue 18 item 4).

A stream holds no camera, and a scene's anchors include a far background shell that no
training view saw from outside: the opening view frames the bulk of the anchors (those nearest
their median) from outside that bulk but inside the shell. A capture camera stored in the
stream, when there is one, is the better start; this is the one place to prefer it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..scene.decoded import Scene

VIEW_DIRECTION = (1.0, -1.0, 0.8)
"""From the scene centre towards the opening camera (z up, as viser's default scene)."""
BULK_SHARE = 0.5
"""Share of the anchors, nearest their median, that the opening view frames (kitchen: 0.8 still
left the objects small behind a fog of shell Gaussians; 0.5 frames the table and its objects)."""
OPENING_FOV = 75.0 * math.pi / 180.0
"""viser's default vertical field of view (its ``InitialCameraConfig``)."""
MARGIN = 1.1
"""Distance factor beyond the bulk's bounding sphere just filling the view."""


@dataclass(frozen=True)
class OpeningView:
    """A camera to open at: its position, the point it looks at and its up direction."""

    position: np.ndarray  # [3] float64
    look_at: np.ndarray  # [3] float64
    up: np.ndarray  # [3] float64


def opening_view(scene: Scene) -> OpeningView:
    """The camera the viewer opens at for ``scene``: the anchors' bulk (``BULK_SHARE`` of them
    nearest their median) filling a view from ``VIEW_DIRECTION``."""
    anchors = scene.model.anchors.double()
    centre = anchors.median(dim=0).values
    distances = (anchors - centre).norm(dim=1)
    radius = float(torch.quantile(distances, BULK_SHARE)) if len(distances) else 1.0
    radius = max(radius, 1e-6)
    direction = np.asarray(VIEW_DIRECTION) / np.linalg.norm(VIEW_DIRECTION)
    distance = MARGIN * radius / math.sin(0.5 * OPENING_FOV)
    look_at = centre.numpy()
    return OpeningView(look_at + direction * distance, look_at, np.array([0.0, 0.0, 1.0]))
