"""Hunt 38j: what a pathologist and a validating lab read.

1. **The napari widget's qc line showed the flags' codes** with spaces ("qc: pen or folds, near threshold",
   "out of distribution") while the heatmap title and the report say them in words (``qc.flags.LABEL``:
   "marker ink or folds, high/low call uncertain"). Now the widget uses the same words; its tooltip gives
   each flag's code (as results.csv's qc column holds it) beside its reason.
2. **Every output recorded ``weakstil_version`` 0.1.0**, whatever the code: score files, tiles, features,
   models, report, the output-folder marker, ``weakstil --version``. Two runs of different commits looked
   identical. Now, run from a git checkout (the editable install), they record the commit:
   ``0.1.0+gf0f2b7205253`` (``.dirty`` with uncommitted changes to tracked files); from a wheel, 0.1.0.
   The commit is read from .git's files (HEAD, loose ref, packed-refs, a worktree's .git file).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def test_the_widgets_qc_line_says_the_flags_in_the_heatmap_titles_words():
    from napari_weakstil.summary import qc_view

    text, raised, tip = qc_view({"qc": "pen_or_folds;near_threshold",
                                 "qc_reasons": json.dumps({"pen_or_folds": "ink and folds 11 % of the tissue"})})
    assert raised and text == "qc: marker ink or folds, high/low call uncertain"  # old: "qc: pen or folds, near threshold"
    lines = tip.splitlines()
    assert lines[0] == "marker ink or folds (pen_or_folds): ink and folds 11 % of the tissue"
    assert lines[1].startswith("high/low call uncertain (near_threshold): the 90 % interval contains")  # no reason: its meaning
    # a flag this WeakSTIL does not know (a newer one's file) keeps its code's words
    assert qc_view({"qc": "some_new_flag"})[0] == "qc: some new flag"


def _repo(root: Path, head: str, refs: dict[str, str] | None = None, packed: dict[str, str] | None = None) -> Path:
    git = root / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text(head + "\n")
    for ref, sha in (refs or {}).items():
        (git / ref).parent.mkdir(parents=True, exist_ok=True)
        (git / ref).write_text(sha + "\n")
    if packed:
        (git / "packed-refs").write_text("# pack-refs with: peeled fully-peeled sorted\n" + "".join(
            f"{sha} {ref}\n^{OTHER}\n" for ref, sha in packed.items()))
    return git


def test_the_version_names_the_commit_of_a_checkout(tmp_path):
    from weakstil.code_version import describe

    loose = tmp_path / "loose"
    _repo(loose, "ref: refs/heads/main", refs={"refs/heads/main": SHA}, packed={"refs/heads/main": OTHER})
    assert describe(loose, "0.1.0", dirty_check=False) == "0.1.0+g0123456789ab"  # the loose ref wins over packed
    packed = tmp_path / "packed"
    _repo(packed, "ref: refs/heads/dev", packed={"refs/heads/main": OTHER, "refs/heads/dev": SHA})
    assert describe(packed, "0.1.0", dirty_check=False) == "0.1.0+g0123456789ab"
    detached = tmp_path / "detached"
    _repo(detached, SHA, refs={"refs/heads/main": OTHER})
    assert describe(detached, "0.1.0", dirty_check=False) == "0.1.0+g0123456789ab"
    # a worktree: .git is a file naming its git dir, whose commondir holds the branches
    common = loose / ".git"
    wt_git = common / "worktrees" / "wt"
    wt_git.mkdir(parents=True)
    (wt_git / "HEAD").write_text("ref: refs/heads/feature\n")
    (wt_git / "commondir").write_text("../..\n")
    (common / "refs" / "heads" / "feature").write_text(OTHER + "\n")
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / ".git").write_text(f"gitdir: {wt_git}\n")
    assert describe(worktree, "0.1.0", dirty_check=False) == "0.1.0+gfedcba987654"
    # a wheel's site-packages (no .git), a repository without a commit, a damaged HEAD: the plain version
    assert describe(tmp_path / "nothing", "0.1.0") == "0.1.0"
    empty = tmp_path / "empty"
    _repo(empty, "ref: refs/heads/main")
    assert describe(empty, "0.1.0") == "0.1.0"
    damaged = tmp_path / "damaged"
    _repo(damaged, "not a ref")
    assert describe(damaged, "0.1.0") == "0.1.0"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_checkout_with_changed_tracked_files_is_dirty(tmp_path):
    from weakstil.code_version import describe

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "one")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("results\n")  # not code: not dirty
    assert describe(tmp_path, "0.1.0") == f"0.1.0+g{sha[:12]}"
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "config.yaml").write_text("threshold: 30\n")
    git("add", "pipelines/config.yaml")
    git("commit", "-q", "-m", "two")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    (tmp_path / "pipelines" / "config.yaml").write_text("threshold: 40\n")  # a lab's settings, not code
    assert describe(tmp_path, "0.1.0") == f"0.1.0+g{sha[:12]}"
    (tmp_path / "a.py").write_text("x = 2\n")
    assert describe(tmp_path, "0.1.0") == f"0.1.0+g{sha[:12]}.dirty"


def test_outputs_and_version_line_record_this_checkouts_commit(tmp_path):
    """This test runs from a checkout: what outputs record names its commit (old: 0.1.0)."""
    import weakstil
    from weakstil.outputdir import mark
    from weakstil.runtime import library_versions, run_record

    root = Path(weakstil.__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("WeakSTIL does not run from a git checkout here")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip(f"git cannot read the checkout: {head.stderr.strip()}")
    tag = f"{weakstil.__version__}+g{head.stdout.strip()[:12]}"
    assert run_record()["weakstil_version"].startswith(tag)
    assert library_versions()["weakstil"].startswith(tag)
    marker = json.loads(mark(tmp_path / "out", "score").read_text())
    assert marker["weakstil_version"].startswith(tag)
    from weakstil.cli import version_line

    assert version_line().startswith(f"weakstil {tag}")
    assert weakstil.__version__ == "0.1.0"  # plain, for packaging


def test_the_widgets_detail_line_says_which_run_scored_an_evaluations_tiles_in_words(tmp_path):
    """(helper h39d) An evaluate tile file's detail line ended in the internal source word: "S1: 12 tiles;
    7 in the tumour bed; label 40.0 %; evaluate". It now says what it is, and by which model(s)."""
    import h5py
    from legacy_files import write_tile_scores
    from napari_weakstil.result_layers import read_result
    from napari_weakstil.summary import detail_line

    path = write_tile_scores(tmp_path / "S1.h5")  # train's cv/tiles file: its words were already words
    assert detail_line(read_result(path)).endswith("; cross-validation (out of fold)")
    for scoring, n, said in (("final", 1, "by its final model"), ("ensemble", 5, "by an ensemble of its 5 fold models")):
        with h5py.File(path, "a") as f:  # as weakstil.evaluation writes it
            f.attrs.update({"source": "evaluate", "scoring": scoring, "n_models": n})
            f.attrs.pop("fold", None)  # an evaluation's slide has no fold
        line = detail_line(read_result(path))
        assert not line.endswith("; evaluate"), line  # old: "...; label 40.0 %; evaluate"
        assert line.endswith(f"; scored in an evaluation ('weakstil evaluate', {said})"), line
