import torch

from csgaussian.entropy.hashgrid import HashGridConfig, HashGridEncoding


def test_levels_dense_then_hashed_and_resolutions_grow():
    enc = HashGridEncoding(HashGridConfig(n_levels=4, log2_table_size=12, max_resolution=128))
    assert enc.resolutions == sorted(enc.resolutions)
    assert enc.resolutions[0] == 16 and enc.resolutions[-1] == 128
    assert enc.table_sizes[0] == 17**3 > 2**12 or enc.table_sizes[0] == 2**12
    assert all(n <= 2**12 for n in enc.table_sizes)


def test_encoding_is_continuous_and_interpolates_corners():
    torch.manual_seed(0)
    enc = HashGridEncoding(HashGridConfig(n_levels=3, init_scale=1.0))
    x = torch.rand(200, 3) * 2 - 1
    y = enc(x)
    assert y.shape == (200, enc.out_dim) == (200, 6)
    y_near = enc(x + 1e-6)
    assert (y - y_near).abs().max() < 1e-2
    # at a grid vertex the encoding equals the sign of that vertex's entry (level 0, dense):
    # the tables are binarized as in HAC
    res = enc.resolutions[0]
    vertex = torch.tensor([[3, 5, 7]])
    pos = vertex / res * 2 - 1
    idx = (3 * (res + 1) + 5) * (res + 1) + 7
    expected = torch.where(enc.tables[0][idx] >= 0, 1.0, -1.0)
    assert torch.allclose(enc(pos.float())[0, :2], expected, atol=1e-5)


def test_gradients_reach_only_touched_entries():
    enc = HashGridEncoding(HashGridConfig(n_levels=2))
    enc(torch.full((1, 3), 0.013)).sum().backward()
    g = enc.tables[0].grad
    assert int((g.abs().sum(dim=1) > 0).sum()) == 8
