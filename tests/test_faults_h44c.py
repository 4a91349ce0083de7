"""Fault-matrix findings of hunt 44c (an outside tester's run of every command against bad inputs)."""
import logging

import pytest

HEADER = ("slide_id,path,stil,stil_lower_90,stil_upper_90,stil_high,threshold,n_tiles,n_tumorbed_tiles,"
          "tumorbed_source,status,qc,qc_reasons,error,model_id,encoder_id,seconds\n")
ROW_A = "S_a,/x/S_a.svs,10.0,,,False,30,52,24,model,ok,,,,m@1,e@1,1\n"
ROW_B = "S_b,/x/S_b.svs,40.0,,,True,30,52,24,model,ok,,,,m@1,e@1,1\n"


def _report(tmp_path, text):
    from weakstil.report_scores import build_score_report

    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "results.csv").write_text(HEADER + text, encoding="utf-8")
    build_score_report(scores, tmp_path / "r")
    return (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


def test_score_report_counts_a_row_repeated_word_for_word_once(tmp_path, caplog):
    """Two results.csv put together (``cat``) or a row pasted twice: the report counted the slide twice
    (16 slides of 15, 2 ok of 1) and its sTIL% twice in the median, with no word of it."""
    caplog.set_level(logging.WARNING)
    md = _report(tmp_path, ROW_A + ROW_B + ROW_B + ROW_B)
    assert "| slides | 2 |" in md and "| ok | 2 |" in md
    assert "| median sTIL% of the scored slides | 25.0 |" in md  # 10 and 40; counted thrice, 40.0
    assert md.count("| S_b | ok |") == 1
    assert any("repeats 2 row(s) word for word (S_b)" in r.getMessage() for r in caplog.records)


def test_score_report_refuses_a_slide_with_two_differing_answers(tmp_path):
    """Two runs' rows put together: the report warned, yet counted the slide twice and took both sTIL%
    into the median; ``evaluate`` refuses such a file. Now the report does too, naming the rows (h44h).
    A slide's error row beside its scored one (as score writes it) is still read."""
    import pytest

    from weakstil.errors import WeakSTILError

    with pytest.raises(WeakSTILError) as err:
        _report(tmp_path, ROW_A + ROW_B + ROW_B.replace("40.0", "45.0"))
    assert "gives 1 slide two or more answers that differ (S_b on rows 3, 4" in err.value.message
    assert "keep one row per slide" in err.value.fix
    error_row = "S_b,/x/S_b.svs,,,,,30,,,,error,,,unreadable,m@1,e@1,1\n"
    (tmp_path / "again").mkdir()
    md = _report(tmp_path / "again", ROW_A + error_row + ROW_B)
    assert "| median sTIL% of the scored slides | 25.0 |" in md


def test_synth_names_its_folder_when_a_write_naming_no_file_fails(tmp_path, monkeypatch):
    """``weakstil synth --out DIR`` under a small ``ulimit -f`` (or on a full disk): the write that failed
    (tifffile's) carries no file name, and the line was "error: File too large. Fix: ...", naming nothing:
    the CLI named the folder of a command's ``out`` only, and synth's ``--out`` is its ``out_option``."""
    import errno
    import os

    import weakstil.synth as synth
    from conftest import run_cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(synth, "generate_cohort", full)
    out = tmp_path / "cohort"
    res = run_cli("synth", "--out", out, "--slides", "1", "--size-mm", "0.5", "0.5")
    assert res.returncode == 1
    line = [x for x in res.stderr.splitlines() if x.startswith("error:")][0]
    assert line.startswith(f"error: {out}: No space left on device"), line


def test_a_copy_past_the_file_size_limit_names_the_copy_not_its_source(tmp_path):
    """``weakstil report --model MODEL --out R`` under ``ulimit -f``: "error: MODEL/cv/scatter.png: File too
    large": shutil.copyfile's error names the source first, and the one error line named the model's own
    file, not the report's copy that could not be written."""
    import resource
    import shutil
    import signal

    from weakstil.errors import from_os_error

    source, target = tmp_path / "model_scatter.png", tmp_path / "report" / "scatter.png"
    source.write_bytes(b"x" * 20000)
    target.parent.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            shutil.copyfile(source, target)
            error = None
        except OSError as exc:
            error = from_os_error(exc)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)
    assert error is not None and error.stops_batch
    assert str(error.path) == str(target), error.one_line()


def _oof_case(tmp_path, scale):
    labels = [5.0, 12.0, 20.0, 35.0, 50.0, 70.0]
    preds = [9.0, 10.0, 25.0, 30.0, 41.0, 77.0]  # a fair model's out-of-fold sTIL%
    cohort, oof = tmp_path / "cohort.csv", tmp_path / "oof.csv"
    cohort.write_text("slide_id,path,stil\n" + "".join(f"s{i},s{i}.svs,{v}\n" for i, v in enumerate(labels)))
    oof.write_text("slide_id,stil_true,stil_pred,fold\n"
                   + "".join(f"s{i},{v},{p * scale:.6g},{i % 2 + 1}\n" for i, (v, p) in enumerate(zip(labels, preds))))
    return cohort, oof


