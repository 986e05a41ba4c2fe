"""Cameras around a scene known only from its stream (the receiver has no dataset poses)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..types import Camera

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
GOLDEN_RATIO_FRACTION = (math.sqrt(5.0) - 1.0) / 2.0


def look_at(eye: Tensor, target: Tensor, width: int, height: int, fov_deg: float) -> Camera:
    """Pinhole camera at ``eye`` ([3]) aiming at ``target`` ([3]), +Z up (OpenCV axes)."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    up = torch.tensor([0.0, 0.0, 1.0])
    if float(torch.cross(forward, up, dim=0).norm()) < 1e-3:  # looking straight up or down
        up = torch.tensor([0.0, 1.0, 0.0])
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=0), dim=0)
    down = torch.cross(forward, right, dim=0)
    rot = torch.stack([right, down, forward])  # world -> camera rows
    view = torch.eye(4)
    view[:3, :3] = rot
    view[:3, 3] = -rot @ eye
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return Camera(view, K, width, height)


@dataclass(frozen=True)
class OrbitSampler:
    """Cameras around a scene's centre, aiming at it, between two elevations (about +Z).

    Distances run over ``radius_range`` times ``spread``; ``fov_deg`` and ``size`` (square
    images) set the intrinsics.
    """

    center: Tensor  # [3]
    spread: float
    radius_range: tuple[float, float]
    elevation_deg: tuple[float, float]
    size: int
    fov_deg: float

    @classmethod
    def around(cls, points: Tensor, quantile: float, **settings: object) -> OrbitSampler:
        """A sampler centred on ``points`` ([P, 3]) whose ``spread`` is their ``quantile``
        distance from the centroid (stray points do not push the cameras out)."""
        center = points.mean(0)
        spread = float(torch.quantile((points - center).norm(dim=1), quantile))
        return cls(center, spread, **settings)

    def camera(self, height: float, azimuth: float, t: float) -> Camera:
        """The camera at ``height`` in [0, 1] of the elevation band (uniform in area),
        ``azimuth`` (radians) and ``t`` in [0, 1] of the radius range."""
        low, high = (math.sin(math.radians(e)) for e in self.elevation_deg)
        z = low + height * (high - low)
        ring = math.sqrt(max(0.0, 1.0 - z * z))
        direction = torch.tensor([ring * math.cos(azimuth), ring * math.sin(azimuth), z])
        radius = self.spread * (
            self.radius_range[0] + t * (self.radius_range[1] - self.radius_range[0])
        )
        return look_at(
            self.center + radius * direction, self.center, self.size, self.size, self.fov_deg
        )

    def spiral(self, n: int) -> list[Camera]:
        """``n`` cameras spread evenly over the band (Fibonacci spiral), radii low-discrepancy."""
        return [
            self.camera((i + 0.5) / n, GOLDEN_ANGLE * i, (i * GOLDEN_RATIO_FRACTION) % 1.0)
            for i in range(n)
        ]

    def random(self, generator: torch.Generator) -> Camera:
        """One camera drawn uniformly over the band and the radius range."""
        u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        return self.camera(u[0], 2 * math.pi * u[1], u[2])


def between_cameras(
    cameras: list[Camera],
    n: int,
    neighbours: int,
    position_range: tuple[float, float],
    generator: torch.Generator,
) -> list[Camera]:
    """``n`` cameras on the way from each of ``cameras`` (in turn) to one of its ``neighbours``
    nearest (by centre), a uniform ``position_range`` share of the way: centres interpolated
    linearly, rotations as the nearest rotation (SVD) to the interpolated matrices, the
    intrinsics of the camera it starts from. Viewpoints between a capture's cameras are the ones
    its model was trained to render and its test views are taken from."""
    if len(cameras) < 2 or n == 0:
        return []
    centers = torch.stack([c.center for c in cameras])
    distances = torch.cdist(centers, centers)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.topk(min(neighbours, len(cameras) - 1), largest=False).indices
    low, high = position_range
    out = []
    for k in range(n):
        start = cameras[k % len(cameras)]
        choice = int(torch.randint(nearest.shape[1], (1,), generator=generator))
        end = cameras[int(nearest[k % len(cameras), choice])]
        t = low + (high - low) * float(torch.rand(1, generator=generator))
        blend = (1 - t) * start.viewmat[:3, :3] + t * end.viewmat[:3, :3]
        u, _, vh = torch.linalg.svd(blend)
        if float(torch.det(u @ vh)) < 0:  # a reflection: flip the least certain axis
            u[:, -1] = -u[:, -1]
        rotation = u @ vh
        center = (1 - t) * start.center + t * end.center
        view = torch.eye(4)
        view[:3, :3] = rotation
        view[:3, 3] = -rotation @ center
        out.append(Camera(view, start.K.clone(), start.width, start.height))
    return out
