"""Command-line usability findings of an outside tester: what ``--help`` shows for on/off flags and
shared options, and the ``error:`` line of a slide file named ``-...``, a broken symbolic link and a
DICOM series folder (each a clear line naming the file and the fix, no traceback); and the help's
paragraphs wrapped to the terminal, not broken where the docstring's lines end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_tiff_slide

COMMANDS = (("tile",), ("info",), ("synth",), ("train",), ("evaluate",), ("report",), ("encoders",), ("embed",),
            ("pretrain",), ("score",), ("demo",), ("preflight",), ("tumorbed", "train"), ("tumorbed", "apply"), ())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error(proc, rc: int) -> str:
    """The run failed with ``rc`` and one ``error:`` line, no traceback; that line."""
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr
    assert proc.returncode == rc, (proc.returncode, proc.stderr)
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    return errors[0]


def help_text(*command: str) -> str:
    """``weakstil COMMAND --help`` with the table drawing and line wrapping taken out."""
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.replace("│", " ").split())


# --- 1. flags take no value: their help shows none ---------------------------------------------
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "weakstil")
def test_help_shows_no_value_for_on_off_flags(command):
    text = help_text(*command)
    assert "<bool>" not in text, text
    assert "--help Show this message and exit." in text, text  # the flag row, no value between


def test_help_still_shows_the_value_of_options_that_take_one():
    text = help_text("tile")
    assert "--allow-upsample Accept slides" in text, text
    assert "--mpp <float>" in text and "--out -o <path>" in text, text


def short_lines_mid_paragraph(*command: str) -> list[str]:
    """Lines of ``weakstil COMMAND --help`` (80 columns) that end well short of the width while the same
    paragraph or command entry goes on on the next line: a docstring's own line break, not rich's wrap.
    Read in the description and the Commands panel (the docstrings), not in the options' narrow column."""
    out = run_cli(*command, "--help").stdout.splitlines()
    # the first panel; or, in click's plain layout (a table too wide for 80 columns, hunt 38i), its first section
    first_panel = next(i for i, line in enumerate(out) if line.startswith(("╭", "Arguments:", "Options:")))
    commands = [i for i, line in enumerate(out) if line.startswith("╭─ Commands")]
    out = out[:first_panel] + (out[commands[0]:] if commands else [])
    short = []
    for line, following in zip(out, out[1:]):
        text, nxt = line.strip(" │"), following.strip(" │")
        # a continuation: text on the next line that opens no option, command or panel of its own
        goes_on = nxt and following.startswith(("│" + " " * 11, " ")) and not nxt.startswith(("-", "╭", "╰"))
        if text and goes_on and len(line.rstrip(" │")) < 80 - 25:
            short.append(line)
    return short


def test_help_wraps_each_paragraph_to_the_terminal(monkeypatch):
    """typer's rich help kept the docstrings' line breaks: `weakstil --help` listed `score` as
    "tile-score heatmaps, HDF5 and" and went on at the next line, as did `demo` and `preflight`, and
    `train --help` broke "the out-of-fold predictions," mid-sentence (hunt 34e)."""
    monkeypatch.setenv("COLUMNS", "80")
    for command in ((), ("train",), ("report",), ("tumorbed",), ("tumorbed", "apply")):
        assert short_lines_mid_paragraph(*command) == [], command


# --- 2. --allow-upsample says what it compares with, per command ------------------------------
@pytest.mark.parametrize("command", ["tile", "embed", "pretrain"])
def test_allow_upsample_compares_with_mpp_where_there_is_one(command):
    text = help_text(command)
    assert "--mpp <float>" in text
    assert "coarser than --mpp (pixels are upsampled)" in text, text


def test_score_allow_upsample_compares_with_the_models_resolution():
    text = help_text("score")
    assert "--mpp " not in text  # score reads the model's µm/px
    assert "coarser than the model's µm/px (pixels are upsampled)" in text, text
    assert "coarser than --mpp" not in text, text