def test_evaluate_refuses_predictions_written_as_fractions(tmp_path):
    """``evaluate --oof`` of predictions as fractions (0.35 for 35 %) against percentage labels: metrics of
    the two scales (R² far below 0, MAE the labels' mean), exit 0, no word; train refuses such labels."""
    from conftest import run_cli

    cohort, oof = _oof_case(tmp_path, 0.01)
    res = run_cli("evaluate", cohort, "--oof", oof, "--out", tmp_path / "ev")
    assert res.returncode == 1, res.stderr
    line = [x for x in res.stderr.splitlines() if x.startswith("error:")][0]
    assert line.startswith(f"error: {oof}: every prediction is at most 1") and "multiply the stil_pred column by 100" in line
    assert not (tmp_path / "ev").exists()
    (tmp_path / "pct").mkdir()
    cohort, oof = _oof_case(tmp_path / "pct", 1.0)  # the same predictions as percentages: judged
    assert run_cli("evaluate", cohort, "--oof", oof, "--out", tmp_path / "pct" / "ev").returncode == 0


def test_evaluate_keeps_a_til_poor_cohort_scored_under_one_percent(tmp_path):
    import pandas as pd

    from weakstil.evaluation_results import refuse_fraction_predictions

    pred = pd.DataFrame({"slide_id": ["a", "b", "c"], "stil_true": [0.5, 1.0, 2.0], "stil_pred": [0.4, 0.9, 1.0]})
    refuse_fraction_predictions(pred, tmp_path / "oof.csv")  # labels 0-2 %: percentages, not refused
    pred = pd.DataFrame({"slide_id": ["a", "b"], "stil_true": [10.0, 40.0], "stil_pred": [0.5, 0.9]})
    refuse_fraction_predictions(pred, tmp_path / "oof.csv")  # x 100 (50, 90) lies farther: a poor model, judged


