"""Thumbnails for the ink-plane tests (weakstil.ink_plane), shared by the test modules that need them."""

from __future__ import annotations

import numpy as np


def no_plane_holds_it(n: int = 300) -> np.ndarray:
    """An n x n RGB thumbnail of 60 µm patches of five colours, no three in one plane, in a disc of tissue:
    no plane through the origin holds half the tissue, so the ink check is lost (a warning)."""
    rng = np.random.default_rng(1)
    dirs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [1, 2, 4]], np.float32)
    dirs = 0.6 * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    cells = np.kron(rng.integers(0, 5, (n // 15 + 1, n // 15 + 1)), np.ones((15, 15), int))[:n, :n]
    yy, xx = np.mgrid[0:n, 0:n]
    tissue = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (0.4 * n) ** 2
    return np.clip(240 * np.exp(-dirs[cells] * tissue[..., None]), 0, 255).astype(np.uint8)
