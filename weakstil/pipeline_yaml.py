"""Reading one workflow config file (``pipelines/config.yaml``, a ``--configfile``) for the preflight, and a
settings file (``report --settings``).

Two things YAML itself lets through, or words badly, are one ``error:`` line naming the file and the line:

- a key given twice in one mapping (``folds: 2`` ... ``folds: 3``, two ``slurm:`` sections): YAML readers keep
  the last one without a word, so the run used a setting its author had overridden further down without
  seeing it (the preflight then complained about the kept value, or nothing at all);
- a syntax error (a tab in the indentation): Snakemake's own message names neither the file nor the line
  ("Config file is not valid JSON or YAML"), and ``weakstil preflight`` said only "while scanning for the
  next token";
- a tag that builds a Python object (``!!python/object/apply:os.system``): a safe loader refuses it, and every
  reader of YAML here (cards, settings, ``--config``) says so (:func:`refused_tag`), not "fix the YAML syntax".
"""

from __future__ import annotations

import re
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


def refused_tag(exc: yaml.YAMLError, what: str) -> tuple[str, str] | None:
    """(problem, fix) when ``exc`` is a safe loader's refusal of a tag (``!!python/object/apply:os.system``:
    a Python object, or code run, in place of a value), None for any other error. Every YAML reader said
    "not valid YAML. Fix: fix the YAML syntax" of such a file, whose syntax is right (helper h40d).
    ``what``: the file as the line names it ('the card')."""
    problem = getattr(exc, "problem", None) or ""
    found = re.fullmatch(r"could not determine a constructor for the tag '(.*)'", problem)
    if found is None:
        return None
    tag = found.group(1).replace("tag:yaml.org,2002:", "!!")
    mark = getattr(exc, "problem_mark", None)
    where = f" on line {mark.line + 1}" if mark is not None else ""
    # a Python tag builds objects or runs code; any other (a custom '!Ref', '!include') means nothing to a safe loader
    why = ("a Python-object tag builds objects or runs code as the file is read" if tag.startswith("!!python/") else
           "no reader here knows what this tag means")
    return (f"the YAML tag {tag}{where} is refused: {what} is plain YAML ({why})",
            "delete the tag and write the value as plain YAML (text, a number, a list or a mapping)")


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
        if (refused := refused_tag(exc, "a workflow config")) is not None:
            raise ConfigFileError(refused[0], path=path, fix=refused[1]) from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        lines = text.splitlines()
        tab = mark is not None and mark.line < len(lines) and "\t" in lines[mark.line]
        fix = "indent with spaces, not tabs" if tab else \
            "fix the YAML syntax there (`key: value`, sections indented with spaces, as in pipelines/config.yaml)"
        raise ConfigFileError(f"not valid YAML{where}: {problem}", path=path, fix=fix) from None


def read_settings(path: str | Path) -> dict:
    """A settings file (JSON or YAML mapping), e.g. the workflow's configuration (``report --settings``)."""
    path = Path(path)
    fix = "pass a JSON or YAML file holding a mapping of setting names to values"
    if not path.is_file():
        raise WeakSTILError("is a directory, not a settings file" if path.is_dir() else "settings file not found",
                            path=path, fix=fix)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))  # YAML reads JSON too; a BOM: saved by Notepad
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        said = refused_tag(exc, "a settings file") or (f"cannot parse settings ({str(exc).splitlines()[0]})", fix)
        raise WeakSTILError(said[0], path=path, fix=said[1]) from None
    if not isinstance(data, dict):
        raise WeakSTILError("settings are not a mapping", path=path, fix=fix)
    return data
