"""COLMAP layout: kitchen_colmap vs kitchen, binary = text, splits, distortion, LERF labels."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from csgaussian.data import load_lerf_labels, load_scene, load_segmentation_masks
from csgaussian.data.colmap import qvec_to_rotation


def test_kitchen_colmap_matches_kitchen(kitchen, kitchen_colmap):
    colmap, blender = load_scene(kitchen_colmap), load_scene(kitchen)
    assert colmap.layout == "colmap"
    assert (len(colmap.train), len(colmap.test)) == (64, 8)
    assert [v.image_path.name for v in colmap.test] == [f"frame_{k:05d}.png" for k in range(65, 73)]
    for ours, theirs in zip(colmap.train + colmap.test, blender.train + blender.test, strict=True):
        assert torch.allclose(ours.camera.center, theirs.camera.center, atol=1e-3)
        assert torch.allclose(ours.camera.viewmat, theirs.camera.viewmat, atol=1e-3)
        assert torch.allclose(ours.camera.K, theirs.camera.K, atol=1e-4)
    assert colmap.class_names == sorted(blender.class_names)
    assert colmap.points.shape[1] == 3 and colmap.point_colors.max() <= 1.0
    inside = ((colmap.points >= colmap.bounds[0]) & (colmap.points <= colmap.bounds[1])).all(1)
    assert inside.float().mean() > 0.99


def test_kitchen_colmap_points_project_into_images(kitchen, kitchen_colmap):
    colmap, blender = load_scene(kitchen_colmap), load_scene(kitchen)
    above = colmap.points[colmap.points[:, 2] > 0.05]  # object surfaces, not the table
    for ours, theirs in zip(colmap.test, blender.test, strict=True):
        cam = ours.camera
        xyz = above @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
        uv = (xyz @ cam.K.T)[:, :2] / xyz[:, 2:]
        assert (xyz[:, 2] > 0).all()
        ok = (uv >= 0).all(1) & (uv < 128).all(1)
        assert ok.float().mean() > 0.95
        labels = theirs.instance[uv[ok, 1].long(), uv[ok, 0].long()]
        assert ((labels >= 1) & (labels <= 6)).float().mean() > 0.85


def test_binary_model_loads_like_text(tmp_path, kitchen_colmap, write_colmap_binary):
    root = tmp_path / "scene"
    root.mkdir()
    (root / "images").symlink_to(kitchen_colmap / "images")
    shutil.copy(kitchen_colmap / "test_frames.txt", root)
    write_colmap_binary(kitchen_colmap / "sparse" / "0", root / "sparse" / "0")
    assert not list((root / "sparse" / "0").glob("*.txt"))
    text, binary = load_scene(kitchen_colmap), load_scene(root)
    assert [v.image_path.name for v in binary.train] == [v.image_path.name for v in text.train]
    for a, b in zip(text.train + text.test, binary.train + binary.test, strict=True):
        assert torch.allclose(a.camera.viewmat, b.camera.viewmat, atol=1e-6)
        assert torch.equal(a.camera.K, b.camera.K)
    assert torch.allclose(text.points, binary.points) and torch.equal(
        text.point_colors, binary.point_colors
    )
    assert torch.equal(text.bounds, binary.bounds)


def test_tiny_binary_with_tracks(tmp_path, make_colmap_text, write_colmap_binary):
    root = make_colmap_text(tmp_path)
    images = root / "sparse" / "0" / "images.txt"
    lines = images.read_text().splitlines()
    lines[2] = "1.5 2.5 1 3.0 4.0 -1"  # two 2D points for the first image
    images.write_text("\n".join(lines) + "\n")
    write_colmap_binary(root / "sparse" / "0", tmp_path / "bin")
    for path in (root / "sparse" / "0").iterdir():
        path.unlink()
    for path in (tmp_path / "bin").iterdir():
        shutil.move(path, root / "sparse" / "0" / path.name)
    scene = load_scene(root)
    assert len(scene.train) + len(scene.test) == 9
    assert scene.points.tolist() == [[0, 0, 0], [1, 1, 1], [-1, 0, 2]]


def test_every_eighth_image_is_test_and_poses(tmp_path, make_colmap_text):
    scene = load_scene(make_colmap_text(tmp_path, n_images=9))
    assert [v.image_path.name for v in scene.test] == ["im_00.png", "im_08.png"]
    assert len(scene.train) == 7
    cam = scene.train[0].camera  # im_01: identity rotation, t = (0.1, 0, 4)
    assert torch.allclose(cam.center, torch.tensor([-0.1, 0.0, -4.0]))
    assert cam.K.tolist() == [[7, 0, 4], [0, 7, 3], [0, 0, 1]]
    assert scene.points.shape == (3, 3) and scene.class_names == []


def test_quaternion_convention():
    half = np.sqrt(0.5)  # 90 degrees about +z
    R = qvec_to_rotation(np.array([half, 0, 0, half]))
    assert np.allclose(R @ [1, 0, 0], [0, 1, 0])


@pytest.mark.parametrize(
    ("model", "params", "K"),
    [
        ("SIMPLE_PINHOLE", "7 4 3", [7, 7, 4, 3]),
        ("SIMPLE_RADIAL", "7 4 3 0.1", [7, 7, 4, 3]),
        ("RADIAL", "7 4 3 0.1 0.01", [7, 7, 4, 3]),
        ("OPENCV", "7 8 4 3 0.1 0 0 0", [7, 8, 4, 3]),
    ],
)
def test_camera_models_and_distortion_warning(tmp_path, make_colmap_text, model, params, K):
    root = make_colmap_text(tmp_path, model=model, params=params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = load_scene(root)
    cam = scene.train[0].camera
    assert [cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]] == K
    distortion = [w for w in caught if "distortion" in str(w.message)]
    assert len(distortion) == (0 if model == "SIMPLE_PINHOLE" else 1)


def test_images_folder_at_the_downscale_is_used(tmp_path, make_colmap_text, write_image):
    root = make_colmap_text(tmp_path, n_images=2, width=8, height=6)
    for k in range(2):
        write_image(root / "images_2" / f"im_{k:02d}.png", 4, 3, seed=10 + k)
    scene = load_scene(root, downscale=2)
    view = scene.train[0]
    assert view.image_path.parent.name == "images_2" and view.image.shape == (3, 4, 3)
    assert view.camera.K.tolist() == [[3.5, 0, 2], [0, 3.5, 1.5], [0, 0, 1]]


def test_lerf_labels_match_kitchen_masks(kitchen, kitchen_colmap):
    labels = load_lerf_labels(kitchen_colmap)
    masks = load_segmentation_masks(kitchen)
    assert sorted(labels) == [f"frame_{k:05d}.png" for k in range(65, 73)]
    ious = []
    for (_, ours), (_, theirs) in zip(sorted(labels.items()), sorted(masks.items()), strict=True):
        assert set(ours) == set(theirs)
        for category, mask in ours.items():
            assert mask.dtype == torch.bool and mask.shape == (128, 128)
            ious.append(float((mask & theirs[category]).sum() / (mask | theirs[category]).sum()))
    assert np.mean(ious) > 0.85 and min(ious) > 0.6
