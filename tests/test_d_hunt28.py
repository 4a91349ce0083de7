"""Hunt 28, helper d: two runs at once on one folder (locks, results.csv, resume after kill -9),
and what the napari widget says when score_batch skips or fails a slide."""

from __future__ import annotations

import shutil

import pytest

import napari_plugin_fixtures  # the plugin's scored synthetic slide, built once per run

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below
dock = napari_plugin_fixtures.dock


# --- the napari widget --------------------------------------------------------------------------------------
def test_widget_says_an_already_scored_slide_was_not_scored_again(make_napari_viewer, qtbot, scored, tmp_path):
    """Scoring a slide into a folder where it is already scored (same file, model, settings)
    skips it (score_batch): the widget said "Scored X in 5 s", the earlier run's seconds, as if it
    had scored it now. It now says the earlier score is shown and how to score it again."""
    pytest.importorskip("napari")
    out = tmp_path / "scores"
    shutil.copytree(scored["scores"], out)
    before = (out / scored["score_h5"].name).stat().st_mtime_ns
    viewer = make_napari_viewer()
    viewer.open(scored["held"], plugin="napari-weakstil")
    widget = dock(viewer)
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = out
    widget.weights_edit.setText("random")
    widget.score()
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=120_000)
    status = widget.status_label.text()
    assert widget.last_row is not None and widget.last_row["status"] == "ok", status
    assert (out / scored["score_h5"].name).stat().st_mtime_ns == before  # really not scored again
    assert not status.startswith("Scored"), status
    assert "already scored" in status and "another Output folder" in status and scored["score_h5"].name in status
    assert f"sTIL {float(widget.last_row['stil']):.1f} %" in widget.stil_label.text()  # the earlier score is shown


def test_widget_failure_is_said_in_the_widgets_words_only(make_napari_viewer, qtbot, scored, tmp_path,
                                                          capfd):
    """A slide that fails in the widget: score_batch also printed its command-line 'error:' line
    (with '--allow-upsample') to the console napari was started from, beside the widget's
    'tick Allow upsampling'. The console now has no such line; the widget says it."""
    pytest.importorskip("napari")
    viewer = make_napari_viewer()
    viewer.open(scored["held"], plugin="napari-weakstil")
    widget = dock(viewer)
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = tmp_path / "scores"
    widget.weights_edit.setText("random")
    widget.slide_mpp_spin.setValue(2.0)  # coarser than the model's 0.5 µm/px: refused without upsampling
    capfd.readouterr()
    widget.score()
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=120_000)
    status = widget.status_label.text()
    assert widget.last_row is not None and widget.last_row["status"] == "error", status
    assert "tick Allow upsampling" in status
    err = capfd.readouterr().err
    assert not [line for line in err.splitlines() if line.startswith("error:")], err


# --- two runs on one features folder ------------------------------------------------------------------------
def test_embed_at_other_settings_into_a_folder_another_run_fills_is_one_line_not_a_mixed_folder(tmp_path,
                                                                                               monkeypatch):
    """A lab runs embed into a features folder that another run (its own, or a colleague's) fills at
    224 px tiles, with --tile-size 160: each slide the other run had not reached was embedded at 160
    px (exit 0 for new slides) and the folder ended mixed, which train refuses only later ('feature
    files come from different encoders ... or tile settings'). Now the run is refused at once with one
    line naming the folder and the difference, and writes nothing; at the folder's settings it goes on."""
    import subprocess
    import sys

    from conftest import ROOT, run_cli
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.synth import generate_cohort

    cohort, feats = tmp_path / "c", tmp_path / "f"
    labels = generate_cohort(cohort, 3, seed=11, size_mm=(0.6, 0.6), progress=False)
    slides = [cohort / p for p in labels["path"]]
    embed_slide(slides[0], create_encoder("small-cnn", weights="random"), out_dir=feats)  # the other run's first
    holder = subprocess.Popen([sys.executable, "-c", (  # ... and it is writing the second now
        "import time; from weakstil.locks import OutputLock; "
        f"lock = OutputLock({str(feats / (slides[1].stem + '.h5'))!r}); lock.acquire(); print('held', flush=True); "
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "3")  # old code: waited for the held slide
        args = ("embed", *slides, "-o", feats, "-e", "small-cnn", "--weights", "random", "--workers", "1")
        proc = run_cli(*args, "--tile-size", "160")
    finally:
        holder.kill()
        holder.wait()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert str(feats) in errors[0] and "another tiling" in errors[0] and "224 not 160" in errors[0]
    assert sorted(p.name for p in feats.glob("*.h5")) == [slides[0].stem + ".h5"]  # nothing written
    proc = run_cli(*args)  # at the folder's own settings: the other slides are embedded beside it
    assert proc.returncode == 0, proc.stderr
    assert len(list(feats.glob("*.h5"))) == 3
