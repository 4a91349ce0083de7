"""Defects noticed in earlier rounds and mended by helper h40d (each test fails on 2458714).

1. A ``--slides`` list whose first line is Excel's separator hint (``sep=;``): the line was read as a
   slide path ("sep=;: file not found", and a ';' list's header ``path`` as a second missing slide: "2 of
   4 slides scored"), where the cohort reader refuses it in one line; now the same one line, exit 2. Its fix for
   'sep=;' is to delete the line, as for 'sep=,' (it was to save the file comma-separated, though a ';' file is
   read since hunt 39c).
2. ``weakstil -q embed`` (and ``-q tile``) printed nothing at all of a batch that succeeded, where
   ``-q score`` and the others print their closing line (hunt 39k); now '2 of 2 slides embedded -> OUT'.
3. A card.yaml, workflow config, ``--config`` value or ``report --settings`` file holding a Python-object tag
   (``!!python/object/apply:os.system``) was "not valid YAML. Fix: fix the YAML syntax" (its syntax is
   right; the safe loader refuses the tag); now each says the tag is refused, naming the file and line.
"""

from __future__ import annotations

import pytest

from conftest import run_cli, write_disc_slide


def _said(stderr: str) -> str:
    return " ".join(stderr.split())


@pytest.mark.parametrize("hint, said", [("sep=;", "--slides: the first line 'sep=;' is a spreadsheet's separator hint"),
                                        ("sep=,", "--slides: the first line 'sep=,' is a spreadsheet's separator hint")])
def test_a_slide_lists_separator_hint_is_refused_as_the_cohort_reader_refuses_it(tmp_path, hint, said):
    listed = tmp_path / "list.csv"
    listed.write_text(f"{hint}\npath\nslides/a.svs\n", encoding="utf-8")
    r = run_cli("score", "--model", tmp_path / "no-model", "--slides", listed, "-o", tmp_path / "out")
    assert r.returncode == 2 and said in _said(r.stderr) and str(listed) in _said(r.stderr), r.stderr
    assert "Fix: " in r.stderr and "sep=;: file not found" not in r.stderr and not (tmp_path / "out").exists()


def test_quiet_embed_and_tile_say_their_closing_line(tmp_path):
    slide = write_disc_slide(tmp_path / "disc.tiff")
    r = run_cli("-q", "embed", slide, "-o", tmp_path / "feat", "--encoder", "small-cnn", "--weights", "random")
    assert r.returncode == 0 and (tmp_path / "feat" / "disc.h5").is_file(), r.stderr
    said = _said(r.stderr)
    assert said.startswith("INFO 1 of 1 slides embedded ->") and said.count("INFO") == 1, r.stderr  # was ''
    r = run_cli("-q", "tile", slide, "-o", tmp_path / "tiles")
    assert r.returncode == 0 and _said(r.stderr).startswith("INFO 1 of 1 slides tiled ->"), r.stderr


TAGGED = "x: !!python/object/apply:os.system ['echo pwned']\n"


def test_every_yaml_reader_says_a_python_tag_is_refused(tmp_path):
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "card.yaml").write_text("name: x\n" + TAGGED.replace("x:", "model:"), encoding="utf-8")
    (tmp_path / "config.yaml").write_text("folds: 3\n" + TAGGED, encoding="utf-8")
    runs = {"an encoder card": run_cli("embed", "--encoder", tmp_path / "enc", tmp_path / "a.tiff", "-o", tmp_path / "f"),
            "a workflow config": run_cli("preflight", tmp_path / "config.yaml"),
            "a --config value": run_cli("preflight", "--config", "folds=" + TAGGED[3:].strip())}
    for what, r in runs.items():
        said = _said(r.stderr)
        assert r.returncode in (1, 2) and "not valid YAML" not in said, r.stderr
        assert "the YAML tag !!python/object/apply:os.system on line " in said and f"{what} is plain YAML" in said, said
        assert "Fix: delete the tag" in said
    assert "card.yaml: the YAML tag" in _said(runs["an encoder card"].stderr)
    from weakstil.errors import WeakSTILError
    from weakstil.pipeline_yaml import read_settings  # (report --settings; weakstil.report's until helper h40d)

    with pytest.raises(WeakSTILError) as err:
        read_settings(tmp_path / "config.yaml")
    assert "the YAML tag !!python/object/apply:os.system on line 2 is refused" in err.value.one_line()


def test_a_custom_tag_is_not_called_python_and_a_tab_hint_is_a_hint(tmp_path):
    """Review of h40d (helper h40j): a custom tag (CloudFormation's '!Ref', an '!include') was refused with
    "(a Python-object tag builds objects or runs code as the file is read)", untrue of it; and a tab-separated
    list's 'sep=<tab>' line (stripped: 'sep=') was still read as a slide path 'sep=' (';' and ',' were refused)."""
    from weakstil.errors import WeakSTILError
    from weakstil.pipeline_yaml import read_settings
    from weakstil.slide_list import read_slide_list

    (tmp_path / "custom.yaml").write_text("cohort: !Ref labels\n", encoding="utf-8")
    with pytest.raises(WeakSTILError) as err:
        read_settings(tmp_path / "custom.yaml")
    said = err.value.one_line()
    assert "the YAML tag !Ref on line 1 is refused" in said and "Python" not in said, said
    listed = tmp_path / "list.tsv"
    listed.write_text("sep=\t\npath\na.svs\n", encoding="utf-8")
    with pytest.raises(WeakSTILError) as err:
        read_slide_list(listed)  # before: ['.../sep=', '.../path', '.../a.svs']
    assert "--slides: the first line 'sep=' is a spreadsheet's separator hint" in err.value.one_line()
