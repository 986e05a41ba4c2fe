import pytest
import torch

from csgaussian.entropy.hashgrid import HashGridConfig, HashGridEncoding


def test_levels_dense_then_hashed_and_resolutions_grow():
    config = HashGridConfig(n_levels=4, log2_table_size=13, min_resolution=16, max_resolution=128)
    enc = HashGridEncoding(config)
    assert enc.resolutions == [16, 32, 64, 128]
    # level 0: 17^3 = 4913 corners fit the 8192-entry table, one entry each (dense)
    assert enc.table_sizes[0] == 17**3 < 2**13
    corners = torch.stack(torch.meshgrid(*[torch.arange(17)] * 3, indexing="ij"), -1)
    dense = enc._index(corners.reshape(-1, 3), enc.resolutions[0], enc.table_sizes[0])
    assert sorted(dense.tolist()) == list(range(17**3))
    # last level: 129^3 corners share the 8192 entries through the spatial hash
    assert enc.table_sizes[-1] == 2**13 < 129**3
    corner = torch.tensor([[100, 3, 77]])
    hashed = (100 * 1) ^ (3 * 2654435761) ^ (77 * 805459861)
    assert enc._index(corner, 128, 2**13).item() == hashed % 2**13


def test_undefined_levels_are_refused_before_building_tables():
    for bad in (
        HashGridConfig(min_resolution=0),  # was a ZeroDivisionError
        HashGridConfig(min_resolution=64, max_resolution=16),
        HashGridConfig(n_levels=0),
    ):
        with pytest.raises(ValueError, match="hash grid"):
            HashGridEncoding(bad)


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
