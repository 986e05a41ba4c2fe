"""The opening view: the stream's first capture camera when it stores one, else a frame of the
anchors' bulk, not their far background shell."""

import dataclasses
import math

import numpy as np
import torch

from csgaussian import api
from csgaussian.viewer.opening import BULK_SHARE, opening_view


def test_the_opening_view_looks_at_the_bulk_from_inside_the_shell(tiny_run):
    scene = dataclasses.replace(api.decode(tiny_run / "stream.csg"), cameras=[])
    view = opening_view(scene)
    anchors = scene.model.anchors.double()
    centre = anchors.median(dim=0).values.numpy()
    assert np.allclose(view.look_at, centre)
    distance = np.linalg.norm(view.position - view.look_at)
    reach = (anchors - torch.from_numpy(centre)).norm(dim=1)
    assert float(torch.quantile(reach, BULK_SHARE)) < distance < 4 * float(reach.max())
    assert np.isfinite(view.position).all() and view.up @ view.up == 1.0


def test_a_stream_with_cameras_opens_at_its_first_one(tiny_run):
    scene = api.decode(tiny_run / "stream.csg")
    assert scene.cameras
    camera = scene.cameras[0]
    view = opening_view(scene)
    assert np.allclose(view.position, camera.center.double().numpy(), atol=1e-6)
    # the look-at point and the up direction project to the image centre column, up
    world_to_camera = camera.viewmat.double().numpy()
    look = world_to_camera[:3, :3] @ view.look_at + world_to_camera[:3, 3]
    assert look[2] > 0 and np.allclose(look[:2], 0, atol=1e-6)
    up = world_to_camera[:3, :3] @ view.up
    assert np.allclose(up, [0, -1, 0], atol=1e-6)  # OpenCV's y points down
    assert math.isclose(
        view.fov, 2 * math.atan(camera.height / (2 * float(camera.K[1, 1]))), rel_tol=1e-9
    )
    # looking at the anchors: the median depth of those in front
    depths = (scene.model.anchors.double() - camera.center.double()) @ torch.from_numpy(
        world_to_camera[2, :3]
    )
    assert math.isclose(look[2], float(depths[depths > 0].median()), rel_tol=0.1)


def test_the_viewers_edited_scene_keeps_the_cameras(tiny_run):
    from csgaussian.viewer.session import ViewerSession

    scene = api.decode(tiny_run / "stream.csg")
    assert ViewerSession(scene, tiny_run / "stream.csg").edited_scene().cameras == scene.cameras
