"""npe2 readers: whole-slide images, and WeakSTIL result files with their slide beside them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]


def _single_path(path: str | list[str]) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(path)


def get_slide_reader(path: str | list[str]) -> ReaderFunction | None:
    """A reader for a slide OpenSlide can open; None lets napari try another plugin (e.g. a
    plain TIFF that is no slide)."""
    p = _single_path(path)
    if p is None or not p.is_file():
        return None
    from weakstil.slide_backend import can_open

    return read_slide if can_open(p) else None  # an unreadable file: let napari report that no reader fits


def read_slide(path: str | list[str]) -> list[LayerData]:
    from napari_weakstil.slide_layers import open_pyramid

    pyramid = open_pyramid(_single_path(path))
    return [pyramid.layer_data()]


def get_result_reader(path: str | list[str]) -> ReaderFunction | None:
    """A reader for a WeakSTIL per-slide HDF5 (score, cross-validation, evaluate, embed, tile)."""
    p = _single_path(path)
    if p is None or not p.is_file() or p.suffix.lower() not in (".h5", ".hdf5"):
        return None
    from weakstil.errors import WeakSTILError
    from weakstil.files import kind_of

    try:
        return read_result_with_slide if kind_of(p) is not None else None
    except WeakSTILError as exc:  # not HDF5; or an HDF5 file that cannot be read (truncated by a copy)
        if not _hdf5_signature(p):
            return None
        return _refusal(WeakSTILError(f"{exc.message.rstrip('.')}: a damaged result file (cut short by a copy?)", path=p,
                                      fix="copy it again, or run the command that wrote it again (it redoes a slide "
                                          "whose .h5 is damaged)"))


def get_weakstil_geojson_reader(path: str | list[str]) -> ReaderFunction | None:
    """A GeoJSON that WeakSTIL wrote (a bed saved by Save bed, a command's tile GeoJSON for QuPath) is in level-0
    pixels with nothing to place it by: dropped on the viewer it got napari's bare "No compatible readers are
    available". It is refused with what to open instead; any other GeoJSON is left to other plugins. (Only
    ``*.geojson``, which napari's own reader does not claim: claiming ``*.json`` or folders too would make napari ask
    which reader to use for every such file of other programs.)"""
    p = _single_path(path)
    if p is None or not p.is_file():
        return None
    from weakstil.annotations import geojson_written_by
    from weakstil.bed_edit import SAVED_BY
    from weakstil.errors import WeakSTILError

    made_by = geojson_written_by(p)
    if made_by == SAVED_BY:
        return _refusal(WeakSTILError(
            f"is the tumour bed that Save bed wrote for slide '{p.stem}' (level-0 px: napari cannot place it alone)",
            path=p, fix=f"open the slide's result (its .h5) with the WeakSTIL reader, choose {p.parent} as the Bed "
                        f"folder and press Edit bed (it continues this bed); or pass --annotations {p.parent} to "
                        "'weakstil score'"))
    if made_by and made_by.startswith("weakstil"):
        beside = p.with_suffix(".h5")
        return _refusal(WeakSTILError(
            f"is the tile GeoJSON '{made_by}' wrote for QuPath (level-0 px: napari cannot place it alone)", path=p,
            fix=f"open {beside.name if beside.is_file() else 'the slide result (.h5) it was written beside'} with the "
                "WeakSTIL reader: the same tiles as a heatmap over the slide, with the tumour bed and tissue"))
    return None


#: The first bytes of every HDF5 file.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_signature(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def _refusal(exc: Exception) -> ReaderFunction:
    """A reader that says why a damaged HDF5 result cannot be shown (napari shows its message),
    instead of napari's bare "no reader"; no other plugin reads a damaged HDF5 file either."""

    def refuse(path: str | list[str]) -> list[LayerData]:
        raise exc

    return refuse


def read_result_with_slide(path: str | list[str]) -> list[LayerData]:
    """The result's layers, with its slide underneath when the slide can be found."""
    from napari_weakstil.result_layers import outline_layer, read_result, result_layers
    from napari_weakstil.slide_layers import open_pyramid

    res = read_result(_single_path(path))
    layers: list[LayerData] = []
    mpp = res.slide_mpp
    shown = _open_slide_layer(res)
    upsampled = scored_upsampled(res)
    if shown is not None:  # the slide is open already: the result goes over it, not over a second copy
        mpp = _shown_mpp(shown, res)
        _raise_over_other_slides(shown)
        if upsampled is not None:
            shown.metadata["allow_upsample"] = upsampled
    elif res.slide_path is not None:
        try:
            pyramid = open_pyramid(res.slide_path, slide_mpp=res.slide_mpp)
        except Exception as exc:  # the result still shows without its slide
            _warn_alone(res, f"its slide {res.slide_path} could not be opened ({exc})")
        else:
            data = pyramid.layer_data()
            if upsampled is not None:  # the widget's Allow upsampling shows what the slide was scored with
                data[1]["metadata"]["allow_upsample"] = upsampled
            layers.append(data)
            mpp = mpp or pyramid.mpp
    else:
        _warn_alone(res, *_not_found(res))
    from napari_weakstil import outline_later

    big = outline_later.big_outline(res)
    layers += result_layers(res, slide_mpp=mpp, outline=not big)
    # a big bed's outline: traced and built off the GUI thread once these layers are in, then added over them
    if big and not outline_later.build_later(res, mpp or res.slide_mpp):
        bed = outline_layer(res, mpp or res.slide_mpp)  # no napari window to add it to later: at once
        layers += [bed] if bed is not None else []
    return layers


