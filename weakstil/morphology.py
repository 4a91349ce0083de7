"""Binary morphology of the tissue mask, with OpenCV where it is installed (a dependency).

The tissue mask of a large slide's thumbnail (tens of megapixels) spent most of its time in
scipy's binary closing by a disc (a loop over the disc's pixels per pixel) and in connected
components; OpenCV's ``morphologyEx`` and ``connectedComponentsWithStats`` do the same several
times faster (measured in ``benchmarks/tissue_speed.py``). Each function gives exactly the mask of
its scipy / scikit-image form (tested equal in ``tests/test_morphology.py``), which is the fallback
where OpenCV cannot be imported (a bare GPU machine given only the wheels it needs).
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - the scipy path is tested by passing use_cv2=False
        return None
    return cv2


def _opencv(use_cv2: bool):
    return _cv2() if use_cv2 else None


def disk(radius: int) -> np.ndarray:
    """scikit-image's ``disk(radius)`` (pixels within ``radius`` of the centre), uint8."""
    r = np.arange(-radius, radius + 1)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius).astype(np.uint8)


def dilate_square(mask: np.ndarray, radius: int, use_cv2: bool = True) -> np.ndarray:
    """Dilation by a square of side ``2r+1`` (``scipy.ndimage.maximum_filter``, edges mirrored)."""
    return _square(mask, radius, use_cv2, grow=True)


def erode_square(mask: np.ndarray, radius: int, use_cv2: bool = True) -> np.ndarray:
    """Erosion by a square of side ``2r+1`` (``scipy.ndimage.minimum_filter``, edges mirrored)."""
    return _square(mask, radius, use_cv2, grow=False)


def _square(mask: np.ndarray, radius: int, use_cv2: bool, grow: bool) -> np.ndarray:
    if radius <= 0:
        return mask
    cv2 = _opencv(use_cv2)
    m = np.ascontiguousarray(mask).view(np.uint8)
    size = 2 * radius + 1
    if cv2 is not None:
        # OpenCV's border is neutral for both: the extreme over the window's pixels in the image,
        # which is what a mirrored edge gives as well
        return (cv2.dilate if grow else cv2.erode)(m, np.ones((size, size), np.uint8)).astype(bool)
    from scipy import ndimage as ndi

    return (ndi.maximum_filter if grow else ndi.minimum_filter)(m, size=size).astype(bool)


def dilate_disk(mask: np.ndarray, radius: int, use_cv2: bool = True) -> np.ndarray:
    """Dilation by a disc of ``radius`` (the image's outside neutral): 0.05 s on a 20-million-pixel mask with
    OpenCV, 1.2 s with scipy."""
    mask = np.asarray(mask, bool)
    if radius <= 0:
        return mask
    cv2 = _opencv(use_cv2)
    if cv2 is not None:
        return cv2.dilate(np.ascontiguousarray(mask).view(np.uint8), disk(radius)).astype(bool)
    from scipy import ndimage as ndi

    return ndi.binary_dilation(mask, structure=disk(radius).astype(bool))


