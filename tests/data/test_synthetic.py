"""The built-in synthetic scene: layout, determinism, round trip through load_scene, geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from csgaussian.data import SyntheticConfig, ensure_demo_scene, generate_scene, load_scene
from csgaussian.data.synthetic import render_ground_truth
from csgaussian.data.synthetic_geometry import Sphere, default_objects, object_center

SMALL = SyntheticConfig(width=64, height=48, n_train=6, n_test=2, seed=3)


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory) -> Path:
    return generate_scene(tmp_path_factory.mktemp("synthetic") / "scene", SMALL)


def test_layout_is_kitchens(small_scene):
    names = [obj.name for obj in default_objects()]
    assert (small_scene / "segmentations" / "classes.txt").read_text().splitlines() == names
    for split, count in (("train", 6), ("test", 2)):
        meta = json.loads((small_scene / f"transforms_{split}.json").read_text())
        assert set(meta) == {"camera_angle_x", "frames"}
        assert [f["file_path"] for f in meta["frames"]] == [
            f"./{split}/r_{k:03d}" for k in range(count)
        ]
        for k in range(count):
            assert (small_scene / split / f"r_{k:03d}.png").is_file()
            assert (small_scene / "instance" / f"{split}_{k:03d}.png").is_file()
    assert sorted(p.name for p in (small_scene / "segmentations").iterdir()) == [
        "000",
        "001",
        "classes.txt",
    ]
    assert {p.stem for p in (small_scene / "segmentations" / "001").iterdir()} == set(names)
    assert (small_scene / "README.md").is_file()


def test_loads_with_instances_and_names(small_scene):
    scene = load_scene(small_scene)
    assert scene.layout == "blender" and (len(scene.train), len(scene.test)) == (6, 2)
    assert scene.class_names == [obj.name for obj in default_objects()]
    view = scene.train[0]
    assert view.image.shape == (48, 64, 3) and view.instance.shape == (48, 64)
    assert set(view.instance.unique().tolist()) == {0, 1, 2, 3, 4, 5}  # sky and all objects
    assert torch.allclose(scene.background, torch.tensor(SMALL.sky), atol=1 / 255)
    inside = [(torch.tensor(object_center(o)) >= scene.bounds[0]).all() for o in default_objects()]
    assert all(inside)
    floor_corner = torch.tensor([1.4, 1.4, 0.0])
    assert ((floor_corner >= scene.bounds[0]) & (floor_corner <= scene.bounds[1])).all()


def touches_other_object(instance: torch.Tensor, index: int) -> bool:
    """Whether the mask of ``index`` borders another object's pixels (a possible occlusion)."""
    mask = (instance == index).float()[None, None]
    grown = torch.nn.functional.max_pool2d(mask, 3, stride=1, padding=1)[0, 0] > 0
    others = (instance >= 1) & (instance <= 4) & (instance != index)
    return bool((grown & others).any())


def test_object_centres_project_onto_their_masks(small_scene):
    """Centroid of each unoccluded object's mask vs the projection of its centre."""
    scene = load_scene(small_scene)
    checked = 0
    for view in scene.train + scene.test:
        cam = view.camera
        R, t = cam.viewmat[:3, :3].double(), cam.viewmat[:3, 3].double()
        for index, obj in enumerate(default_objects()[:4], start=1):
            mask = view.instance == index
            if mask.sum() < 20 or touches_other_object(view.instance, index):
                continue
            rows, cols = torch.nonzero(mask, as_tuple=True)
            centroid = torch.stack([cols.double().mean(), rows.double().mean()]) + 0.5
            xyz = R @ torch.tensor(object_center(obj)) + t
            uv = (cam.K.double() @ xyz)[:2] / xyz[2]
            assert (uv - centroid).norm() < 2.0, (view.image_path.name, obj.name)
            checked += 1
    assert checked >= 12


def test_rerender_with_loaded_camera_reproduces_images(small_scene):
    scene = load_scene(small_scene)
    view = scene.test[1]
    again = render_ground_truth(view.camera, SMALL)
    assert np.abs(again.rgb - view.image.numpy()).max() <= 1 / 255
    assert np.array_equal(again.instance, view.instance.numpy())


def test_depth_unprojects_onto_the_ball(small_scene):
    scene = load_scene(small_scene)
    ball = default_objects()[0]
    assert isinstance(ball, Sphere)
    cam = scene.train[2].camera
    out = render_ground_truth(cam, SMALL)
    rows, cols = np.nonzero(out.instance == 1)
    assert len(rows) > 20
    K_inv = torch.linalg.inv(cam.K.double()).numpy()
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones_like(rows, dtype=float)], 1)
    xyz_cam = (pixels @ K_inv.T) * out.depth[rows, cols, None]
    R, t = cam.viewmat[:3, :3].double().numpy(), cam.viewmat[:3, 3].double().numpy()
    world = (xyz_cam - t) @ R
    distance = np.linalg.norm(world - np.asarray(ball.center), axis=1)
    assert np.allclose(distance, ball.radius, atol=1e-4)
    assert np.isinf(out.depth[out.instance == 0]).all()


def test_deterministic_for_a_seed(tmp_path, small_scene):
    again = generate_scene(tmp_path / "again", SMALL)
    for name in ("transforms_train.json", "train/r_003.png", "instance/test_001.png"):
        assert (again / name).read_bytes() == (small_scene / name).read_bytes()
    other = generate_scene(
        tmp_path / "other", SyntheticConfig(width=16, height=12, n_train=6, n_test=1, seed=4)
    )
    a = json.loads((small_scene / "transforms_train.json").read_text())["frames"][0]
    b = json.loads((other / "transforms_train.json").read_text())["frames"][0]
    assert a["transform_matrix"] != b["transform_matrix"]


def test_ensure_demo_scene_generates_once(tmp_path):
    config = SyntheticConfig(width=16, height=12, n_train=2, n_test=1)
    first = ensure_demo_scene(tmp_path, config)
    stamp = (first / "transforms_train.json").stat().st_mtime_ns
    second = ensure_demo_scene(tmp_path, config)
    assert first == second and (second / "transforms_train.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary folder left
    assert len(load_scene(first).train) == 2
    other = ensure_demo_scene(tmp_path, SyntheticConfig(width=16, height=12, n_train=3, n_test=1))
    assert other != first


def test_config_is_checked():
    with pytest.raises(ValueError, match="must be >= 1"):
        SyntheticConfig(n_test=0)
