"""The slide aggregation shared by training, scoring and napari follows the sTIL definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weakstil.mil.aggregate import aggregate, slide_score, tile_estimates


def test_stroma_ratio_is_the_stil_definition():
    """Tiles with lymphocyte area L_t and stroma area S_t: sum L / sum S, not the mean of L/S."""
    rng = np.random.default_rng(0)
    stroma = rng.uniform(0.0, 1.0, 50)  # stroma share of each tile
    lymph = stroma * rng.uniform(0.0, 0.6, 50)  # lymphocyte share, always inside the stroma
    tile_stil = 100 * lymph / stroma
    stil, weights = slide_score(tile_stil, stroma, aggregator="stroma")
    assert stil == pytest.approx(100 * lymph.sum() / stroma.sum(), rel=1e-9)
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    # a tumour-edge tile (10 % stroma, crowded with lymphocytes) next to an all-stroma tile
    stil, _ = slide_score([80.0, 10.0], [0.1, 1.0], aggregator="stroma")
    assert stil == pytest.approx(100 * (0.08 + 0.10) / 1.1)
    mean, _ = slide_score([80.0, 10.0], [0.1, 1.0], aggregator="mean")
    assert mean == pytest.approx(45.0)  # the plain mean weighs the sliver of stroma like a whole tile


def test_bed_mask_and_empty_bed():
    scores = np.array([10.0, 50.0, 90.0])
    stroma = np.array([1.0, 1.0, 1.0])
    stil, w = slide_score(scores, stroma, bed_mask=[True, True, False])
    assert stil == pytest.approx(30.0)
    assert w[2] == 0
    stil, w = slide_score(scores, stroma, bed_mask=[False] * 3)
    assert np.isnan(stil) and not w.any()


def test_stroma_free_bed_falls_back_to_the_mean():
    stil, _ = slide_score([20.0, 40.0], [0.0, 0.0])
    assert stil == pytest.approx(30.0)


def test_attention_is_a_softmax_and_batched_rows_are_independent():
    s = torch.tensor([[10.0, 30.0, 0.0], [50.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    logits = torch.tensor([[0.0, np.log(3.0), 5.0], [1.0, 2.0, 3.0]])
    slide, w = aggregate(s, mask, "attention", logits=logits)
    assert slide.tolist() == pytest.approx([25.0, 50.0])
    assert w.sum(-1).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        aggregate(s, mask, "stroma")


def test_published_tiles_shrink_by_their_stroma_and_keep_the_slide_score():
    rng = np.random.default_rng(1)
    scores, stroma = rng.uniform(0, 100, 200), rng.uniform(0, 1, 200)
    bed = rng.uniform(size=200) < 0.7
    stroma[:5] = [1.0, 0.0, 0.02, 0.5, 0.9]
    bed[:5] = True
    published = tile_estimates(scores, stroma, bed, prior_stroma=0.2)
    before, _ = slide_score(scores, stroma, bed)
    after, _ = slide_score(published, stroma, bed)
    assert after == pytest.approx(before, abs=1e-4)  # the viewer's rescore gives the slide's number
    prior = published[1]  # a tile without stroma is the prior alone
    factor = (published[:5] - prior) / (scores[:5] - prior)  # how much of its own score a tile keeps
    np.testing.assert_allclose(factor, stroma[:5] / (stroma[:5] + 0.2), atol=1e-4)
    assert np.array_equal(tile_estimates(scores, None, bed), scores.astype(np.float32))  # mean/attention models
    assert np.array_equal(tile_estimates(scores, stroma, bed, prior_stroma=0), scores.astype(np.float32))
