"""Scene edits on the rendered views of a decoded tiny stream: removal leaves the rest alone, a
duplicate adds a copy and keeps the original, a recolour moves only the object's hue."""

import pytest
import torch
import torch.nn.functional as F

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.scene.decoded import Scene
from csgaussian.scene.edits import SceneEdit, luma, recolor
from csgaussian.scene.rendering import render_view
from csgaussian.semantics.query import render_selection

TOLERANCE = 2 / 255
DILATION = 2
"""Pixels of dilation of the object's silhouette (the footprint of its Gaussians' tails)."""
MIN_OUTSIDE = 0.25
"""Share of each test view the edited object must leave outside its silhouette (a few-iteration
tiny run may give a name a selection that covers whole views)."""


def _silhouette(model, camera, slots, edit=None) -> torch.Tensor:
    """Pixels the selected Gaussians reach (alpha > 1/255 rendered alone), dilated."""

    def alone(g):
        g = edit(g) if edit else g
        return g.subset(slots[g.anchor_index, g.offset_index])

    alpha = render_view(model, camera, edit=alone).raster.alpha[..., 0]
    mask = (alpha > 1 / 255).float()[None, None]
    return F.max_pool2d(mask, 2 * DILATION + 1, 1, DILATION)[0, 0] > 0


def _share(model, camera, slots, edit) -> torch.Tensor:
    """Per pixel, the share of the rendered weight held by the selected slots' Gaussians."""
    out = render_view(
        model, camera, edit=edit, extra=lambda g: slots[g.anchor_index, g.offset_index][:, None]
    )
    return out.extra[..., 0] / out.raster.alpha[..., 0].clamp_min(1e-6)


