import os
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csgaussian.codec.container import (
    FORMAT_VERSION,
    MAGIC,
    StreamError,
    read_container,
    read_stream,
    section_layers,
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
