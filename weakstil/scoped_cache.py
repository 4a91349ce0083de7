"""A cache that lives for one block of code: a context variable holding a dict inside :func:`scoped_dict` and None
outside it (nested blocks share the outermost one's; other threads and contexts see none). Used by
:func:`weakstil.files.schema.headers_read_once` and :func:`weakstil.whole_level.whole_levels_kept`. Standard library
only: :mod:`weakstil.slide` imports its users."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator


@contextlib.contextmanager
def scoped_dict(var: contextvars.ContextVar[dict | None]) -> Iterator[None]:
    """Inside the block ``var`` holds a dict, the outermost block's when nested; at the outermost block's end, None."""
    token = var.set({}) if var.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            var.reset(token)
