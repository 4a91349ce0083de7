"""An OME-TIFF pyramid in SubIFDs (helper h44d): its µm/px from the OME-XML's PhysicalSizeX (even beside a writer's
default resolution tags) or the first image's tags, and when only its reduced images state one, a NoMppError that
names it with the --slide-mpp to pass (it said only "pass the scan resolution"); never read from them unasked."""

from __future__ import annotations

import numpy as np
import pytest


def _ome(path, *, size_um=None, res=None, sub_res=None):
    import tifffile

    img = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
    with tifffile.TiffWriter(path, ome=True) as tw:
        meta = {"axes": "YXS", **({"PhysicalSizeX": size_um, "PhysicalSizeY": size_um} if size_um else {})}
        tw.write(img, subifds=1, tile=(256, 256), photometric="rgb", metadata=meta,
                 **({"resolution": res, "resolutionunit": "CENTIMETER"} if res else {}))
        tw.write(img[::2, ::2], subfiletype=1, tile=(256, 256), photometric="rgb",
                 **({"resolution": sub_res, "resolutionunit": "CENTIMETER"} if sub_res else {}))
    return path


def test_ome_tiff_mpp_with_its_pyramid_in_subifds(tmp_path):
    from weakstil.errors import NoMppError
    from weakstil.slide import Slide

    assert Slide.open(_ome(tmp_path / "a.ome.tiff", size_um=0.5, res=(10, 10))).mpp == pytest.approx(0.5)
    assert Slide.open(_ome(tmp_path / "b.ome.tiff", res=(20000, 20000))).mpp == pytest.approx(0.5)
    with pytest.raises(NoMppError) as missing:  # 10,000 px/cm at half size: 0.5 µm/px at full resolution
        Slide.open(_ome(tmp_path / "c.ome.tiff", sub_res=(10000, 10000)))
    assert "its reduced images (SubIFDs) state 0.5 µm/px at full resolution" in missing.value.message
    assert missing.value.fix.startswith("if 0.5 is the scan's µm/px, pass --slide-mpp 0.5")
