"""The csgaussian file container: magic, version, a section table with CRC32s, then payloads.

Layout (little-endian)::

    magic      4s   b"CSGS"
    version    u16  FORMAT_VERSION
    flags      u16  reserved, 0
    n_sections u16
    per section:
        name_len u8, name ascii[name_len],
        layer u8: code (0 base, 1 semantic, 2 edit) | OPTIONAL_BIT (0x80) for an optional section,
        length u64 (payload bytes), crc u32 (zlib.crc32 of the payload)
    header_crc u32  zlib.crc32 of every byte above
    payloads, in table order

Progressive reading (docs/method.md §7): the layers come in order, base, semantic, then edit (a
receiver's edit list, :mod:`csgaussian.codec.edit_layer`); ``write_container`` enforces it. A file
cut inside a later layer still holds complete, checksummed earlier layers;
``read_container(..., partial_ok=True)`` returns the sections of the layers before the cut then.
A cut inside the base layer, any checksum mismatch and any malformed header are always errors.

Optional sections (docs/format.md §2.1): a section written with :data:`OPTIONAL_BIT` may be
skipped by a reader that does not know its name (:func:`skipped_sections`); one without it must be
refused. So a new optional section does not break the readers built before it.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import Literal, NamedTuple

from ..types import StreamError

Layer = Literal["base", "semantic", "edit"]

MAGIC = b"CSGS"
FORMAT_VERSION = 2
"""Version 2: zlib-compressed metadata, per-slot mask probabilities, int10 hyperprior weights.
Readers accept only their own version (nothing older was released)."""
MAX_SECTIONS = 64
MAX_NAME_LEN = 32
_LAYER_CODES: dict[str, int] = {"base": 0, "semantic": 1, "edit": 2}
_LAYER_NAMES = {v: k for k, v in _LAYER_CODES.items()}
OPTIONAL_BIT = 0x80
"""Bit 7 of a table entry's layer byte: the section is optional (a reader that does not know its
name skips it). The layer code is the byte's other bits."""
_FIXED = struct.Struct("<4sHHH")
_ENTRY = struct.Struct("<BQI")  # layer, length, crc (after the name)
_CRC = struct.Struct("<I")
HEADER_LIMIT = _FIXED.size + MAX_SECTIONS * (1 + MAX_NAME_LEN + _ENTRY.size) + _CRC.size
"""Most bytes a header (fixed part, section table, CRC) may take."""


def _check_name(name: str) -> bytes:
    raw = name.encode("ascii", errors="replace")
    if not (0 < len(raw) <= MAX_NAME_LEN) or not name.isascii() or not name.isprintable():
        raise ValueError(f"section name {name!r} must be 1..{MAX_NAME_LEN} printable ascii chars")
    return raw


class TableEntry(NamedTuple):
    """One verified section-table entry."""

    name: str
    layer: Layer
    length: int
    crc: int
    optional: bool


def write_container(
    sections: Sequence[tuple[str, bytes]],
    layers: Mapping[str, Layer] | None = None,
    optional: Collection[str] = (),
) -> bytes:
    """Serialise named payloads into one stream.

    Args:
        sections: (name, payload) in stream order; names unique.
        layers: name -> "base" | "semantic" | "edit"; unlisted sections are "base". The layers
            must come in that order.
        optional: names of the sections written with :data:`OPTIONAL_BIT` (a copy of a stream
            passes :func:`optional_sections` of the original).

    Returns:
        The stream bytes.
    """
    layers = layers or {}
    if len(sections) > MAX_SECTIONS:
        raise ValueError(f"{len(sections)} sections, at most {MAX_SECTIONS} allowed")
    names = {n for n, _ in sections}
    unknown = (set(layers) | set(optional)) - names
    if unknown:
        raise ValueError(f"layers or optional bits given for unknown sections {sorted(unknown)}")
    header = bytearray(_FIXED.pack(MAGIC, FORMAT_VERSION, 0, len(sections)))
    seen: set[str] = set()
    last_layer = "base"
    for name, payload in sections:
        raw = _check_name(name)
        if name in seen:
            raise ValueError(f"duplicate section name '{name}'")
        seen.add(name)
        layer = layers.get(name, "base")
        if layer not in _LAYER_CODES:
            raise ValueError(f"unknown layer '{layer}' for section '{name}'")
        if _LAYER_CODES[layer] < _LAYER_CODES[last_layer]:
            raise ValueError(f"{layer} section '{name}' after a {last_layer} section")
        last_layer = layer
        header += bytes([len(raw)]) + raw
        code = _LAYER_CODES[layer] | (OPTIONAL_BIT if name in optional else 0)
        header += _ENTRY.pack(code, len(payload), zlib.crc32(payload))
    header += _CRC.pack(zlib.crc32(header))
    return bytes(header) + b"".join(bytes(p) for _, p in sections)


