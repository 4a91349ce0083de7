"""Hunt 35c: the environment a lab runs WeakSTIL in (a non-root user, a closed stdout pipe, a full disk).

What was wrong (measured as a non-root user, the tests otherwise run as root, for whom every file is
writable and readable):
- ``--out`` naming an existing folder the user may not write into: only its parent was checked, so
  ``score`` ran, then failed with two lines ("ro_out/features: Permission denied", "ro_out/.weakstil-output.json:
  Permission denied. Fix: check the permissions of the file and its folder"), exit 1, and ``tile``/``embed``
  one such line per slide; a missing subfolder of the same read-only folder was refused up front (exit 2).
  Now the folder itself is checked too: one usage line naming it and ``chmod u+w``, exit 2.
- a slide the user may not read (mode 000) was "not a slide format OpenSlide can read. Fix: ... convert it to a
  pyramidal TIFF" (OpenSlide calls a file it cannot open an unknown format); now "cannot be read: permission
  denied ... Fix: make it readable (chmod a+r FILE)", and the batch goes on as before.
- ``weakstil info SLIDES | head -1`` (and ``encoders | head -1``): after the reader had gone, every later slide
  was an error line "Broken pipe. Fix: check the file system and run again" (9 lines for 10 slides, each
  slide still opened), exit 1. Now the run ends quietly at the closed pipe, exit 141 (128 + SIGPIPE, as a shell
  reports a writer that SIGPIPE ended), as ``head``'s other writers do.
- a full disk under ``report``: PIL's PNG writer raises ENOSPC naming no file, so the line was
  "error: No space left on device" naming nothing; now it names the --out folder. And ``train``'s HDF5 writes on a
  full disk said "a rerun continues where this one stopped", though train keeps nothing (its folder is staged):
  now "a rerun starts over", as for train's other OS errors.
- a feature cache this user may not read (another user's, umask 077): train/evaluate said "features F are
  unreadable. Fix: embed these slides again"; now "unreadable by this user (permission denied). Fix: make these
  feature files readable (chmod a+r FILES), or ask their owner".
- a glob in a folder this user may not list ('locked/*.tiff', locked/ mode 700 of another user): "Fix: check the
  folder 'locked': it is not there", though it is; now "this user may not list the folder ... (permission denied)".
- a home that cannot be written (HOME read-only, or XDG_CACHE_HOME's): matplotlib's 2 warnings, 7 lines of advice
  to set MPLCONFIGDIR, in every score/report log; now the CLI gives matplotlib a temporary folder quietly.
- report's overview.png of a slide named 中文: raw "UserWarning: Glyph 20013 ... missing from font(s) DejaVu Sans"
  lines with their source line in the log; now none (the caption draws boxes, the HTML page names the slide).
Tests that need a non-root user drop root in a subprocess once its modules are loaded (Python may live in
root's home); run as another user they lock the files themselves.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import typer

from conftest import CMU

NOBODY = 65534


@pytest.fixture
def shared_tmp():
    """A folder another user can enter (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="weakstil-h35c-"))
    _owned_by_other(folder, 0o755)  # the other user may write here: only what a test locks is locked
    yield folder
    for inside, folders, _ in os.walk(folder):  # unlock what a test locked, before os.walk enters it
        for name in folders:
            os.chmod(os.path.join(inside, name), 0o755)
    shutil.rmtree(folder, ignore_errors=True)


def _as_other_user(setup: str, action: str) -> subprocess.CompletedProcess:
    """Run ``action`` as an unprivileged user (when the tests run as root) after ``setup``'s imports:
    Python itself may sit in root's home, which that user cannot enter, so the privileges are dropped
    only once the modules are loaded."""
    code = textwrap.dedent(setup) + textwrap.dedent("""
        import os
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(%d)
            os.setuid(%d)
        """ % (NOBODY, NOBODY)) + textwrap.dedent(action)
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])


def _owned_by_other(path: Path, mode: int) -> Path:
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)
    return path


