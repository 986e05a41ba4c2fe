"""LLFF layout: pose axis conversion, split, bounds, images_<f>, 3D-OVS masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from csgaussian.data import load_scene, load_segmentation_masks
from csgaussian.types import DataError


def opencv_c2w(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world [4, 4] in OpenCV axes at ``center`` looking at ``target`` (+y world up)."""
    forward = (target - center) / np.linalg.norm(target - center)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = (
        right,
        np.cross(forward, right),
        forward,
        center,
    )
    return c2w


@pytest.fixture
def forward_facing() -> list[np.ndarray]:
    target = np.array([0.0, 0.0, -4.0])
    return [opencv_c2w(np.array([0.2 * k - 0.8, 0.1 * (k % 3), 0.0]), target) for k in range(9)]


def test_poses_convert_to_opencv(tmp_path, make_llff, forward_facing):
    scene = load_scene(make_llff(tmp_path, forward_facing))
    assert scene.layout == "llff"
    assert len(scene.test) == 2 and len(scene.train) == 7  # images 0 and 8 held out
    for view, c2w in zip(scene.train, forward_facing[1:8], strict=True):
        cam = view.camera
        assert torch.allclose(cam.center.double(), torch.tensor(c2w[:3, 3]), atol=1e-5)
        forward = cam.viewmat[2, :3].double()
        assert torch.allclose(forward, torch.tensor(c2w[:3, 2]), atol=1e-5)
        # the look-at target projects to the principal point, in front of the camera
        xyz = cam.viewmat[:3, :3] @ torch.tensor([0.0, 0.0, -4.0]) + cam.viewmat[:3, 3]
        assert xyz[2] > 0
        assert torch.allclose((cam.K @ xyz)[:2] / xyz[2], cam.K[:2, 2], atol=1e-4)
    assert cam.K.tolist() == [[7, 0, 4], [0, 7, 3], [0, 0, 1]]


def test_llff_axis_order_is_down_right_back(tmp_path, make_llff):
    """An LLFF identity rotation means camera down = world x, right = world y, back = world z."""
    row = np.concatenate(
        [np.concatenate([np.eye(3), np.zeros((3, 1)), [[6], [8], [7]]], 1).ravel(), [1.0, 5.0]]
    )
    make_llff(tmp_path, [np.eye(4)])
    np.save(tmp_path / "poses_bounds.npy", row[None])
    cam = load_scene(tmp_path).test[0].camera
    assert torch.allclose(cam.viewmat[:3, :3], torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]]))


def test_bounds_cover_the_frusta(tmp_path, make_llff, forward_facing):
    scene = load_scene(make_llff(tmp_path, forward_facing, near=1.0, far=5.0))
    target = torch.tensor([0.0, 0.0, -4.0])
    assert ((target >= scene.bounds[0]) & (target <= scene.bounds[1])).all()
    for view in scene.train:
        assert (view.camera.center >= scene.bounds[0] - 1e-5).all()
    assert (scene.bounds[1] - scene.bounds[0]).max() < 12


def test_reduced_images_folder(tmp_path, make_llff, write_image, forward_facing):
    root = make_llff(tmp_path, forward_facing[:2])
    for k in range(2):
        write_image(root / "images_2" / f"{k:03d}.png", 4, 3, seed=k)
    view = load_scene(root, downscale=2).train[0]
    assert view.image_path.parent.name == "images_2" and view.image.shape == (3, 4, 3)
    assert torch.allclose(view.camera.K[0], torch.tensor([3.5, 0, 2]))
    resized = load_scene(root, downscale=1).train[0]
    assert resized.image.shape == (6, 8, 3)


def test_pose_count_must_match_images(tmp_path, make_llff, forward_facing):
    root = make_llff(tmp_path, forward_facing[:3])
    (root / "images" / "002.png").unlink()
    with pytest.raises(DataError, match=r"poses_bounds.npy: 3 poses but 2 images"):
        load_scene(root)


def test_3dovs_segmentations(tmp_path, make_llff, forward_facing):
    root = make_llff(tmp_path, forward_facing[:2])
    seg = root / "segmentations"
    (seg / "00").mkdir(parents=True)
    (seg / "classes.txt").write_text("sofa\nlamp\n")
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 1:3] = 255
    Image.fromarray(mask).save(seg / "00" / "lamp.png")
    assert load_scene(root).class_names == ["sofa", "lamp"]
    masks = load_segmentation_masks(root)
    assert list(masks) == ["00"] and list(masks["00"]) == ["lamp"]
    assert masks["00"]["lamp"].sum() == 4 and masks["00"]["lamp"][2, 1]
    Image.fromarray(mask).save(seg / "00" / "chair.png")
    with pytest.raises(DataError, match=r"chair.png: class 'chair' is not in classes.txt"):
        load_segmentation_masks(root)
