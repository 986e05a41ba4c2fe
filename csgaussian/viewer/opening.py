"""Where the viewer's camera starts (issue 18 item 4).

A stream that stores capture cameras (its optional ``cameras`` section, docs/format.md §3.7)
opens at the first of them: a viewpoint the model was trained for, with its field of view.
Without one, note that a scene's anchors include a far background shell that no training view
saw from outside: the opening view frames the bulk of the anchors (those nearest their median)
from outside that bulk but inside the shell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..scene.decoded import Scene
from ..types import Camera

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
    """A camera to open at: its position, the point it looks at, its up direction and its
    vertical field of view."""

    position: np.ndarray  # [3] float64
    look_at: np.ndarray  # [3] float64
    up: np.ndarray  # [3] float64
    fov: float = OPENING_FOV  # radians


def opening_view(scene: Scene) -> OpeningView:
    """The camera the viewer opens at for ``scene``: its first stored capture camera, else the
    anchors' bulk (``BULK_SHARE`` of them nearest their median) filling a view from
    ``VIEW_DIRECTION``."""
    if scene.cameras:
        return camera_view(scene.cameras[0], scene.model.anchors)
    anchors = scene.model.anchors.double()
    centre = anchors.median(dim=0).values
    distances = (anchors - centre).norm(dim=1)
    radius = float(torch.quantile(distances, BULK_SHARE)) if len(distances) else 1.0
    radius = max(radius, 1e-6)
    direction = np.asarray(VIEW_DIRECTION) / np.linalg.norm(VIEW_DIRECTION)
    distance = MARGIN * radius / math.sin(0.5 * OPENING_FOV)
    look_at = centre.numpy()
    return OpeningView(look_at + direction * distance, look_at, np.array([0.0, 0.0, 1.0]))


def camera_view(camera: Camera, anchors: torch.Tensor) -> OpeningView:
    """``camera`` (OpenCV axes: x right, y down, z forward) as an opening view, looking along its
    optical axis at the depth of the anchors' median in front of it. ``anchors [N, 3]``."""
    rotation = camera.viewmat[:3, :3].double().numpy()  # world -> camera
    position = camera.center.double().numpy()
    forward, down = rotation[2], rotation[1]  # the camera's z and y axes in world coordinates
    depths = (anchors.double().numpy() - position) @ forward
    ahead = depths[depths > 0]
    depth = float(np.median(ahead)) if len(ahead) else 1.0
    fov = 2.0 * math.atan(0.5 * camera.height / float(camera.K[1, 1]))
    return OpeningView(position, position + depth * forward, -down, fov)