# --- 3. a slide file whose name starts with '-' -----------------------------------------------
@pytest.fixture
def dash_slide(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return write_tiff_slide(Path("-dash.tiff"), np.full((512, 512, 3), 200, np.uint8), levels=2)


def test_a_file_named_like_an_option_gets_a_hint(dash_slide):
    line = one_error(run_cli("info", "-dash.tiff"), 2)
    assert line.startswith("error: no such option: -d (-dash.tiff is a file whose name starts with '-')"), line
    assert "put -- before the file names" in line and "./-dash.tiff" in line, line


def test_the_hinted_spellings_work(dash_slide):
    for argv in (("info", "--", "-dash.tiff"), ("info", "./-dash.tiff")):
        proc = run_cli(*argv)
        assert proc.returncode == 0, proc.stderr
        assert "-dash.tiff: 512x512 px" in proc.stdout, proc.stdout


def test_an_unknown_option_that_is_no_file_keeps_its_plain_line(dash_slide):
    line = one_error(run_cli("info", "--nosuch", "-dash.tiff"), 2)
    assert line == "error: no such option: --nosuch. Fix: see 'weakstil info --help'.", line


# --- 4. a broken symbolic link ---------------------------------------------------------------
@pytest.mark.parametrize("command", [("info",), ("tile", "--out", "{out}")])
def test_a_broken_symlink_says_so_and_where_it_points(tmp_path, command):
    target = tmp_path / "gone" / "x.tiff"
    link = tmp_path / "slide.tiff"
    link.symlink_to(target)
    argv = [a.format(out=tmp_path / "tiles") for a in command]
    line = one_error(run_cli(*argv, link), 1)
    assert f"{link}: broken symbolic link to {target} (target not found)" in line, line
    assert "file not found" not in line and "Fix: point the link at the slide" in line, line


def test_a_missing_file_is_still_file_not_found(tmp_path):
    line = one_error(run_cli("info", tmp_path / "nope.tiff"), 1)
    assert "nope.tiff: file not found. Fix: check the path and spelling." in line, line


# --- 5. a DICOM series folder ----------------------------------------------------------------
def test_a_dicom_series_folder_asks_for_one_of_its_files(tmp_path):
    series = tmp_path / "DCM"
    series.mkdir()
    for name in ("0002.dcm", "0001.DCM", "notes.txt"):
        (series / name).write_bytes(b"\0" * 132)
    line = one_error(run_cli("info", series), 1)
    assert f"{series}: is a DICOM series folder, not a slide file" in line, line
    assert f"Fix: pass one .dcm file of the series, e.g. {series / '0001.DCM'}" in line, line
    assert "opens the whole series from any one of its files" in line, line


def test_another_folder_is_still_not_a_slide_file(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "a.tiff").write_bytes(b"x")
    line = one_error(run_cli("info", folder), 1)
    assert line == (f"error: {folder}: is a directory, not a slide file. Fix: pass slide files, or a glob of the "
                    f"folder's (quoted): '{folder / '*'}'."), line


def test_an_interrupted_command_says_whether_a_rerun_continues(capsys):
    """train said 'a rerun continues where this one stopped' when interrupted, but a rerun starts
    over: only the per-slide commands keep what they finished."""
    import typer

    from weakstil.cli.errors import reports_errors

    def score():
        raise KeyboardInterrupt

    def train():
        raise KeyboardInterrupt

    import signal

    sigterm = signal.getsignal(signal.SIGTERM)  # the wrapper turns SIGTERM into KeyboardInterrupt
    try:
        for command, says in ((score, "a rerun continues where this one stopped"), (train, "a rerun starts over")):
            with pytest.raises(typer.Exit) as stopped:
                reports_errors(command)()
            assert stopped.value.exit_code == 130
            assert says in capsys.readouterr().err
    finally:
        signal.signal(signal.SIGTERM, sigterm)
