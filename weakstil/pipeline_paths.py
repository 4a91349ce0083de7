"""Where a relative path of the workflow config is read from, for the preflight's error lines.

Snakemake reads every relative path of the config (``cohort``, ``annotations``, ``tumorbed``,
``weights``) from the directory it runs in, not from the folder of the ``--configfile`` that set it.
Run from another folder, a config that works beside its cohort failed with ``cohort CSV not found.
Fix: check the path``, although the file was there: the line now says which directory the path was
read from and, when the path exists beside the config file that set it, which folder to run from.
"""

from __future__ import annotations

from pathlib import Path


def relative_path_hint(config: dict, key: str) -> str:
    """A note for a missing ``key`` path: read from the working directory, and found beside its
    config file (if it is). Empty for an absolute path, one that exists, or no path."""
    value = config.get(key)
    if not isinstance(value, str) or not value.strip() or Path(value).is_absolute() or Path(value).exists():
        return ""
    cwd = Path.cwd()
    note = f"relative paths are read from the directory Snakemake runs in, {cwd}"
    source = getattr(config, "sources", {}).get(key)
    if source and not source.startswith("--config") and Path(source).is_file():
        folder = Path(source).resolve().parent
        if (folder / value).exists():
            note += f"; {value} is beside {source}: run Snakemake from {folder} or set {key} to {folder / value}"
    return note


def with_path_hint(text: str, config: dict, key: str) -> str:
    """``text``, with :func:`relative_path_hint` after a semicolon when there is one."""
    hint = relative_path_hint(config, key)
    return f"{text}; {hint}" if hint else text
