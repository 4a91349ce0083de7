"""Hunt 36d: WeakSTIL used as a Python library (a notebook or script), not through the CLI.

What was wrong (measured on the quick demo's model, CMU-1 and synthetic slides, 2-CPU machine):

* ``ScoreOptions(model="model", out="scores")`` (strings, as a script writes them) raised
  ``TypeError: unsupported operand type(s) for /: 'str' and 'str'`` from ``score_batch``; now any
  path field given as a string is a ``Path``.
* ``score_batch`` returned a slide skipped as already scored with ``results.csv``'s text: on the first
  run ``row["stil"]`` was 46.0941 (float), on the rerun '46.0941' (str; ``n_tiles`` '56', ``stil_high``
  'True'), so ``row["stil"] > 30`` raised TypeError only on the rerun; now a skipped row has a scored
  row's types.
* ``score_batch`` (and ``embed_slide``) left torch's thread count at the decode plan's (1 -> 2): every
  later torch call of the script ran on it; now the caller's count comes back.
* ``score_batch``'s progress bar was on rich's default console, stdout: a script's (and
  ``weakstil score > FILE``'s) stdout got a blank line, and the CLI, which looks for a terminal on
  stderr, showed no bar with stdout redirected; now it is on the log console (stderr), shown only where
  it can be drawn.
* ``fit`` (``weakstil.train.train_cohort``, ``cross_validate``) reset torch's global random generator to
  the training seed and ``load_model`` drew from it: a notebook's later ``torch.rand`` repeated from run
  to run / moved on; now both run on a forked generator (the same training bytes).
* A ``FeatureBank`` loaded without the model's tile statistics was refused with "embed with the model's
  encoder" (the features were the model's encoder's); a bank not centred for a ``centre_embeddings``
  model would have been scored without a word; now one line names ``FeatureBank.load(paths,
  tile_stats=True, centre_embeddings=...)``. ``FeatureBank`` has a useful repr.
* ``train_cohort``, ``evaluate`` and the report switched the process's matplotlib backend to Agg
  (``matplotlib.use("Agg", force=True)``): a notebook's later ``plt.show()`` showed nothing; now their
  figures are drawn without pyplot.
* ``generate_cohort(out, n, seed, size_mm=0.5)`` (docs/synthetic-cohorts.md writes ``size_mm=...``, the
  README "--size-mm 0.25-30 mm") raised TypeError after making the folders; one number is now a square.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch


def _demo(small_demo) -> Path:
    return small_demo[0]


def test_score_options_take_strings():
    from weakstil.score import ScoreOptions

    opts = ScoreOptions(model="m", out="o", features=None, annotations="a")
    assert opts.cache_dir == Path("o/features")  # old: TypeError ('str' / 'str'), raised by score_batch
    assert (opts.model, opts.annotations) == (Path("m"), Path("a"))


def test_a_rerun_gives_a_skipped_slide_a_scored_rows_types(small_demo, tmp_path):
    from weakstil.score import ScoreOptions, score_batch

    demo = _demo(small_demo)
    out = tmp_path / "scores"
    shutil.copytree(demo / "scores", out)
    done = sorted(out.glob("*.h5"))[:1]
    slide = next((demo / "cohort" / "slides").glob(f"{done[0].stem}.*"))
    rows = score_batch([str(slide)], ScoreOptions(model=demo / "model", out=out), progress=False)
    assert rows.skipped == [done[0].stem]
    row = rows[0]
    assert isinstance(row["stil"], float) and row["stil"] > 0  # old: '...' (str) on a rerun
    assert isinstance(row["n_tiles"], int) and isinstance(row["stil_high"], bool)
    assert isinstance(row["seconds"], float)


def test_score_batch_gives_back_torch_threads_and_keeps_stdout_clean(small_demo, tmp_path, capsys, one_torch_thread):
    from weakstil.score import ScoreOptions, score_batch

    demo = _demo(small_demo)
    slide = sorted((demo / "cohort" / "slides").iterdir())[0]
    rows = score_batch([slide], ScoreOptions(model=demo / "model", out=tmp_path / "o", threads=2, workers=1))
    assert rows[0]["status"] in ("ok", "tissue-fallback", "no-tumorbed"), rows[0]
    # old: (2, '\n'): the plan's threads, and rich's live bar's line on stdout
    assert (torch.get_num_threads(), capsys.readouterr().out) == (1, "")


def test_fit_and_load_model_keep_the_callers_torch_random_stream(small_demo, one_torch_thread):
    from weakstil.mil import FeatureBank, TrainConfig, fit, load_scoring_models

    demo = _demo(small_demo)
    paths = sorted((demo / "features").glob("*.h5"))[:4]
    torch.manual_seed(1234)
    before = torch.get_rng_state().clone()
    models, _meta = load_scoring_models(demo / "model")
    loaded = torch.equal(torch.get_rng_state(), before)  # old: False, moved on by building the network
    bank = FeatureBank.load(paths, tile_stats=models[0].arch.tile_stats)
    a = fit(bank, np.array([10.0, 20.0, 30.0, 40.0]), np.arange(4), None, TrainConfig(epochs=1, device="cpu",
                                                                                   threads=1), seed=3, epochs=1)
    assert (loaded, torch.equal(torch.get_rng_state(), before)) == (True, True)  # old: fit reset it to seed 3
    b = fit(bank, np.array([10.0, 20.0, 30.0, 40.0]), np.arange(4), None, TrainConfig(epochs=1, device="cpu",
                                                                                   threads=1), seed=3, epochs=1)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert repr(bank).startswith(f"FeatureBank(4 slides, {bank.features.shape[0]} tiles, dim={bank.dim}")


def test_a_bank_loaded_for_another_model_names_the_load_arguments(small_demo, one_torch_thread):
    from weakstil.mil import FeatureBank, ModelError, load_scoring_models, score_slides_ensemble

    demo = _demo(small_demo)
    models, _meta = load_scoring_models(demo / "model")
    arch = models[0].arch
    path = sorted((demo / "features").glob("*.h5"))[0]
    wrong = FeatureBank.load([path], tile_stats=not arch.tile_stats)
    with pytest.raises(ModelError) as err:
        score_slides_ensemble(models, wrong)
    assert f"FeatureBank.load(paths, tile_stats={arch.tile_stats}" in err.value.one_line()  # old: "embed with the model's encoder"
    right = FeatureBank.load([path], tile_stats=arch.tile_stats, centre_embeddings=arch.centre_embeddings)
    assert 0 <= score_slides_ensemble(models, right)[0].stil <= 100


def test_generate_cohort_takes_one_size_for_a_square(tmp_path):
    from weakstil.synth import generate_cohort

    labels = generate_cohort(str(tmp_path / "c"), 1, 0, size_mm=0.25, progress=False)  # old: TypeError
    assert len(labels) == 1 and (tmp_path / "c" / labels["path"][0]).is_file()


def test_plots_leave_the_processs_matplotlib_backend_alone(tmp_path):
    import matplotlib
    import pandas as pd

    from weakstil.evaluation import plot_scatter

    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # the script's or notebook's own backend
    try:
        pred = pd.DataFrame({"stil_true": [5.0, 40.0, 70.0], "stil_pred": [8.0, 35.0, 60.0]})
        plot_scatter(pred, tmp_path / "s.png", {"n": 3, "r2": 0.9, "pearson_r": 0.99, "mae": 5.3})
        assert matplotlib.get_backend() == "pdf"  # old: 'agg' (matplotlib.use("Agg", force=True))
        assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        matplotlib.use(before)
