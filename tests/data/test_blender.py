"""Blender/NeRF layout: kitchen, axis conventions, alpha, greyscale, downscale, bounds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from csgaussian.data import load_scene, load_segmentation_masks
from csgaussian.data.colmap_io import read_model
from csgaussian.types import DataError


def project(camera, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates [P, 2] and depths [P] of world points [P, 3]."""
    cam = points @ camera.viewmat[:3, :3].T + camera.viewmat[:3, 3]
    uv = cam @ camera.K.T
    return uv[:, :2] / uv[:, 2:], cam[:, 2]


def test_kitchen_loads(kitchen):
    scene = load_scene(kitchen)
    assert scene.layout == "blender"
    assert (len(scene.train), len(scene.test)) == (64, 8)
    assert scene.class_names == [
        "coffee cup",
        "green bottle",
        "rubber duck",
        "white dice",
        "toy monkey",
        "blue plate",
        "table",
    ]
    view = scene.train[0]
    assert view.image.shape == (128, 128, 3) and view.image.dtype == torch.float32
    assert 0.0 <= view.image.min() and view.image.max() <= 1.0
    assert view.pixels.dtype == torch.uint8  # 3 bytes a pixel held, not 12
    old = np.asarray(Image.open(view.image_path).convert("RGB"), dtype=np.float32) / 255.0
    assert np.array_equal(view.image.numpy(), old)  # the float loader's values, bit for bit
    assert view.instance.shape == (128, 128) and view.instance.dtype == torch.uint8
    assert int(view.instance.max()) == 7
    assert view.camera.K[0, 0] == pytest.approx(64 / math.tan(0.8726646304130554 / 2), rel=1e-5)
    # the backdrop (instance 0) is a near-constant grey-blue
    assert torch.allclose(scene.background, view.image[view.instance == 0].mean(0), atol=0.03)


def test_kitchen_bounds_hold_its_content(kitchen, kitchen_colmap):
    bounds = load_scene(kitchen, load_instances=False).bounds
    points = torch.tensor(read_model(kitchen_colmap / "sparse" / "0").xyz, dtype=torch.float32)
    inside = ((points >= bounds[0]) & (points <= bounds[1])).all(1)
    assert inside.all()
    assert (bounds[1] - bounds[0]).max() < 6.0  # not the whole camera rig


def object_hit_rate(view, camera, points: torch.Tensor) -> float:
    """Share of in-frame projections of object points [P, 3] that land on an object pixel."""
    uv, depth = project(camera, points)
    ok = (depth > 0) & (uv >= 0).all(1) & (uv[:, 0] < camera.width) & (uv[:, 1] < camera.height)
    labels = view.instance[uv[ok, 1].long(), uv[ok, 0].long()]
    return float(((labels >= 1) & (labels <= 6)).float().mean())


def test_kitchen_object_points_project_onto_objects(kitchen, kitchen_colmap):
    """Object surface points (above the table) fall inside object silhouettes of the maps."""
    scene = load_scene(kitchen)
    xyz = read_model(kitchen_colmap / "sparse" / "0").xyz
    objects = torch.tensor(xyz[xyz[:, 2] > 0.05], dtype=torch.float32)
    for view in scene.test:
        assert object_hit_rate(view, view.camera, objects) > 0.85
    # a wrong camera does not pass (the check can fail)
    assert object_hit_rate(scene.test[0], scene.test[4].camera, objects) < 0.85


def test_opengl_pose_becomes_opencv_viewmat(tmp_path, make_blender):
    root = make_blender(tmp_path)
    scene = load_scene(root)
    meta = json.loads((root / "transforms_train.json").read_text())
    c2w = np.array(meta["frames"][1]["transform_matrix"])
    cam = scene.train[1].camera
    assert torch.allclose(cam.center.double(), torch.tensor(c2w[:3, 3]), atol=1e-5)
    # the origin is in front of the camera, at the principal point
    uv, depth = project(cam, torch.zeros(1, 3))
    assert depth[0] > 0
    assert torch.allclose(uv[0], cam.K[:2, 2], atol=1e-4)
    # OpenGL +Y (up) is OpenCV -Y: a point above the origin projects above the centre
    uv_up, _ = project(cam, torch.tensor([[0.0, 0.0, 0.5]]))
    assert uv_up[0, 1] < cam.K[1, 2]


