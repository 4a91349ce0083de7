"""Hunt 38i: the command line's surface as a checker who reads only ``--help`` walks it.

1. An option given without its value (``weakstil score --out``) said "Fix: see 'weakstil --help'":
   click raises that error without its command, and the top-level help has no ``--out``. Now the
   line names the command's own help (``weakstil score --help``), in every command.
2. ``weakstil score ... -v`` (or ``--verbose``, ``--version``), the options of ``weakstil`` itself
   given after the command, was "no such option: -v" (``--verbose``: "Possible options:
   --overwrite"), with no word of where they go. Now the line says they go before the command.
3. click matched an unknown option's name with its dashes, so every long option looked alike:
   ``--bogus`` was offered ``--out`` in 11 of 14 commands, ``--modle`` ``--decode, --encoder,
   --model``. Now names are compared without dashes: none for ``--bogus``, ``--model`` for ``--modle``.
4. A value outside an option's choices read "invalid value for '--look': Value error, 'weird' is not
   one of ..." (pydantic's prefix, under typer 0.29). Now without it.
5. ``weakstil --version`` said ``weakstil 0.1.0`` only; it names Python, torch and OpenSlide now
   (what a bug report needs), still without importing torch.
6. ``--annotations`` help listed .geojson, .xml, .annotations and .ndpa (``tumorbed train``: four
   suffixes without the file naming); none named .json (HistomicsTK/DSA, GeoJSON) or .wkt, which every
   one of score, train, evaluate, tumorbed train and apply reads. One text for all now, checked
   against weakstil.annotations' suffixes.
7. ``score --features`` said "Feature cache directory (from 'weakstil embed')", as if required
   from embed; score makes the caches it lacks, by default in OUT/features, which it now says.
8. At 80 columns (a default terminal) typer's help table left train's help column 16 characters wide
   and cut six names and words short ('--centre-embed…', '--tissue-thres…', 'cross-validatio…'),
   embed's three ('--allow-upsamp…'). Where the table would not fit, click's plain layout (the help
   under a long option name) is shown now: no command cuts anything at 80 columns.
"""

from __future__ import annotations

import pytest

from conftest import run_cli

#: Every command with an --out option (all but info, encoders and preflight).
WITH_OUT = (("tile",), ("synth",), ("train",), ("evaluate",), ("report",), ("embed",), ("pretrain",), ("score",),
            ("demo",), ("tumorbed", "train"), ("tumorbed", "apply"))
ALL = (*WITH_OUT, ("info",), ("encoders",), ("preflight",))


def _line(proc) -> str:
    """The run's one ``error:`` line (exit 2: a usage error), no traceback."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("command", WITH_OUT, ids=" ".join)
def test_an_option_without_its_value_names_the_commands_help(command):
    line = _line(run_cli(*command, "--out"))
    assert "option '--out' requires an argument" in line, line
    assert line.endswith(f"{' '.join(command)} --help'."), line  # was: see 'weakstil --help'


@pytest.mark.parametrize("option", ("-v", "--verbose", "--version"))
def test_an_option_of_weakstil_itself_after_the_command_says_where_it_goes(option):
    line = _line(run_cli("score", "x.svs", "--model", "m", "--out", "o", option))
    assert f"{option} is an option of 'weakstil' itself, before the command" in line, line
    fix = "'weakstil --version'" if option == "--version" else f"'weakstil {option} score ...'"
    assert line.endswith(f"Fix: {fix}."), line


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_an_unknown_option_is_offered_no_unrelated_option(command):
    line = _line(run_cli(*command, "--bogus"))
    assert line.startswith("error: no such option: --bogus. Fix: see '"), line  # was: (Possible options: --out)


def test_an_unknown_option_is_offered_the_options_named_like_it():
    assert "no such option: --modle (did you mean --model?)" in _line(run_cli("score", "--modle", "m"))
    assert "(did you mean --threads or --threshold?)" in _line(run_cli("score", "--thread", "2"))


def test_a_bad_choice_has_no_pydantic_prefix():
    line = _line(run_cli("synth", "out", "--look", "weird"))
    assert "invalid value for '--look': 'weird' is not one of 'default', 'alt'" in line, line


def test_version_names_python_torch_and_openslide():
    from importlib.metadata import version
    from platform import python_version

    from weakstil.code_version import version as code_version  # with a checkout's commit (38j)
    from weakstil.runtime import torch_version

    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout.strip()
    assert said.startswith(f"weakstil {code_version()} (Python {python_version()}; torch {torch_version()}"), said
    assert f"openslide-python {version('openslide-python')}" in said, said


def _option_help(command: tuple[str, ...], option: str) -> str:
    """The help text of ``option`` of ``weakstil COMMAND`` as written (rendered at 80 columns, train's
    narrow help column cuts long words short: '<slide_id>_tumo…')."""
    import typer.main

    from weakstil.cli import app

    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    return next(p.help for p in cmd.params if option in getattr(p, "opts", ()))


@pytest.mark.parametrize("command", (("score",), ("train",), ("evaluate",), ("tumorbed", "train"),
                                     ("tumorbed", "apply")), ids=" ".join)
def test_annotations_help_names_every_file_read(command):
    from weakstil.annotations import ANNOTATION_PATTERNS, ANNOTATION_SUFFIXES

    text = _option_help(command, "--annotations")
    missing = [s for s in ANNOTATION_SUFFIXES if s not in text]
    assert not missing, (missing, text)  # was: .json and .wkt in every command
    assert "{id}_tumorbed.geojson" in ANNOTATION_PATTERNS and "<slide_id>_tumorbed" in text, text
    assert text.endswith(".") and "Directory of" in text, text


def test_score_features_help_says_its_default():
    text = _option_help(("score",), "--features")
    assert "missing ones are written there (default: OUT/features)" in text, text


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_help_at_80_columns_cuts_no_option_name_or_word(command, monkeypatch):
    import typer.main

    from weakstil.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0 and "…" not in proc.stdout, proc.stdout  # was: train 6, embed 3
    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    names = [o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("--")]
    shown = set(proc.stdout.replace(",", " ").replace("/", " ").split())
    assert not [n for n in names if n not in shown], proc.stdout


@pytest.mark.parametrize(("args", "said"), [
    (("train", "x.csv", "--folds", "x"), "invalid value for '--folds': 'x' is not a whole number."),
    (("train", "x.csv", "--epochs=2.5"), "invalid value for '--epochs': '2.5' is not a whole number."),
    (("score", "x.svs", "--slide-mpp", "abc"), "invalid value for '--slide-mpp': 'abc' is not a number.")])
def test_a_value_that_is_no_number_is_named_with_what_to_give(args, said):
    """Was pydantic's "Input should be a valid integer, unable to parse string as an integer", naming
    neither the value nor what to give (session 64 review)."""
    line = _line(run_cli(*args))
    assert said in line and line.endswith(f"Fix: see 'weakstil {args[0]} --help'."), line
