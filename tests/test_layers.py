"""The package's import layers (docs/architecture.md) hold: import-linter's contract in
pyproject.toml, checked on every test run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_contract_is_kept(monkeypatch) -> None:
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # this checkout's package, not another install
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, (
        "an import runs against the layers of docs/architecture.md: run `lint-imports`"
    )


def test_contract_lists_every_top_level_module() -> None:
    """A new subpackage or top-level module must be placed in a layer, else it is unchecked."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    placed = {m.strip() for layer in contract["layers"] for m in layer.split("|")}
    package = ROOT / "csgaussian"
    present = {
        f"csgaussian.{p.stem}"
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert present == placed, (
        f"unplaced: {sorted(present - placed)}, gone: {sorted(placed - present)}"
    )
