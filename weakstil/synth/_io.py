"""Private file helpers: every output is written atomically (temp name + rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from weakstil.atomic import atomic_path

__all__ = ["atomic_path", "write_json_atomic", "write_text_atomic"]


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
