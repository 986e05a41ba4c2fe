"""Entropy coding of quantized attributes with per-symbol Gaussians (docs/format.md §5).

Inputs are integer symbols ``round(value / step)`` and the hyperprior's mean and scale converted
to symbol units (``mean / step``, ``scale / step``).

Cross-machine determinism (docs/method.md §7). ``snap_distribution_params`` maps the means
to the grid ``1 / MEAN_GRID`` and the scales to the nearest entry of a fixed table
``0.125 * 2^(i / 4)``, ``i = 0 .. 60`` (0.125 .. 4096 symbols), built from exact float products and
searched with exact midpoints; encoder and decoder call it, so they hand identical parameters to
constriction as long as their unsnapped inputs round to the same grid cell (compute the hyperprior
in float64 to make a disagreement improbable).

Range and escapes. A symbol is coded as ``d = s - c`` with ``c = round(mean)``, under
constriction's ``QuantizedGaussian(mean - c, scale)`` restricted to ``[-W - 1, W + 1]`` where
``W = ceil(TAIL_SIGMAS * scale) + 1`` depends on the scale entry. ``|d| <= W`` is coded directly;
otherwise the end symbol ``±(W + 1)`` is an escape and ``|d| - W - 1`` follows, Elias-gamma coded
(of value + 1) in a raw bit tail. Symbols are coded grouped by scale entry (one vectorised call
per entry), in input order within a group.

Payload: ``n_words u32, ANS words u32[n_words], Elias-gamma tail bytes``.
"""

from __future__ import annotations

import math
import struct

import constriction
import numpy as np
import torch

from csgaussian.types import StreamError