def _parse_table(data: bytes) -> tuple[list[TableEntry], int]:
    """Validate the header; return its entries and the payload start offset."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise StreamError("not a csgaussian stream (bad magic)")
    if len(data) < _FIXED.size:
        raise StreamError(f"truncated stream: header needs {_FIXED.size} bytes, {len(data)} remain")
    _, version, flags, count = _FIXED.unpack_from(data, 0)
    if version != FORMAT_VERSION:
        raise StreamError(
            f"unsupported stream version {version} (this build reads {FORMAT_VERSION})"
        )
    if flags != 0:
        raise StreamError(
            f"unsupported stream flags 0x{flags:04x} (version {FORMAT_VERSION} defines none)"
        )
    if count > MAX_SECTIONS:
        raise StreamError(f"section count {count} exceeds the limit of {MAX_SECTIONS}")
    pos = _FIXED.size
    table: list[TableEntry] = []
    for i in range(count):
        if pos >= len(data):
            raise StreamError(f"truncated stream: section table entry {i} is missing")
        n = data[pos]
        if not 0 < n <= MAX_NAME_LEN:
            raise StreamError(f"section table entry {i}: bad name length {n}")
        need = 1 + n + _ENTRY.size
        if len(data) - pos < need:
            raise StreamError(
                f"truncated stream: section table entry {i} needs {need} bytes, "
                f"{len(data) - pos} remain"
            )
        raw = data[pos + 1 : pos + 1 + n]
        if not all(0x20 <= b < 0x7F for b in raw):
            raise StreamError(f"section table entry {i}: name is not printable ascii")
        layer_byte, length, crc = _ENTRY.unpack_from(data, pos + 1 + n)
        layer_code = layer_byte & ~OPTIONAL_BIT
        if layer_code not in _LAYER_NAMES:
            raise StreamError(f"section table entry {i}: unknown layer code {layer_code}")
        optional = bool(layer_byte & OPTIONAL_BIT)
        name = raw.decode("ascii")
        table.append(TableEntry(name, _LAYER_NAMES[layer_code], length, crc, optional))
        pos += need
    if len(data) - pos < _CRC.size:
        raise StreamError("truncated stream: header checksum is missing")
    (header_crc,) = _CRC.unpack_from(data, pos)
    if zlib.crc32(data[:pos]) != header_crc:
        raise StreamError("checksum mismatch in stream header")
    names = [t.name for t in table]
    if len(set(names)) != len(names):
        raise StreamError("duplicate section names in section table")
    codes = [_LAYER_CODES[t.layer] for t in table]
    for i in range(1, len(codes)):
        if codes[i] < codes[i - 1]:
            raise StreamError(
                f"{table[i].layer} section after a {table[i - 1].layer} section in section table"
            )
    return table, pos + _CRC.size


def read_container(data: bytes, *, partial_ok: bool = False) -> dict[str, bytes]:
    """Parse and verify a stream written by ``write_container``.

    Args:
        data: the stream (or a prefix of it).
        partial_ok: accept a stream cut after its base layer and return the sections of the
            layers before the cut (the cut layer's and later layers' sections are absent).

    Returns:
        name -> payload, in stream order.

    Raises:
        StreamError: bad magic / version / header, truncation (inside the base layer, or anywhere
            when ``partial_ok`` is False), checksum mismatch, trailing bytes.
    """
    data = bytes(data)
    table, pos = _parse_table(data)
    out: dict[str, bytes] = {}
    for name, layer, length, crc, _ in table:
        remain = len(data) - pos
        if length > remain:
            if partial_ok and layer != "base":
                cut = _LAYER_CODES[layer]
                return {t.name: out[t.name] for t in table if _LAYER_CODES[t.layer] < cut}
            raise StreamError(
                f"truncated stream: section '{name}' needs {length} bytes, {remain} remain"
            )
        payload = data[pos : pos + length]
        if zlib.crc32(payload) != crc:
            raise StreamError(f"checksum mismatch in section '{name}'")
        out[name] = payload
        pos += length
    if pos != len(data):
        raise StreamError(f"{len(data) - pos} trailing bytes after the last section")
    return out


def read_stream(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of the stream file ``path``, read header first.

    The magic and the header are checked on at most :data:`HEADER_LIMIT` bytes; then only the
    bytes the section table declares are read, and only when they fit ``max_bytes`` (the
    decoder's memory limit). A FIFO, device or folder is refused without reading it.

    Raises:
        StreamError: not a regular file, unreadable, bad header, sections over ``max_bytes``,
            trailing bytes (the message does not name the file: the caller does).
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise StreamError(f"is {_file_kind(info.st_mode)}, not a .csg file")
        with open(path, "rb") as handle:
            head = handle.read(HEADER_LIMIT)
            table, start = _parse_table(head)
            declared = start + sum(t.length for t in table)
            if declared - start > max_bytes:
                raise StreamError(
                    f"header declares {declared - start} bytes of sections, over the memory "
                    f"limit of {max_bytes} bytes (max_memory)"
                )
            if info.st_size > declared:
                raise StreamError(
                    f"{info.st_size - declared} trailing bytes after the last section"
                )
            rest = handle.read(max(declared - len(head), 0))
    except OSError as err:
        raise StreamError(f"cannot read ({err.strerror})") from None
    return head[:declared] + rest


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def section_layers(data: bytes) -> dict[str, Layer]:
    """Section name -> layer, from a verified header (payloads are not read)."""
    table, _ = _parse_table(bytes(data))
    return {t.name: t.layer for t in table}


def optional_sections(data: bytes) -> frozenset[str]:
    """Names of the sections marked optional, from a verified header (payloads are not read)."""
    table, _ = _parse_table(bytes(data))
    return frozenset(t.name for t in table if t.optional)


def skipped_sections(data: bytes, known: Mapping[str, bool]) -> frozenset[str]:
    """The sections of ``data`` that a reader knowing ``known`` (name -> optional) skips.

    Those are the unknown sections marked optional. A known section whose optional bit differs
    from ``known`` is refused; an unknown one without the bit is left to its layer's reader,
    which refuses it.

    Raises:
        StreamError: a known required section marked optional, or a known optional one not.
    """
    table, _ = _parse_table(bytes(data))
    for entry in table:
        if entry.name in known and known[entry.name] != entry.optional:
            kind = "optional" if known[entry.name] else "required"
            raise StreamError(
                f"section '{entry.name}' is {kind} but its optional bit is "
                f"{'set' if entry.optional else 'clear'}"
            )
    return frozenset(t.name for t in table if t.optional and t.name not in known)
