"""The napari plugin's test fixtures, for the napari tests of tests/ (the plugin's tests/conftest.py:
a small trained model and a scored synthetic slide, built once per run and shared with the plugin's
tests), loaded once by path, and the widget docked as a pathologist docks it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def _plugin_conftest():
    path = Path(__file__).resolve().parents[1] / "plugins" / "napari_weakstil" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("napari_weakstil_test_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FIXTURES = _plugin_conftest()
scored = _FIXTURES.scored  # a pytest fixture: imported by name into a test module
make_napari_viewer = _FIXTURES.make_napari_viewer  # napari's, its plugins found once a process (tests/conftest.py)


def dock(viewer):
    """The sTIL scoring widget docked into ``viewer``."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


def copied_result(scored, folder: Path) -> Path:
    """The scored slide's result file copied into ``folder`` (a test's own scores folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    return path


def opened_result(scored, tmp_path: Path, make_napari_viewer):
    """``(viewer, widget)``: a copy of the scored result opened in a new viewer, the widget docked."""
    path = copied_result(scored, tmp_path / "scores")
    viewer = make_napari_viewer()
    widget = dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    return viewer, widget
