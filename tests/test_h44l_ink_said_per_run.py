"""The ink check's "already said" memory lasts one run, not the process (helper h44l, review of h44f).

h44f said a slide's refitted stain plane once per slide in a process: the bed's ink veto and the QC read one
slide's thumbnail in one ``score`` run. But napari scores in its own process again and again (another model,
changed settings), as does a notebook calling ``score_batch``: a slide whose ink check was lost was warned
about in the first run and, scored again, said at debug level only, so the second run's log had no warning.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

HE = np.array([[0.48, 0.05], [0.84, 0.95], [0.25, 0.30]])
HE = HE / np.linalg.norm(HE, axis=0)
N = 300


def _no_plane_holds_it() -> np.ndarray:
    """60 µm patches of five colours, no three in one plane: the ink check is lost (a warning)."""
    from ink_images import no_plane_holds_it

    return no_plane_holds_it(N)


class _Stop(Exception):
    pass


class _Opts:
    """Options whose first use stops the run (only its start matters here, no model is loaded)."""

    def __getattr__(self, name):
        raise _Stop(name)


def test_a_lost_ink_check_is_warned_about_again_when_the_slide_is_scored_again_in_the_same_process(caplog):
    import weakstil.ink_plane as ip
    from weakstil.score import score_batch

    ip._SAID.clear()
    rgb = _no_plane_holds_it()
    levels = []
    for _ in range(2):  # two scoring runs in one process (napari: the same slide, another model)
        with pytest.raises(_Stop):
            score_batch([], _Opts(), progress=False)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="weakstil.ink_plane"):
            ip.ink_and_stain(rgb, HE, 4.0, "s9")  # the bed's ink veto ...
            ip.ink_and_stain(rgb, HE, 4.0, "s9")  # ... and the QC of the same run
        levels.append([r.levelno for r in caplog.records if r.name == "weakstil.ink_plane"])
    ip._SAID.clear()
    assert levels == [[logging.WARNING, logging.DEBUG]] * 2, levels


class _FakeSlide:
    """A slide file at ``path`` whose thumbnail at 4 µm/px is ``rgb`` (no tiles are read)."""

    def __init__(self, path, rgb):
        from pathlib import Path

        self.path, self.rgb, self.mpp = Path(path), rgb, 0.5
        self.dimensions = (rgb.shape[1] * 8, rgb.shape[0] * 8)

    @property
    def slide_id(self):
        return self.path.stem

    def read_thumbnail(self, mpp):
        assert abs(mpp - 4.0) < 1e-6, mpp
        return self.rgb

    def best_level_for_mpp(self, mpp):
        return 0

    def level_mpp(self, level):
        return self.mpp

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_two_files_of_one_name_each_warn_of_their_lost_ink_check_under_their_own_id(caplog, monkeypatch):
    """Patients' folders each holding an HE.svs, the slide ids P1 and P2 from the cohort CSV: the QC named both
    "HE" (the file's name), so with the ink check said once per slide in a run, P2's lost check was said at debug
    level only."""
    import types

    import weakstil.files
    import weakstil.ink_plane as ip
    import weakstil.slide
    from weakstil.qc.training import training_image_stats

    rgb = _no_plane_holds_it()
    monkeypatch.setattr(weakstil.slide.Slide, "open", classmethod(lambda cls, path, **kw: _FakeSlide(path, rgb)))
    monkeypatch.setattr(weakstil.files.FeaturesFile, "read", classmethod(
        lambda cls, path, **kw: types.SimpleNamespace(tissue_fraction=np.zeros(0))))
    bags = [types.SimpleNamespace(attrs={"tile_px": 224, "mpp": 0.5}, coords=np.zeros((0, 2)), path=f"{p}.h5",
                                  slide_id=p) for p in ("P1", "P2")]
    ip._SAID.clear()
    with caplog.at_level(logging.DEBUG, logger="weakstil.ink_plane"):
        stats = training_image_stats(types.SimpleNamespace(bags=bags), ["/data/p1/HE.svs", "/data/p2/HE.svs"])
    ip._SAID.clear()
    assert all(s is not None for s in stats), stats
    warned = [r.getMessage().split(":")[0] for r in caplog.records
              if r.name == "weakstil.ink_plane" and r.levelno == logging.WARNING]
    assert warned == ["P1", "P2"], [(r.levelname, r.getMessage()[:60]) for r in caplog.records]
