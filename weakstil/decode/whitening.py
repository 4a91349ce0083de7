"""A tile reader whose tiles come back with the slide's black unscanned area white (:mod:`weakstil.unscanned`)."""

from __future__ import annotations

import numpy as np

from weakstil.unscanned import whiten


class WhiteningReader:
    """A tile reader whose tiles come back with the black unscanned area white (:func:`whiten`)."""

    def __init__(self, inner):
        self.inner = inner
        self.decoder = inner.decoder

    @property
    def tiles_decoded(self) -> int:
        return self.inner.tiles_decoded

    def read_batch(self, coords: np.ndarray, out: np.ndarray) -> None:
        self.inner.read_batch(coords, out)
        whiten(out[:len(coords)])

    def read_into(self, coords: np.ndarray, out: np.ndarray, dest: np.ndarray) -> None:
        if hasattr(self.inner, "read_into"):  # as workers.read_into does (importing it would be a cycle)
            self.inner.read_into(coords, out, dest)
        else:
            for j, d in enumerate(np.asarray(dest).tolist()):
                self.inner.read_batch(coords[j:j + 1], out[d:d + 1])
        for d in np.asarray(dest).tolist():
            whiten(out[d])

    def close(self) -> None:
        self.inner.close()
