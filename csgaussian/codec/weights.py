"""Self-describing serialisation of network weights (renderer and hyperprior MLPs, METHOD §3).

Layout (little-endian)::

    count u16
    per tensor: name_len u8, name utf-8, dtype u8 (0 float32, 1 float16), rank u8,
                dims u32[rank], data (prod(dims) values of dtype)

Every length is checked against the remaining bytes before anything is allocated.
"""

from __future__ import annotations

import struct
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from csgaussian.codec.container import StreamError

WeightDType = Literal["float32", "float16"]

MAX_TENSORS = 4096
MAX_RANK = 8
MAX_NAME_LEN = 255
_DTYPES: dict[str, tuple[int, np.dtype]] = {
    "float32": (0, np.dtype("<f4")),
    "float16": (1, np.dtype("<f2")),
}
_BY_CODE = {code: dt for code, dt in _DTYPES.values()}


def pack_tensors(named: dict[str, Tensor], dtype: WeightDType = "float32") -> bytes:
    """Serialise floating-point tensors (e.g. a ``state_dict``) in ``dtype``.

    Args:
        named: name -> tensor (any float dtype, any device); at most MAX_TENSORS entries.
        dtype: storage precision; float16 halves the size (values rounded to nearest).

    Returns:
        The blob; ``unpack_tensors`` restores names, shapes and the stored values.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"unknown weight dtype '{dtype}' (expected float32 or float16)")
    if len(named) > MAX_TENSORS:
        raise ValueError(f"{len(named)} tensors, at most {MAX_TENSORS} allowed")
    code, np_dtype = _DTYPES[dtype]
    out = bytearray(struct.pack("<H", len(named)))
    for name, t in named.items():
        raw = name.encode("utf-8")
        if not 0 < len(raw) <= MAX_NAME_LEN:
            raise ValueError(f"tensor name {name!r} must be 1..{MAX_NAME_LEN} utf-8 bytes")
        if t.ndim > MAX_RANK:
            raise ValueError(f"tensor '{name}' has rank {t.ndim}, at most {MAX_RANK} allowed")
        if not t.is_floating_point():
            raise ValueError(f"tensor '{name}' is {t.dtype}, only float tensors are packed")
        arr = t.detach().cpu().to(torch.float64).numpy().astype(np_dtype)
        out += struct.pack("<B", len(raw)) + raw + struct.pack("<BB", code, t.ndim)
        out += struct.pack(f"<{t.ndim}I", *t.shape) + arr.tobytes()
    return bytes(out)


def _take(data: bytes, pos: int, n: int, what: str) -> bytes:
    if n > len(data) - pos:
        raise StreamError(f"truncated weights: {what} needs {n} bytes, {len(data) - pos} remain")
    return data[pos : pos + n]


def unpack_tensors(data: bytes) -> dict[str, Tensor]:
    """Inverse of ``pack_tensors``; returns float32 tensors holding exactly the stored values.

    Raises:
        StreamError: truncated or malformed blob, bad names / ranks / dtypes, trailing bytes.
    """
    data = bytes(data)
    (count,) = struct.unpack("<H", _take(data, 0, 2, "tensor count"))
    if count > MAX_TENSORS:
        raise StreamError(f"bad weights: {count} tensors exceeds the limit of {MAX_TENSORS}")
    pos = 2
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
        if code not in _BY_CODE:
            raise StreamError(f"bad weights: tensor '{name}' has unknown dtype code {code}")
        if rank > MAX_RANK:
            raise StreamError(f"bad weights: tensor '{name}' has rank {rank} > {MAX_RANK}")
        pos += 2
        shape = struct.unpack(f"<{rank}I", _take(data, pos, 4 * rank, f"tensor '{name}' shape"))
        pos += 4 * rank
        np_dtype = _BY_CODE[code]
        nbytes = int(np.prod(shape, dtype=np.float64)) * np_dtype.itemsize
        if nbytes > len(data) - pos:
            raise StreamError(
                f"truncated weights: tensor '{name}' needs {nbytes} bytes, {len(data) - pos} remain"
            )
        arr = np.frombuffer(data, dtype=np_dtype, count=nbytes // np_dtype.itemsize, offset=pos)
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(shape))
        pos += nbytes
    if pos != len(data):
        raise StreamError(f"bad weights: {len(data) - pos} trailing bytes")
    return out