def test_read_only_out_folder_is_refused_up_front(shared_tmp):
    out = shared_tmp / "ro_out"
    out.mkdir()
    _owned_by_other(out, 0o555)
    done = _as_other_user("from pathlib import Path\nimport typer\nfrom weakstil.cli.options import out_dir\n", f"""
        try:
            out_dir(Path({str(out)!r}))
            print("accepted")
        except typer.BadParameter as exc:
            print("refused:", exc)
        """)
    assert done.returncode == 0, done.stderr
    # old: "accepted", then each slide failed on "Permission denied"
    assert done.stdout.startswith("refused:"), done.stdout
    assert f"{out}: cannot write in it (no permission)" in done.stdout and "chmod u+w" in done.stdout


def test_unreadable_slide_says_permission_not_format(shared_tmp):
    slide = shutil.copy(CMU, shared_tmp / "unread.svs")
    _owned_by_other(Path(slide), 0o000)
    done = _as_other_user("import openslide\nimport numpy\nimport PIL.Image\nimport weakstil.slide\n"
                          "import weakstil.tiff_layout\nfrom weakstil.errors import SlideError\n"
                          "from weakstil.slide_backend import OpenSlideBackend\n", f"""
        try:
            OpenSlideBackend.open({str(slide)!r})
            print("opened")
        except SlideError as exc:
            print(exc.one_line())
        """)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "not a slide format" not in line, line  # old: "... Fix: ... convert it to a pyramidal TIFF"
    assert line.startswith(f"{slide}: cannot be read: permission denied") and f"chmod a+r {slide}" in line, line


