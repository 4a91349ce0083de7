"""`weakstil embed --no-tile-stats`: no per-tile measurements, its own cache key (a cache with the
measurements is reused by it), and a model that
needs the measurements refuses such a file with one line naming it and the fix."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import CMU, run_cli

from weakstil.errors import WeakSTILError
from weakstil.files import FeaturesFile
from weakstil.mil.bank import FeatureBank

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_no_tile_stats_skips_the_measurements_and_is_its_own_cache(tmp_path):
    out = tmp_path / "features"
    args = ("embed", CMU, "--out", out, "--encoder", "small-cnn", "--weights", "random", "--seed", "3")
    run_cli(*args, "--no-tile-stats", check=True)
    path = out / "CMU-1-Small-Region.h5"
    bare = FeaturesFile.read(path)
    assert bare.tile_stats is None and bare.stroma_estimate is None and "tilestats_version" not in bare.attrs
    assert json.loads(bare.attrs["decode"])["tile_stats"] == {"skipped": "--no-tile-stats"}
    assert "up to date" in run_cli(*args, "--no-tile-stats", check=True).stderr

    for needs in ({"tile_stats": True}, {"stroma_estimate": True}):
        with pytest.raises(WeakSTILError) as err:
            FeatureBank.load([path], **needs)
        line = err.value.one_line()
        assert str(path) in line and "without --no-tile-stats" in line and "\n" not in line
    assert FeatureBank.load([path]).dim == bare.features.shape[1]  # a model that needs neither reads it

    # the default run wants the measurements: the file is made again, with the same features
    assert "up to date" not in run_cli(*args, check=True).stderr
    full = FeaturesFile.read(path)
    assert full.tile_stats is not None and full.tile_stats.shape[0] == len(full.features)
    assert full.attrs["cache_key"] != bare.attrs["cache_key"]
    np.testing.assert_array_equal(full.features, bare.features)
    with h5py.File(path) as f:
        assert "stroma_estimate" in f

    # a cache with the measurements holds what --no-tile-stats needs and more: reused, not made again
    # (it was embedded again and lost its measurements; hunt 9b)
    made = path.stat().st_mtime_ns
    assert "up to date" in run_cli(*args, "--no-tile-stats", check=True).stderr
    assert path.stat().st_mtime_ns == made and FeaturesFile.read(path).tile_stats is not None
