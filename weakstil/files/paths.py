"""Where per-slide files live: every one is ``<folder>/<slide_id>.h5``.

The slide id is the slide file's name without its extension (``weakstil.slide.slide_id_from_path``);
a cohort CSV may give a slide another id, so :func:`feature_path` also looks for the file's own id.
"""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".h5"


def slide_file(folder: str | Path, slide_id: str) -> Path:
    """``folder/<slide_id>.h5``, whether it exists or not."""
    return Path(folder) / f"{slide_id}{SUFFIX}"


def find_slide_file(folder: str | Path | None, slide_id: str) -> Path | None:
    """``folder/<slide_id>.h5`` when it exists, else ``None`` (also for no folder)."""
    if folder is None:
        return None
    path = slide_file(folder, slide_id)
    return path if path.is_file() else None


def feature_path(features_dir: str | Path, slide_id: str, slide_path: str | Path | None = None) -> Path:
    """A slide's feature cache: ``<slide_id>.h5``, or the slide file's own id when only that
    exists (``weakstil embed`` names caches after the file)."""
    first = slide_file(features_dir, slide_id)
    if not first.exists() and slide_path is not None:
        from weakstil.slide import slide_id_from_path

        other = slide_file(features_dir, slide_id_from_path(slide_path))
        if other.exists():
            return other
    return first