def test_rgba_is_composited_on_white(tmp_path, make_blender):
    root = make_blender(tmp_path, mode="RGBA")
    scene = load_scene(root)
    raw = np.asarray(Image.open(root / "train" / "r_000.png"), dtype=np.float32) / 255
    expected = raw[..., :3] * raw[..., 3:] + (1 - raw[..., 3:])
    assert scene.train[0].pixels.dtype == torch.uint8 and scene.train[0].pixels.shape[-1] == 4
    assert np.array_equal(scene.train[0].image.numpy(), expected)
    assert torch.equal(scene.background, torch.ones(3))


def test_greyscale_becomes_three_channels(tmp_path, make_blender):
    scene = load_scene(make_blender(tmp_path, mode="L"))
    image = scene.train[0].image
    assert image.shape == (6, 8, 3)
    assert torch.equal(image[..., 0], image[..., 2])
    deep = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000  # 16-bit greyscale
    Image.fromarray(deep).save(tmp_path / "train" / "r_001.png")
    view = load_scene(tmp_path).train[1]
    assert view.pixels.dtype == torch.uint16  # 16 bits kept, not squashed into 8
    expected = deep.astype(np.float32) / 65535.0  # the float loader's values
    assert np.array_equal(view.image[..., 1].numpy(), expected)


def test_downscale_halves_size_and_intrinsics(tmp_path, make_blender):
    root = make_blender(tmp_path, width=8, height=6)
    full, half = load_scene(root), load_scene(root, downscale=2)
    a, b = full.train[0], half.train[0]
    assert b.image.shape == (3, 4, 3)
    assert a.pixels.dtype == torch.uint8 and b.pixels.dtype == torch.float32  # averages kept
    assert (b.camera.width, b.camera.height) == (4, 3)
    assert torch.allclose(b.camera.K[:2], a.camera.K[:2] / 2)
    # area averaging: each output pixel is the mean of a 2x2 block
    assert torch.allclose(b.image[1, 2], a.image[2:4, 4:6].reshape(-1, 3).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="downscale"):
        load_scene(root, downscale=0)


def test_optional_intrinsics_and_val_split(tmp_path, make_blender):
    root = make_blender(tmp_path)
    meta = json.loads((root / "transforms_train.json").read_text())
    meta.update(fl_x=10.0, fl_y=11.0, cx=3.5, cy=2.5)
    (root / "transforms_train.json").write_text(json.dumps(meta))
    (root / "transforms_test.json").rename(root / "transforms_val.json")
    (root / "test").rename(root / "val")
    val = json.loads((root / "transforms_val.json").read_text())
    val["frames"][0]["file_path"] = "./val/r_000.png"  # with extension
    (root / "transforms_val.json").write_text(json.dumps(val))
    scene = load_scene(root)
    assert scene.train[0].camera.K.tolist() == [[10.0, 0, 3.5], [0, 11.0, 2.5], [0, 0, 1]]
    assert len(scene.test) == 1 and scene.test[0].image_path.name == "r_000.png"


def test_instance_maps_are_optional_and_checked(tmp_path, make_blender):
    root = make_blender(tmp_path)
    (root / "segmentations").mkdir()
    (root / "segmentations" / "classes.txt").write_text("cup\nplate\n")
    (root / "instance").mkdir()
    label = np.full((6, 8), 2, np.uint8)
    label[0] = 0
    for name in ("train_000", "train_001", "test_000"):
        Image.fromarray(label).save(root / "instance" / f"{name}.png")
    scene = load_scene(root)
    assert scene.class_names == ["cup", "plate"]
    assert scene.train[1].instance[0].eq(0).all() and scene.train[1].instance[1].eq(2).all()
    assert load_scene(root, load_instances=False).train[0].instance is None
    assert load_scene(root, downscale=2).train[0].instance.shape == (3, 4)
    assert torch.equal(scene.background, torch.zeros(3))  # random pixels: no constant backdrop


def test_kitchen_segmentation_masks(kitchen):
    masks = load_segmentation_masks(kitchen)
    assert sorted(masks) == [f"{k:03d}" for k in range(8)]
    assert len(masks["000"]) == 7
    table = masks["000"]["table"]
    assert table.dtype == torch.bool and table.shape == (128, 128)
    scene = load_scene(kitchen)
    assert torch.equal(table, scene.test[0].instance == 7)


def test_image_size_is_checked_against_json(tmp_path, make_blender, write_image):
    root = make_blender(tmp_path)
    write_image(root / "train" / "r_001.png", 9, 6)
    with pytest.raises(DataError, match="r_001.png: image is 9x6 but the camera is 8x6"):
        load_scene(root)