MEAN_GRID = 64
"""Means are snapped to multiples of 1 / MEAN_GRID symbol."""
TAIL_SIGMAS = 6.0
"""Half-width of the directly coded range, in scales; beyond it symbols escape."""
MAX_ABS_MEAN = float(2**40)
"""Means (symbol units) beyond this are rejected: the escape tail stays below 2^42."""
_QUARTER_POWERS = (1.0, 1.189207115002721, 1.4142135623730951, 1.681792830507429)  # 2^(k/4)
SCALE_TABLE = np.array([2.0 ** (i // 4 - 3) * _QUARTER_POWERS[i % 4] for i in range(61)])
"""Scales (symbol units) the coder uses: 0.125 * 2^(i/4); products by powers of two are exact."""
_SCALE_MIDPOINTS = np.sqrt(SCALE_TABLE[:-1] * SCALE_TABLE[1:])  # IEEE sqrt: exactly rounded
_WINDOWS = np.ceil(TAIL_SIGMAS * SCALE_TABLE).astype(np.int64) + 1  # W per scale entry
_PRECISION_BITS = 24  # constriction's default AnsCoder model precision (smallest p = 2^-24)
_N_WORDS = struct.Struct("<I")


def snap_distribution_params(
    means: np.ndarray, scales: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Snap means to ``1 / MEAN_GRID`` and scales to ``SCALE_TABLE`` (both sides call this).

    Args:
        means: [M] float, symbol units, finite, ``|mean| <= MAX_ABS_MEAN``.
        scales: [M] float, symbol units, positive (clamped into the table's range).

    Returns:
        Snapped means [M] float64 and scale-table indices [M] int64.
    """
    means = np.asarray(means, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    if means.shape != scales.shape or means.ndim != 1:
        raise ValueError(f"means {means.shape} and scales {scales.shape} must be equal 1-D shapes")
    if not (np.all(np.isfinite(means)) and np.all(np.abs(means) <= MAX_ABS_MEAN)):
        raise ValueError(f"means must be finite and within +-{MAX_ABS_MEAN:g} symbols")
    if not np.all(scales > 0) or np.any(np.isnan(scales)):
        raise ValueError("scales must be positive")
    return np.round(means * MEAN_GRID) / MEAN_GRID, np.searchsorted(_SCALE_MIDPOINTS, scales)


def _prepare(
    symbols: np.ndarray | None, means: np.ndarray, scales: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres c [M] int64, residual means [M] float64, scale indices [M]."""
    snapped, idx = snap_distribution_params(means, scales)
    centre = np.floor(snapped + 0.5)
    if symbols is not None and np.asarray(symbols).shape != snapped.shape:
        raise ValueError(f"symbols {np.asarray(symbols).shape} and means {snapped.shape} differ")
    return centre.astype(np.int64), snapped - centre, idx


def _family(i: int) -> constriction.stream.model.QuantizedGaussian:
    w = int(_WINDOWS[i])
    return constriction.stream.model.QuantizedGaussian(-w - 1, w + 1)


def _gamma_encode(values: np.ndarray) -> bytes:
    """Elias-gamma code of positive integers, MSB first, zero padded to bytes."""
    bits = "".join("0" * (int(v).bit_length() - 1) + format(int(v), "b") for v in values)
    if not bits:
        return b""
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _gamma_decode(data: bytes, count: int) -> np.ndarray:
    bits = "".join(format(b, "08b") for b in data)
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for j in range(count):
        one = bits.find("1", pos)
        n = one - pos
        if one < 0 or n > 42 or one + n + 1 > len(bits):
            raise StreamError("corrupted attributes: escape tail is truncated or malformed")
        out[j] = int(bits[one : one + n + 1], 2)
        pos = one + n + 1
    if len(bits) - pos >= 8 or "1" in bits[pos:]:
        raise StreamError("corrupted attributes: trailing bits after the escape tail")
    return out


def encode_gaussian(symbols: np.ndarray, means: np.ndarray, scales: np.ndarray) -> bytes:
    """Code int symbols [M] under Gaussians N(means, scales) [M] given in symbol units."""
    symbols = np.asarray(symbols)
    if not np.issubdtype(symbols.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got {symbols.dtype}")
    centre, mu, idx = _prepare(symbols, means, scales)
    d = symbols.astype(np.int64) - centre
    w = _WINDOWS[idx]
    esc = np.abs(d) > w
    coded = np.where(esc, np.sign(d) * (w + 1), d).astype(np.int32)
    coder = constriction.stream.stack.AnsCoder()
    for i in np.unique(idx)[::-1]:
        sel = np.flatnonzero(idx == i)
        coder.encode_reverse(
            coded[sel], _family(int(i)), mu[sel], np.full(len(sel), SCALE_TABLE[i])
        )
    words = coder.get_compressed().astype("<u4")
    order = _escape_order(idx)
    tail = np.abs(d[order][esc[order]]) - w[order][esc[order]]  # |d| - W >= 1, gamma needs > 0
    return _N_WORDS.pack(len(words)) + words.tobytes() + _gamma_encode(tail)


def _escape_order(idx: np.ndarray) -> np.ndarray:
    """Decoding order of the symbols: by scale entry, then input order."""
    return np.argsort(idx, kind="stable")


def decode_gaussian(data: bytes, means: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_gaussian`` given the same means and scales; returns int32 [M].

    Raises:
        StreamError: truncated or corrupted payload.
    """
    data = bytes(data)
    centre, mu, idx = _prepare(None, means, scales)
    if len(data) < _N_WORDS.size:
        raise StreamError("truncated attributes: missing word count")
    (n_words,) = _N_WORDS.unpack_from(data)
    if 4 * n_words > len(data) - _N_WORDS.size:
        raise StreamError(
            f"truncated attributes: {4 * n_words} bytes of code needed, "
            f"{len(data) - _N_WORDS.size} remain"
        )
    end = _N_WORDS.size + 4 * n_words
    words = np.frombuffer(data, dtype="<u4", count=n_words, offset=_N_WORDS.size)
    try:
        coder = constriction.stream.stack.AnsCoder(words.astype(np.uint32))
    except ValueError as e:
        raise StreamError(f"corrupted attributes: {e}") from None
    coded = np.zeros(len(idx), dtype=np.int64)
    for i in np.unique(idx):
        sel = np.flatnonzero(idx == i)
        coded[sel] = coder.decode(_family(int(i)), mu[sel], np.full(len(sel), SCALE_TABLE[i]))
    if not coder.is_empty():
        raise StreamError("corrupted attributes: code words left after decoding")
    w = _WINDOWS[idx]
    esc = np.abs(coded) == w + 1
    order = _escape_order(idx)
    esc_ordered = order[esc[order]]
    tail = _gamma_decode(data[end:], len(esc_ordered))
    d = coded.copy()
    d[esc_ordered] = np.sign(coded[esc_ordered]) * (w[esc_ordered] + tail)
    out = centre + d
    info = np.iinfo(np.int32)
    if np.any((out < info.min) | (out > info.max)):
        raise StreamError("corrupted attributes: decoded symbol outside int32")
    return out.astype(np.int32)


def estimate_bits(symbols: np.ndarray, means: np.ndarray, scales: np.ndarray) -> float:
    """Bits ``encode_gaussian`` should spend: -log2 of the snapped, range-restricted model's
    probabilities (floored at 2^-24 like constriction) plus the exact escape tail length."""
    symbols = np.asarray(symbols)
    centre, mu, idx = _prepare(symbols, means, scales)
    d = symbols.astype(np.int64) - centre
    w = _WINDOWS[idx]
    esc = np.abs(d) > w
    coded = np.where(esc, np.sign(d) * (w + 1), d)
    t = torch.from_numpy
    s = t(SCALE_TABLE[idx])
    m = t(mu)
    ndtr = torch.special.ndtr
    lo_edge = ndtr((t(-(w + 1.5)) - m) / s)
    mass = ndtr((t(w + 1.5) - m) / s) - lo_edge
    # symmetric form: mass of the bin nearest the mean side, stable in the tails
    a = t(coded - 0.5) - m
    b = t(coded + 0.5) - m
    upper = torch.where(a > 0, ndtr(-a / s) - ndtr(-b / s), ndtr(b / s) - ndtr(a / s))
    p = (upper / mass).clamp_min(2.0**-_PRECISION_BITS)
    tail = np.abs(d[esc]) - w[esc]
    tail_bits = float(np.sum(2 * np.floor(np.log2(tail)) + 1)) if len(tail) else 0.0
    pad = math.ceil(tail_bits / 8) * 8 - tail_bits
    return float(-torch.log2(p).sum()) + tail_bits + pad + 8 * _N_WORDS.size
