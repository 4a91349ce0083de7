"""Hunt 30c: leftover defects of hunt 29 and ``weakstil score`` batches run from outside.

- A tile grid too large for memory under ``score``: its refusal said ``pass --overlap N``, an
  option ``score`` does not have (its tiling is its model's), and stopped the whole batch (exit 2);
  now it is that slide's error row naming what mends it, and every ``--flag`` a refusal suggests
  parses on the command that printed it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path


from conftest import CMU, run_cli
from weakstil import resources, settings

GB = 1024**3


def _demo(small_demo) -> tuple[Path, Path, Path, Path]:
    """conftest's small quick demo: its folder, model, feature folder and the model's tumour-bed detector."""
    demo = small_demo[0]
    return demo, demo / "model", demo / "features", demo / "model" / "tumorbed"


def _available(monkeypatch, gb: float):
    monkeypatch.setattr(resources, "available_memory", lambda device="cpu": int(gb * GB))


def _suggested_flags(fix: str) -> tuple[list[str], dict[str, list[str]]]:
    """The ``--flags`` a fix names for the command itself, and those inside a quoted
    ``'weakstil CMD ...'`` (another command's)."""
    others: dict[str, list[str]] = {}
    for cmd, rest in re.findall(r"'weakstil ([a-z-]+)([^']*)'", fix):
        others.setdefault(cmd, []).extend(re.findall(r"--[a-z][a-z-]*", rest))
    own = re.findall(r"--[a-z][a-z-]*", re.sub(r"'weakstil [^']*'", "", fix))
    return own, others


def _options_of(command: str) -> set[str]:
    import typer.main

    from weakstil.cli import app

    group = typer.main.get_command(app)
    cmd = group.get_command(None, command)  # type: ignore[attr-defined]
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def _error_fix(stderr: str) -> str:
    text = " ".join(stderr.split())
    assert text.count("error:") == 1, text
    return text.split("Fix:", 1)[1]


def test_tile_grid_refusal_suggests_an_overlap_of_at_most_half_a_tile_and_flags_of_tile(tmp_path, monkeypatch):
    """The CMU region at 1 µm/px and a 1 px stride with 0.1 GB to spare: the largest overlap whose grid
    fits was named (about 220 px: still thousands of times the tiles and the time of no overlap);
    now no more than half the tile, with the factor said, and each flag parses on ``tile``."""
    _available(monkeypatch, 0.1 / settings.MEMORY_SHARE)
    r = run_cli("tile", CMU, "--out", tmp_path / "t", "--overlap", "223", "--mpp", "1")
    assert r.returncode == 2, r.stderr
    fix = _error_fix(r.stderr)
    suggested = int(re.search(r"pass --overlap (\d+) or less", fix).group(1))
    assert suggested <= 112, fix
    assert "times those of no overlap and as many times the time" in fix, fix
    own, others = _suggested_flags(fix)
    assert own and set(own) <= _options_of("tile"), (own, fix)


def test_score_grid_refusal_is_that_slides_error_with_flags_score_has(tmp_path, monkeypatch, small_demo):
    """``score`` reads at its model's tiling: a slide whose grid did not fit stopped the whole batch
    (exit 2) with the fix ``pass a larger --mpp or --tile-size`` (or ``--overlap N``), options score
    refuses as unknown. Now it is that slide's error row (exit 1), the next slide is still tried, and
    each flag of the fix parses where it is named. The grid is made to weigh a million times its bytes
    (a whole section at a fine stride) instead of asking the machine to be small."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    from weakstil import tiles
    import pandas as pd

    real = tiles.grid_bytes
    monkeypatch.setattr(tiles, "grid_bytes", lambda n, share: real(n, share) * 10**6)
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b"):
        shutil.copy(CMU, slides / f"{name}.svs")
    r = run_cli("score", slides / "*.svs", "--model", MODEL, "--out", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in " ".join(r.stderr.split()).split("error: ")[1:]]
    assert len(errors) == 2 and all("Fix:" in e and "more memory" in e for e in errors), r.stderr
    for e in errors:
        own, others = _suggested_flags(e.split("Fix:", 1)[1])
        assert set(own) <= _options_of("score"), (own, e)
        for cmd, flags in others.items():
            assert set(flags) <= _options_of(cmd), (cmd, flags, e)
    table = pd.read_csv(tmp_path / "out" / "results.csv", dtype={"slide_id": str})
    assert list(table["status"]) == ["error", "error"] and table["error"].str.contains("more memory").all()


def _sources(out: Path) -> dict[str, str]:
    from weakstil.files import BedFile

    return {p.stem: str(BedFile.read_header(p)[0]["source"]) for p in sorted(out.glob("*.h5"))}


def test_tumorbed_apply_refuses_a_second_detector_in_one_folder(tmp_path, small_demo):
    """Two ``tumorbed apply`` runs into one --out with different detectors (here the demo's and none)
    wrote each slide's bed with whichever ran it, exit 0 both (measured with two runs started together
    on 10 slides: 9 beds 'model', 1 'tissue'). Now the folder records its detector and a run with
    another is one error line (exit 2) before any bed; the same detector goes on, and --overwrite
    takes the folder over."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    out = tmp_path / "beds"
    r = run_cli("tumorbed", "apply", FEATURES / "synth_0000.h5", FEATURES / "synth_0001.h5", "--tumorbed", DETECTOR,
                "--out", out)
    assert r.returncode == 0, r.stderr
    r = run_cli("tumorbed", "apply", FEATURES / "synth_0002.h5", "--out", out)
    assert r.returncode == 2, r.stderr
    text = " ".join(r.stderr.split())
    assert text.count("error:") == 1 and str(DETECTOR) in text and "--overwrite" in text, text
    assert _sources(out) == {"synth_0000": "model", "synth_0001": "model"}  # nothing of the other run
    r = run_cli("tumorbed", "apply", FEATURES / "synth_0002.h5", "--tumorbed", DETECTOR, "--out", out)
    assert r.returncode == 0, r.stderr
    assert set(_sources(out).values()) == {"model"}
    r = run_cli("tumorbed", "apply", FEATURES / "synth_000[0-2].h5", "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert set(_sources(out).values()) == {"tissue"}


def test_a_beds_folder_without_the_record_is_known_by_its_beds(tmp_path, small_demo):
    """A folder written before the record (its bed files name their detector) is refused the same way."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    from weakstil.tumorbed.apply import DETECTOR_RECORD

    out = tmp_path / "beds"
    assert run_cli("tumorbed", "apply", FEATURES / "synth_0000.h5", "--tumorbed", DETECTOR, "--out", out).returncode == 0
    (out / DETECTOR_RECORD).unlink()
    r = run_cli("tumorbed", "apply", FEATURES / "synth_0001.h5", "--out", out)
    assert r.returncode == 2 and "beds of two detectors" in " ".join(r.stderr.split()), r.stderr
    assert not (out / "synth_0001.h5").exists()


def test_info_of_a_folder_of_case_folders_names_the_glob_one_level_down(tmp_path):
    """``weakstil info DIR`` (and ``score``) on a folder whose slides sit in a folder per case said
    "pass ... a glob of the folder's: 'DIR/*'", which names the case folders and fails again; and
    ``'DIR/*.svs'`` said the folder "holds no file with a suffix". Both now name ``'DIR/*/*.svs'``,
    and that glob works."""
    for case in ("case 1", "case2"):
        (tmp_path / "cohort" / case).mkdir(parents=True)
        shutil.copy(CMU, tmp_path / "cohort" / case / f"{case}.svs")
    hint = f"'{tmp_path / 'cohort' / '*' / '*.svs'}'"
    r = run_cli("info", tmp_path / "cohort")
    assert r.returncode == 1 and hint in " ".join(r.stderr.split()), r.stderr
    r = run_cli("info", tmp_path / "cohort" / "*.svs")
    assert r.returncode == 1 and hint in " ".join(r.stderr.split()), r.stderr
    r = run_cli("info", tmp_path / "cohort" / "*" / "*.svs")
    assert r.returncode == 0 and r.stdout.count("0.499 µm/px") == 2, (r.stdout, r.stderr)


def test_report_takes_qc_reasons_from_the_score_files(tmp_path, small_demo):
    """results.csv's ``qc_reasons`` typed over in a spreadsheet (a reason emptied, a note typed into a
    clean row) was printed by ``report`` as the row said, while qc, sTIL% and the other cells are taken
    from each slide's score file (hunt 28c). Now the reasons are too, and the difference is said."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    import pandas as pd

    scores = tmp_path / "scores"
    scores.mkdir()
    table = pd.read_csv(DEMO / "scores" / "results.csv", dtype=str, keep_default_na=False)
    flagged, other = table.index[(table["qc_reasons"] != "") & (table["status"] == "ok")][:2]
    table = table.loc[[flagged, other]]  # two slides of the demo's run, with their files
    for sid in table["slide_id"]:
        for f in (DEMO / "scores").glob(f"{sid}[._]*"):
            shutil.copy(f, scores / f.name)
    shutil.copy(DEMO / "scores" / ".weakstil-output.json", scores)
    reason, theirs = table.loc[flagged, "qc_reasons"], table.loc[other, "qc_reasons"]
    table.loc[flagged, "qc_reasons"] = ""
    table.loc[other, "qc_reasons"] = "few_tumorbed_tiles: typed"
    table.to_csv(scores / "results.csv", index=False)
    r = run_cli("report", "--scores", scores, "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "qc_reasons" in said and table.loc[flagged, "slide_id"] in said, said
    page = next((tmp_path / "rep").glob("*.md")).read_text(encoding="utf-8")
    first = lambda text: text.split(" | ")[0].split(":")[0]  # noqa: E731 (the reason's flag name)
    assert first(reason) in page and first(theirs) in page and "few_tumorbed_tiles: typed" not in page


def test_another_slides_outline_on_this_slide_is_flagged_misplaced(tmp_path, small_demo):
    """A tumour-bed outline of another slide of the same size (a file picked or renamed wrongly) lies
    wholly on this slide: only outlines 10 % or more off the slide were flagged, so it was scored
    without a word. On the demo cohort, each slide given the next one's outline: 0 of 40 flagged
    before, 11 of 40 now (the outline mostly on glass, or the detector's bed elsewhere); each slide's
    own outline: 0 of 40 flagged before and after. Here through ``score``: the swapped slide is
    flagged ``annotation_misplaced`` with the detector's Dice, its neighbour with its own outline is not."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    import pandas as pd

    feats, ann = tmp_path / "features", tmp_path / "annotations"
    feats.mkdir()
    ann.mkdir()
    for sid in ("synth_0009", "synth_0010"):
        shutil.copy(FEATURES / f"{sid}.h5", feats)
    shutil.copy(DEMO / "cohort" / "truth" / "synth_0000_tumorbed.geojson", ann / "synth_0009.geojson")  # the wrong one
    shutil.copy(DEMO / "cohort" / "truth" / "synth_0010_tumorbed.geojson", ann / "synth_0010.geojson")
    slides = [DEMO / "cohort" / "slides" / f"{sid}.tiff" for sid in ("synth_0009", "synth_0010")]
    r = run_cli("score", *slides, "--model", MODEL, "--features", feats, "--annotations", ann, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "out" / "results.csv", dtype=str, keep_default_na=False).set_index("slide_id")
    assert "annotation_misplaced" in table.loc["synth_0009", "qc"], table.loc["synth_0009"].to_dict()
    assert "detector finds this slide's tumour elsewhere" in table.loc["synth_0009", "qc_reasons"]
    assert "annotation_misplaced" not in table.loc["synth_0010", "qc"], table.loc["synth_0010"].to_dict()
    assert (table["tumorbed_source"] == "annotation").all()  # flagged, still scored as drawn


def test_an_outline_mostly_on_glass_is_flagged_without_a_detector(small_demo):
    """The tissue check needs no detector: synth_0007's outline on synth_0009 lies 55 % on tissue."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.bed import SlideGeometry, from_annotation

    geom = SlideGeometry.from_file(FeaturesFile.read(FEATURES / "synth_0009.h5"))
    truth = DEMO / "cohort" / "truth"
    assert "lies on tissue" in from_annotation(truth / "synth_0007_tumorbed.geojson", geom).misplaced
    assert from_annotation(truth / "synth_0009_tumorbed.geojson", geom).misplaced == ""


def _limited_cli(args: list, fsize: int):
    """``python -m weakstil ARGS`` in a fresh interpreter under a file size limit (``ulimit -f``)."""
    import os
    import resource
    import subprocess
    import sys

    import weakstil

    root = Path(weakstil.__file__).resolve().parents[1]  # the WeakSTIL this test runs on
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "weakstil", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=root, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize)))


