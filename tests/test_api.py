"""The API facade (csgaussian/api.py): its public names are ``__all__``, re-exported by the
package; the training side's are imported on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import csgaussian
from csgaussian import api


def test_package_exports_exactly_the_api() -> None:
    assert csgaussian.__all__ == api.__all__
    package = Path(csgaussian.__file__).parent
    shadowed = {name for name in api.__all__ if (package / name / "__init__.py").is_file()}
    assert shadowed == {"export", "render", "train", "viewer"}  # named as subpackages (item 4)
    for name in set(api.__all__) - shadowed:  # an imported subpackage replaces the attribute
        assert getattr(csgaussian, name) is getattr(api, name), name
    assert set(api.LAZY) <= set(api.__all__)


def test_importing_the_package_loads_no_training_code() -> None:
    code = (
        "import sys, csgaussian\n"
        "bad = sorted(m for m in sys.modules if m.startswith('csgaussian.train'))\n"
        "assert not bad, bad\n"
        "assert callable(csgaussian.train) and csgaussian.train is csgaussian.api.train\n"
        "assert 'csgaussian.train.commands' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
