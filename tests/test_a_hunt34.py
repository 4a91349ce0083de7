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



def test_a_second_planner_for_the_same_encoder_reuses_the_probe_another_thread_count_does_not():
    """Each ThreadPlanner measured its encoder again (about 2 s of CPU): napari's Score slide, a second
    Scorer and the suite's many embeds of one encoder in one process paid it each time. The rates depend on
    the architecture, input and threads, not the weights, so one process measures each once."""
    from weakstil.decode import ThreadPlanner
    from weakstil.encoders.factory import create_encoder

    first = ThreadPlanner(create_encoder("small-cnn", weights="random"), batch_size=16, workers=1, threads=1)
    rates = first._encoder_probe(224)
    assert set(rates[0]) == {1} and rates[0][1] > 0
    other_weights = create_encoder("small-cnn", weights="random", seed=5)
    again = ThreadPlanner(other_weights, batch_size=16, workers=1, threads=1)._encoder_probe(224)
    assert again is rates  # the same measurement, not a new one
    two = ThreadPlanner(other_weights, batch_size=16, workers=1, threads=2)._encoder_probe(224)
    assert two is not rates and set(two[0]) == {2}
