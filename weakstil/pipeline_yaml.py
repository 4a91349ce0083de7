"""Reading one workflow config file (``pipelines/config.yaml``, a ``--configfile``) for the preflight.

Two things YAML itself lets through, or words badly, are one ``error:`` line naming the file and the line:

- a key given twice in one mapping (``folds: 2`` ... ``folds: 3``, two ``slurm:`` sections): YAML readers keep
  the last one without a word, so the run used a setting its author had overridden further down without
  seeing it (the preflight then complained about the kept value, or nothing at all);
- a syntax error (a tab in the indentation): Snakemake's own message names neither the file nor the line
  ("Config file is not valid JSON or YAML"), and ``weakstil preflight`` said only "while scanning for the
  next token".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from weakstil.errors import WeakSTILError


class ConfigFileError(WeakSTILError):
    """A workflow config file that cannot be read as the settings its author wrote."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, again: int, sections: bool = False):
        super().__init__(f"key {key!r} on line {again} was already given on line {first}")
        self.key, self.first, self.again = key, first, again
        self.sections = sections  #: a top-level key whose two values are both sections (mappings)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key repeated in one mapping (a merge key ``<<`` is no repeat)."""

    def construct_document(self, node):
        self._root = node  # a top-level section repeated is merged, not one of it deleted
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            sections: dict[Any, bool] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    section = node is getattr(self, "_root", None) and isinstance(value_node, yaml.MappingNode)
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line, section and sections[key])
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                seen[key], sections[key] = line, section
        return super().construct_mapping(node, deep)


def read_config_yaml(path: str | Path) -> Any:
    """The file's YAML content; :class:`ConfigFileError` (one line: file, line, what, fix) for a repeated
    key or a YAML syntax error. ``FileNotFoundError`` passes through (callers word it)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as exc:
        raise ConfigFileError(
            f"{exc.key!r} is set twice, on lines {exc.first} and {exc.again} (YAML would keep the last one silently)",
            path=path, fix=f"merge the two {exc.key}: sections into one (their settings under a single {exc.key}: line)"
            if exc.sections else f"keep one {exc.key}: line and delete the other") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        lines = text.splitlines()
        tab = mark is not None and mark.line < len(lines) and "\t" in lines[mark.line]
        fix = "indent with spaces, not tabs" if tab else \
            "fix the YAML syntax there (`key: value`, sections indented with spaces, as in pipelines/config.yaml)"
        raise ConfigFileError(f"not valid YAML{where}: {problem}", path=path, fix=fix) from None
