"""Tests for csgaussian.eval.metrics: PSNR, SSIM, LPIPS loading and evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from csgaussian.eval.metrics import (
    LPIPS_ENV_VAR,
    evaluate_images,
    load_lpips,
    psnr,
    ssim,
)
from csgaussian.render.ssim import ssim_loss_term
from csgaussian.types import DataError

# Keys and shapes of lpips.LPIPS(net='alex').state_dict() (lpips 0.1.4, lpips/lpips.py and
# lpips/pretrained_networks.py), written out here independently of the module under test.
ALEX = [  # (slice, features index, c_in, c_out, kernel)
    (1, 0, 3, 64, 11),
    (2, 3, 64, 192, 5),
    (3, 6, 192, 384, 3),
    (4, 8, 384, 256, 3),
    (5, 10, 256, 256, 3),
]


def random_lpips_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the exact key layout of the lpips package, random values."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {
        "scaling_layer.shift": torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1),
        "scaling_layer.scale": torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1),
    }
    for s, idx, c_in, c_out, k in ALEX:
        fan_in = c_in * k * k
        state[f"net.slice{s}.{idx}.weight"] = torch.randn(c_out, c_in, k, k, generator=gen) / (
            fan_in**0.5
        )
        state[f"net.slice{s}.{idx}.bias"] = 0.01 * torch.randn(c_out, generator=gen)
    for layer, (_, _, _, c_out, _) in enumerate(ALEX):
        lin = torch.rand(1, c_out, 1, 1, generator=gen)
        state[f"lin{layer}.model.1.weight"] = lin
        state[f"lins.{layer}.model.1.weight"] = lin
    return state


def reference_lpips(state: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> float:
    """LPIPS v0.1 from torch.nn modules laid out as in the lpips package (strict load)."""

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [
                nn.Conv2d(3, 64, 11, 4, 2),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(256, 256, 3, padding=1),
                nn.ReLU(),
            ]
            bounds = [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)]
            for s, (lo, hi) in enumerate(bounds, start=1):
                seq = nn.Sequential()
                for i in range(lo, hi):
                    seq.add_module(str(i), layers[i])
                setattr(self, f"slice{s}", seq)

    trunk = Trunk().requires_grad_(False)
    trunk_state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    trunk.load_state_dict(trunk_state, strict=True)
    x = torch.stack([a, b]).permute(0, 3, 1, 2) * 2 - 1
    x = (x - state["scaling_layer.shift"]) / state["scaling_layer.scale"]
    total = 0.0
    for s in range(1, 6):
        x = getattr(trunk, f"slice{s}")(x)
        unit = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        d = (unit[0] - unit[1]).pow(2)
        total += float((d * state[f"lin{s - 1}.model.1.weight"][0]).sum(0).mean())
    return total


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(40, 48, 3, generator=gen)
    b = (a + 0.1 * torch.randn(40, 48, 3, generator=gen)).clamp(0, 1)
    return a, b


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    path = tmp_path / "lpips_alex.pth"
    torch.save(random_lpips_state(), path)
    return path


def test_psnr_known_value_and_identical() -> None:
    target = torch.full((8, 8, 3), 0.5, dtype=torch.float64)
    assert psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-9)
    assert psnr(target, target) == math.inf


def test_psnr_clamps_before_comparing() -> None:
    target = torch.ones(4, 4, 3)
    assert psnr(target + 0.5, target) == math.inf  # 1.5 displays as 1.0
    assert psnr(torch.full((4, 4, 3), -1.0), torch.zeros(4, 4, 3)) == math.inf


def test_psnr_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        psnr(torch.zeros(4, 4), torch.zeros(4, 4))


def test_ssim_identical_is_one_and_noise_lowers_it(images) -> None:
    a, b = images
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    value = ssim(a, b)
    assert 0.0 < value < 0.99
    assert ssim(b, a) == pytest.approx(value, abs=1e-12)


def test_ssim_matches_valid_window_formula() -> None:
    # For constant images every window sees mean mu and zero variance:
    # SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1).
    c1 = 0.01**2
    f64 = torch.float64
    value = ssim(torch.full((11, 11, 3), 0.2, dtype=f64), torch.full((11, 11, 3), 0.6, dtype=f64))
    assert value == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.04 + 0.36 + c1), rel=1e-9)


def test_ssim_rejects_images_smaller_than_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(10, 32, 3), torch.rand(10, 32, 3))


def test_ssim_loss_term_is_differentiable(images) -> None:
    a, b = images
    pred = b.clone().requires_grad_(True)
    loss = ssim_loss_term(pred, a)
    assert float(loss.detach()) == pytest.approx(1.0 - ssim(b, a), abs=1e-5)
    loss.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0


def test_load_lpips_without_file_returns_none(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(LPIPS_ENV_VAR, raising=False)
    assert load_lpips(None) is None
    with pytest.warns(UserWarning, match="not found"):
        assert load_lpips(tmp_path / "absent.pth") is None


def test_lpips_zero_for_identical_positive_for_different(weights_file, images) -> None:
    model = load_lpips(weights_file)
    assert model is not None
    a, b = images
    assert float(model(a, a)) == 0.0
    assert float(model(a, b)) > 0.0


def test_lpips_matches_module_reference(weights_file, images) -> None:
    model = load_lpips(weights_file)
    a, b = images
    expected = reference_lpips(random_lpips_state(), a, b)
    assert float(model(a, b)) == pytest.approx(expected, rel=1e-4)


def test_lpips_reads_env_var(weights_file, monkeypatch) -> None:
    monkeypatch.setenv(LPIPS_ENV_VAR, str(weights_file))
    assert load_lpips(None) is not None


def test_lpips_key_mismatch_names_file(tmp_path) -> None:
    state = random_lpips_state()
    state["lin2.model.0.weight"] = state.pop("lin2.model.1.weight")
    path = tmp_path / "wrong_keys.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match="wrong_keys.pth"):
        load_lpips(path)


def test_lpips_shape_mismatch_and_garbage_file_raise(tmp_path) -> None:
    state = random_lpips_state()
    state["net.slice1.0.bias"] = torch.zeros(65)
    bad_shape = tmp_path / "bad_shape.pth"
    torch.save(state, bad_shape)
    with pytest.raises(DataError, match=r"bad_shape.pth.*shape"):
        load_lpips(bad_shape)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="garbage.pth"):
        load_lpips(garbage)


def test_lpips_min_size(weights_file) -> None:
    model = load_lpips(weights_file)
    assert float(model(torch.rand(31, 31, 3), torch.rand(31, 31, 3))) > 0
    with pytest.raises(ValueError, match="at least 31x31"):
        model(torch.rand(30, 64, 3), torch.rand(30, 64, 3))


def test_evaluate_images_means_and_per_view(weights_file, images) -> None:
    a, b = images
    result = evaluate_images([a, b], [b, b], lpips=None)
    assert result["lpips"] is None and result["per_view"]["lpips"] is None
    assert result["per_view"]["psnr"] == [psnr(a, b), math.inf]
    assert result["ssim"] == pytest.approx((ssim(a, b) + 1.0) / 2)
    with_lpips = evaluate_images([a, a], [b, a], lpips=load_lpips(weights_file))
    per_view = with_lpips["per_view"]["lpips"]
    assert per_view[0] > 0 and per_view[1] == 0.0
    assert with_lpips["lpips"] == pytest.approx(per_view[0] / 2)
    # PSNR is averaged per view in dB (3DGS), not computed from the views' pooled MSE:
    # views at 20 and 40 dB average to 30 dB, where the pooled MSE would give 23 dB
    grey = torch.full((32, 32, 3), 0.5, dtype=torch.float64)
    per_db = evaluate_images([grey + 0.1, grey + 0.01], [grey, grey], lpips=None)
    assert per_db["per_view"]["psnr"] == pytest.approx([20.0, 40.0])
    assert per_db["psnr"] == pytest.approx(30.0)


def test_evaluate_images_rejects_bad_lists(images) -> None:
    a, _ = images
    with pytest.raises(ValueError, match="1 predictions for 2 targets"):
        evaluate_images([a], [a, a], lpips=None)
    with pytest.raises(ValueError, match="at least one view"):
        evaluate_images([], [], lpips=None)
