"""JPEG stream surgery for TIFF tiles: completing abbreviated streams and fixing their colour signals.

Aperio stores abbreviated streams (the tables once per level, in JPEGTables) and writes RGB-colourspace
JPEGs whose streams say nothing about it, so a tile becomes a decodable stream here: SOI, an Adobe APP14
marker with the right transform, the level's tables, then the tile's own segments.
"""

from __future__ import annotations

_SOI = b"\xff\xd8"
#: Adobe APP14 marker: "Adobe", version 100, flags 0, 0, then the colour transform byte.
_ADOBE_HEAD = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00"


def adobe_marker(colourspace: str) -> bytes:
    """APP14 segment that makes libjpeg read the stream as ``rgb`` (transform 0) or ``ycbcr`` (1)."""
    return _ADOBE_HEAD + (b"\x00" if colourspace == "rgb" else b"\x01")


def _segments(stream: bytes) -> list[tuple[int, int, int]]:
    """``(marker, start, end)`` of the marker segments before the first SOS (or EOI)."""
    out = []
    i = 2 if stream[:2] == _SOI else 0
    n = len(stream)
    while i + 4 <= n and stream[i] == 0xFF:
        marker = stream[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS
            out.append((marker, i, n))
            break
        length = int.from_bytes(stream[i + 2:i + 4], "big")
        out.append((marker, i, i + 2 + length))
        i += 2 + length
    return out


def strip_colour_markers(stream: bytes) -> bytes:
    """``stream`` without its JFIF (APP0) and Adobe (APP14) segments, which would override ours."""
    keep, pos = [_SOI], 2
    for marker, start, end in _segments(stream):
        if marker in (0xE0, 0xEE):
            keep.append(stream[pos:start])
            pos = end
        elif marker == 0xDA:
            break
    keep.append(stream[pos:])
    return b"".join(keep)


def stream_prefix(tables: bytes | None, colourspace: str) -> bytes:
    """What goes before a tile's own segments: SOI, our Adobe marker, the level's tables."""
    body = b""
    if tables:
        t = strip_colour_markers(tables)
        body = t[2:-2] if t[-2:] == b"\xff\xd9" else t[2:]
    return _SOI + adobe_marker(colourspace) + body


def jpeg_stream(tile: bytes, prefix: bytes, strip: bool = False) -> bytes:
    """A complete JPEG stream of one abbreviated (or complete) TIFF tile; ``prefix`` from
    :func:`stream_prefix`; ``strip`` drops the tile's own colour markers first."""
    if strip:
        tile = strip_colour_markers(tile)
    return prefix + tile[2:]


def has_colour_markers(stream: bytes) -> bool:
    return any(m in (0xE0, 0xEE) for m, _, _ in _segments(stream))


def with_rgb_component_ids(stream: bytes) -> bytes:
    """``stream`` with its three components renamed 'R', 'G', 'B' (in SOF and SOS): the other
    signal of RGB-stored components, which decoders that ignore the Adobe marker may honour."""
    out = bytearray(stream)
    ids = b"RGB"
    for marker, start, _end in _segments(stream):
        if marker in (0xC0, 0xC1, 0xC2) and out[start + 9] == 3:
            for k in range(3):
                out[start + 10 + 3 * k] = ids[k]
        elif marker == 0xDA and out[start + 4] == 3:
            for k in range(3):
                out[start + 5 + 2 * k] = ids[k]
    return bytes(out)


def sof_info(stream: bytes) -> tuple[int, int, list[tuple[int, int, int]]] | None:
    """``(height, width, [(component id, h sampling, v sampling)])`` from the stream's SOF, or None."""
    for marker, start, _end in _segments(stream):
        if marker in (0xC0, 0xC1, 0xC2):
            seg = stream[start + 4:]
            h, w, nc = int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big"), seg[5]
            comps = [(seg[6 + 3 * k], seg[7 + 3 * k] >> 4, seg[7 + 3 * k] & 15) for k in range(nc)]
            return h, w, comps
        if marker == 0xDA:
            break
    return None
