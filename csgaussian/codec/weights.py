"""Self-describing serialisation of network weights (renderer and hyperprior MLPs; docs/format.md
§5.5).

Layout (little-endian)::

    count u16
    per tensor: name_len u8, name utf-8, dtype u8 (0 float32, 1 float16, 2 int8, 3 int10),
                rank u8, dims u32[rank], data

``data`` is ``prod(dims)`` values of the dtype for the float types. ``int8`` and ``int10`` are
coded formats (ours, the usual post-training weight quantization): each row (first dimension; the
whole tensor for ranks 0 and 1) has a float16 step ``absmax / L`` (L = 127 or 511); the symbols
``round(w / step)`` in ``[-L, L]`` are entropy-coded with constriction under one zero-mean
Gaussian per tensor (a row whose step is 0 is all zeros and has no symbols), so ``data`` is
``steps f16[rows], symbol scale f32, payload_len u32, payload``. Trained MLP weights cost about
8 (int8) or 10 (int10) bits each instead of 16 (measured:
benchmarks/results/notes/measurements.md#weights).

Every length is checked against the remaining bytes before anything is allocated; coded tensors,
whose size the bytes do not bound, are limited to ``MAX_CODED_VALUES`` values per blob. Stored
values are finite: both sides refuse infinities and NaNs.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from csgaussian.codec.container import StreamError
from csgaussian.entropy.coder import decode_gaussian, encode_gaussian

WeightDType = Literal["float32", "float16", "int8", "int10"]

MAX_TENSORS = 4096
MAX_RANK = 8
MAX_NAME_LEN = 255
MAX_CODED_VALUES = 1 << 22
"""Values of all coded (int8 / int10) tensors of one blob together (renderer MLPs hold ~14k)."""
CODED_LEVELS = {"int8": 127, "int10": 511}
"""Symbols of a coded format lie in [-levels, levels]."""
_DTYPES: dict[str, tuple[int, np.dtype]] = {
    "float32": (0, np.dtype("<f4")),
    "float16": (1, np.dtype("<f2")),
}
_BY_CODE = {code: dt for code, dt in _DTYPES.values()}
_CODED_CODES = {"int8": 2, "int10": 3}
_LEVELS_BY_CODE = {_CODED_CODES[name]: levels for name, levels in CODED_LEVELS.items()}
_STEP_DTYPE = np.dtype("<f2")
_CODED_HEADER = struct.Struct("<fI")  # symbol scale, payload length


def _rows(shape: tuple[int, ...]) -> int:
    """Number of per-row steps of a coded tensor of ``shape``."""
    return shape[0] if len(shape) >= 2 else 1


def _pack_coded(t: Tensor, levels: int) -> bytes:
    """The coded ``data`` of one tensor with symbols in ``[-levels, levels]`` (module docstring)."""
    w = t.detach().cpu().to(torch.float64).numpy()
    n_rows = _rows(w.shape)
    rows = w.reshape(n_rows, w.size // n_rows if n_rows else 0)
    exact = np.abs(rows).max(axis=1, initial=0.0) / levels
    steps = exact.astype(_STEP_DTYPE)
    rounded_down = steps.astype(np.float64) < exact  # would clip the row's largest weight
    steps[rounded_down] = np.nextafter(steps[rounded_down], _STEP_DTYPE.type(np.inf))
    step64 = steps.astype(np.float64)[:, None]
    coded = steps != 0  # an all-zero row (or one below float16's range) is its step alone
    quotient = rows[coded] / step64[coded]
    symbols = np.clip(np.round(quotient), -levels, levels).astype(np.int32).ravel()
    scale = float(np.sqrt(np.mean(symbols.astype(np.float64) ** 2))) if symbols.size else 1.0
    scale = float(np.float32(max(scale, 1.0)))  # the value the decoder reads back
    payload = (
        encode_gaussian(symbols, np.zeros(symbols.size), np.full(symbols.size, scale))
        if symbols.size
        else b""
    )
    return steps.tobytes() + _CODED_HEADER.pack(scale, len(payload)) + payload


def _unpack_coded(
    data: bytes, pos: int, name: str, shape: tuple[int, ...], levels: int
) -> tuple[Tensor, int]:
    """Decode the coded ``data`` of tensor ``name`` at ``pos``; returns it and the new position."""
    n_rows = _rows(shape)
    count = int(np.prod(shape, dtype=np.int64))
    raw = _take(data, pos, n_rows * _STEP_DTYPE.itemsize, f"tensor '{name}' steps")
    steps = np.frombuffer(raw, dtype=_STEP_DTYPE).astype(np.float32)
    pos += len(raw)
    scale, n_payload = _CODED_HEADER.unpack(_take(data, pos, _CODED_HEADER.size, f"'{name}'"))
    pos += _CODED_HEADER.size
    payload = _take(data, pos, n_payload, f"tensor '{name}' payload")
    pos += n_payload
    if not np.all(np.isfinite(steps)) or not (math.isfinite(scale) and scale >= 1.0):
        raise StreamError(f"bad weights: tensor '{name}' has invalid steps or symbol scale")
    values = np.zeros((n_rows, count // n_rows if n_rows else 0), dtype=np.float32)
    coded = steps != 0
    n_coded = int(coded.sum()) * values.shape[1]
    if n_coded == 0:
        return torch.from_numpy(values.reshape(shape)), pos
    try:
        symbols = decode_gaussian(payload, np.zeros(n_coded), np.full(n_coded, scale))
    except ValueError as err:
        raise StreamError(f"bad weights: tensor '{name}' ({err})") from None
    if np.any(np.abs(symbols) > levels):
        raise StreamError(f"bad weights: tensor '{name}' has symbols beyond +-{levels}")
    values[coded] = symbols.astype(np.float32).reshape(-1, values.shape[1]) * steps[coded, None]
    return torch.from_numpy(values.reshape(shape)), pos


def pack_tensors(named: dict[str, Tensor], dtype: WeightDType = "float32") -> bytes:
    """Serialise floating-point tensors (e.g. a ``state_dict``) in ``dtype``.

    Args:
        named: name -> tensor (any float dtype, any device); at most MAX_TENSORS entries.
        dtype: storage precision; float16 halves the size (values rounded to nearest); int8 and
            int10 quantize each row to 255 / 1023 levels and entropy-code them (lossy, about 8 /
            10 bits a value).

    Returns:
        The blob; ``unpack_tensors`` restores names, shapes and the stored values.
    """
    if dtype not in (*_DTYPES, *CODED_LEVELS):
        raise ValueError(
            f"unknown weight dtype '{dtype}' (expected one of {', '.join(_DTYPES)}, "
            f"{', '.join(CODED_LEVELS)})"
        )
    if len(named) > MAX_TENSORS:
        raise ValueError(f"{len(named)} tensors, at most {MAX_TENSORS} allowed")
    if dtype in CODED_LEVELS and sum(t.numel() for t in named.values()) > MAX_CODED_VALUES:
        raise ValueError(f"{dtype} blobs hold at most {MAX_CODED_VALUES} values")
    code, np_dtype = _DTYPES.get(dtype, (_CODED_CODES.get(dtype), None))
    out = bytearray(struct.pack("<H", len(named)))
    for name, t in named.items():
        raw = name.encode("utf-8")
        if not 0 < len(raw) <= MAX_NAME_LEN:
            raise ValueError(f"tensor name {name!r} must be 1..{MAX_NAME_LEN} utf-8 bytes")
        if t.ndim > MAX_RANK:
            raise ValueError(f"tensor '{name}' has rank {t.ndim}, at most {MAX_RANK} allowed")
        if not t.is_floating_point():
            raise ValueError(f"tensor '{name}' is {t.dtype}, only float tensors are packed")
        out += struct.pack("<B", len(raw)) + raw + struct.pack("<BB", code, t.ndim)
        out += struct.pack(f"<{t.ndim}I", *t.shape)
        if not torch.isfinite(t).all():
            raise ValueError(f"tensor '{name}' holds non-finite values")
        if np_dtype is None:
            out += _pack_coded(t, CODED_LEVELS[dtype])
        else:
            stored = t.detach().cpu().to(torch.float64).numpy().astype(np_dtype)
            if not np.isfinite(stored).all():
                raise ValueError(f"tensor '{name}' overflows {dtype}")
            out += stored.tobytes()
    return bytes(out)


def _take(data: bytes, pos: int, n: int, what: str) -> bytes:
    if n > len(data) - pos:
        raise StreamError(f"truncated weights: {what} needs {n} bytes, {len(data) - pos} remain")
    return data[pos : pos + n]


def unpack_tensors(
    data: bytes, shapes: Mapping[str, torch.Size] | None = None
) -> dict[str, Tensor]:
    """Inverse of ``pack_tensors``; returns float32 tensors holding exactly the stored values.

    Args:
        data: the blob.
        shapes: if given, the names and shapes the blob must hold (e.g. a template's state
            dict): anything else is refused before its values are read, and so is a blob that
            lacks one of them.

    Raises:
        StreamError: truncated or malformed blob, bad names / ranks / dtypes / shapes, trailing
            bytes.
    """
    data = bytes(data)
    (count,) = struct.unpack("<H", _take(data, 0, 2, "tensor count"))
    if count > MAX_TENSORS:
        raise StreamError(f"bad weights: {count} tensors exceeds the limit of {MAX_TENSORS}")
    pos = 2
    coded_values = 0
    out: dict[str, Tensor] = {}
    for i in range(count):
        n = _take(data, pos, 1, f"tensor {i} name length")[0]
        if n == 0:
            raise StreamError(f"bad weights: tensor {i} has an empty name")
        try:
            name = _take(data, pos + 1, n, f"tensor {i} name").decode("utf-8")
        except UnicodeDecodeError:
            raise StreamError(f"bad weights: tensor {i} name is not utf-8") from None
        if name in out:
            raise StreamError(f"bad weights: duplicate tensor name '{name}'")
        pos += 1 + n
        code, rank = _take(data, pos, 2, f"tensor '{name}' dtype and rank")
        if code not in _BY_CODE and code not in _LEVELS_BY_CODE:
            raise StreamError(f"bad weights: tensor '{name}' has unknown dtype code {code}")
        if rank > MAX_RANK:
            raise StreamError(f"bad weights: tensor '{name}' has rank {rank} > {MAX_RANK}")
        pos += 2
        shape = struct.unpack(f"<{rank}I", _take(data, pos, 4 * rank, f"tensor '{name}' shape"))
        pos += 4 * rank
        if shapes is not None and tuple(shapes.get(name, (-1,))) != shape:
            raise StreamError(f"bad weights: unexpected tensor '{name}' of shape {list(shape)}")
        if code in _LEVELS_BY_CODE:
            coded_values += int(np.prod(shape, dtype=np.float64))
            if coded_values > MAX_CODED_VALUES:
                raise StreamError(f"bad weights: more than {MAX_CODED_VALUES} coded values")
            out[name], pos = _unpack_coded(data, pos, name, shape, _LEVELS_BY_CODE[code])
            continue
        np_dtype = _BY_CODE[code]
        nbytes = int(np.prod(shape, dtype=np.float64)) * np_dtype.itemsize
        if nbytes > len(data) - pos:
            raise StreamError(
                f"truncated weights: tensor '{name}' needs {nbytes} bytes, {len(data) - pos} remain"
            )
        arr = np.frombuffer(data, dtype=np_dtype, count=nbytes // np_dtype.itemsize, offset=pos)
        if not np.isfinite(arr).all():
            raise StreamError(f"bad weights: tensor '{name}' holds non-finite values")
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(shape))
        pos += nbytes
    if pos != len(data):
        raise StreamError(f"bad weights: {len(data) - pos} trailing bytes")
    missing = [name for name in shapes or {} if name not in out]
    if missing:
        raise StreamError(f"bad weights: tensor(s) {', '.join(missing)} missing")
    return out
