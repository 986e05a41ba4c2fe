"""A golden stream: its bytes and its decode are pinned, so any format change is deliberate.

``golden/tiny.csg`` holds both layers of a tiny scene built without training from seeded
generators (``build_golden``). The encoder must reproduce its bytes, and decoding it must give
the pinned scene. A deliberate format change bumps ``FORMAT_VERSION`` or
``SEMANTIC_LAYER_VERSION`` and regenerates the file and both hashes::

    python tests/codec/test_golden.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csgaussian.codec.container import read_container, write_container
from csgaussian.codec.semantic_layer import encode_semantic_field, semantic_sections
from csgaussian.codec.stream import decode_scene, encode_scene
from csgaussian.entropy.anchors import AnchorEntropyModel, RateConfig
from csgaussian.entropy.hyperprior import INRConfig, MLPConfig
from csgaussian.scene.decoded import Scene
from csgaussian.scene.scaffold import AnchorGrid, ScaffoldConfig, ScaffoldModel
from csgaussian.semantics.codebook import Codebook
from csgaussian.semantics.field import (
    SemanticConfig,
    SemanticEntropyModel,
    SemanticField,
    SemanticRateConfig,
)
from csgaussian.semantics.layer import SemanticLayer

GOLDEN = Path(__file__).parent / "golden" / "tiny.csg"
GOLDEN_SHA256 = "7faf93bfbf8d45117d94133545e324b7e049c4bc73a11b905643ab5e13b80c06"
"""sha256 of the golden file's bytes."""
DECODED_SHA256 = "ba604ff68068d8c69be38f111d146abbacf5be4e1fac20f57bafc8c41c2d0c33"
"""sha256 of its decoded scene (``scene_digest``)."""
REGENERATE = "python tests/codec/test_golden.py"


