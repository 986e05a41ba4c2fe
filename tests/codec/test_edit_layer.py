"""The edit layer: an edited stream round-trips, its other layers are copied byte for byte, and
a crafted, cut or unknown edit layer is refused or left out with one line."""

import json
import struct
import zlib

import pytest
import torch

from csgaussian import api
from csgaussian.cli import main
from csgaussian.codec.container import (
    StreamError,
    optional_sections,
    read_container,
    section_layers,
    write_container,
)
from csgaussian.codec.edit_layer import SECTION
from csgaussian.codec.stream import decode_scene


@pytest.fixture(scope="module")
def streams(tiny_run, tmp_path_factory):
    """The tiny stream and an edited copy made by the command line (floor: the query the tiny
    run answers)."""
    source = tiny_run / "stream.csg"
    edited = tmp_path_factory.mktemp("edit") / "edited.csg"
    args = ["edit", str(source), "-o", str(edited), "--recolor", "floor", "--color", "#2040ff"]
    assert main([*args, "--duplicate", "floor", "--offset", "0.5,0,0", "--remove", "floor"]) == 0
    return source.read_bytes(), edited.read_bytes()


def _with_payload(data: bytes, payload: bytes) -> bytes:
    sections, layers = read_container(data), section_layers(data)
    sections[SECTION] = payload
    return write_container(list(sections.items()), layers, optional_sections(data))


def _meta_payload(meta: dict, selections: list[bytes]) -> bytes:
    blob = zlib.compress(json.dumps(meta).encode())
    parts = [struct.pack("<I", len(blob)), blob]
    for selection in selections:
        parts += [struct.pack("<I", len(selection)), selection]
    return b"".join(parts)


def test_edited_stream_round_trips_and_copies_the_other_layers(streams, capsys):
    source, edited = streams
    original, layers = read_container(source), section_layers(edited)
    sections = read_container(edited)
    assert [n for n, layer in layers.items() if layer == "edit"] == [SECTION]
    assert {n: p for n, p in sections.items() if n != SECTION} == original
    scene = decode_scene(edited)
    assert [e.kind for e in scene.edits] == ["recolor", "duplicate", "remove"]
    assert scene.edits[0].color == (0x20 / 255, 0x40 / 255, 1.0)
    assert scene.edits[1].offset == (0.5, 0.0, 0.0) and scene.notes == []
    selection = api.query(decode_scene(source), "floor").slots
    assert all(torch.equal(e.slots, selection) for e in scene.edits)
    n, k = selection.shape  # each selection is coded, under its n * k / 8 bytes as a bitmap
    assert len(edited) - len(source) < 3 * n * k / 8
    base_only = decode_scene(edited, base_only=True)
    assert base_only.semantics is None and len(base_only.edits) == 3  # no semantics needed


def test_a_cut_or_unknown_edit_layer_is_left_out_with_a_note(streams):
    _, edited = streams
    cut = decode_scene(edited[:-10])
    assert cut.edits == [] and cut.semantics is not None
    assert cut.notes == ["edit layer truncated: decoded without edits"]
    future = _with_payload(edited, _meta_payload({"version": 9, "anything": []}, []))
    scene = decode_scene(future)
    assert scene.edits == [] and "edit layer version 9 is not known" in scene.notes[0]


def test_crafted_edit_layers_are_refused_with_one_line(streams, tmp_path, capsys):
    source, edited = streams
    scene = decode_scene(edited)
    n, k = scene.edits[0].slots.shape
    good = {"version": 1, "n_anchors": n, "n_offsets": k}
    op = {"kind": "remove", "text": "x", "offset": [0, 0, 0], "color": [0, 0, 0]}
    cases = {
        "anchor slots": _meta_payload({**good, "n_anchors": n + 1, "edits": []}, []),
        "is not one of": _meta_payload({**good, "edits": [{**op, "kind": "melt"}]}, []),
        "<= 64 items": _meta_payload({**good, "edits": [op] * 65}, []),
        "selection is missing": _meta_payload({**good, "edits": [op]}, []),
        "trailing bytes": _meta_payload({**good, "edits": []}, [b"xx"]),
        "is not valid compressed JSON": struct.pack("<I", 3) + b"abc",
    }
    for problem, payload in cases.items():
        crafted = tmp_path / "crafted.csg"
        crafted.write_bytes(_with_payload(edited, payload))
        with pytest.raises(StreamError, match=problem):
            decode_scene(crafted.read_bytes())
        assert main(["eval", str(crafted), "--json"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(crafted) in err and "Traceback" not in err


def test_edit_command_refuses_bad_options_with_one_line(streams, tiny_run, tmp_path, capsys):
    source = str(tiny_run / "stream.csg")
    out = str(tmp_path / "e.csg")
    assert main(["edit", source, "-o", out, "--duplicate", "floor"]) == 2
    assert "needs --offset" in capsys.readouterr().err
    assert main(["edit", source, "-o", out, "--recolor", "floor", "--color", "blue"]) == 2
    assert "#RRGGBB" in capsys.readouterr().err
    assert main(["edit", source, "-o", out, "--remove", "zzqx unknown thing"]) == 2
    err = capsys.readouterr().err
    assert "matches no object" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["edit", source, "-o", out, "--offset", "1,2,3"])
    assert not (tmp_path / "e.csg").exists()