def test_score_under_a_small_file_size_limit_stops_in_one_line_naming_it(tmp_path, small_demo):
    """A job with ``ulimit -f 1000`` (1000 KB): the decode ring's shared-memory segment (18-37 MB, a file
    in /dev/shm) failed to be made; Python's cleanup printed a resource-tracker traceback, and the
    error named the --out folder, "File too large. Fix: choose another file system for --out", for
    every slide. Now one error line naming /dev/shm and the limit, and the batch stops (exit 1)."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    slides = [DEMO / "cohort" / "slides" / f"synth_000{i}.tiff" for i in (1, 2)]
    r = _limited_cli(["score", *slides, "--model", MODEL, "--out", tmp_path / "out"], 1000 * 1024)
    assert r.returncode == 1, r.stderr
    text = " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr, r.stderr
    assert "/dev/shm" in text and "ulimit -f: 1000 KB" in text and "another file system" not in text, text
    assert "1 more slide(s) not scored" in text, text
    assert not list((tmp_path / "out").glob("*.h5"))


def test_a_write_past_the_file_size_limit_says_so_not_another_file_system(tmp_path):
    """EFBIG under ``ulimit -f`` is the process's limit, not the file system's: the fix names it."""
    import errno
    import resource

    from weakstil.errors import from_os_error, stop_fix

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50 * 2**20, hard))
    try:
        err = from_os_error(OSError(errno.EFBIG, "File too large", str(tmp_path / "a.h5")))
        fix = stop_fix(err.message)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert err.stops_batch and "ulimit -f: 51200 KB" in err.fix and "ulimit -f" in fix, (err.fix, fix)
    assert "another file system" in from_os_error(OSError(errno.EFBIG, "File too large", "x")).fix  # no limit set


def test_a_glob_matching_folders_beside_slides_leaves_the_folders_out(tmp_path):
    """``'DIR/**'`` matches DIR itself and each subfolder, ``'DIR/*'`` a folder of exports beside the
    slides: each folder was an error row "is a directory" and the batch exited 1 with every slide
    done. Now the folders are left out (an info line); a DICOM series folder stays, with its error
    naming the .dcm to pass, and so does a glob matching folders only."""
    shutil.copy(CMU, tmp_path / "a.svs")
    (tmp_path / "qc exports").mkdir()
    (tmp_path / "case").mkdir()
    shutil.copy(CMU, tmp_path / "case" / "b.svs")
    r = run_cli("info", tmp_path / "**")
    assert r.returncode == 0 and r.stdout.count("0.499 µm/px") == 2, (r.stdout, r.stderr)
    r = run_cli("info", tmp_path / "*")
    assert r.returncode == 0 and r.stdout.count("0.499 µm/px") == 1, (r.stdout, r.stderr)
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "x.dcm").write_bytes(b"not read")
    r = run_cli("info", tmp_path / "*")
    assert r.returncode == 1 and "DICOM series folder" in r.stderr, r.stderr


def test_a_slide_replaced_while_it_is_scored_is_an_error_row_not_the_old_scans_number(tmp_path, monkeypatch, small_demo):
    """A slide file replaced while ``score`` works on it (a re-scan copied over it, a copy still being
    written) was scored as the content it had when its tiles were read and written as ``ok`` beside
    the new file (synth_0001's 14.2 % recorded for a file now holding synth_0009, 2.3 %); only the ink
    veto's warning said anything. Now that slide is an error row with no outputs, the next slide goes
    on, and a rerun scores the file as it is."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    import pandas as pd

    from weakstil.mil import ensemble

    slides = tmp_path / "slides"
    slides.mkdir()
    src = DEMO / "cohort" / "slides"
    shutil.copy(src / "synth_0011.tiff", slides / "a.tiff")  # 63.6 % (the small demo's labels)
    shutil.copy(src / "synth_0002.tiff", slides / "b.tiff")
    real, calls = ensemble.score_slides_ensemble, []

    def replaced_meanwhile(*args, **kwargs):  # the file is copied over between reading its tiles and writing
        if not calls:
            shutil.copy(src / "synth_0006.tiff", slides / "a.tiff")  # 1.1 %
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ensemble, "score_slides_ensemble", replaced_meanwhile)
    r = run_cli("score", slides / "*.tiff", "--model", MODEL, "--out", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "changed while it was scored" in " ".join(r.stderr.split()), r.stderr
    table = pd.read_csv(tmp_path / "out" / "results.csv", dtype={"slide_id": str}).set_index("slide_id")
    assert table.loc["a", "status"] == "error" and table.loc["b", "status"] == "ok"
    assert not (tmp_path / "out" / "a.h5").exists() and (tmp_path / "out" / "b.h5").exists()
    monkeypatch.setattr(ensemble, "score_slides_ensemble", real)
    assert run_cli("score", slides / "*.tiff", "--model", MODEL, "--out", tmp_path / "out").returncode == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv", dtype={"slide_id": str}).set_index("slide_id")
    assert table.loc["a", "status"] == "ok"
    assert run_cli("score", src / "synth_0006.tiff", "--model", MODEL, "--out", tmp_path / "ref").returncode == 0
    ref = pd.read_csv(tmp_path / "ref" / "results.csv").iloc[0]
    assert abs(table.loc["a", "stil"] - ref["stil"]) < 1e-3  # synth_0006's number, as it is now


def test_the_same_detector_folder_trained_again_takes_its_beds_folder_over(tmp_path, small_demo):
    """The workflow retrains OUT/detector in place when an outline changes and reruns every bed job
    into the same beds folder: that is not a second detector, and it is not refused."""
    DEMO, MODEL, FEATURES, DETECTOR = _demo(small_demo)
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    det = tmp_path / "detector"
    shutil.copytree(DETECTOR, det)
    out = tmp_path / "beds"
    assert run_cli("tumorbed", "apply", FEATURES / "synth_0000.h5", "--tumorbed", det, "--out", out).returncode == 0
    weights = det / "model.safetensors"
    with safe_open(str(weights), "np") as fh:
        meta = fh.metadata()
    tensors = load_file(str(weights))
    key = next(k for k, v in tensors.items() if np.issubdtype(v.dtype, np.floating))
    tensors[key] = (tensors[key] * 1.0001).astype(tensors[key].dtype)  # trained again: other weights
    save_file(tensors, str(weights), metadata=meta)
    import json

    from weakstil.runtime import sha256_file

    card = json.loads((det / "model.json").read_text())
    card["detector_weights_sha256"] = sha256_file(weights)  # as 'tumorbed train' records its weights
    (det / "model.json").write_text(json.dumps(card))
    r = run_cli("tumorbed", "apply", FEATURES / "synth_0000.h5", FEATURES / "synth_0001.h5", "--tumorbed", det,
                "--out", out)
    assert r.returncode == 0, r.stderr
    assert not any(line.endswith("--overwrite makes it again)") for line in r.stdout.splitlines())  # made again
