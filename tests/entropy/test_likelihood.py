import torch

from csgaussian.entropy.likelihood import (
    LIKELIHOOD_FLOOR,
    bits_from_likelihood,
    discretized_gaussian_likelihood,
)


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
    bits = bits_from_likelihood(p)
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
    bits = bits_from_likelihood(discretized_gaussian_likelihood(x, mean, scale, 1.0)).sum()
    bits.backward()
    assert torch.all(mean.grad != 0) and torch.all(scale.grad != 0)
    # moving the mean towards the values lowers the bits
    assert mean.grad[0] > 0 and mean.grad[1] < 0
