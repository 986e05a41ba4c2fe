import os
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csgaussian.codec.container import (
    FORMAT_VERSION,
    MAGIC,
    OPTIONAL_BIT,
    StreamError,
    optional_sections,
    read_container,
    read_stream,
    section_layers,
    skipped_sections,
    write_container,
)
from csgaussian.fileio import write_bytes_atomic

SECTIONS = [
    ("header", b"\x01\x02"),
    ("positions", bytes(range(200)) * 3),
    ("features", b"\xff" * 333),
    ("sem.features", b"semantic" * 40),
    ("sem.instances", b"\x00" * 50),
]
LAYERS = {"sem.features": "semantic", "sem.instances": "semantic"}
STREAM = write_container(SECTIONS, LAYERS)
BASE_END = STREAM.index(b"semantic")  # first byte of the semantic layer
PROPERTY = settings(max_examples=300, deadline=1000)


def test_round_trip_keeps_order_and_layers():
    out = read_container(STREAM)
    assert list(out.items()) == SECTIONS
    assert section_layers(STREAM) == {n: LAYERS.get(n, "base") for n, _ in SECTIONS}
    assert read_container(write_container([])) == {}


def test_semantic_layer_cut_off_reads_base_layer():
    for cut in (BASE_END, BASE_END + 7, len(STREAM) - 1):
        with pytest.raises(StreamError, match="truncated stream: section 'sem"):
            read_container(STREAM[:cut])
        out = read_container(STREAM[:cut], partial_ok=True)
        assert list(out) == ["header", "positions", "features"]


def test_base_layer_cut_or_corruption_is_an_error_even_when_partial_ok():
    with pytest.raises(StreamError, match="truncated stream: section 'features' needs 333 bytes"):
        read_container(STREAM[: BASE_END - 5], partial_ok=True)
    bad = bytearray(STREAM)
    bad[BASE_END - 5] ^= 0x10
    with pytest.raises(StreamError, match="checksum mismatch in section 'features'"):
        read_container(bytes(bad), partial_ok=True)


def test_messages_for_magic_version_and_trailing_bytes():
    with pytest.raises(StreamError, match=r"^not a csgaussian stream \(bad magic\)$"):
        read_container(b"PNG0" + STREAM[4:])
    v7 = STREAM[:4] + struct.pack("<H", 7) + STREAM[6:]
    with pytest.raises(
        StreamError,
        match=rf"unsupported stream version 7 \(this build reads "
        rf"{FORMAT_VERSION}\)",
    ):
        read_container(v7)
    with pytest.raises(StreamError, match="trailing bytes"):
        read_container(STREAM + b"\x00")


def test_writer_rejects_bad_sections():
    with pytest.raises(ValueError, match="duplicate"):
        write_container([("a", b""), ("a", b"")])
    with pytest.raises(ValueError, match="after a semantic"):
        write_container([("s", b""), ("b", b"")], {"s": "semantic"})
    with pytest.raises(ValueError, match="printable ascii"):
        write_container([("x" * 40, b"")])


def test_huge_declared_length_fails_without_allocating():
    header = bytearray(MAGIC + struct.pack("<HHH", FORMAT_VERSION, 0, 1))
    header += bytes([1]) + b"x" + struct.pack("<BQI", 0, 2**62, 0)
    header += struct.pack("<I", zlib.crc32(header))
    with pytest.raises(StreamError, match=r"section 'x' needs 4611686018427387904 bytes, 3 remain"):
        read_container(bytes(header) + b"abc")


@PROPERTY
@given(st.integers(0, len(STREAM) - 1))
def test_any_truncation_is_a_stream_error(cut):
    with pytest.raises(StreamError):
        read_container(STREAM[:cut])
    if cut >= BASE_END:
        assert list(read_container(STREAM[:cut], partial_ok=True)) == [
            "header",
            "positions",
            "features",
        ]
    else:
        with pytest.raises(StreamError):
            read_container(STREAM[:cut], partial_ok=True)


