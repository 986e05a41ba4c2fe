"""Binary flags coded column by column with static Bernoulli models and constriction's ANS.

A flag table ``[rows, columns]`` gets one probability per column. The offset masks are such a
table (one row per anchor, one column per offset slot), and trained models use the slots very
unequally, so per-slot probabilities code them in far fewer bytes than one shared probability
(measured: benchmarks/results/notes/measurements.md#offset-masks). A 1-D array is one
column.

Payload: ``rows u32, columns u16, p_one u16[columns], ANS words u32[]``. ``p_one`` is P(1) in
1/65536; ``0`` and ``65535`` mark a column that is all zeros / all ones and is not coded. The
probabilities are integers, so both sides build the same models on any machine.
"""

from __future__ import annotations

import struct

import constriction
import numpy as np

from .container import StreamError

_HEADER = struct.Struct("<IH")
_ONE = 1 << 16
_ALL_ZERO, _ALL_ONE = 0, _ONE - 1
MAX_FLAGS = 1 << 26
"""Most flags a payload may declare (bounds the decoder's allocation)."""
MAX_COLUMNS = _ONE - 1


def _as_table(flags: np.ndarray) -> np.ndarray:
    table = np.asarray(flags, dtype=bool)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2 or table.shape[1] > MAX_COLUMNS:
        raise ValueError(f"flags must be [rows] or [rows, <= {MAX_COLUMNS}], got {table.shape}")
    if table.size > MAX_FLAGS:
        raise ValueError(f"{table.size} flags, at most {MAX_FLAGS} per payload")
    return table


def _column_codes(table: np.ndarray) -> np.ndarray:
    """P(1) per column in 1/65536, with the two constant-column markers."""
    ones, rows = table.sum(axis=0), table.shape[0]
    codes = np.clip(np.round(ones / max(rows, 1) * _ONE), 1, _ONE - 2).astype(np.int64)
    codes[ones == rows] = _ALL_ONE
    codes[ones == 0] = _ALL_ZERO  # last: the columns of an empty table are all-zero
    return codes


def _probabilities(codes: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Which entries are coded (``[rows, columns]``) and their P(1), row-major."""
    coded_columns = (codes != _ALL_ZERO) & (codes != _ALL_ONE)
    probs = np.broadcast_to(codes[coded_columns] / _ONE, (rows, int(coded_columns.sum())))
    return coded_columns, probs.ravel()


def encode_flags(flags: np.ndarray) -> bytes:
    """Code a boolean array ``[rows]`` or ``[rows, columns]``; about the sum of the columns'
    ``rows * H(p)`` bits."""
    table = _as_table(flags)
    rows, columns = table.shape
    codes = _column_codes(table)
    header = _HEADER.pack(rows, columns) + codes.astype("<u2").tobytes()
    coded_columns, probs = _probabilities(codes, rows)
    if not probs.size:
        return header
    coder = constriction.stream.stack.AnsCoder()
    family = constriction.stream.model.Bernoulli(perfect=False)
    coder.encode_reverse(table[:, coded_columns].ravel().astype(np.int32), family, probs)
    return header + coder.get_compressed().astype("<u4").tobytes()


def decode_flags(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Inverse of :func:`encode_flags`: a boolean ``[rows, columns]`` (a 1-D input comes back as
    one column); raises StreamError on a malformed payload or, if ``shape`` is given, one of
    another shape (checked before anything is allocated)."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise StreamError("truncated flags payload")
    rows, columns = _HEADER.unpack_from(data)
    if rows * columns > MAX_FLAGS:
        raise StreamError(f"flags payload declares {rows} x {columns} flags, over {MAX_FLAGS}")
    if shape is not None and (rows, columns) != tuple(shape):
        raise StreamError(f"flags payload holds {rows} x {columns} flags, expected {shape}")
    body_start = _HEADER.size + 2 * columns
    if len(data) < body_start:
        raise StreamError("truncated flags payload")
    codes = np.frombuffer(data, dtype="<u2", count=columns, offset=_HEADER.size).astype(np.int64)
    body = data[body_start:]
    table = np.zeros((rows, columns), dtype=bool)
    table[:, codes == _ALL_ONE] = True
    coded_columns, probs = _probabilities(codes, rows)
    if not probs.size:
        if body:
            raise StreamError("flags payload has trailing bytes")
        return table
    if not body or len(body) % 4:
        raise StreamError("malformed flags payload")
    words = np.frombuffer(body, dtype="<u4").astype(np.uint32)  # native order for constriction
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        family = constriction.stream.model.Bernoulli(perfect=False)
        bits = np.asarray(coder.decode(family, probs), dtype=bool)
    except Exception as err:  # constriction reports a corrupt stream in several ways
        raise StreamError(f"corrupt flags payload ({type(err).__name__})") from None
    if not coder.is_empty():
        raise StreamError("corrupt flags payload (coded bits left over)")
    table[:, coded_columns] = bits.reshape(rows, -1)
    return table
