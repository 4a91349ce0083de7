"""The version every output records as ``weakstil_version``: which code made it.

``__version__`` is 0.1.0 for every commit, so two runs of different code recorded the same version and a
lab validating results could not tell them apart (hunt 38j). Run from a git checkout (the README's
editable install), the version names the commit too, as a PEP 440 local version: ``0.1.0+g1a2b3c4d5e6f``,
with ``.dirty`` when tracked files differ from it. Installed from a wheel (no ``.git`` beside the package):
plain ``0.1.0``. ``__version__`` itself stays plain, for packaging.

The commit is read from the files under ``.git`` (HEAD, a loose ref or ``packed-refs``; a worktree's
``.git`` file and ``commondir``): no git needed, nothing done at import. Only whether the work tree is dirty
asks git (``git status``, once a process, the first time the version is written; without git, or if it
fails or takes over :data:`GIT_TIMEOUT_S`, the version says nothing about it).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
from pathlib import Path

from weakstil import __version__

log = logging.getLogger(__name__)

#: Tracked files a lab edits to run its cohort, not code: a changed workflow config or doc does not make
#: the version ``.dirty`` (every output of a lab that set its ``config.yaml`` would read "dirty").
NOT_CODE = (":(exclude)pipelines/config.yaml", ":(exclude)configs", ":(exclude)docs", ":(exclude,glob)**/*.md")

#: Seconds ``git status`` may take before the version goes without ``.dirty``.
GIT_TIMEOUT_S = 5.0

_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 repositories
_ABBREV = 12


@functools.cache  # once a process: the first output written pays for it, not the CLI's start
def version() -> str:
    """WeakSTIL's version with the commit of its checkout (see the module's docstring)."""
    return describe(Path(__file__).resolve().parent.parent)


def describe(root: Path, base: str = __version__, dirty_check: bool = True) -> str:
    """``base`` with the commit checked out at ``root`` (the folder holding the package), ``base`` alone
    where ``root`` is no git checkout (a wheel's site-packages) or its HEAD cannot be read."""
    gitdir = git_dir(root)
    sha = head_commit(gitdir) if gitdir is not None else None
    if sha is None:
        return base
    local = f"g{sha[:_ABBREV]}"
    if dirty_check and is_dirty(root):
        local += ".dirty"
    return f"{base}+{local}"


def git_dir(root: Path) -> Path | None:
    """``root``'s git directory: ``.git``, or where a worktree's (or submodule's) ``.git`` file points."""
    dot = root / ".git"
    try:
        if dot.is_dir():
            return dot
        if dot.is_file():
            text = dot.read_text(encoding="utf-8").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:"):].strip())
                target = target if target.is_absolute() else root / target
                return target if target.is_dir() else None
    except (OSError, UnicodeError):
        pass
    return None


def head_commit(gitdir: Path) -> str | None:
    """The full hex commit HEAD names in ``gitdir`` (a branch's loose ref or its ``packed-refs`` line,
    or a detached HEAD's commit); None when it cannot be read (no commit yet, damaged files)."""
    try:
        head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
        common = gitdir
        if (gitdir / "commondir").is_file():  # a worktree: its branches are in the main repository's refs
            common = gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if _SHA.fullmatch(head) else None
        ref = head[len("ref:"):].strip()
        for where in dict.fromkeys((gitdir, common)):  # a worktree's own refs (HEAD's) first
            loose = where / ref
            if loose.is_file():
                sha = loose.read_text(encoding="utf-8").strip()
                return sha if _SHA.fullmatch(sha) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref and _SHA.fullmatch(parts[0]):
                    return parts[0]
    except (OSError, UnicodeError):
        pass
    return None


def is_dirty(root: Path) -> bool:
    """Whether tracked code at ``root`` differs from the commit (untracked files, e.g. a linked .venv or
    results, and the settings and docs of ``NOT_CODE`` do not change the code); False when git is missing,
    fails or is slow."""
    # a status that writes no index (runs may be parallel), of this checkout whatever a caller's GIT_DIR says
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    env["GIT_OPTIONAL_LOCKS"] = "0"
    try:
        done = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                               ".", *NOT_CODE],
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_S, env=env, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("weakstil version: git status at %s failed (%s): no .dirty", root, exc)
        return False
    if done.returncode != 0:
        log.debug("weakstil version: git status at %s: %s", root, done.stderr.strip())
        return False
    return bool(done.stdout.strip())
