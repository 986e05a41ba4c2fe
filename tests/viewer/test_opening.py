"""The opening view frames the anchors' bulk, not their far background shell."""

import numpy as np
import torch

from csgaussian import api
from csgaussian.viewer.opening import BULK_SHARE, opening_view


def test_the_opening_view_looks_at_the_bulk_from_inside_the_shell(tiny_run):
    scene = api.decode(tiny_run / "stream.csg")
    view = opening_view(scene)
    anchors = scene.model.anchors.double()
    centre = anchors.median(dim=0).values.numpy()
    assert np.allclose(view.look_at, centre)
    distance = np.linalg.norm(view.position - view.look_at)
    reach = (anchors - torch.from_numpy(centre)).norm(dim=1)
    assert float(torch.quantile(reach, BULK_SHARE)) < distance < 4 * float(reach.max())
    assert np.isfinite(view.position).all() and view.up @ view.up == 1.0
