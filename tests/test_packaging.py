"""The package as installed: declared dependencies, shipped assets, entry points."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import tomllib

import synthgen
from synthgen import assets

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _distribution(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_distributions(folder: Path) -> dict[str, set[str]]:
    """Third-party distributions imported by the modules under `folder`, with an importing file each."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "synthgen":
                    continue
                for dist in owners.get(top, [top]):
                    found.setdefault(dist.lower().replace("_", "-"), set()).add(str(path.relative_to(ROOT)))
    return found


def test_what_is_imported_is_declared_and_what_is_declared_is_imported():
    declared = {_distribution(r) for r in PYPROJECT["project"]["dependencies"]}
    imported = _imported_distributions(ROOT / "synthgen")
    imported.pop("distributed", None)  # dask.distributed: declared as dask[distributed]
    assert set(imported) - declared == set(), {d: imported[d] for d in set(imported) - declared}
    assert declared - set(imported) == set()


def test_every_shipped_asset_is_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["synthgen"]
    tracked = subprocess.run(["git", "ls-files", "synthgen/assets"], cwd=ROOT, capture_output=True, text=True)
    files = [Path(line).relative_to("synthgen") for line in tracked.stdout.split()] if tracked.returncode == 0 else \
        [p.relative_to(ROOT / "synthgen") for p in (ROOT / "synthgen" / "assets").rglob("*") if p.is_file()]
    data = [f for f in files if f.suffix != ".py" and "__pycache__" not in f.parts]
    assert data, "no assets found"
    unshipped = [str(f) for f in data if not any(f.match(pattern) for pattern in patterns)]
    assert unshipped == []


def test_assets_are_found_through_the_package():
    assert assets.HAND_MESH.is_file() and (assets.DEFAULT_MODEL / "model.safetensors").is_file()
    assert (assets.DEPTHNET / "config.json").is_file()
    assert assets.HAND_MESH.parent == Path(synthgen.__file__).parent / "assets"


def test_entry_points_and_version():
    assert PYPROJECT["project"]["scripts"] == {"synthgen": "synthgen.cli:main"}
    assert "py-modules" not in PYPROJECT["tool"]["setuptools"]  # no top-level `cli` in site-packages
    for command in ([sys.executable, "-m", "synthgen", "--version"], [sys.executable, str(ROOT / "cli.py"), "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0 and result.stdout.strip() == f"synthgen {synthgen.__version__}", result
