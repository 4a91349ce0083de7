"""Where a single-level slide's whole image may be kept for the overviews read of it
(:meth:`weakstil.slide.Slide.read_overview`): inside :func:`whole_levels_kept` only, which ``weakstil score`` holds
while it scores a slide (helper h43d: score read such a slide whole 3 times, for the tissue mask, the qc statistics
and the heatmap).

Outside one, nothing is kept: the image was held in a module-wide dict for good, up to an eighth of the memory
after the run had ended (the napari plugin's viewer, a notebook), shared by every thread of the process (the
viewer's reads beside a scoring thread's) and served, by its path, size and modification time, to a later run
after the file was replaced by one alike in those (helper h43f). Only a standard-library-only weakstil module
imported here: :mod:`weakstil.slide` imports this one."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from weakstil.scoped_cache import scoped_dict

#: (file and size key of :func:`weakstil.slide._overview_key`) -> the whole RGBA image, the last slide's only;
#: None outside :func:`whole_levels_kept`.
_KEPT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("weakstil_whole_level", default=None)


@contextlib.contextmanager
def whole_levels_kept() -> Iterator[None]:
    """Inside the block a single-level slide's whole image is read once for its overviews and kept (the last
    slide's only); at its end it is let go. Nested blocks share the outermost one's; other threads keep nothing."""
    with scoped_dict(_KEPT):
        yield


def kept_levels() -> dict | None:
    """The images kept by the :func:`whole_levels_kept` block around this call (None outside one)."""
    return _KEPT.get()
