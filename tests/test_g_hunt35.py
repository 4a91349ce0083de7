"""Round 35, helper g: reproducibility and provenance of the recorded software versions.

1. torch's version was recorded two ways for one installation: ``torch.__version__`` (``2.14.1+cu130``)
   where the process had imported torch (model.json, score and features files, a model evaluation),
   the wheel's metadata (``2.14.1``, without the build label) where it had not (an ``evaluate --oof``
   metrics.json; every report's 'report' column). So ``report -m`` and ``report --scores`` listed
   "torch | 2.14.1+cu130 | 2.14.1", a version change that was none, and two evaluations of one model in
   one environment recorded different torches. Now ``runtime.package_version('torch')`` reads the
   build's own version (``torch/version.py``) without importing torch (1.3 s): the same string
   everywhere.
2. ``report --scores`` listed only weakstil, torch and timm in its 'scoring' column, blank for
   Python, numpy and OpenSlide, though every score file records them all (``library_versions``: the
   slide reader's, the decoders', numpy's...). Now the column lists what the score files record, with
   the report process's versions beside them (the OpenSlide C library's too).
3. A ``tumorbed apply`` bed file recorded only ``weakstil_version``: not the torch of its detector nor
   the numpy/scipy of its morphology, which every tiles, features and score file records
   (``library_versions``). Now it records them too.
4. A report's "Created" time named its zone by abbreviation (``time.strftime('%Z')``): "2026-12-06
   17:16:29 CST" in Shanghai (+0800) and "03:16:29 CST" in Chicago (-0600) for one moment, "IST" India's
   or Ireland's. Now it gives the UTC offset ("+0800"), as every other recorded ``created`` does.
5. The tile-score files (``train``'s ``MODEL/cv/tiles``, ``evaluate``'s ``tiles``) recorded no
   WeakSTIL version, unlike every other per-slide file. Now they record ``weakstil_version`` too.
6. A synthetic cohort's ``cohort.json`` recorded the WeakSTIL version and seed but not numpy's (its
   random streams are not promised across releases) nor the TIFF/JPEG writers' (the slides' bytes):
   ``tests/test_synth_default_bytes.py`` allows pixel drift for exactly that reason. Now it records
   ``library_versions`` as the tiles and features files do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import h5py
import torch

from conftest import run_cli


def test_torch_version_is_the_builds_own_in_a_process_that_never_imports_torch():
    code = ("import sys, json; from weakstil.runtime import versions, installed_versions; "
            "print(json.dumps([versions()['torch'], installed_versions(('torch',))['torch'], 'torch' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    recorded, installed, imported = json.loads(proc.stdout)
    assert not imported  # the point: no 1.3 s torch import for an evaluation from predictions or a report
    assert recorded == installed == torch.__version__, (recorded, installed, torch.__version__)


def test_score_report_lists_the_versions_the_score_files_record_beside_the_same_installation(tmp_path, small_demo,
                                                                                            monkeypatch):
    demo = small_demo[0]
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # (4) its abbreviation, CST, is Chicago's too
    time.tzset()
    try:
        r = run_cli("report", "--scores", demo / "scores", "--out", tmp_path / "rep")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    created = page.split("Created ", 1)[1].split("\n", 1)[0]
    assert created.endswith(" +0800."), created
    table = page.split("## Versions", 1)[1]
    rows = {cells[0]: cells[1:] for line in table.splitlines()
            if line.startswith("| ") and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 3
            and cells[0] != "package"}
    with h5py.File(next((demo / "scores").glob("*.h5"))) as h:
        recorded = json.loads(h.attrs["library_versions"])
    for name in ("python", "numpy", "openslide-python", "torch", "openslide"):
        assert rows[name][0] == recorded[name], (name, rows.get(name), recorded[name])
    # one installation scored and reported: no version differs between the two columns
    assert rows["torch"] == [torch.__version__, torch.__version__], rows["torch"]
    assert all(scoring == now for scoring, now in rows.values() if scoring and now), rows


def test_a_tumour_bed_file_records_the_library_versions(tmp_path, small_demo):
    demo = small_demo[0]
    features = sorted((demo / "features").glob("*.h5"))[0]
    r = run_cli("tumorbed", "apply", features, "--tumorbed", demo / "model" / "tumorbed", "--out", tmp_path / "beds")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "beds" / features.name) as h:
        assert h.attrs["source"] == "model"  # the detector ran: its torch shaped the bed
        recorded = json.loads(h.attrs["library_versions"])
    with h5py.File(features) as h:
        embedded = json.loads(h.attrs["library_versions"])
    assert recorded["torch"] == torch.__version__ and recorded["numpy"] == embedded["numpy"], recorded
    assert recorded["weakstil"] and recorded["scipy"] and recorded["python"], recorded


def test_the_cross_validation_tile_score_files_record_the_weakstil_version(small_demo):
    from weakstil.code_version import version as code_version  # with a checkout's commit (38j)

    tiles = sorted((small_demo[0] / "model" / "cv" / "tiles").glob("*.h5"))
    assert tiles
    for path in tiles[:2]:
        with h5py.File(path) as h:
            assert h.attrs["kind"] == "tile_scores"
            assert h.attrs["weakstil_version"] == code_version(), path


def test_a_synthetic_cohort_records_the_library_versions_its_slides_depend_on(small_demo):
    import numpy as np

    meta = json.loads((small_demo[0] / "cohort" / "cohort.json").read_text(encoding="utf-8"))
    versions = meta["library_versions"]
    assert versions["numpy"] == np.__version__ and versions["tifffile"] and versions["weakstil"], versions
