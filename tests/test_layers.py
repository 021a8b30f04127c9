"""Every module of the package sits in one of the import-linter layers (pyproject.toml), so a
new module cannot slip past the layer contract that ``make layers`` checks."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_is_placed_in_a_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    placed = {name.strip() for layer in contract["layers"] for name in layer.replace("|", ":").split(":")}
    modules = {p.stem for p in (ROOT / "loopwm_rl").glob("*.py") if p.stem != "__init__"} | {"agents", "envs"}
    assert modules - placed == set(), f"add these modules to a layer in pyproject.toml: {sorted(modules - placed)}"
    assert placed - modules == set(), f"layers name modules that do not exist: {sorted(placed - modules)}"