@PROPERTY
@given(st.lists(st.integers(0, 8 * len(STREAM) - 1), min_size=1, max_size=4, unique=True))
def test_any_bit_flips_are_a_stream_error(bits):
    bad = bytearray(STREAM)
    for b in bits:
        bad[b // 8] ^= 1 << (b % 8)
    with pytest.raises(StreamError):
        read_container(bytes(bad))


@PROPERTY
@given(st.binary(max_size=300), st.booleans())
def test_garbage_is_a_stream_error(junk, with_magic):
    data = (MAGIC + junk) if with_magic else junk
    with pytest.raises(StreamError):
        read_container(data, partial_ok=True)


def test_write_atomic_replaces_file(tmp_path):
    path = tmp_path / "scene.csgs"
    path.write_bytes(b"old")
    write_bytes_atomic(path, STREAM)
    assert path.read_bytes() == STREAM
    assert [p.name for p in tmp_path.iterdir()] == ["scene.csgs"]


def test_read_stream_reads_the_header_first_and_bounds_the_rest(tmp_path):
    path = tmp_path / "s.csg"
    path.write_bytes(STREAM)
    assert read_stream(path, 1 << 20) == STREAM
    with pytest.raises(StreamError, match="bytes of sections, over the memory limit of 100"):
        read_stream(path, 100)
    path.write_bytes(STREAM + b"\x00")
    with pytest.raises(StreamError, match="1 trailing bytes"):
        read_stream(path, 1 << 20)
    # a header declaring a terabyte section, in a sparse 8 GiB file: refused, nothing read
    huge = write_container([("a", b"")])
    entry = huge.index(b"a") + 2  # after name length and name: layer u8, then length u64
    header = bytearray(huge[:-4])
    struct.pack_into("<Q", header, entry, 1 << 40)
    header += struct.pack("<I", zlib.crc32(header))
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(8 << 30)
    with pytest.raises(StreamError, match="declares 1099511627776 bytes of sections"):
        read_stream(path, 4 << 30)
    with open(path, "r+b") as handle:
        handle.write(b"NOPE")
    with pytest.raises(StreamError, match="bad magic"):
        read_stream(path, 4 << 30)


def test_read_stream_refuses_devices_fifos_and_folders(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, kind in ((tmp_path / "fifo", "a FIFO"), (tmp_path, "a folder")):
        with pytest.raises(StreamError, match=f"is {kind}, not a .csg file"):
            read_stream(path, 1 << 20)
    if os.path.exists("/dev/zero"):
        with pytest.raises(StreamError, match="is a device"):
            read_stream("/dev/zero", 1 << 20)
    with pytest.raises(StreamError, match="cannot read"):
        read_stream(tmp_path / "missing.csg", 1 << 20)


# Optional sections (docs/format.md §2.1): bit 7 of the layer byte.
OPTIONAL = write_container(
    [("header", b"h"), ("future", b"f" * 10), ("sem", b"s" * 20), ("later", b"l" * 5)],
    {"sem": "semantic", "later": "semantic"},
    optional={"future", "later"},
)
KNOWN = {"header": False, "sem": False}


def _layer_byte(data: bytes, name: str) -> int:
    return data[data.index(name.encode()) + len(name)]


def test_the_optional_bit_is_bit_7_of_the_layer_byte():
    assert OPTIONAL_BIT == 0x80
    assert [_layer_byte(OPTIONAL, n) for n in ("header", "future", "sem", "later")] == [
        0x00,
        0x80,
        0x01,
        0x81,
    ]
    assert section_layers(OPTIONAL) == {
        "header": "base",
        "future": "base",
        "sem": "semantic",
        "later": "semantic",
    }
    assert optional_sections(OPTIONAL) == {"future", "later"}
    assert optional_sections(STREAM) == frozenset()


def test_an_unknown_optional_section_is_skipped_and_still_checksummed():
    assert skipped_sections(OPTIONAL, KNOWN) == {"future", "later"}
    assert read_container(OPTIONAL)["future"] == b"f" * 10
    bad = bytearray(OPTIONAL)
    bad[OPTIONAL.index(b"f" * 10)] ^= 1
    with pytest.raises(StreamError, match="checksum mismatch in section 'future'"):
        read_container(bytes(bad))


def test_an_unknown_required_section_is_left_to_its_layer_to_refuse():
    plain = write_container([("header", b"h"), ("future", b"f")])
    assert skipped_sections(plain, KNOWN) == frozenset()  # not skipped: the layer refuses it


def test_a_known_section_whose_bit_disagrees_is_refused():
    with pytest.raises(StreamError, match="section 'future' is required but its optional bit"):
        skipped_sections(OPTIONAL, {**KNOWN, "future": False})
    with pytest.raises(StreamError, match="section 'header' is optional but its optional bit is"):
        skipped_sections(OPTIONAL, {**KNOWN, "header": True})


def test_layer_codes_above_2_are_refused_with_or_without_the_bit():
    for code in (3, 0x83, 0x7F):
        header = bytearray(write_container([("a", b"")])[:-4])
        header[header.index(b"a") + 1] = code
        header += struct.pack("<I", zlib.crc32(header))
        with pytest.raises(StreamError, match=f"unknown layer code {code & 0x7F}"):
            read_container(bytes(header))


def test_progressive_truncation_with_optional_sections():
    semantic_start = OPTIONAL.index(b"s" * 20)
    for cut in (semantic_start, semantic_start + 3, len(OPTIONAL) - 1):
        assert list(read_container(OPTIONAL[:cut], partial_ok=True)) == ["header", "future"]
    with pytest.raises(StreamError, match="truncated stream: section 'future'"):
        read_container(OPTIONAL[: semantic_start - 1], partial_ok=True)
