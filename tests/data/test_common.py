"""Shared loader helpers: the backdrop colour of 8-bit views without gathering their pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from csgaussian.data.common import BackgroundConfig, estimate_background
from csgaussian.types import Camera, View


def _views(pixels: list[torch.Tensor], instances: list[torch.Tensor]) -> list[View]:
    camera = Camera(torch.eye(4), torch.eye(3), 5, 4)
    return [
        View(camera, p, Path(f"r_{k:03d}.png"), i)
        for k, (p, i) in enumerate(zip(pixels, instances, strict=True))
    ]


def _gathered(views: list[View], cfg: BackgroundConfig) -> torch.Tensor:
    """The estimate as it was made before: every background pixel as float, one median."""
    background = torch.cat([v.image[v.instance == 0] for v in views])
    if len(background) < 2 or bool((background.std(0) > cfg.max_std).any()):
        return torch.zeros(3)
    return background.median(0).values


@pytest.mark.parametrize("seed", range(6))
def test_histogram_background_equals_the_gathered_median(seed):
    generator = torch.Generator().manual_seed(seed)
    views = []
    for k in range(3):
        base = torch.tensor([150, 160, 170]) + k
        noise = torch.randint(-6, 7, (4, 5, 3), generator=generator)
        pixels = (base + noise).to(torch.uint8)
        instance = torch.randint(0, 3, (4, 5), generator=generator).to(torch.uint8)
        views.append((pixels, instance))
    views = _views(*map(list, zip(*views, strict=True)))
    cfg = BackgroundConfig()
    expected = _gathered(views, cfg)
    assert expected.abs().sum() > 0  # a near-constant backdrop was found
    assert torch.equal(estimate_background(views, cfg), expected)
    float_views = _views([v.image for v in views], [v.instance for v in views])
    assert torch.equal(estimate_background(float_views, cfg), expected)


def test_varied_background_is_black():
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (4, 5, 3), generator=generator).to(torch.uint8)
    views = _views([pixels], [torch.zeros(4, 5, dtype=torch.uint8)])
    assert torch.equal(estimate_background(views), torch.zeros(3))
    assert torch.equal(estimate_background(_views([pixels], [None])), torch.zeros(3))