def test_a_damaged_tiff_checked_by_the_workflow_prints_no_bare_tifffile_line(tmp_path):
    """The Snakefile's preflight opens each cohort slide with no logging set up (it is no weakstil command):
    for a truncated TIFF, tifffile's warning reached Python's last-resort handler, and the run printed
    '<tifffile.TiffPages @8> invalid page offset 736162' above its one error line."""
    import subprocess
    import sys

    import numpy as np

    from conftest import write_tiff_slide

    rng = np.random.default_rng(0)
    slide = write_tiff_slide(tmp_path / "s.tiff", rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8), levels=2)
    data = slide.read_bytes()
    slide.write_bytes(data[: len(data) // 2])
    code = ("from weakstil.pipeline_slide_files import _read_mpp; import sys; "
            f"mpp, why = _read_mpp({str(slide)!r}); sys.exit(0 if why else 3)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr  # refused, with its reason
    assert "tifffile" not in res.stderr and res.stderr.strip() == "", res.stderr


def test_a_slide_list_names_every_bad_mpp_cell_at_once(tmp_path):
    """A --slides CSV with three bad mpp cells stopped the batch (exit 2) naming only the first: mending it
    revealed the next on the following run, and the next."""
    from conftest import run_cli

    listed = tmp_path / "batch.csv"
    listed.write_text("slide_id,path,mpp\ns1,a.tiff,0\ns2,b.tiff,abc\ns3,c.tiff,0.5\ns4,d.tiff,1e9\n")
    res = run_cli("tile", "--slides", listed, "--out", tmp_path / "t")
    assert res.returncode == 2
    line = [x for x in res.stderr.splitlines() if x.startswith("error:")][0]
    assert "the mpp of 3 lines is not a scan resolution" in line, line
    assert "line 2 (a.tiff) '0'" in line and "line 3 (b.tiff) 'abc'" in line and "line 5 (d.tiff) '1e9'" in line
    assert "c.tiff" not in line and not (tmp_path / "t").exists()


def test_tumorbed_apply_whose_every_slide_failed_leaves_no_detector_claim(tmp_path):
    """Every slide of a 'tumorbed apply' refused (features of another tiling than the detector's, a damaged
    file): the folder was left holding only its hidden detector record, and the next run there with another
    detector was refused, exit 2, "holds the beds of DETECTOR ... would mix", though it held no bed."""
    from conftest import run_cli

    from weakstil.tumorbed.apply import DETECTOR_RECORD

    bad = tmp_path / "features" / "s1.h5"
    bad.parent.mkdir()
    bad.write_text("not HDF5")
    out = tmp_path / "beds"
    res = run_cli("tumorbed", "apply", bad, "--out", out)
    assert res.returncode == 1 and "s1.h5: not a readable HDF5 file" in res.stderr
    assert not out.exists()  # made by this run, nothing in it: gone
    out.mkdir()  # a folder of the user's own: kept, without the record
    assert run_cli("tumorbed", "apply", bad, "--out", out).returncode == 1
    assert out.is_dir() and not (out / DETECTOR_RECORD).exists()


def test_an_out_folder_the_file_system_refuses_is_said_before_anything_runs(tmp_path):
    """``embed --out /proc/x`` (as root: the permissions allow it, the file system does not) failed only
    after the encoder had loaded, with "check the path". Now the --out check makes a folder there first and
    says which file system refused it (h44h); a usable --out is left as it was."""
    import os
    from pathlib import Path

    import pytest
    import typer

    from weakstil.cli.options import out_dir

    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this system")
    for bad in ("/proc/weakstil-h44h", "/proc/weakstil-h44h/sub"):
        with pytest.raises(typer.BadParameter) as err:
            out_dir(Path(bad))
        assert f"{bad}: the file system of /proc refuses a new folder" in str(err.value)
        assert "choose an output directory on a writable disk" in str(err.value)
    assert out_dir(tmp_path / "new" / "out") == tmp_path / "new" / "out" and not (tmp_path / "new").exists()
    assert out_dir(tmp_path) == tmp_path and not any(tmp_path.iterdir())


def test_evaluate_judges_weakstil_s_own_predictions_all_under_one_percent(tmp_path):
    """Review h44i: a model's own cv/oof_predictions.csv (and a score run's results.csv) of a TIL-poor cohort
    whose sTIL% all lie under 1 % were refused as "fractions", the fix naming the very file passed ("or pass
    MODEL/cv/oof_predictions.csv") or a stil_pred column a results.csv has not: WeakSTIL writes percentages."""
    import json

    from weakstil.evaluation import evaluate_oof

    labels = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0]  # 1 % steps, one slide at 10 %
    preds = [0.0, 0.02, 0.01, 0.04, 0.03, 0.12]  # an under-fitting model's sTIL%, x 100 nearer the labels
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("slide_id,path,stil\n" + "".join(f"s{i},s{i}.svs,{v}\n" for i, v in enumerate(labels)))
    model = tmp_path / "model"
    (model / "cv").mkdir(parents=True)
    (model / "model.json").write_text(json.dumps({
        "format": "weakstil-mil", "format_version": 1, "threshold": 30, "seed": 0, "weights_sha256": "ab" * 32,
        "encoder": {"name": "enc", "weights_sha256": "cd" * 32, "card": {"base": "small-cnn"}},
        "tiling": {"mpp": 0.5, "tile_px": 224}, "training": {"cross_validation": {"folds": 2}}}))
    oof = model / "cv" / "oof_predictions.csv"
    oof.write_text("slide_id,stil_true,stil_pred,fold\n"
                   + "".join(f"s{i},{v},{p},{i % 2 + 1}\n" for i, (v, p) in enumerate(zip(labels, preds))))
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "results.csv").write_text(HEADER + "".join(f"s{i},/x/s{i}.svs,{p},,,False,30,52,24,model,ok,,,,m@1,e@1,1\n"
                                                         for i, p in enumerate(preds)))
    for i, path in enumerate((oof, scores / "results.csv")):
        metrics = evaluate_oof(cohort, path, tmp_path / f"ev{i}")
        assert metrics["n"] == 6 and abs(metrics["mae"] - 3.4633) < 1e-3, metrics
    other = tmp_path / "other.csv"  # the same numbers from another tool: still refused as fractions
    other.write_text(oof.read_text())
    from weakstil.errors import WeakSTILError

    with pytest.raises(WeakSTILError, match="multiply the stil_pred column by 100"):
        evaluate_oof(cohort, other, tmp_path / "ev_other")


def test_score_report_of_two_results_files_put_together_reads_no_header_as_a_slide(tmp_path, caplog):
    """Review h44i: ``cat a/results.csv b/results.csv`` (the case of 'rows repeated word for word') left the
    second header line as a slide: "slides 3" of 2, a row 'slide_id' of status 'status', and "scored by 2
    models (m@1, model_id)". A second file saved with a byte-order mark starts its line with one."""
    caplog.set_level(logging.WARNING)
    md = _report(tmp_path, ROW_A + ROW_B + "\ufeff" + HEADER + ROW_B)
    assert "| slides | 2 |" in md and "| ok | 2 |" in md and "| status | 1 |" not in md, md
    assert "| slide_id |" not in md and "model_id" not in md.split("## Settings")[1].split("## Versions")[0]
    assert any("repeats its header line 1 time(s)" in r.getMessage() for r in caplog.records)