def _hue_gap(pixels: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Mean angular distance of the pixels' hue ``[P, 3]`` to ``hue``."""
    gap = (_hue(pixels) - hue).remainder(2 * torch.pi)
    return torch.minimum(gap, 2 * torch.pi - gap).mean()


def _hue(rgb: torch.Tensor) -> torch.Tensor:
    """Chroma angle in BT.601 Cb/Cr of ``[..., 3]``."""
    y = luma(rgb)
    return torch.atan2(0.713 * (rgb[..., 0] - y), 0.564 * (rgb[..., 2] - y))


@pytest.fixture(scope="module")
def edited(tiny_run, tiny_scene, tiny_names):
    scene = api.decode(tiny_run / "stream.csg")
    cameras = [view.camera for view in load_scene(tiny_scene).test]
    selections = [api.query(scene, name) for name in tiny_names]

    def leaves_room(selection) -> bool:  # pixels outside the object to compare, in every view
        outside = [(~_silhouette(scene.model, c, selection.slots)).float().mean() for c in cameras]
        return min(outside) >= MIN_OUTSIDE

    candidates = [s for s in selections if s.matched and s.n_gaussians > 0 and leaves_room(s)]
    assert candidates, "no object of the tiny run leaves room around it in the test views"
    best = max(candidates, key=lambda s: s.n_gaussians)
    return scene, best.text, best.slots, cameras


def test_removal_leaves_pixels_outside_the_object_unchanged(edited):
    scene, name, slots, cameras = edited
    removed = api.edit(scene, [api.Remove(name)])
    assert not scene.edits and [e.kind for e in removed.edits] == ["remove"]
    assert torch.equal(removed.edits[0].slots, slots)
    for camera in cameras:
        before, after = api.render_scene(scene, camera), api.render_scene(removed, camera)
        outside = ~_silhouette(scene.model, camera, slots)
        same = ((before - after).abs().amax(-1) <= TOLERANCE)[outside]
        assert same.float().mean() >= 0.99
        assert not render_selection(removed.model, camera, slots, removed.edit_hook())[
            "visible"
        ].any()


def test_extract_keeps_only_the_object(edited):
    scene, name, slots, cameras = edited
    kept = api.edit(scene, [api.Extract(name)])
    for camera in cameras:
        alpha = render_view(kept.model, camera, edit=kept.edit_hook()).raster.alpha[..., 0]
        assert (alpha[~_silhouette(scene.model, camera, slots)] < 0.01).all()


def _blob_slots(model, camera) -> tuple[torch.Tensor, float]:
    """A compact selection: the active slots within a ball around the surface point at the
    image centre (the tiny run's queries match only its floor); and the ball's radius."""
    rendered = render_view(model, camera)
    h, w = camera.height // 2, camera.width // 2
    depth = float(rendered.raster.depth[h, w, 0].detach())
    ray = torch.linalg.solve(camera.K, torch.tensor([w + 0.5, h + 0.5, 1.0]))
    centre = camera.viewmat[:3, :3].T @ (ray * depth - camera.viewmat[:3, 3])
    world = model.anchors[:, None] + model.offsets * torch.exp(model.log_scaling[:, None, :3])
    radius = 0.12 * float((model.anchors.amax(0) - model.anchors.amin(0)).norm())
    return model.active_slots() & ((world - centre).norm(dim=-1) < radius), radius


def test_duplicate_shows_the_object_at_the_offset_and_keeps_the_original(edited):
    scene, _, _, cameras = edited
    camera = cameras[0]
    slots, radius = _blob_slots(scene.model, camera)
    offset = tuple((camera.viewmat[0, :3] * 1.2 * radius).tolist())  # to the camera's right
    duplicated = Scene(scene.model, edits=[SceneEdit("duplicate", slots, offset=offset)])

    def moved_alone(g):
        copy = g.subset(slots[g.anchor_index, g.offset_index])
        copy.means = copy.means + torch.tensor(offset)
        return copy

    original = render_selection(scene.model, camera, slots)["silhouette"]
    copy = render_view(scene.model, camera, edit=moved_alone).raster.alpha[..., 0] > 0.7
    moved = copy & ~original  # where the copy covers, away from the original's core
    before = _share(scene.model, camera, slots, None)
    after = _share(duplicated.model, camera, slots, duplicated.edit_hook())
    assert moved.sum() > 0.2 * original.sum() > 0
    # the tiny scene's Gaussians are wide: the object's share there rises from ~0.14 to ~0.31
    assert after[moved].mean() > before[moved].mean() + 0.1  # the copy is drawn at the offset
    assert after[original].mean() >= before[original].mean() - 1e-4  # the original stays
    before, now = api.render_scene(scene, camera), api.render_scene(duplicated, camera)
    unchanged = (before - now).abs().amax(-1) <= TOLERANCE
    assert unchanged[~_silhouette(scene.model, camera, slots, duplicated.edit_hook())].all()


def test_recolor_moves_hue_to_the_target_and_keeps_luminance(edited):
    scene, name, _, cameras = edited
    slots, _ = _blob_slots(scene.model, cameras[0])
    stored = (0.1, 0.3, 0.95)
    recoloured = Scene(scene.model, edits=[SceneEdit("recolor", slots, color=stored)])
    target_hue = _hue(torch.tensor(stored))
    for camera in cameras:
        before, after = api.render_scene(scene, camera), api.render_scene(recoloured, camera)
        inside = _silhouette(scene.model, camera, slots)
        changed = (before - after).abs().amax(-1) > TOLERANCE
        assert not (changed & ~inside).any()
        obj = render_selection(scene.model, camera, slots)["visible"]
        if obj.sum() < 5:
            continue
        assert _hue_gap(after[obj], target_hue) < 0.5 * _hue_gap(before[obj], target_hue)
        lum_before, lum_after = luma(before[obj]), luma(after[obj])
        assert torch.corrcoef(torch.stack([lum_before, lum_after]))[0, 1] > 0.8  # tiny: 0.86


def test_recolor_formula_keeps_luma_and_takes_the_target_chroma():
    colors = torch.tensor([[0.2, 0.4, 0.3], [0.6, 0.5, 0.4]])
    target = torch.tensor([0.2, 0.3, 0.6])  # no channel leaves [0, 1]: no clamping
    out = recolor(colors, target)
    assert torch.allclose(luma(out), luma(colors), atol=1e-6)
    assert torch.allclose(out - luma(out)[:, None], (target - luma(target)).expand(2, 3))