def scored_upsampled(res: Any) -> bool | None:
    """Whether a score file's slide was scored with --allow-upsample (its ``score_request``), so the
    widget's box is ticked for that slide as for one scored in the widget (a CLI run's result left it
    off, and Score slide then refused the scan it had scored); None for other files."""
    import json

    try:
        request = json.loads(str((res.attrs or {}).get("score_request") or "null"))
    except ValueError:
        return None
    return bool(request.get("allow_upsample")) if isinstance(request, dict) else None


def _not_found(res: Any) -> tuple[str, str]:
    """Why a result is shown without its slide, with the fix (the warning said neither where the slide was looked
    for nor how to see the result over it: a pathologist whose slides were moved or renamed was left guessing)."""
    attrs = res.attrs or {}
    recorded = attrs.get("slide_path")
    where = f"at {recorded}, where the result records it, nor beside the result" if recorded else "beside the result"
    fix = ("open the slide first (File > Open, WeakSTIL reader; wherever it is now, under any name), then this result "
           "again: it goes over that very scan, known by its content" if attrs.get("slide_fingerprint") else
           f"put the slide back at {recorded or 'its place'} or beside the result, or open the slide first and then "
           "this result again")
    return f"slide '{res.slide_id}' not found ({where})", fix


def _warn_alone(res: Any, why: str, fix: str = "") -> None:
    """Said in the viewer, not only the log: the result's layers lie over whatever slide is open,
    which is not the result's own slide file."""
    others = [ly.name for ly in _slide_layers()]
    _warn(f"{res.path}: {why}; showing the result alone" + (
        f", drawn over the open slide layer(s) {', '.join(others)}, which are not its slide" if others else "")
        + (f". Fix: {fix}." if fix else ""))


def _shown_mpp(shown: Any, res: Any) -> float | None:
    """World µm per level-0 pixel of the open slide layer, which the result's level-0 tile corners
    are multiplied by: the slide may be shown at another µm/px than the result was scored with
    (its file's own, or another --slide-mpp), and its other layers already sit at that scale."""
    mpp = res.slide_mpp
    if shown.metadata.get("mpp") is None:
        if mpp:  # opened in pixels: now in µm, like its result
            shown.scale, shown.units = (mpp, mpp), ("um", "um")
            shown.metadata.update(mpp=mpp, mpp_source="result")
        return mpp
    world = float(shown.scale[-1])
    if mpp and abs(world / mpp - 1.0) > MPP_TOLERANCE:
        _warn(f"{res.path}: scored at {mpp:g} µm/px, but its slide {shown.name} is shown at {world:g} µm/px; the "
              "result is drawn over the slide's pixels, and its lengths are in the slide layer's µm")
    return world


#: Relative difference of µm/px under which two values are one scan resolution (rounding in metadata).
MPP_TOLERANCE = 1e-3


def _warn(text: str) -> None:
    """A warning in the log and, in a viewer, as a napari notification (the pathologist sees it)."""
    log.warning("%s", text)
    try:
        from napari.utils.notifications import show_warning

        show_warning(text)
    except Exception:  # no napari notifications (a script): the log has it
        pass


def _open_slide_layer(res: Any) -> Any | None:
    """The current viewer's layer of this result's slide, when it is open already: its found file, else
    any file the result's slide could be at (:func:`slide_candidates`). A layer showing another scan (a
    file replaced by another slide of the same name) refuses the result: it would sit on other tissue."""
    from napari_weakstil.result_layers import slide_candidates

    paths = [res.slide_path] if res.slide_path is not None else slide_candidates(res)
    wanted = {_resolved(p) for p in paths}
    slides = _slide_layers()
    for layer in slides:
        recorded = layer.metadata.get("slide_path")
        if recorded and _resolved(recorded) in wanted:
            _check_same_scan(layer, res)
            return layer
    made_from = (res.attrs or {}).get("slide_fingerprint")
    # the very scan open from another file (slides moved or copied since scoring): the result goes over it
    return next((ly for ly in slides if made_from and ly.metadata.get("slide_fingerprint") == str(made_from)), None)


def _slide_layers() -> list[Any]:
    """The current viewer's slide layers (none without a viewer: a script reading results)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:
        return []
    return [ly for ly in (viewer.layers if viewer is not None else [])
            if ly.metadata.get("weakstil_kind") == "slide" and ly.metadata.get("slide_path")]


def _raise_over_other_slides(layer: Any) -> None:
    """Move the result's slide layer, open already, over any other slide layer above it, so that the result's layers,
    added on top, are drawn over its own tissue: under another slide opened since, they were drawn over that slide
    (mosaic_000's heatmap over CMU-1's skin, with no word; its own scan hidden beneath)."""
    import napari

    layers = napari.current_viewer().layers
    at = layers.index(layer)
    if any(ly.metadata.get("weakstil_kind") == "slide" for ly in list(layers)[at + 1:]):
        layers.move(at, len(layers))


def _resolved(path: Any) -> Path:
    return Path(path).expanduser().resolve()


def _check_same_scan(layer: Any, res: Any) -> None:
    """Raise when the open slide layer shows another scan than the one ``res`` was made from."""
    from weakstil.errors import WeakSTILError
    from weakstil.fingerprint import slide_fingerprint

    made_from = (res.attrs or {}).get("slide_fingerprint")
    if not made_from:  # an older result: nothing to check against
        return
    shown = layer.metadata.get("slide_fingerprint") or slide_fingerprint(layer.metadata["slide_path"])
    if shown is None or shown == str(made_from):
        return
    raise WeakSTILError(f"the open slide layer '{layer.name}' ({layer.metadata['slide_path']}) is not the scan this "
                        "result was made from (its content fingerprint differs), so the result is not drawn over it",
                        path=res.path,
                        fix=f"remove the layer '{layer.name}' and open the result again to see it alone, or put the "
                            "scan it was made from at that path")