def _fill(module: torch.nn.Module, generator: torch.Generator, scale: float) -> None:
    """Every parameter of ``module`` drawn from ``generator`` (not torch's global RNG)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale)


def golden_parts() -> tuple[ScaffoldModel, AnchorEntropyModel, dict]:
    """The fixed tiny model: a sphere shell of anchors on a 16^3 lattice, seeded attributes,
    networks and entropy models, a hand-made codebook and language table."""
    generator = torch.Generator().manual_seed(2024)
    axis = torch.arange(16)
    cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    radius2 = ((2 * cells - 15) ** 2).sum(dim=1)  # (2 r)^2 around the lattice centre
    cells = cells[(radius2 >= 10**2) & (radius2 < 12**2)]
    grid = AnchorGrid(0.05, (-8, -8, -8), 4)
    model = ScaffoldModel(cells, grid, ScaffoldConfig(feature_dim=8, n_offsets=4, hidden_dim=8))
    _fill(model, generator, 0.5)
    with torch.no_grad():
        model.log_scaling.mul_(0.1).add_(-3.0)
        model.mask_logits.mul_(6.0)  # some offsets masked
        model.mask_logits[:, 3] = -20.0  # slot 3 unused: dropped by the encoder
    rate = RateConfig(inr=INRConfig(n_freqs=2, mlp=MLPConfig(width=8)))
    entropy = AnchorEntropyModel(model, rate)
    _fill(entropy, generator, 0.3)
    semantic = SemanticConfig(latent_dim=3, feature_dim=3, hidden_dim=6, latent_init=1.0)
    semantic_rate = SemanticRateConfig(
        conditional=True, inr=INRConfig(n_freqs=1, mlp=MLPConfig(width=6))
    )
    k1, k2, entries, dim = 3, 2, 4, 5
    valid = torch.rand(k1, k2, generator=generator) < 0.7
    valid[:, 0] = True
    extras = {
        "semantic": semantic,
        "semantic_rate": semantic_rate,
        "coarse": torch.randn(k1, semantic.feature_dim + 3, generator=generator),
        "fine": torch.randn(k1, k2, semantic.feature_dim, generator=generator) * valid[..., None],
        "valid": valid,
        "language": F.normalize(torch.randn(entries, dim, generator=generator), dim=1),
        "leaf_entry": torch.randint(-1, entries, (k1 * k2,), generator=generator),
        "generator": generator,
    }
    return model, entropy, extras


def build_golden() -> bytes:
    """The golden stream, both layers, encoded from ``golden_parts``."""
    model, entropy, extras = golden_parts()
    encoded = encode_scene(model, entropy)
    base = encoded.model
    field = SemanticField(base.n_anchors, extras["semantic"], seed=7)
    field_entropy = SemanticEntropyModel(
        extras["semantic"], extras["semantic_rate"], base.config.feature_dim
    )
    _fill(field.mlp, extras["generator"], 0.5)
    _fill(field_entropy, extras["generator"], 0.3)
    payloads, _, decoded = encode_semantic_field(base, field, field_entropy)
    codebook = Codebook(extras["coarse"], extras["fine"], extras["valid"], position_weight=0.25)
    layer = SemanticLayer(decoded, codebook, extras["language"], extras["leaf_entry"], "hash:v1:5")
    sections = semantic_sections(payloads, layer, extras["semantic_rate"])
    layers = {name: "semantic" for name, _ in sections}
    return write_container([*read_container(encoded.data).items(), *sections], layers)


def scene_digest(scene: Scene) -> str:
    """sha256 over every decoded tensor (name, dtype, shape, bytes) and the semantic scalars."""
    digest = hashlib.sha256()

    def add(name: str, value: torch.Tensor) -> None:
        array = value.detach().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())

    for name, value in sorted(scene.model.state_dict().items()):
        add(f"model.{name}", value)
    layer = scene.semantics
    if layer is not None:
        for name, value in sorted(layer.field.state_dict().items()):
            add(f"field.{name}", value)
        add("coarse", layer.codebook.coarse)
        add("fine", layer.codebook.fine)
        add("fine_valid", layer.codebook.fine_valid)
        add("language", layer.language)
        add("leaf_entry", layer.leaf_entry)
        digest.update(f"{layer.codebook.position_weight!r}:{layer.text_space}".encode())
    digest.update(repr(scene.notes).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def golden() -> bytes:
    return GOLDEN.read_bytes()


def test_the_golden_file_is_the_pinned_one(golden):
    assert hashlib.sha256(golden).hexdigest() == GOLDEN_SHA256, (
        f"{GOLDEN.name} changed; a deliberate format change regenerates it ({REGENERATE})"
    )


def test_the_encoder_reproduces_the_golden_bytes(golden):
    built = build_golden()
    if built != golden:
        ours, theirs = read_container(built), read_container(golden)
        changed = [n for n in {**ours, **theirs} if ours.get(n) != theirs.get(n)]
        pytest.fail(
            f"the encoder's output differs from {GOLDEN.name} in section(s) "
            f"{', '.join(changed) or '(header only)'} ({len(built)} vs {len(golden)} bytes): "
            f"the format changed; if deliberate, bump the format version and regenerate "
            f"({REGENERATE})"
        )


def test_the_golden_stream_decodes_to_the_pinned_scene(golden):
    scene = decode_scene(golden)
    assert scene.semantics is not None and scene.notes == []
    assert scene_digest(scene) == DECODED_SHA256, (
        f"decoding {GOLDEN.name} gives another scene: the decoder changed ({REGENERATE})"
    )
    base_only = decode_scene(golden, base_only=True)
    assert base_only.semantics is None
    for name, value in base_only.model.state_dict().items():
        assert torch.equal(value, scene.model.state_dict()[name]), name


def test_the_decoded_scene_is_the_encoder_side_scene():
    model, entropy, _ = golden_parts()
    encoded = encode_scene(model, entropy)
    decoded = decode_scene(encoded.data).model
    for name, value in encoded.model.state_dict().items():
        assert torch.equal(decoded.state_dict()[name], value), name
    used = (decoded.offset_mask(use_mask=True) > 0.5).any(dim=0)
    assert used[:3].all() and not used[3]  # the unused slot was dropped, the others kept


@pytest.mark.parametrize(("encode_threads", "decode_threads"), [(1, 2), (2, 1)])
def test_thread_counts_do_not_change_a_bit(golden, encode_threads, decode_threads):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(encode_threads)
        built = build_golden()
        torch.set_num_threads(decode_threads)
        scene = decode_scene(built)
    finally:
        torch.set_num_threads(before)
    assert built == golden
    assert scene_digest(scene) == scene_digest(decode_scene(golden))


def _regenerate() -> None:
    torch.set_num_threads(1)
    data = build_golden()
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_bytes(data)
    print(f"wrote {GOLDEN} ({len(data)} bytes)")
    print(f'GOLDEN_SHA256 = "{hashlib.sha256(data).hexdigest()}"')
    print(f'DECODED_SHA256 = "{scene_digest(decode_scene(data))}"')
    sections = read_container(data)
    print({name: len(payload) for name, payload in sections.items()})
    print("anchors", decode_scene(data).model.n_anchors, "numpy", np.__version__)


if __name__ == "__main__":
    _regenerate()
    sys.exit(0)
