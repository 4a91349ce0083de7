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
