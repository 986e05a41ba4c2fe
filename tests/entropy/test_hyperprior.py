import pytest
import torch

from csgaussian.entropy.anchors import colour_groups
from csgaussian.entropy.conditional import CodedGroup
from csgaussian.entropy.hashgrid import HashGridConfig, HashGridHyperprior
from csgaussian.entropy.hyperprior import (
    AttributeHyperprior,
    INRConfig,
    INRHyperprior,
    PositionalEmbedding,
)
from csgaussian.entropy.quantize import QuantizationConfig
from csgaussian.scene.scaffold import ScaffoldConfig

MODELS = [INRHyperprior, HashGridHyperprior]
GROUPS = colour_groups(ScaffoldConfig(), QuantizationConfig())
CHANNELS = {g.name: g.channels for g in GROUPS}


def field_values(pos: torch.Tensor, channels: int) -> torch.Tensor:
    """A smooth attribute field [N, C] of positions [N, 3] (amplitude ~ 6 quantization steps)."""
    k = torch.arange(1, channels + 1, dtype=pos.dtype)
    return 4.0 * torch.sin(2.0 * pos[:, :1] * k) + 3.0 * torch.cos(1.5 * pos[:, 1:2] + k)


@pytest.fixture
def single_thread():
    """Tiny tensors train faster on one thread, and do not stall when the cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def field(single_thread):
    torch.manual_seed(0)
    pos = torch.rand(512, 3) * 2 - 1
    return pos, {"feature": field_values(pos, 8)}


def fit(model: torch.nn.Module, pos: torch.Tensor, values: dict, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        out = model(pos, values, "noise")
        loss = torch.stack([o.bits.mean() for o in out.values()]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_positional_embedding_layout():
    emb = PositionalEmbedding(3)
    x = torch.tensor([[0.5, -1.0, 0.25]])
    y = emb(x)
    assert y.shape == (1, 3 + 18) == (1, emb.out_dim)
    assert torch.equal(y[:, :3], x)
    assert torch.allclose(
        y[0, 3:12], torch.sin(torch.pi * torch.tensor([0.5, 1, 2, -1, -2, -4, 0.25, 0.5, 1.0]))
    )


@pytest.mark.parametrize("cls", MODELS)
def test_output_shapes_positivity_and_gradients(cls):
    torch.manual_seed(0)
    model = cls(GROUPS)
    assert isinstance(model, AttributeHyperprior)
    pos = torch.rand(64, 3) * 2 - 1
    values = {g: torch.randn(64, c) for g, c in CHANNELS.items()}
    params = model.params(pos)
    for g, c in CHANNELS.items():
        assert params[g].mean.shape == (64, c) and params[g].scale.shape == (64, c)
        assert params[g].r.shape == (64, 1) and torch.all(params[g].scale > 0)
    out = model(pos, values, "round")
    for g, c in CHANNELS.items():
        assert out[g].x_hat.shape == out[g].bits.shape == (64, c)
        assert torch.all(torch.isfinite(out[g].bits)) and torch.all(out[g].bits >= 0)
        assert torch.allclose(
            torch.remainder(out[g].x_hat / out[g].step + 0.5, 1.0),
            torch.full((64, c), 0.5),
            atol=1e-3,
        )
    sum(o.bits.sum() for o in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name


@pytest.mark.parametrize("cls", MODELS)
def test_zeroing_unused_channels_keeps_every_used_distribution(cls):
    torch.manual_seed(0)
    model = cls(GROUPS)
    for head in model.heads.values():  # nonzero everywhere, whatever the initialisation
        torch.nn.init.normal_(head.weight)
        torch.nn.init.normal_(head.bias)
    pos = torch.rand(32, 3) * 2 - 1
    before = model.params(pos)
    in_use = torch.ones(CHANNELS["offsets"], dtype=torch.bool)
    in_use[6:9] = False  # offset slot 2: its x, y, z channels
    model.zero_unused_channels("offsets", in_use)
    after = model.params(pos)
    for g in CHANNELS:
        keep = in_use if g == "offsets" else slice(None)
        assert torch.equal(after[g].mean[:, keep], before[g].mean[:, keep]), g
        assert torch.equal(after[g].scale[:, keep], before[g].scale[:, keep]), g
        assert torch.equal(after[g].r, before[g].r), g
    assert torch.all(after["offsets"].mean[:, ~in_use] == 0)
    head = model.heads["offsets"]
    assert head.weight[6:9].abs().sum() == 0 and head.weight[36:39].abs().sum() == 0


def test_parameter_counts():
    inr = INRHyperprior(GROUPS)
    grid = HashGridHyperprior(GROUPS)
    embed = 3 + 6 * INRConfig().n_freqs
    w = INRConfig().mlp.width
    heads = sum(w * (2 * c + 1) + 2 * c + 1 for c in CHANNELS.values())
    assert inr.num_parameters() == (embed * w + w) + (w * w + w) + heads
    cfg = HashGridConfig()
    w = cfg.mlp.width
    heads = sum(w * (2 * c + 1) + 2 * c + 1 for c in CHANNELS.values())
    tables = sum(t.numel() for t in grid.encoder.tables)
    assert tables <= cfg.n_levels * 2**cfg.log2_table_size * cfg.n_features
    assert grid.num_parameters() == tables + (24 * w + w) + (w * w + w) + heads
    assert grid.num_parameters() > 5 * inr.num_parameters()


@pytest.mark.parametrize("cls", MODELS)
def test_training_lowers_bits_on_a_position_dependent_field(cls, field):
    pos, values = field
    model = cls([CodedGroup("feature", 8, 1.0)])

    def evaluate():
        with torch.no_grad():
            out = model(pos, values, "round")["feature"]
        return float(out.bits.mean()), float((out.params.mean - values["feature"]).pow(2).mean())

    bits0, err0 = evaluate()
    fit(model, pos, values, steps=200, lr=1e-2)
    bits1, err1 = evaluate()
    assert bits1 < 0.6 * bits0
    assert err1 < 0.25 * err0


def test_a_coded_group_decodes_what_training_rounds():
    """compress / decompress (the codec) give exactly the values forward's rounding (training)
    gives, and the payload's size is the estimate's."""
    torch.manual_seed(1)
    group = CodedGroup("scaling", 6, 0.03)
    model = INRHyperprior([group]).double()
    pos = torch.rand(32, 3, dtype=torch.float64) * 2 - 1
    x = torch.randn(32, 6, dtype=torch.float64) * 0.1
    with torch.no_grad():
        params = model.params(pos)["scaling"]
        rounded = group.forward(x, params, "round").x_hat
    coded = group.compress(x, params)
    assert torch.equal(coded.values, rounded.float())
    assert torch.equal(group.decompress(coded.payload, params), rounded.float())
    assert abs(len(coded.payload) - coded.estimated_bits / 8) <= 8
