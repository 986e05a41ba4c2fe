import pytest
import torch

from csgaussian.entropy.quantize import (
    QuantizationConfig,
    adaptive_step,
    quantize,
    to_symbols,
)


def test_config_matches_method():
    q = QuantizationConfig()
    assert (q.q0("feature"), q.q0("scaling"), q.q0("offsets")) == (1.0, 0.03, 0.2)
    with pytest.raises(KeyError):
        q.q0("colour")


def test_adaptive_step_range():
    r = torch.tensor([-50.0, 0.0, 50.0])
    step = adaptive_step(0.2, r)
    assert torch.allclose(step, torch.tensor([0.0, 0.2, 0.4]))


def test_round_is_on_grid_with_straight_through_gradient():
    x = torch.tensor([0.26, -0.74, 1.01], requires_grad=True)
    step = torch.tensor(0.5, requires_grad=True)
    y = quantize(x, step, "round")
    assert torch.allclose(y, torch.tensor([0.5, -0.5, 1.0]))
    y.sum().backward()
    assert torch.allclose(x.grad, torch.ones(3))
    assert step.grad is not None


def test_noise_stays_within_half_step_and_is_random():
    torch.manual_seed(0)
    x = torch.zeros(10000)
    step = torch.full((10000,), 0.4)
    y = quantize(x, step, "noise")
    assert y.abs().max() <= 0.2
    assert y.std() > 0.1  # ~ 0.4 / sqrt(12) = 0.115
    assert not torch.equal(y, quantize(x, step, "noise"))


def test_unknown_mode_and_symbols():
    with pytest.raises(ValueError, match="mode"):
        quantize(torch.zeros(2), 1.0, "floor")  # type: ignore[arg-type]
    s = to_symbols(torch.tensor([[0.49, 0.51, -1.6]]), torch.tensor([[0.5]]))
    assert s.dtype == torch.int64 and s.tolist() == [[1, 1, -3]]
