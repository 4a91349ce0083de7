"""A benchmark's inputs checked before any work: one ``error:`` line naming what is missing and how to
make it, and a non-zero exit (instead of a traceback minutes in, or a comparison of nothing)."""

from __future__ import annotations

from pathlib import Path


def need(path: Path | str, what: str, fix: str, *, kind: str = "file") -> Path:
    """``path`` if it is an existing ``kind`` ("file" or "folder"); else exit with one error line."""
    p = Path(path)
    ok = p.is_file() if kind == "file" else p.is_dir()
    if not ok:
        raise SystemExit(f"error: {p}: {what} not found{' (a file, not a folder)' if kind == 'file' and p.is_dir() else ''}. "
                         f"Fix: {fix}")
    return p


def need_model(path: Path | str, option: str = "--model") -> Path:
    """A ``weakstil train`` / ``weakstil demo`` model folder."""
    need(Path(path) / "model.json", f"{option}'s model (model.json)",
         "pass a folder made by `weakstil train` or `weakstil demo` (its model/ folder), e.g. "
         "`weakstil demo --quick --out demo_out` makes demo_out/model")
    return Path(path)


def one_line_errors(main) -> None:
    """Run a benchmark's ``main``: WeakSTIL's own errors (a missing slide, an unknown encoder folder:
    each names the file and the fix) end it in one ``error:`` line, exit 1, as the CLI says them,
    not in a traceback."""
    from weakstil.errors import WeakSTILError

    try:
        main()
    except WeakSTILError as exc:
        raise SystemExit(f"error: {exc}") from None


def scored_once(out: Path, rescore: bool, name: str, run, log) -> None:
    """Score one set of copies into ``out`` unless its results.csv is there (``rescore``: again, after a code
    change), logging the time it took; the scan-variants and metamorphic benchmarks share it."""
    import shutil
    import time

    if rescore or not (out / "results.csv").is_file():
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        run()
        log.info("%s: scored in %.0f s", name, time.perf_counter() - t0)
