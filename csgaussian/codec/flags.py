"""Binary flags (the offset masks) coded with a static Bernoulli model and constriction's ANS.

Payload: ``count u32, p_one u16 (in 1/65536), ANS words u32[]``. The probability is stored as an
integer, so both sides build the same model on any machine.
"""

from __future__ import annotations

import struct

import constriction
import numpy as np

from .container import StreamError

_HEADER = struct.Struct("<IH")
_ONE = 1 << 16
MAX_FLAGS = 1 << 26
"""Most flags a payload may declare (bounds the decoder's allocation)."""


def encode_flags(flags: np.ndarray) -> bytes:
    """Code a boolean array ``[M]``; about ``M * H(p)`` bits."""
    flags = np.asarray(flags, dtype=bool).ravel()
    if flags.size > MAX_FLAGS:
        raise ValueError(f"{flags.size} flags, at most {MAX_FLAGS} per payload")
    ones = int(flags.sum())
    if ones in (0, flags.size):  # a constant array needs no payload beyond its value
        return _HEADER.pack(flags.size, 0 if ones == 0 else _ONE - 1) + b"\x00"
    p_one = min(max(round(ones / flags.size * _ONE), 1), _ONE - 1)
    coder = constriction.stream.stack.AnsCoder()
    model = constriction.stream.model.Bernoulli(p_one / _ONE, perfect=False)
    coder.encode_reverse(flags.astype(np.int32), model)
    return _HEADER.pack(flags.size, p_one) + b"\x01" + coder.get_compressed().tobytes()


def decode_flags(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_flags`; raises StreamError on a malformed payload."""
    data = bytes(data)
    if len(data) < _HEADER.size + 1:
        raise StreamError("truncated flags payload")
    count, p_one = _HEADER.unpack_from(data)
    if count > MAX_FLAGS:
        raise StreamError(f"flags payload declares {count} flags, more than {MAX_FLAGS}")
    coded = data[_HEADER.size]
    body = data[_HEADER.size + 1 :]
    if coded == 0:
        if body:
            raise StreamError("flags payload has trailing bytes")
        return np.full(count, p_one != 0, dtype=bool)
    if coded != 1 or not 0 < p_one < _ONE or not body or len(body) % 4:
        raise StreamError("malformed flags payload")
    words = np.frombuffer(body, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        model = constriction.stream.model.Bernoulli(p_one / _ONE, perfect=False)
        flags = coder.decode(model, count)
    except Exception as err:  # constriction reports a corrupt stream in several ways
        raise StreamError(f"corrupt flags payload ({type(err).__name__})") from None
    return np.asarray(flags, dtype=bool)
