"""docs/format.md against the code: a reader written from the spec alone (``struct`` and
``zlib``, none of the package's codec) parses the golden stream's container, section table and
section headers (and a trained run's optional ``cameras`` section), and must agree with the
package's decoder."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from csgaussian.codec.container import read_container, section_layers
from csgaussian.codec.stream import decode_scene

GOLDEN = Path(__file__).parent / "golden" / "tiny.csg"
FORMAT_DOC = Path(__file__).parents[2] / "docs" / "format.md"
LAYERS = {0: "base", 1: "semantic", 2: "edit"}
BASE = ["meta", "positions", "masks", "renderer", "hyperprior", "feature", "scaling", "offsets"]
SEMANTIC = [
    "semantic_meta",
    "semantic_mlp",
    "semantic_hyperprior",
    "semantic",
    "semantic_codebook",
    "semantic_language",
]


def read_spec_container(data: bytes) -> tuple[list[dict], dict[str, bytes]]:
    """docs/format.md §2: the section table (with each entry's optional bit, §2.1) and the
    payloads, every check of the spec."""
    magic, version, flags, count = struct.unpack_from("<4sHHH", data, 0)
    assert (magic, version, flags) == (b"CSGS", 2, 0) and count <= 64
    pos, table = 10, []
    for _ in range(count):
        n = data[pos]
        assert 1 <= n <= 32
        name = data[pos + 1 : pos + 1 + n]
        assert all(0x20 <= b <= 0x7E for b in name)
        layer, length, crc = struct.unpack_from("<BQI", data, pos + 1 + n)
        table.append(
            {
                "name": name.decode(),
                "layer": LAYERS[layer & 0x7F],
                "optional": bool(layer & 0x80),
                "length": length,
                "crc": crc,
            }
        )
        pos += 1 + n + 13
    (header_crc,) = struct.unpack_from("<I", data, pos)
    assert zlib.crc32(data[:pos]) == header_crc
    order = [list(LAYERS.values()).index(t["layer"]) for t in table]
    assert order == sorted(order) and len({t["name"] for t in table}) == len(table)
    pos += 4
    payloads = {}
    for entry in table:
        payloads[entry["name"]] = data[pos : pos + entry["length"]]
        assert zlib.crc32(payloads[entry["name"]]) == entry["crc"]
        pos += entry["length"]
    assert pos == len(data)
    return table, payloads


def read_spec_weights(blob: bytes) -> dict[str, tuple[str, tuple[int, ...]]]:
    """docs/format.md §5.5: name -> (dtype, shape), walking every tensor's data."""
    dtypes = {0: ("float32", 4), 1: ("float16", 2), 2: ("int8", 0), 3: ("int10", 0)}
    (count,) = struct.unpack_from("<H", blob, 0)
    pos, out = 2, {}
    for _ in range(count):
        n = blob[pos]
        name = blob[pos + 1 : pos + 1 + n].decode()
        dtype, rank = blob[pos + 1 + n], blob[pos + 2 + n]
        shape = struct.unpack_from(f"<{rank}I", blob, pos + 3 + n)
        pos += 3 + n + 4 * rank
        kind, itemsize = dtypes[dtype]
        if itemsize:
            pos += itemsize * math.prod(shape)
        else:
            rows = shape[0] if rank >= 2 else 1
            pos += 2 * rows
            scale, payload_len = struct.unpack_from("<fI", blob, pos)
            assert math.isfinite(scale) and scale >= 1.0
            pos += 8 + payload_len
        out[name] = (kind, tuple(shape))
    assert pos == len(blob)
    return out


def read_spec_flags_header(blob: bytes) -> tuple[int, int, list[int]]:
    """docs/format.md §5.4: rows, columns and the per-column P(1) codes."""
    rows, columns = struct.unpack_from("<IH", blob, 0)
    return rows, columns, list(struct.unpack_from(f"<{columns}H", blob, 6))


@pytest.fixture(scope="module")
def golden() -> bytes:
    return GOLDEN.read_bytes()


def test_container_and_table_match_the_decoder(golden) -> None:
    table, payloads = read_spec_container(golden)
    assert [t["name"] for t in table] == BASE + SEMANTIC
    assert not any(t["optional"] for t in table)
    package = read_container(golden)
    assert list(package) == [t["name"] for t in table]
    assert {n: len(p) for n, p in package.items()} == {t["name"]: t["length"] for t in table}
    assert {n: zlib.crc32(p) for n, p in package.items()} == {t["name"]: t["crc"] for t in table}
    assert section_layers(golden) == {t["name"]: t["layer"] for t in table}
    assert payloads == package


def test_section_headers_match_the_decoded_scene(golden) -> None:
    _, s = read_spec_container(golden)
    meta = json.loads(zlib.decompress(s["meta"]))
    n, k, f = meta["n_anchors"], meta["scaffold"]["n_offsets"], meta["scaffold"]["feature_dim"]
    h = meta["scaffold"]["hidden_dim"]
    scene = decode_scene(golden)
    model = scene.model
    assert (model.n_anchors, model.config.n_offsets, model.config.feature_dim) == (n, k, f)

    n_points, depth = struct.unpack_from("<IB", s["positions"])
    assert n_points == n and depth <= meta["grid"]["depth"] and (len(s["positions"]) - 5) % 4 == 0
    cells = model.anchor_cells.numpy()
    assert int(cells.max()).bit_length() == depth
    world = (cells + np.array(meta["grid"]["origin"])) * meta["grid"]["voxel_size"]
    assert torch.equal(model.anchors, torch.from_numpy(world).float())

    rows, columns, p_one = read_spec_flags_header(s["masks"])
    active = model.active_slots()
    assert (rows, columns) == (n, k) == tuple(active.shape)
    for column, code in enumerate(p_one):  # 0 / 65535 mark constant columns
        if code in (0, 65535):
            assert bool(active[:, column].all() if code else not active[:, column].any())

    d = f + 4
    expected = {"background": (3,)}
    for mlp, out in (("opacity_mlp", k), ("color_mlp", 3 * k), ("cov_mlp", 7 * k)):
        expected |= {f"{mlp}.0.weight": (h, d), f"{mlp}.0.bias": (h,)}
        expected |= {f"{mlp}.2.weight": (out, h), f"{mlp}.2.bias": (out,)}
    renderer = read_spec_weights(s["renderer"])
    assert {name: shape for name, (_, shape) in renderer.items()} == expected
    assert {dtype for dtype, _ in renderer.values()} == {"int8"}
    state = model.state_dict()
    assert all(tuple(state[name].shape) == shape for name, shape in expected.items())

    (n_dense,) = struct.unpack_from("<I", s["hyperprior"])
    hyper = read_spec_weights(s["hyperprior"][4 : 4 + n_dense])
    channels = {"feature": f, "scaling": 6, "offsets": 3 * k}
    width = meta["rate"]["inr"]["mlp"]["width"]
    assert {g: hyper[f"heads.{g}.weight"][1] for g in channels} == {
        g: (2 * c + 1, width) for g, c in channels.items()
    }
    assert hyper["trunk.0.weight"][1] == (width, 3 + 6 * meta["rate"]["inr"]["n_freqs"])
    assert s["hyperprior"][4 + n_dense :] == bytes.fromhex("0000000001000000")  # no hash table


def test_semantic_sections_match_the_decoded_layer(golden) -> None:
    _, s = read_spec_container(golden)
    meta = json.loads(zlib.decompress(s["semantic_meta"]))
    assert meta["version"] == 1
    layer = decode_scene(golden).semantics
    assert layer is not None and layer.text_space == meta["text_space"]
    k1, k2 = meta["codebook"]["n_coarse"], meta["codebook"]["n_fine"]
    dim = meta["semantic"]["feature_dim"]

    (n_centres,) = struct.unpack_from("<I", s["semantic_codebook"])
    centres = read_spec_weights(s["semantic_codebook"][4 : 4 + n_centres])
    assert centres == {"coarse": ("float16", (k1, dim + 3)), "fine": ("float16", (k1, k2, dim))}
    rows, columns, _ = read_spec_flags_header(s["semantic_codebook"][4 + n_centres :])
    assert (rows, columns) == (k1, k2) == tuple(layer.codebook.fine_valid.shape)

    (count,) = struct.unpack_from("<I", s["semantic_language"])
    entries = np.frombuffer(s["semantic_language"], dtype="<i2", count=count, offset=4)
    assert count == k1 * k2 == layer.codebook.n_leaves
    assert entries.tolist() == layer.leaf_entry.tolist()
    table = read_spec_weights(s["semantic_language"][4 + 2 * count :])
    assert table == {"language": ("int8", (meta["n_entries"], meta["language_dim"]))}
    assert tuple(layer.language.shape) == (meta["n_entries"], meta["language_dim"])

    mlp = read_spec_weights(s["semantic_mlp"])
    hidden, d_s = meta["semantic"]["hidden_dim"], meta["semantic"]["latent_dim"]
    assert mlp["0.weight"][1] == (hidden, d_s + 3) and mlp["2.weight"][1] == (dim, hidden)
    assert tuple(layer.field.latents.shape) == (decode_scene(golden).model.n_anchors, d_s)


def test_edit_layer_matches_the_decoded_edits(golden) -> None:
    from csgaussian.codec.stream import with_edits
    from csgaussian.scene.edits import SceneEdit

    model = decode_scene(golden).model
    generator = torch.Generator().manual_seed(0)
    slots = torch.rand(model.active_slots().shape, generator=generator) < 0.1
    edits = [
        SceneEdit("recolor", slots, text="duck", color=(208 / 255, 32 / 255, 32 / 255)),
        SceneEdit("duplicate", ~slots, text="cup", offset=(0.25, 0.0, -1.0)),
    ]
    edited = with_edits(golden, edits)
    table, s = read_spec_container(edited)
    assert [t["name"] for t in table] == BASE + SEMANTIC + ["edits"]
    assert table[-1]["layer"] == "edit"

    payload = s["edits"]
    (meta_len,) = struct.unpack_from("<I", payload)
    meta = json.loads(zlib.decompress(payload[4 : 4 + meta_len]))
    assert meta["version"] == 1
    assert (meta["n_anchors"], meta["n_offsets"]) == tuple(slots.shape)
    assert [e["kind"] for e in meta["edits"]] == ["recolor", "duplicate"]
    assert meta["edits"][0]["color"] == [208, 32, 32]
    assert meta["edits"][1]["offset"] == [0.25, 0.0, -1.0]
    pos = 4 + meta_len
    for _ in meta["edits"]:
        (sel_len,) = struct.unpack_from("<I", payload, pos)
        rows, columns, _ = read_spec_flags_header(payload[pos + 4 : pos + 4 + sel_len])
        assert (rows, columns) == tuple(slots.shape)
        pos += 4 + sel_len
    assert pos == len(payload)

    decoded = decode_scene(edited).edits
    assert [(e.kind, e.text) for e in decoded] == [(e["kind"], e["text"]) for e in meta["edits"]]
    assert torch.equal(decoded[0].slots, slots) and torch.equal(decoded[1].slots, ~slots)


def read_spec_cameras(payload: bytes) -> list[dict]:
    """docs/format.md §3.7: each camera's size, intrinsics, rotation (from q by the spec's
    formula) and translation, every check of the spec."""
    n_intrinsics, n_cameras = struct.unpack_from("<BB", payload)
    assert 1 <= n_cameras <= 16 and 1 <= n_intrinsics <= n_cameras
    assert len(payload) == 2 + 20 * n_intrinsics + 29 * n_cameras
    intrinsics = [struct.unpack_from("<HH4f", payload, 2 + 20 * i) for i in range(n_intrinsics)]
    for width, height, fx, fy, cx, cy in intrinsics:
        assert 1 <= width <= 8192 and 1 <= height <= 8192
        assert 0 < fx <= 1e6 and 0 < fy <= 1e6 and abs(cx) <= 1e6 and abs(cy) <= 1e6
    cameras = []
    for c in range(n_cameras):
        index, w, x, y, z, *t = struct.unpack_from(
            "<B4f3f", payload, 2 + 20 * n_intrinsics + 29 * c
        )
        assert index < n_intrinsics and all(abs(v) <= 1e9 for v in t)
        norm = math.sqrt(w * w + x * x + y * y + z * z)
        assert abs(norm - 1) <= 1e-4 and w >= 0
        w, x, y, z = w / norm, x / norm, y / norm, z / norm
        rotation = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
        width, height, fx, fy, cx, cy = intrinsics[index]
        cameras.append(
            {"size": (width, height), "k": (fx, fy, cx, cy), "rotation": rotation, "t": t}
        )
    return cameras


def test_cameras_section_matches_the_decoded_cameras(tiny_run) -> None:
    data = (tiny_run / "stream.csg").read_bytes()
    table, s = read_spec_container(data)
    names = [t["name"] for t in table]
    assert names == [*BASE, "cameras", *SEMANTIC]
    entry = table[names.index("cameras")]
    assert (entry["layer"], entry["optional"]) == ("base", True)
    assert sum(t["optional"] for t in table) == 1
    spec = read_spec_cameras(s["cameras"])
    decoded = decode_scene(data).cameras
    assert len(spec) == len(decoded) > 0
    for ours, theirs in zip(spec, decoded, strict=True):
        assert ours["size"] == (theirs.width, theirs.height)
        fx, fy, cx, cy = ours["k"]
        assert theirs.K.tolist() == [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
        view = theirs.viewmat.double()
        assert torch.allclose(view[:3, :3], torch.tensor(ours["rotation"], dtype=torch.float64))
        assert torch.allclose(view[:3, 3], torch.tensor(ours["t"], dtype=torch.float64))
        assert view[3].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_the_cameras_layout_in_the_doc_is_the_one_read() -> None:
    text = FORMAT_DOC.read_text()
    section = text[text.index("### 3.7 `cameras` (optional)") : text.index("## 4. Hyperprior")]
    for line in (
        "n_intrinsics u8         I, 1 .. C",
        "n_cameras    u8         C, 1 .. 16",
        "intrinsics   I entries of 20 bytes:",
        "width  u16, height u16       1 .. 8192 pixels",
        "fx f32, fy f32, cx f32, cy f32",
        "cameras      C entries of 29 bytes:",
        "intrinsics u8        index into the intrinsics entries, < I",
        "q  f32[4]            (w, x, y, z)",
        "t  f32[3]",
        "exactly `2 + 20 I + 29 C` bytes",
        "layer byte `0x80`",
    ):
        assert line in section, line
    assert struct.calcsize("<HH4f") == 20 and struct.calcsize("<B4f3f") == 29
