"""Shared fixtures of the rasterizer tests: random small scenes and a simple camera."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from csgaussian.types import Camera

Scene = tuple[list[torch.Tensor], Camera]


def make_camera(width: int = 32, height: int = 24, focal: float = 30.0) -> Camera:
    """Camera at the world origin looking down +z, principal point at the image centre."""
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return Camera(viewmat=torch.eye(4), K=K, width=width, height=height)


def make_scene(
    n: int, channels: int = 3, seed: int = 0, width: int = 32, height: int = 24
) -> Scene:
    """``[means, quats, scales, opacities, colors, background]`` and a camera, float32."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.6, 0.5, 0.5])
    means[:, 2] += 3.0
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.5 - 2.8)
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, channels, generator=g)
    background = torch.rand(channels, generator=g)
    return [means, quats, scales, opacities, colors, background], make_camera(width, height)


@pytest.fixture
def scene() -> Callable[..., Scene]:
    """Factory of random scenes (see :func:`make_scene`)."""
    return make_scene


@pytest.fixture
def camera() -> Callable[..., Camera]:
    """Factory of simple cameras (see :func:`make_camera`)."""
    return make_camera
