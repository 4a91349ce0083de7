"""An outline at another scale that still lands on tissue (helper h44h, fault matrix h44c item 1)."""
import json

import numpy as np
import pytest


def _geometry():
    """A 4000² px slide at 0.5 µm/px, its tissue a square from 400 to 3900 px (mask at 8 µm/px)."""
    from weakstil.tumorbed.bed import SlideGeometry

    tissue = np.zeros((250, 250), bool)
    tissue[25:244, 25:244] = True
    ys, xs = np.mgrid[0:4000:224, 0:4000:224]
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.int64)
    return SlideGeometry(4000, 4000, 0.5, coords, 224.0, tissue, 8.0)


def _bed(tmp_path, name, x0, y0, x1, y1, f=1.0):
    from shapely.affinity import scale
    from shapely.geometry import box, mapping

    feature = {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
               "geometry": mapping(scale(box(x0, y0, x1, y1), f, f, origin=(0, 0)))}
    path = tmp_path / f"{name}.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


@pytest.mark.parametrize("f", [0.5, 0.25])
def test_an_outline_in_micrometres_or_a_lower_levels_pixels_lying_on_tissue_is_flagged(tmp_path, f):
    """A bed along the tissue's lower right edge, written in µm (× 0.5 at 0.5 µm/px) or a level's pixels
    (× 0.25): the copy lands inside the tissue, so neither the micrometre check (mostly off tissue) nor the
    lower-level one (partly off tissue) saw it, and it was scored over the top-left part of the tissue
    without a flag. Its copy × 1/f follows the tissue's edge where the outline as written does not."""
    from weakstil.tumorbed.bed import from_annotation

    bed = from_annotation(_bed(tmp_path, "S1", 2000, 2000, 3904, 3904, f), _geometry())
    assert f"its copy × {1 / f:g} along the tissue's edge" in bed.misplaced
    assert ("micrometres" if f == 0.5 else "a lower pyramid level") in bed.misplaced


def test_a_small_bed_in_the_tissues_corner_and_the_exact_outline_are_not_flagged(tmp_path):
    """A small bed drawn in the tissue's top-left corner lies on tissue and its × 2 copy too (inside the
    tissue): it meets the tissue's edge, its copy does not, so it is taken as drawn. So is the exact outline."""
    from weakstil.tumorbed.bed import from_annotation

    assert from_annotation(_bed(tmp_path, "S1", 400, 400, 1200, 1200), _geometry()).misplaced == ""
    assert from_annotation(_bed(tmp_path, "S2", 2000, 2000, 3904, 3904), _geometry()).misplaced == ""
