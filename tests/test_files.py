"""The per-slide files (weakstil.files): one reader and writer per kind, older files, later additions."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from legacy_files import WRITERS, arrays
from weakstil.files import (KINDS, BedFile, FeaturesFile, SlideFileError, SlideScoresFile, TileScoresFile, TilesFile,
                            kind_of, read_any)
from weakstil.outputdir import MARKER


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_files_of_the_previous_release_still_read(kind, tmp_path):
    """Written by 0.1.0's code (no kind attribute): recognised by their datasets and read in full."""
    path = WRITERS[kind](tmp_path / "S1.h5")
    assert kind_of(path) == kind
    f = read_any(path)
    assert type(f) is KINDS[kind] and f.slide_id == "S1" and f.n_tiles == 12
    a = arrays()
    assert np.array_equal(f.coords, a["coords"]) and f.tile_size_level0 == 448.0
    assert f.attrs["complete"] == 1 and "kind" not in f.attrs
    if kind in ("tumorbed", "tile_scores", "slide_scores"):  # one name for the flag, whatever the file calls it
        assert f.tumorbed.dtype == bool and np.array_equal(f.tumorbed, a["bed"])
    if kind in ("tiles", "features", "slide_scores"):
        assert f.tissue_mask.dtype == bool and np.array_equal(f.tissue_mask, a["tissue_mask"])
        assert f.tissue_mask_mpp == 8.0
    if kind == "features":
        assert np.array_equal(f.features, a["features"]) and f.tumorbed is None  # optional and absent: None
        assert f.attrs["cache_key"] == "cd" * 32
    if kind == "tile_scores":
        assert np.array_equal(f.weights, a["weights"]) and f.attention is not None
    if kind == "slide_scores":
        assert f.stil == 35.5 and f.attention is None


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_rewritten_file_keeps_every_dataset_and_attribute_and_adds_its_kind(kind, tmp_path):
    old = WRITERS[kind](tmp_path / "old.h5")
    new = read_any(old).write(tmp_path / "new.h5")
    with h5py.File(old) as a, h5py.File(new) as b:
        assert sorted(a) == sorted(b)  # same datasets, same names (the tile-score flag stays 'tile_mask')
        for name in a:
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name][()], b[name][()]), name
            assert dict(a[name].attrs) == dict(b[name].attrs)
        assert {k: v for k, v in b.attrs.items() if k not in ("kind", "schema_version")} == dict(a.attrs)
        assert b.attrs["kind"] == kind and b.attrs["schema_version"] == KINDS[kind].SCHEMA_VERSION
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != MARKER]  # written atomically


def test_later_additions_are_ignored_by_readers_and_missing_optional_data_reads_as_none(tmp_path):
    path = WRITERS["tile_scores"](tmp_path / "S1.h5", attention=False)
    with h5py.File(path, "a") as f:  # what a later version may add: a dataset and attributes this reader does not know
        f.create_dataset("later_dataset", data=np.ones(12, np.float32))
        f.attrs["fingerprint"] = "sha256:0123"
        f.attrs["kind"] = "tile_scores"
        f.attrs["schema_version"] = TileScoresFile.SCHEMA_VERSION
    f = TileScoresFile.read(path)
    assert f.attention is None and not hasattr(f, "later_dataset")
    assert f.attr("fingerprint") == "sha256:0123" and f.attr("stil_interval") is None


def test_wrong_kind_newer_schema_and_incomplete_files_are_one_clear_error(tmp_path):
    tiles = WRITERS["tiles"](tmp_path / "tiles.h5")
    with pytest.raises(SlideFileError, match="is a tiles file, not a feature cache.*weakstil embed"):
        FeaturesFile.read(tiles)
    newer = WRITERS["tumorbed"](tmp_path / "bed.h5")
    with h5py.File(newer, "a") as f:
        f.attrs["kind"] = "tumorbed"
        f.attrs["schema_version"] = BedFile.SCHEMA_VERSION + 1
    with pytest.raises(SlideFileError, match="schema version 2.*upgrade weakstil"):
        BedFile.read(newer)
    partial = WRITERS["features"](tmp_path / "partial.h5", complete=0)
    with pytest.raises(SlideFileError, match="incomplete") as info:
        FeaturesFile.read(partial)
    assert "partial.h5" in info.value.one_line()
    (tmp_path / "notes.h5").write_text("not HDF5")
    with pytest.raises(SlideFileError, match="not a readable HDF5 file"):
        TilesFile.read(tmp_path / "notes.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert kind_of(tmp_path / "other.h5") is None
    with pytest.raises(SlideFileError, match="not a WeakSTIL per-slide file"):
        read_any(tmp_path / "other.h5")


def test_writer_needs_the_required_datasets_and_leaves_nothing_on_failure(tmp_path):
    a = arrays()
    with pytest.raises(ValueError, match="tile_scores is required"):
        SlideScoresFile(coords=a["coords"]).write(tmp_path / "S1.h5")
    assert list(tmp_path.iterdir()) == []


def test_features_stream_in_row_blocks_and_a_failed_stream_leaves_no_file(tmp_path):
    a = arrays()
    cache = FeaturesFile(coords=a["coords"], tissue_fraction=a["tissue_fraction"], tissue_mask=a["tissue_mask"],
                         tissue_mask_mpp=8.0)
    with cache.streaming(tmp_path / "S1.h5", 12, 8) as put:
        put(0, a["features"][:5])
        put(5, a["features"][5:])
        cache.attrs.update({"slide_id": "S1", "n_tiles": 12})
    back = FeaturesFile.read(tmp_path / "S1.h5")
    assert np.array_equal(back.features, a["features"]) and back.attrs["kind"] == "features"
    with pytest.raises(RuntimeError), cache.streaming(tmp_path / "S2.h5", 12, 8) as put:
        put(0, a["features"][:5])
        raise RuntimeError("encoder failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S1.h5"]
    attrs, shapes = FeaturesFile.read_header(tmp_path / "S1.h5")
    assert shapes["features"] == (12, 8) and attrs["n_tiles"] == 12
