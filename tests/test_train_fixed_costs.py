"""``weakstil train``'s fixed costs (helper h43a): each feature file's header read once per run, and the
qc's leave-slide-out neighbour search done once and reused, with the same results as searching again."""

from __future__ import annotations

import collections
import os

import h5py
import numpy as np
import pytest

from planted import make_planted_cohort, write_feature_file
from weakstil.files import FeaturesFile, h5
from weakstil.files.schema import headers_read_once


def _count_opens(monkeypatch) -> collections.Counter:
    """How often each file is opened for reading (every reader goes through h5.open_read)."""
    opened: collections.Counter = collections.Counter()
    real = h5.open_read

    def counting(path, *args, **kwargs):
        opened[os.path.basename(str(path))] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(h5, "open_read", counting)
    return opened


def test_a_header_is_read_once_inside_the_block_and_again_when_its_file_changed(tmp_path, monkeypatch):
    path = write_feature_file(tmp_path / "S1.h5", "S1", np.zeros((3, 4)), np.zeros((3, 2)))
    opened = _count_opens(monkeypatch)
    FeaturesFile.read_header(path)
    FeaturesFile.read_header(path)
    assert opened["S1.h5"] == 2  # no block: every call reads the file
    with headers_read_once():
        attrs, shapes = FeaturesFile.read_header(path)
        attrs["encoder"] = "changed by the caller"  # a copy: the next caller gets the file's
        again, _ = FeaturesFile.read_header(path)
        assert opened["S1.h5"] == 3 and again["encoder"] == "planted" and shapes["features"] == (3, 4)
        with h5py.File(path, "a") as f:  # the file changes inside the block: read again, not the old header
            f.attrs["encoder"] = "another"
        assert FeaturesFile.read_header(path)[0]["encoder"] == "another" and opened["S1.h5"] == 4
        with h5py.File(path, "a") as f:  # one that now fails is refused again, not served from before
            f.attrs["complete"] = 0
        for _ in range(2):
            with pytest.raises(h5.IncompleteFileError):
                FeaturesFile.read_header(path)
        assert opened["S1.h5"] == 6
    FeaturesFile.read_header(write_feature_file(tmp_path / "S2.h5", "S2", np.zeros((3, 4)), np.zeros((3, 2))))
    FeaturesFile.read_header(tmp_path / "S2.h5")
    assert opened["S2.h5"] == 2  # the block ended: no cache


def test_train_reads_each_feature_file_header_once(tmp_path, monkeypatch):
    """The cohort check, the bed record (twice), the tile-measurement check and the scan record each read
    every feature file's header, and the qc read the file again for the image statistics: seven opens of
    each file per run (the bank's read of its data among them), then two (its header, then its data). Since
    h44d the bed with no source is resolved as ``score`` resolves it (the file's own flags, else its tissue): a
    third open, for its tiles, tissue mask and tile statistics only, not its embeddings (read once, by the bank)."""
    from weakstil.mil.config import TrainConfig
    from weakstil.train import train_cohort

    root = tmp_path / "cohort"
    make_planted_cohort(root, 6, n_groups=3, tiles=(20, 30), seed=2)
    opened = _count_opens(monkeypatch)
    train_cohort(root / "labels.csv", root / "features", tmp_path / "model",
                 TrainConfig(hidden=4, epochs=1, members=1), n_folds=3)
    assert (tmp_path / "model" / "qc" / "training_slides.csv").is_file()
    assert {name: n for name, n in opened.items() if name.startswith("S")} == {f"S00{i}.h5": 3 for i in range(6)}


def test_the_reused_neighbour_search_gives_what_searching_again_gives():
    """fit_qc hands fit_reference's leave-slide-out neighbours to the unfamiliar rule and to the
    leave-group-out distances (for slides alone in their group): the numbers must be those of the
    searches they replace, to the bit."""
    from weakstil.qc.embedding import fit_reference, fit_reference_and_neighbours, unfamiliar_reference
    from weakstil.qc.shift import leave_group_out_distances

    rng = np.random.default_rng(4)
    slides = [rng.normal(size=(int(rng.integers(30, 700)), 12)).astype(np.float32) + i % 3 for i in range(7)]
    ref, distances, neighbours = fit_reference_and_neighbours(slides, seed=3)
    ref2, distances2 = fit_reference(slides, seed=3)
    assert np.array_equal(distances, distances2) and np.array_equal(ref.reference, ref2.reference)
    rule, shares, counts = unfamiliar_reference(ref, slides, seed=3, neighbours=neighbours)
    assert (rule, shares.tolist(), counts.tolist()) == \
        (lambda r: (r[0], r[1].tolist(), r[2].tolist()))(unfamiliar_reference(ref, slides, seed=3))
    groups = ["a", "b", "b", "c", "d", "d", "e"]  # three slides alone in their group, two pairs
    got = leave_group_out_distances(ref, slides, groups, seed=3, tile_threshold=rule["tile_threshold"],
                                    leave_slide_out=[d for d, _ in neighbours])
    searched = leave_group_out_distances(ref, slides, groups, seed=3, tile_threshold=rule["tile_threshold"])
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, searched))
    # and the pairs' distances are not the leave-slide-out ones (their group's other slide is left out too)
    assert got[0][1] != pytest.approx(distances[1])
