"""Pick a query that selects an object the camera sees well, whatever the tiny run learned."""

from __future__ import annotations

from csgaussian.scene.decoded import Scene
from csgaussian.semantics.query import render_selection, select
from csgaussian.types import Camera


def most_visible(scene: Scene, camera: Camera, names: list[str]) -> tuple[str, int]:
    """The name among ``names`` whose selection covers the most of ``camera``'s pixels, and
    that count: which leaf a few-iteration tiny run gives a name depends on float rounding, so
    a test that needs a visible selection asks for the best-placed one instead of a fixed name."""
    covered = {}
    for name in names:
        selection = select(scene, name)
        if selection.matched:
            mask = render_selection(scene.model, camera, selection.slots)
            covered[name] = int(mask["visible"].sum())
    name = max(covered, key=covered.__getitem__)
    return name, covered[name]
