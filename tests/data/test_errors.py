"""Every bad-input case raises a one-line DataError that names the offending file."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csgaussian.data import load_lerf_labels, load_scene
from csgaussian.types import DataError


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def edit_line(path: Path, index: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


def set_entry(json_name: str, frame: int, row: int, col: int, value: float) -> Callable:
    """A scene edit that sets ``transform_matrix[row][col]`` of one frame."""

    def change(root: Path) -> None:
        edit_json(
            root / json_name,
            lambda m: m["frames"][frame]["transform_matrix"][row].__setitem__(col, value),
        )

    return change


def set_key(json_name: str, key: str, value: object, frame: int | None = None) -> Callable:
    """A scene edit that sets (or, with ``value`` None, removes) a top-level or frame key."""

    def change(root: Path) -> None:
        def edit(meta: dict) -> None:
            target = meta if frame is None else meta["frames"][frame]
            if value is None:
                target.pop(key)
            else:
                target[key] = value

        edit_json(root / json_name, edit)

    return change


def corrupt(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep is not None else b"not an image at all")


BLENDER_CASES = {
    "missing image": (
        lambda r: (r / "train" / "r_001.png").unlink(),
        "train/r_001",
        "image file is missing",
    ),
    "nan pose": (
        set_entry("transforms_train.json", 1, 0, 3, math.nan),
        "transforms_train.json",
        "frame 1 transform_matrix has a NaN or inf",
    ),
    "inf pose": (
        set_entry("transforms_test.json", 0, 1, 1, math.inf),
        "transforms_test.json",
        "frame 0 transform_matrix has a NaN or inf",
    ),
    "not a rotation": (
        set_entry("transforms_train.json", 0, 0, 0, 3.0),
        "transforms_train.json",
        "frame 0: transform_matrix is not a rotation",
    ),
    "nan fov": (
        set_key("transforms_train.json", "camera_angle_x", math.nan),
        "transforms_train.json",
        "'camera_angle_x' must be a finite number",
    ),
    "missing fov": (
        set_key("transforms_train.json", "camera_angle_x", None),
        "transforms_train.json",
        "missing required key 'camera_angle_x'",
    ),
    "missing pose": (
        set_key("transforms_train.json", "transform_matrix", None, frame=1),
        "transforms_train.json",
        "frame 1: missing required key 'transform_matrix'",
    ),
    "missing frames": (
        set_key("transforms_test.json", "frames", None),
        "transforms_test.json",
        "missing required key 'frames'",
    ),
    "bad matrix": (
        set_key("transforms_train.json", "transform_matrix", [[1, 0], [0, 1]], frame=0),
        "transforms_train.json",
        "frame 0: transform_matrix must be 4x4",
    ),
    "corrupt image": (
        lambda r: corrupt(r / "train" / "r_000.png"),
        "train/r_000.png",
        "unreadable or corrupt image",
    ),
    "truncated image": (
        lambda r: corrupt(r / "test" / "r_000.png", keep=60),
        "test/r_000.png",
        "unreadable or corrupt image",
    ),
    "malformed json": (
        lambda r: (r / "transforms_train.json").write_text('{"frames": [}'),
        "transforms_train.json",
        "malformed JSON",
    ),
}


@pytest.mark.parametrize("case", list(BLENDER_CASES))
def test_blender_errors(tmp_path, make_blender, case):
    root = make_blender(tmp_path)
    change, file_part, problem = BLENDER_CASES[case]
    change(root)
    check(lambda: load_scene(root), file_part, problem)


def check(load: Callable[[], object], file_part: str, problem: str) -> None:
    with pytest.raises(DataError) as info:
        load()
    message = str(info.value)
    assert "\n" not in message
    path, _, rest = message.partition(": ")
    assert path.endswith(file_part), message
    assert problem in rest, message


def write_instance(root: Path, value: int, names: tuple[str, ...] = ("train_000",)) -> None:
    (root / "segmentations").mkdir(exist_ok=True)
    (root / "segmentations" / "classes.txt").write_text("cup\n")
    (root / "instance").mkdir(exist_ok=True)
    for name in names:
        Image.fromarray(np.full((6, 8), value, np.uint8)).save(root / "instance" / f"{name}.png")


def test_instance_errors(tmp_path, make_blender):
    root = make_blender(tmp_path)
    (root / "instance").mkdir()
    check(lambda: load_scene(root), "segmentations/classes.txt", "file is missing")
    write_instance(root, 1)
    check(lambda: load_scene(root), "instance/train_001.png", "label image is missing")
    write_instance(root, 2, ("train_000", "train_001", "test_000"))
    check(
        lambda: load_scene(root),
        "instance/train_000.png",
        "instance id 2 but classes.txt lists 1 names",
    )


COLMAP_CASES = {
    "short camera line": (
        "sparse/0/cameras.txt",
        1,
        "1 PINHOLE 8",
        "sparse/0/cameras.txt",
        "line 2: expected 'ID MODEL",
    ),
    "nan intrinsics": (
        "sparse/0/cameras.txt",
        1,
        "1 PINHOLE 8 6 nan 7 4 3",
        "sparse/0/cameras.txt",
        "camera parameters have a NaN or inf",
    ),
    "bad model": (
        "sparse/0/cameras.txt",
        1,
        "1 FISHEYE_X 8 6 7 7 4 3",
        "sparse/0/cameras.txt",
        "unknown camera model FISHEYE_X",
    ),
    "fisheye model": (
        "sparse/0/cameras.txt",
        1,
        "1 OPENCV_FISHEYE 8 6 7 7 4 3 0 0 0 0",
        "sparse/0/cameras.txt",
        "unsupported camera model OPENCV_FISHEYE",
    ),
    "text in pose": (
        "sparse/0/images.txt",
        3,
        "2 1 0 zero 0 0.1 0 4 1 im_01.png",
        "sparse/0/images.txt",
        "line 4: expected numbers",
    ),
    "inf pose": (
        "sparse/0/images.txt",
        3,
        "2 1 0 0 0 inf 0 4 1 im_01.png",
        "sparse/0/images.txt",
        "pose of im_01.png has a NaN or inf",
    ),
    "short image line": (
        "sparse/0/images.txt",
        3,
        "2 1 0 0 0",
        "sparse/0/images.txt",
        "line 4: expected 'ID QW",
    ),
    "unknown camera": (
        "sparse/0/images.txt",
        3,
        "2 1 0 0 0 0.1 0 4 9 im_01.png",
        "sparse/0/images.txt",
        "im_01.png uses unknown camera 9",
    ),
    "bad point": (
        "sparse/0/points3D.txt",
        2,
        "2 1 1 1 0 300 0 0.5",
        "sparse/0/points3D.txt",
        "point colour outside 0..255",
    ),
    "nan point": (
        "sparse/0/points3D.txt",
        2,
        "2 1 nan 1 0 255 0 0.5",
        "sparse/0/points3D.txt",
        "a point position has a NaN or inf",
    ),
    "unknown test frame": (
        "test_frames.txt",
        None,
        "im_99.png",
        "test_frames.txt",
        "lists im_99.png which is not a registered image",
    ),
}


@pytest.mark.parametrize("case", list(COLMAP_CASES))
def test_colmap_text_errors(tmp_path, make_colmap_text, case):
    root = make_colmap_text(tmp_path)
    file, line, text, file_part, problem = COLMAP_CASES[case]
    if line is None:
        (root / file).write_text(text + "\n")
    else:
        edit_line(root / file, line, text)
    check(lambda: load_scene(root), file_part, problem)


def test_colmap_image_errors(tmp_path, make_colmap_text, write_image):
    root = make_colmap_text(tmp_path)
    (root / "images" / "im_03.png").unlink()
    check(lambda: load_scene(root), "images/im_03.png", "image file is missing")
    write_image(root / "images" / "im_03.png", 10, 6)
    check(lambda: load_scene(root), "images/im_03.png", "image is 10x6 but the camera is 8x6")


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_colmap_truncated_binary(tmp_path, make_colmap_text, write_colmap_binary, name):
    root = make_colmap_text(tmp_path)
    sparse = root / "sparse" / "0"
    write_colmap_binary(sparse, tmp_path / "bin")
    for path in list(sparse.iterdir()):
        path.unlink()
    for path in (tmp_path / "bin").iterdir():
        path.rename(sparse / path.name)
    corrupt(sparse / name, keep=len((sparse / name).read_bytes()) - 5)
    check(lambda: load_scene(root), f"sparse/0/{name}", "truncated binary file at byte")


LLFF_CASES = {
    "nan pose": (lambda rows: rows.__setitem__((1, 3), np.nan), "row 1 has a NaN or inf"),
    "wrong width": (lambda rows: rows[:, :16], "expected an [N, 17] array"),
    "bad near far": (lambda rows: rows.__setitem__((0, 16), 0.5), "row 0: invalid hwf or near/far"),
}


@pytest.mark.parametrize("case", list(LLFF_CASES))
def test_llff_errors(tmp_path, make_llff, case):
    root = make_llff(tmp_path, [np.eye(4), np.eye(4)], near=1.0, far=5.0)
    rows = np.load(root / "poses_bounds.npy")
    change, problem = LLFF_CASES[case]
    changed = change(rows)
    np.save(root / "poses_bounds.npy", rows if changed is None else changed)
    check(lambda: load_scene(root), "poses_bounds.npy", problem)


def test_llff_unreadable_npy(tmp_path, make_llff):
    root = make_llff(tmp_path, [np.eye(4)])
    (root / "poses_bounds.npy").write_bytes(b"junk")
    check(lambda: load_scene(root), "poses_bounds.npy", "not a readable .npy array")


LABEL_CASES = {
    "malformed json": ("{", "malformed JSON"),
    "no objects": (
        '{"info": {"name": "a.png", "width": 8, "height": 6}}',
        "missing required key 'objects'",
    ),
    "short polygon": (
        '{"info": {"name": "a.png", "width": 8, "height": 6}, "objects": '
        '[{"category": "cup", "segmentation": [[1, 1], [2, 2]]}]}',
        "object 0: segmentation needs at least 3",
    ),
    "bad size": (
        '{"info": {"name": "a.png", "width": -8, "height": 6}, "objects": []}',
        "width and height must be positive integers",
    ),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_lerf_label_errors(tmp_path, case):
    (tmp_path / "label").mkdir()
    text, problem = LABEL_CASES[case]
    (tmp_path / "label" / "frame_00001.json").write_text(text)
    check(lambda: load_lerf_labels(tmp_path), "label/frame_00001.json", problem)


def test_unrecognised_layout(tmp_path):
    check(
        lambda: load_scene(tmp_path),
        tmp_path.name,
        "not a recognised scene (expected transforms_train.json, sparse/0 or poses_bounds.npy)",
    )
