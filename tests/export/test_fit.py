"""The SH export of a decoded stream: fit quality, PLY contents and the one-object export."""

from __future__ import annotations

from dataclasses import replace

import torch

from csgaussian import api
from csgaussian.data import load_scene
from csgaussian.eval.metrics import psnr
from csgaussian.export.fit import ExportConfig, fit_export
from csgaussian.export.scene import export_scene
from csgaussian.ply import read_gaussians_ply
from csgaussian.render import rasterize_gaussians
from csgaussian.render.sh import rasterize_sh
from csgaussian.semantics.query import select

# Small and fast: the tiny scene is 48 x 40 pixels.
FAST = ExportConfig(fit_iterations=80, n_views=24, image_size=48)


def test_fitted_export_beats_the_single_view_bake_on_held_out_views(tiny_run, tiny_scene):
    """Held-out views (the dataset's test cameras, never sampled by the fit) rendered from the
    export by the plain SH rasterizer are closer to the decoded model's renders than the bake
    of all Gaussians seen from the mean training camera (the previous export)."""
    model = api.load_model(tiny_run / "stream.csg")
    data = load_scene(tiny_scene)
    fitted = fit_export(model, FAST)
    eye = torch.stack([view.camera.center for view in data.train]).mean(0)
    baked = api.static_gaussians(model, eye)
    background = model.background_color().detach()
    gains = []
    with torch.no_grad():
        for view in data.test:
            reference = api.render_camera(model, view.camera)
            g = fitted
            ours = rasterize_sh(
                g.means, g.quats, g.scales, g.opacities, g.sh, view.camera, background
            )
            b = baked
            bake = rasterize_gaussians(
                b.means, b.quats, b.scales, b.opacities, b.colors, view.camera, background
            )
            gains.append(
                psnr(ours.colors.clamp(0, 1), reference) - psnr(bake.colors.clamp(0, 1), reference)
            )
    assert min(gains) > 1.0, gains


def _closeness_to_decoded(model, gaussians, views) -> float:
    """Mean PSNR of the export's renders against the decoded model's on ``views``."""
    background = model.background_color().detach()
    g = gaussians
    with torch.no_grad():
        scores = [
            psnr(
                rasterize_sh(
                    g.means, g.quats, g.scales, g.opacities, g.sh, view.camera, background
                ).colors.clamp(0, 1),
                api.render_camera(model, view.camera),
            )
            for view in views
        ]
    return sum(scores) / len(scores)


def test_capture_cameras_and_pruning_bring_the_closed_form_closer(tiny_run, tiny_scene):
    """On held-out views: the closed form with the capture cameras the stream holds (the
    viewpoints the model was trained for) beats the one at an orbit alone, and dropping the
    Gaussians that would be fog where the model hides them beats keeping them."""
    scene = api.decode(tiny_run / "stream.csg")
    assert scene.cameras, "training stores its cameras in the stream"
    views = load_scene(tiny_scene).test
    closed = ExportConfig(fit_iterations=0, image_size=48, n_views=8)
    at_cameras = fit_export(scene.model, closed, cameras=scene.cameras)
    unpruned = fit_export(scene.model, replace(closed, prune_passes=0), cameras=scene.cameras)
    orbit = fit_export(scene.model, closed)
    assert len(at_cameras) < len(unpruned)
    ours = _closeness_to_decoded(scene.model, at_cameras, views)
    assert ours > _closeness_to_decoded(scene.model, orbit, views) + 0.4
    assert ours > _closeness_to_decoded(scene.model, unpruned, views) + 0.2


def test_ply_holds_sh_and_the_semantic_columns(tiny_run, tmp_path):
    scene = api.decode(tiny_run / "stream.csg")
    report = export_scene(scene, tmp_path / "s.ply", ExportConfig(fit_iterations=0, n_views=8))
    ply = read_gaussians_ply(tmp_path / "s.ply")
    n = report["gaussians"]
    assert ply["sh"].shape == (n, 16, 3)
    assert ply["semantic"].shape == (n, scene.semantics.field.config.feature_dim)
    torch.testing.assert_close(ply["semantic"].norm(dim=1), torch.ones(n), atol=1e-5, rtol=0)
    entries = scene.semantics.language.shape[0]
    assert ((ply["instance_id"] >= -1) & (ply["instance_id"] < entries)).all()
    assert (ply["instance_id"] >= 0).any()


def test_select_export_holds_only_the_objects_gaussians(tiny_run, tiny_scene, tiny_names, tmp_path):
    scene = api.decode(tiny_run / "stream.csg")
    name = next(n for n in tiny_names if select(scene, n).matched)
    config = ExportConfig(fit_iterations=0, n_views=8)
    whole = export_scene(scene, tmp_path / "all.ply", config)
    alone = export_scene(scene, tmp_path / "one.ply", config, select_text=name)
    selection = select(scene, name)
    ply = read_gaussians_ply(tmp_path / "one.ply")
    assert 0 < alone["gaussians"] < whole["gaussians"]
    assert set(ply["instance_id"].tolist()) <= set(selection.entries)
    everything = read_gaussians_ply(tmp_path / "all.ply")
    chosen = torch.isin(everything["leaf_id"], torch.tensor(selection.leaves))
    assert int(chosen.sum()) == alone["gaussians"]
    torch.testing.assert_close(ply["means"], everything["means"][chosen])
