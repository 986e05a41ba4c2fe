"""View pixels and their float image; the integer type of instance maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from csgaussian.types import Camera, View, label_dtype, pixels_to_image


def _view(pixels: torch.Tensor) -> View:
    camera = Camera(torch.eye(4), torch.eye(3), pixels.shape[1], pixels.shape[0])
    return View(camera, pixels, Path("r_000.png"))


def test_uint8_pixels_give_the_float_loaders_values_exactly():
    values = np.tile(np.arange(256, dtype=np.uint8), 3 * 40).reshape(40, 256, 3)
    old = values.astype(np.float32) / 255.0  # what the loader produced before (float images)
    image = _view(torch.from_numpy(values)).image
    assert image.dtype == torch.float32 and image.shape == (40, 256, 3)
    assert np.array_equal(image.numpy(), old)


def test_uint16_pixels_keep_sixteen_bits():
    values = np.arange(0, 65536, dtype=np.int64).reshape(256, 256)
    pixels = torch.from_numpy(np.repeat(values[..., None], 3, axis=2)).to(torch.uint16)
    image = pixels_to_image(pixels)
    assert np.array_equal(image[..., 0].numpy(), values.astype(np.float32) / 65535.0)
    assert len(torch.unique(image)) == 65536  # not squashed into 256 levels


def test_rgba_pixels_are_composited_onto_white():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    raw = rgba.astype(np.float32) / 255.0
    old = raw[..., :3] * raw[..., 3:] + (1.0 - raw[..., 3:])
    image = pixels_to_image(torch.from_numpy(rgba))
    assert image.shape == (5, 7, 3) and np.array_equal(image.numpy(), old)


def test_float_pixels_pass_through_and_size_needs_no_conversion():
    pixels = torch.rand(4, 6, 3)
    view = _view(pixels)
    assert view.image is pixels
    assert view.size == (4, 6)


def test_label_dtype_is_the_smallest_holding_the_ids():
    assert label_dtype(0) == torch.uint8 and label_dtype(255) == torch.uint8
    assert label_dtype(256) == torch.int16 and label_dtype(32767) == torch.int16
    assert label_dtype(32768) == torch.int32 and label_dtype(65535) == torch.int32
