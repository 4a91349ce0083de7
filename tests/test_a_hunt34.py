"""Start-up costs of the commands a workflow runs once per slide or per cohort (session 60, test time).

A workflow's embed job gives the decode/torch split (``--workers 1 --threads 1``) and embeds one slide
of a few dozen tiles; it still measured the encoder's micro-batch first: 1.8 s of CPU for a 25-tile
slide whose embedding took about 1 s (5.4 s of CPU per job, 3.5 s now; the same features). A slide of
at most two batches is now embedded with the default micro-batch whether the split is given or not.
"""

from __future__ import annotations

import json

import h5py
import pytest

from conftest import write_disc_slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_small_slide_with_the_split_given_is_embedded_without_measuring_the_encoder(tmp_path):
    from weakstil.decode import ThreadPlanner
    from weakstil.decode.plan import DEFAULT_MICRO_BATCH
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder

    slide = write_disc_slide(tmp_path / "disc.tiff")  # about 16 tiles: fewer than two batches of 64
    encoder = create_encoder("small-cnn", weights="random")
    planner = ThreadPlanner(encoder, batch_size=64, workers=1, threads=1)
    result = embed_slide(slide, encoder, tmp_path / "disc.h5", planner=planner)
    assert 0 < result.n_tiles <= 2 * 64
    with h5py.File(result.path) as f:
        plan = json.loads(f.attrs["decode"])["plan"]
    # the given split is recorded as given; no micro-batch was measured (the probe left no rates)
    assert plan["source"] == "given" and plan["workers"] == 1 and plan["threads"] == 1, plan
    assert plan["encoder_micro_batches"] == {} and plan["micro_batch"] == DEFAULT_MICRO_BATCH, plan
    assert planner._encoder_rates is None

