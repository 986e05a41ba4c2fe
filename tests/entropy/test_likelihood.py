import math

import torch

from csgaussian.entropy.coder import SCALE_TABLE
from csgaussian.entropy.likelihood import (
    LIKELIHOOD_FLOOR,
    MIN_SCALE_IN_STEPS,
    discretized_gaussian_bits,
)


def discretized_gaussian_likelihood(*args, **kwargs):
    return torch.exp2(-discretized_gaussian_bits(*args, **kwargs))


def test_likelihood_sums_to_one_over_bins():
    step = 0.3
    for mean, scale in [(0.07, 0.5), (-2.0, 3.0), (0.4, 0.01)]:
        grid = torch.arange(-400, 401, dtype=torch.float64) * step
        p = discretized_gaussian_likelihood(
            grid, torch.tensor(mean), torch.tensor(scale), step, floor=0.0
        )
        assert abs(float(p.sum()) - 1.0) < 1e-9


def test_far_tail_is_floored_and_bits_are_finite():
    x = torch.tensor([1e6, -1e6, 0.0])
    p = discretized_gaussian_likelihood(x, torch.zeros(3), torch.full((3,), 1e-12), 1.0)
    assert torch.all(p >= LIKELIHOOD_FLOOR) and p[2] > 0.999
    bits = discretized_gaussian_bits(x, torch.zeros(3), torch.full((3,), 1e-12), 1.0)
    assert torch.all(torch.isfinite(bits))
    assert abs(float(bits[0]) + torch.log2(torch.tensor(LIKELIHOOD_FLOOR))) < 1e-4


def test_symmetric_form_is_accurate_in_the_upper_tail():
    # naive Phi(b) - Phi(a) cancels to 0 at 9 sigma in float32; the symmetric form does not
    p = discretized_gaussian_likelihood(
        torch.tensor([9.0]), torch.tensor([0.0]), torch.tensor([1.0]), 1.0, floor=0.0
    )
    assert p.item() > 1e-19


def test_gradients_reach_mean_and_scale():
    x = torch.tensor([0.0, 1.0, -2.0])
    mean = torch.tensor([0.3, 0.2, 0.1], requires_grad=True)
    scale = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    bits = discretized_gaussian_bits(x, mean, scale, 1.0).sum()
    bits.backward()
    assert torch.all(mean.grad != 0) and torch.all(scale.grad != 0)
    # moving the mean towards the values lowers the bits
    assert mean.grad[0] > 0 and mean.grad[1] < 0


def test_a_value_on_the_floor_still_pulls_the_prior_towards_it():
    # an over-confident prior prices the value at the floor, 100 scales away, where a plain clamp
    # (and the Gaussian mass itself, which underflows) would give no gradient
    x = torch.tensor([20.0])
    mean = torch.tensor([0.0], requires_grad=True)
    scale = torch.tensor([0.2], requires_grad=True)
    bits = discretized_gaussian_bits(x, mean, scale, 1.0)
    assert abs(bits.item() + math.log2(LIKELIHOOD_FLOOR)) < 1e-4
    bits.sum().backward()
    assert mean.grad.item() < 0  # moving the mean up, towards 5, lowers the bits
    assert scale.grad.item() < 0  # widening the prior lowers the bits


def test_scale_is_bounded_at_the_coders_smallest_scale():
    step = torch.tensor([0.5])
    tiny = discretized_gaussian_likelihood(
        torch.tensor([0.5]), torch.zeros(1), torch.tensor([1e-9]), step
    )
    bounded = discretized_gaussian_likelihood(
        torch.tensor([0.5]), torch.zeros(1), MIN_SCALE_IN_STEPS * step, step
    )
    assert torch.allclose(tiny, bounded)
    assert MIN_SCALE_IN_STEPS == float(SCALE_TABLE[0])


def test_bits_agree_with_a_float64_reference_across_the_range():
    x = torch.tensor([0.0, 0.4, 1.0, 3.0, -2.5, 0.0])
    mean = torch.tensor([0.1, 0.0, -0.2, 0.5, 0.0, 0.0])
    scale = torch.tensor([0.3, 2.0, 0.5, 1.0, 0.7, 1e4])
    bits = discretized_gaussian_bits(x, mean, scale, 0.5)
    normal = torch.distributions.Normal(mean.double(), scale.double())
    mass = normal.cdf(x.double() + 0.25) - normal.cdf(x.double() - 0.25)
    expected = -torch.log2(mass.clamp_min(LIKELIHOOD_FLOOR))
    assert torch.allclose(bits.double(), expected, rtol=1e-4, atol=1e-4)
