"""Where Save bed writes a tumour bed and what it must not replace (used by :mod:`weakstil.bed_edit`
and the napari bed editor): the ``<slide_id>.geojson`` that ``--annotations`` reads, never an outline
another tool wrote, the tile GeoJSON of ``weakstil score`` or a file in a folder a rerun replaces."""

from __future__ import annotations

from pathlib import Path

from weakstil.errors import WeakSTILError


#: What a saved bed says wrote it (its GeoJSON's ``weakstil_written_by``): Save bed replaces only these.
SAVED_BY = "weakstil bed editor"


def bed_file(path: str | Path, slide_id: str) -> Path:
    """Where :func:`write_bed_geojson` writes: ``<folder>/<slide_id>.geojson``, or ``path`` itself when it
    names a file."""
    path = Path(path)
    return path / f"{slide_id}.geojson" if path.is_dir() or not path.suffix else path


def check_bed_file(path: Path, slide_id: str) -> None:
    """Raise when a bed saved at ``path`` would replace a file Save bed did not write, would not be the
    file ``--annotations`` reads for ``slide_id`` in its folder, or would lie in a folder that a rerun
    with --overwrite replaces whole."""
    from weakstil.annotations import annotation_candidates, geojson_written_by
    from weakstil.outputdir import replaced_folder_around

    if path.suffix.lower() not in (".geojson", ".json"):
        # a bed folder set to a file (the result's S.h5, a slide) was taken for the bed's own name and refused as
        # "an annotation that Save bed did not write", which sent the user looking for an outline there
        raise WeakSTILError("is not a GeoJSON file: a bed is saved as GeoJSON, in a folder", path=path,
                            fix=f"choose a folder as the bed folder (the bed is saved there as {slide_id}.geojson, "
                                "what --annotations reads)")
    owner = replaced_folder_around(path.parent)
    if owner is not None:  # a model's cv/tiles, an evaluation: 'train/evaluate --overwrite' deletes it whole
        raise WeakSTILError(f"lies inside {owner}, which a rerun with --overwrite replaces whole (the corrected bed "
                            "would be lost)", path=path, fix=f"save it outside, e.g. into {owner.parent / owner.name}_beds")
    if _is_tile_geojson(path):
        raise WeakSTILError("is the tile GeoJSON 'weakstil score' wrote, not an annotation", path=path,
                            fix="save the bed into an annotations folder (then pass it as --annotations)")
    if path.exists() and geojson_written_by(path) != SAVED_BY:
        raise WeakSTILError("is an annotation that Save bed did not write (an outline drawn or exported "
                            "elsewhere); it is not replaced", path=path,
                            fix="choose another bed folder, or move the file away first to replace it")
    first = annotation_candidates(path.parent, slide_id, also=(path,))[:1]
    if first and first[0] != path:
        raise WeakSTILError(f"--annotations {path.parent} reads {first[0].name} for slide {slide_id}, not a bed saved "
                            f"as {path.name}", path=path,
                            fix=f"choose another bed folder, or move {first[0].name} away first")


def _is_tile_geojson(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    # weakstil.outputs.write_tiles_geojson: one Feature per tile, objectType "tile"
    return any(f'"objectType":{sep}"tile"' in head for sep in ("", " "))