def test_info_into_a_closed_pipe_ends_quietly(shared_tmp):
    second = Path(shutil.copy(CMU, shared_tmp / "second.svs"))  # another file: a link is the same slide, said once
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line (as 'head -1' after its line)
    try:
        done = subprocess.run([sys.executable, "-P", "-m", "weakstil", "info", str(CMU), str(second)], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    # old: exit 1 and "error: ...CMU-1-Small-Region.svs: Broken pipe. Fix: check the file system", one per slide
    assert done.returncode == 141, done.stderr
    assert "error" not in done.stderr and "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr


def _real_enospc() -> OSError:
    """A real write error of a full device that names no file (as PIL's PNG writer's)."""
    from PIL import Image

    try:
        with open("/dev/full", "wb") as f:
            Image.new("RGB", (64, 64)).save(f, format="PNG")
            f.flush()
    except OSError as exc:
        return exc
    pytest.skip("/dev/full did not refuse the write")


def test_full_disk_write_naming_no_file_names_out(tmp_path, capsys):
    from weakstil.cli.errors import reports_errors

    full = _real_enospc()
    assert full.errno == errno.ENOSPC and full.filename is None

    @reports_errors
    def report(out: Path) -> None:
        raise full

    with pytest.raises(typer.Exit) as stopped:
        report(out=tmp_path / "rep")
    err = capsys.readouterr().err
    assert stopped.value.exit_code == 1
    assert err.startswith(f"error: {tmp_path / 'rep'}: No space left on device."), err  # old: "error: No space ..."


def test_train_full_disk_says_rerun_starts_over(tmp_path, capsys):
    from weakstil.cli.errors import reports_errors
    from weakstil.errors import from_os_error

    full = _real_enospc()

    @reports_errors
    def train(out: Path) -> None:  # how weakstil.files.h5 raises a write error
        raise from_os_error(full, out / "cv" / "tiles" / "s1.h5")

    with pytest.raises(typer.Exit):
        train(out=tmp_path / "model")
    err = capsys.readouterr().err
    assert "a rerun starts over" in err and "continues" not in err, err  # old: "a rerun continues where ..."


def test_overview_of_a_chinese_slide_name_warns_nothing_raw(tmp_path):
    """report's overview.png titled a slide named 中文 with DejaVu Sans, which lacks those glyphs: two raw
    'UserWarning: Glyph 20013 (...) missing from font(s) DejaVu Sans.' lines, each with its source line
    'fig.tight_layout()', in the log of every report. The name is drawn as boxes (the HTML names it) and
    nothing raw is printed."""
    import warnings
    from types import SimpleNamespace

    from PIL import Image

    from weakstil.report_images import write_overview

    Image.new("RGB", (48, 32), (200, 120, 180)).save(tmp_path / "h.png")
    row = SimpleNamespace(slide_id="切片 中文", heatmap="h.png", stil_true=12.0, stil_pred=14.0)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        write_overview(tmp_path, [row], tmp_path / "overview.png", plots=())
    assert (tmp_path / "overview.png").stat().st_size > 0
    assert not [str(w.message) for w in said if "Glyph" in str(w.message)]  # old: 4 'Glyph ... missing' warnings


def test_another_users_feature_cache_is_not_called_damaged(shared_tmp):
    """A feature cache this user may not read (a lab's shared cache written under umask 077) was "features
    F.h5 are unreadable. Fix: embed these slides again" under train/evaluate: hours of embedding for a chmod."""
    slide = shutil.copy(CMU, shared_tmp / "s1.svs")
    (shared_tmp / "labels.csv").write_text("slide_id,path,stil\ns1,s1.svs,12\n")
    features = shared_tmp / "features"
    features.mkdir()
    (features / "s1.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    _owned_by_other(features / "s1.h5", 0o000)
    # pandas imports DataFrame.to_dict's module on its first call: loaded here, before the user changes (in a
    # checkout under a folder of mode 700, such as mktemp -d's, that user cannot read the venv)
    done = _as_other_user("import encodings.utf_8_sig, h5py, pandas, pandas.core.methods.to_dict, numpy\n"
                          "import weakstil.files, weakstil.files.h5, weakstil.fingerprint\n"
                          "from weakstil.cohort import read_cohort\nfrom weakstil.errors import WeakSTILError\n", f"""
        try:
            read_cohort({str(shared_tmp / 'labels.csv')!r}, features_dir={str(features)!r})
            print("read")
        except WeakSTILError as exc:
            print(exc.one_line())
        """)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert Path(slide).is_file() and "embed these slides again" not in line, line  # old: that fix
    assert "s1.h5 are unreadable by this user (permission denied). Fix: make these feature files readable" in line, line


def test_glob_in_a_folder_this_user_may_not_list(shared_tmp):
    """'weakstil score "locked/*.tiff"' with locked/ mode 700 of another user: "no file matches this pattern. Fix:
    check the folder 'locked': it is not there", though it is; now the fix says it may not be listed."""
    locked = shared_tmp / "locked"
    locked.mkdir()
    shutil.copy(CMU, locked / "s1.svs")
    os.chmod(locked, 0o700)  # root's when the tests run as root; else lock it from this user too
    if os.geteuid() != 0:
        os.chmod(locked, 0o300)
    done = _as_other_user("import fnmatch, glob\nfrom collections import Counter\nfrom weakstil.errors import glob_miss_fix\n",
                          f"print(glob_miss_fix({str(locked / '*.svs')!r}))")
    assert done.returncode == 0, done.stderr
    assert "it is not there" not in done.stdout, done.stdout  # old: "check the folder '...locked': it is not there"
    assert "may not list the folder" in done.stdout and "permission denied" in done.stdout, done.stdout


def test_unwritable_home_leaves_no_matplotlib_advice_in_the_log():
    """A home that cannot be written (a read-only home on a cluster node or in a container; HOME=/dev/null here,
    so that root cannot write it either): every score run's log held matplotlib's two warnings, 7 lines ("mkdir
    -p failed for path /home/u/.config/matplotlib ... it is highly recommended to set the MPLCONFIGDIR
    environment variable"). The CLI now gives matplotlib a temporary folder itself, quietly, removed at exit."""
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    code = ("from weakstil.cli import _main\n_main(verbose=False, version=False)\n"
            "import os, matplotlib\nprint(os.access(matplotlib.get_cachedir(), os.W_OK))\n")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60,
                          env={**env, "HOME": "/dev/null"}, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert "matplotlib" not in done.stderr.lower(), done.stderr  # old: "mkdir -p failed for path /dev/null/..."