def open_disk(mask: np.ndarray, radius: int, use_cv2: bool = True) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, disk(radius))``: the image's outside empty for the erosion (it erodes
    within ``radius`` of the edge) and for the dilation (the ink test's strokes, :func:`weakstil.ink_plane.off_plane`:
    0.4 s a 6-megapixel thumbnail with scipy)."""
    mask = np.asarray(mask, bool)
    if radius <= 0:
        return mask.copy()
    cv2 = _opencv(use_cv2)
    if cv2 is not None:
        m = np.ascontiguousarray(mask).view(np.uint8)
        eroded = cv2.erode(m, disk(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        return cv2.dilate(eroded, disk(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    from scipy import ndimage as ndi

    return ndi.binary_opening(mask, structure=disk(radius).astype(bool))


def _closed_padded(mask: np.ndarray, radius: int, pad: int, mode: str, use_cv2: bool) -> np.ndarray:
    """Closing by a disc of ``radius`` of ``mask`` padded by ``pad`` pixels (``np.pad``'s ``mode``), cropped back."""
    padded = np.pad(mask, pad, mode=mode)
    cv2 = _opencv(use_cv2)
    if cv2 is not None:
        # outside the padded image OpenCV ignores the border for both steps; scipy takes it as 0,
        # which only erodes within the radius of the padded edge, the band cropped off below
        closed = cv2.morphologyEx(padded.view(np.uint8), cv2.MORPH_CLOSE, disk(radius)).astype(bool)
    else:
        from scipy import ndimage as ndi

        closed = ndi.binary_closing(padded, structure=disk(radius).astype(bool))
    return closed[pad:-pad, pad:-pad]


def close_disk_edge(mask: np.ndarray, radius: int, use_cv2: bool = True) -> np.ndarray:
    """Closing by a disc of ``radius`` with the image's outside taken as its own edge (the mask
    padded with its edge pixels, closed, cropped): tissue that runs out of the image keeps its band."""
    mask = np.asarray(mask, bool)
    return mask if radius <= 0 else _closed_padded(mask, radius, radius + 1, "edge", use_cv2)


def close_disk(mask: np.ndarray, radius: int, use_cv2: bool = True) -> np.ndarray:
    """Closing by a disc of ``radius`` with nothing outside the image: ``scipy.ndimage.binary_closing`` of
    the mask padded by ``radius`` empty pixels, cropped back (the pad keeps the closing's erosion from
    reaching in from the image edge)."""
    mask = np.asarray(mask, bool)
    return mask.copy() if radius <= 0 else _closed_padded(mask, radius, radius, "constant", use_cv2)


def _component_sizes(mask: np.ndarray, cv2) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of a boolean mask: (labels, size of each label; label 0 = outside)."""
    if cv2 is not None:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=4,
                                                               ltype=cv2.CV_32S)
        sizes = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
        sizes[0] = 0
        return labels, sizes
    from scipy import ndimage as ndi

    labels, _ = ndi.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels, sizes


def label4(mask: np.ndarray, use_cv2: bool = True) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (labels, number of labels counting 0, the outside)."""
    cv2 = _opencv(use_cv2)
    mask = np.ascontiguousarray(mask, bool)
    if cv2 is not None:
        n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        return labels, int(n)
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask)
    return labels, int(n) + 1


def fill_holes(mask: np.ndarray, use_cv2: bool = True) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)``: the background components (4-connected) that do not
    touch the mask's edge filled in; one labelling instead of a dilation repeated until it settles."""
    mask = np.asarray(mask, bool)
    if mask.size == 0:
        return mask.copy()
    labels, n = label4(~mask, use_cv2)
    outside = np.zeros(n, bool)
    outside[0] = True  # label 0: the mask itself
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    return mask | ~outside[labels]


def remove_small_objects(mask: np.ndarray, max_size: int, use_cv2: bool = True) -> np.ndarray:
    """``mask`` without its 4-connected components of ``max_size`` pixels or fewer
    (``skimage.morphology.remove_small_objects(mask, max_size=max_size)``)."""
    mask = np.ascontiguousarray(mask, bool)
    if max_size <= 0 or not mask.any():
        return mask.copy()
    labels, sizes = _component_sizes(mask, _opencv(use_cv2))
    return (sizes > max_size)[labels]


def remove_small_holes(mask: np.ndarray, max_size: int, use_cv2: bool = True) -> np.ndarray:
    """``mask`` with its 4-connected holes of ``max_size`` pixels or fewer filled, background that
    touches the image edge included (``skimage.morphology.remove_small_holes(mask, max_size=...)``)."""
    mask = np.ascontiguousarray(mask, bool)
    return ~remove_small_objects(~mask, max_size, use_cv2)
