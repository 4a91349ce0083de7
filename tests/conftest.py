"""Shared fixtures: the committed CMU slide, the real files in ../shared/data, made-up bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
#: Real slides that may not be committed live beside the project (see ../shared/data/README.md).
SHARED = ROOT.parent / "shared" / "data"
CMU = TEST_DATA / "CMU-1-Small-Region.svs"
#: Tests never reach the Hugging Face hub (the CLI subprocesses inherit this too).
os.environ["HF_HUB_OFFLINE"] = "1"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slurm`` need a real SLURM cluster (pipelines/slurm/setup_localhost.sh) and
    minutes: they run only when selected with ``-m slurm`` (``make test-slurm``)."""
    if "slurm" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("slurm")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("slurm")]


def shared_file(relative: str) -> Path:
    """A file from ../shared/data; the test is skipped with a clear reason when it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared real data)")
    return path


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``weakstil ARGS`` as a user would, in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-m", "weakstil", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"weakstil {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def write_tiff_slide(path: Path, rgb: np.ndarray, mpp: float = 0.5, levels: int = 3) -> Path:
    """A pyramidal tiled TIFF that OpenSlide opens with the given mpp."""
    import tifffile

    opts = dict(tile=(256, 256), compression="jpeg", photometric="rgb", resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, subifds=0, resolution=(1e4 / mpp, 1e4 / mpp), **opts)
        for k in range(1, levels):
            f = 4**k
            if min(rgb.shape[:2]) // f < 16:
                break
            tw.write(rgb[::f, ::f], subfiletype=1, resolution=(1e4 / (mpp * f), 1e4 / (mpp * f)), **opts)
    return path


@pytest.fixture
def cmu() -> Path:
    return CMU


@pytest.fixture
def white_slide(tmp_path: Path) -> Path:
    """An all-white (blank glass) slide."""
    return write_tiff_slide(tmp_path / "blank.tiff", np.full((2048, 2048, 3), 245, np.uint8))


@pytest.fixture
def one_torch_thread():
    """In-process torch work runs on one thread: tiny ops on a busy 2-CPU machine are much faster
    without OpenMP teams waiting for a descheduled thread (and results are reproducible)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
