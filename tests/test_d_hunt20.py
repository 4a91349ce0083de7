"""Hunt 20 (d): a detected tumour bed that leaves out most of its own tumour is flagged, not silent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")]


@pytest.fixture(scope="module")
def all_tumour(tmp_path_factory):
    """A 0.6 mm slide that is almost all tumour bed (the generator's own layout, drawn with a bed of
    0.97 of the tissue, as a resection through the middle of a large tumour), embedded."""
    import weakstil.synth.generator as gen
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder

    root = tmp_path_factory.mktemp("h20d")
    params = gen.sample_layout_params
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(gen, "sample_layout_params", lambda rng, t: dataclasses.replace(
            params(rng, t), tissue_fraction=0.8, bed_fraction=0.97, nest_fraction=0.6))
        res = gen.generate_slide(root / "slides" / "big.tiff", root / "truth", "big", 13, size_mm=(0.6, 0.6),
                                 target_stil=25.0, preview=False)
    finally:
        mp.undo()
    embed_slide(res.path, create_encoder("small-cnn", weights="random"), out_dir=root / "features")
    return root, root / "features" / "big.h5"


def _detector(root: Path, features: Path) -> Path:
    """A detector with the default tumour-cell gate (its classifier is replaced in each test)."""
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.cellgate import TumourCellGate
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence

    dim = np.asarray(FeaturesFile.read(features).features).shape[1]
    det = TumorBedDetector(LogisticEvidence(np.zeros(dim, np.float32), 0.0, np.zeros(dim, np.float32),
                                            np.ones(dim, np.float32)),
                           meta={"model_id": "left-third"}, cell_gate=TumourCellGate())
    return det.save(root / "detector")


def _evidence_on(monkeypatch, share: float) -> None:
    """The classifier's evidence: 0.95 on the tiles in the left ``share`` of the tissue, 0.02 elsewhere.
    A classifier standardised over each slide's own tiles does this on a slide that is mostly tumour:
    the slide's mean is tumour, and only its most tumour-like part passes the seed threshold."""
    from weakstil.tumorbed.detector import TumorBedDetector

    def evidence(self, features, geom, tile_stats=None, stats_columns=None):
        x = np.asarray(geom.coords, np.float64)[:, 0]
        cut = x.min() + share * (x.max() - x.min() + 1)
        return np.where(x < cut, 0.95, 0.02).astype(np.float32)

    monkeypatch.setattr(TumorBedDetector, "tumour_evidence", evidence)


def test_a_bed_that_leaves_out_most_of_its_tumour_is_flagged(all_tumour, tmp_path, monkeypatch):
    """A slide that is 97 % tumour bed got a bed of 0.40 of the tissue (Dice 0.58) from a hard-look
    detector of 10 slides, status ok, no flag, no warning: the evidence is standardised over the
    slide's own tiles, so on a slide made of tumour only its most tumour-like part seeds the bed.
    Tumour cells joined to the bed's own tumour lie outside it: the bed file says so
    (`bed_incomplete`), `tumorbed apply` warns, and `score` flags `tumorbed_incomplete`. The bed
    itself is as drawn. The same slide with seeds over all its tumour has no such note."""
    import h5py

    from weakstil.files import FeaturesFile
    from weakstil.qc.flags import slide_flags
    from weakstil.tumorbed.resolver import read_precomputed

    root, features = all_tumour
    det = _detector(root, features)
    _evidence_on(monkeypatch, 0.3)
    res = run_cli("tumorbed", "apply", str(features), "--out", str(tmp_path / "beds"), "--tumorbed", str(det))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "the bed may be incomplete" in out and "tumorbed_incomplete" in out, out
    with h5py.File(tmp_path / "beds" / "big.h5") as f:
        assert f.attrs["source"] == "model"
        said = str(f.attrs["bed_incomplete"])
        n_bed = int(f["tumorbed"][:].astype(bool).sum())
    assert "tumour cells joined to the bed's tumour lie outside it" in said and n_bed > 0
    # read back for 'score --tumorbed-beds', and raised there as a qc flag
    bed = read_precomputed(tmp_path / "beds" / "big.h5", "big", FeaturesFile.read(features))
    assert bed.incomplete == said
    flags, why = slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=n_bed, low=None, high=None,
                             threshold=30.0, image=None, image_ref=None, stil=25.0, bed_incomplete=bed.incomplete)
    assert "tumorbed_incomplete" in flags and why["tumorbed_incomplete"] == said

    _evidence_on(monkeypatch, 1.0)  # seeds over all the tumour: nothing left out, no note
    res = run_cli("tumorbed", "apply", str(features), "--out", str(tmp_path / "beds2"), "--tumorbed", str(det))
    assert res.returncode == 0, res.stdout + res.stderr
    with h5py.File(tmp_path / "beds2" / "big.h5") as f:
        assert f.attrs["source"] == "model" and "bed_incomplete" not in f.attrs
    assert "may be incomplete" not in res.stdout + res.stderr


def test_tumour_cells_away_from_the_bed_are_not_counted(all_tumour):
    """Only tumour cells *joined* to the bed's seeds through tiles of tumour cells count: a focus of
    tumour-like cells that touches no seed (a duct, a lobule, DCIS: separate from the invasive
    tumour) leaves the bed complete. Here the seeds' own tumour is cut off from the rest by a
    column of tiles without tumour cells."""
    from weakstil.bed_geometry import grid_cells
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.bed import SlideGeometry
    from weakstil.tumorbed.cellgate import tumour_cells_left_out
    from weakstil.tumorbed.evidence import stats_column_names
    from weakstil.tumorbed.veto import TUMOUR_NUCLEI_COLUMNS

    _, features = all_tumour
    ff = FeaturesFile.read(features)
    geom = SlideGeometry.from_file(ff)
    cols = stats_column_names(ff.attr("tile_stats_columns"))
    stats = np.array(ff.tile_stats, np.float32)
    _, col, _ = grid_cells(geom.coords, geom.tile_size_level0)
    seeds = col <= 1
    evidence = np.where(seeds, 0.95, 0.02).astype(np.float32)
    args = (stats, cols, geom.coords, geom.tile_size_level0, 0.5, seeds)
    assert "may be incomplete" in tumour_cells_left_out(evidence, *args)
    stats[np.ix_(col == 3, [cols.index(c) for c in TUMOUR_NUCLEI_COLUMNS])] = 0.0  # no tumour cell in column 3
    assert tumour_cells_left_out(evidence, *args) == ""
