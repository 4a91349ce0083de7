"""The package's shape as a newcomer reads it: small modules, no import cycle, HDF5 opened in one
place, settings defined once and agreeing with the workflow's configuration, a fast CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGE = ROOT / "weakstil"
PLUGIN = ROOT / "plugins" / "napari_weakstil" / "src" / "napari_weakstil"
MAX_LINES = 500


def modules(root: Path, prefix: str) -> dict[str, Path]:
    """Module name -> file, for every .py file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([prefix, *parts])] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (top level or inside functions)."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .mod import y
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                module = f"{anchor}.{node.module}" if node.module else anchor
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name:
                found.add(t)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph(root: Path, prefix: str) -> dict[str, set[str]]:
    mods = modules(root, prefix)
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_no_module_over_500_lines():
    long = {name: n for name, path in {**modules(PACKAGE, "weakstil"), **modules(PLUGIN, "napari_weakstil")}.items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle():
    assert cycles(import_graph(PACKAGE, "weakstil")) == []
    assert cycles(import_graph(PLUGIN, "napari_weakstil")) == []


def test_the_cycle_finder_finds_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n")
    (pkg / "c.py").write_text("from . import a\n")
    assert cycles(import_graph(pkg, "pkg")) == [["pkg.a", "pkg.b"]]


def test_hdf5_files_are_opened_in_at_most_three_modules():
    """Per-slide files are read and written through weakstil.files; only its h5 module opens HDF5."""
    openers = sorted(name for name, path in {**modules(PACKAGE, "weakstil"), **modules(PLUGIN, "napari_weakstil")}.items()
                     if "h5py.File(" in path.read_text())
    assert len(openers) <= 3, openers
    assert openers == ["weakstil.files.h5"]


def test_settings_are_the_workflow_defaults():
    """pipelines/config.yaml keeps its own YAML (Snakemake reads it) but its defaults are these."""
    from weakstil import settings

    config = yaml.safe_load((ROOT / "pipelines" / "config.yaml").read_text())
    assert config["mpp"] == settings.MPP and config["tile_size"] == settings.TILE_PX
    assert config["tissue_threshold"] == settings.TISSUE_THRESHOLD
    assert config["threshold"] == settings.STIL_THRESHOLD and config["seed"] == settings.SEED
    assert config["folds"] == settings.FOLDS and config["epochs"] == settings.EPOCHS
    assert config["aggregator"] == settings.AGGREGATOR and config["device"] == settings.DEVICE


def test_defaults_come_from_settings():
    from weakstil import settings
    from weakstil.mil.config import TrainConfig
    from weakstil.pretrain import PretrainConfig
    from weakstil.score import ScoreOptions
    from weakstil.tiles import TilingParams

    tiling = TilingParams()
    assert (tiling.mpp, tiling.tile_px, tiling.overlap_px, tiling.tissue_threshold) == (
        settings.MPP, settings.TILE_PX, settings.OVERLAP_PX, settings.TISSUE_THRESHOLD)
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.aggregator, cfg.seed, cfg.device) == (settings.EPOCHS, settings.AGGREGATOR, settings.SEED,
                                                                  settings.DEVICE)
    assert PretrainConfig().tissue_threshold == settings.TISSUE_THRESHOLD
    assert ScoreOptions(model=Path("m"), out=Path("o")).batch_size == settings.BATCH_SIZE
    # (the synthetic generator's 30s are sizes in µm and a knot of the TCGA label distribution)
    literal = [name for name, path in modules(PACKAGE, "weakstil").items()
               if name != "weakstil.settings" and not name.startswith("weakstil.synth")
               and any(s in path.read_text() for s in ("30.0)", "= 30.0", "threshold=30"))]
    assert not literal, f"the 30 % sTIL threshold restated in {literal}"


def test_console_script_and_a_fresh_cli_start_without_heavy_imports():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'weakstil = "weakstil.cli:main"' in pyproject
    code = ("import sys, weakstil.cli; heavy = [m for m in ('torch', 'h5py', 'openslide', 'timm', 'scipy', 'pandas') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    proc = subprocess.run([sys.executable, "-m", "weakstil", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "tumorbed" in proc.stdout and "score" in proc.stdout


@pytest.mark.parametrize("device", ["foo", "cuda:x", "gpu"])
def test_unknown_device_is_a_usage_error(device, tmp_path):
    from conftest import run_cli

    proc = run_cli("embed", str(ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"), "--out", tmp_path, "--encoder",
                   "small-cnn", "--device", device)
    assert proc.returncode == 2 and "--device" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())
