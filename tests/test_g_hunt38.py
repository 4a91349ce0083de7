"""Clinical cut-offs (hunt 38g): a threshold typed as pathologists write it.

``--threshold 30%`` (score, train, evaluate; the workflow's ``threshold: 30%``) and ``--threshold 30,5``
were refused with typer's "invalid value for '--threshold': Input should be a valid number, unable to
parse string as a number. Fix: see '... --help'": neither the value nor what to pass. Now the line names
the value and the fix ("'30%' has a % sign, but the threshold is a percentage already. Fix: pass
--threshold 30"; a decimal comma: "pass --threshold 30.5"), exit 2 before any work. ``--threshold=-0``
was written "-0" in results.csv and the heatmap titles; now 0. A model.json threshold between 0 and 1
(a fraction) is refused as the option is.
(The cohort report's near_threshold at an evaluation's threshold: tests/test_d_hunt19.py.)
"""

from __future__ import annotations

import pytest

from conftest import run_cli


@pytest.mark.parametrize(("given", "said"), [
    ("30%", "'30%' has a % sign, but the threshold is a percentage already. Fix: pass --threshold 30."),
    ("50 %", "'50 %' has a % sign, but the threshold is a percentage already. Fix: pass --threshold 50."),
    ("30,5", "'30,5' is not a number (a decimal comma?). Fix: pass --threshold 30.5."),
    ("thirty", "'thirty' is not a number: give the sTIL-high cut-off in % from 0 to 100 (e.g. 30)."),
])
@pytest.mark.parametrize("command", ["score", "train"])
def test_a_threshold_written_as_text_names_what_to_pass(tmp_path, command, given, said):
    args = ["s.svs", "--model", tmp_path] if command == "score" else ["c.csv", "--features", tmp_path]
    proc = run_cli(command, *args, "--out", tmp_path / "out", "--threshold", given)
    assert proc.returncode == 2
    # old: "invalid value for '--threshold': Input should be a valid number, unable to parse string as a number"
    assert said in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_threshold_as_a_number_is_read_as_before(tmp_path):
    from weakstil.cli.options import threshold_number

    assert threshold_number(" 30 ") == 30.0 and threshold_number("99.5") == 99.5 and threshold_number("1e1") == 10.0


def test_minus_zero_is_zero():
    """``--threshold=-0`` was kept as -0.0: results.csv's threshold "-0", heatmap titles "high at -0 %"."""
    import math

    from weakstil.cli.options import stil_threshold

    assert math.copysign(1.0, stil_threshold(-0.0)) == 1.0 and f"{stil_threshold(-0.0):.12g}" == "0"


def test_a_model_threshold_written_as_a_fraction_is_refused_as_the_option_is(tmp_path):
    """model.json's ``"threshold": 0.3`` (edited, or a model trained before --threshold 0.3 was refused)
    was taken as 0.3 %: ``report`` wrote "AUC sTIL-high ≥0.3%", ``score`` and ``evaluate`` called every slide
    with any TILs high, exit 0; ``--threshold 0.3`` is refused as a fraction. Now so is the model's."""
    import json

    import numpy as np
    from PIL import Image

    model = tmp_path / "model"
    (model / "cv").mkdir(parents=True)
    meta = {"format": "weakstil-mil", "format_version": 1, "threshold": 0.3, "seed": 0, "weights_sha256": "ab" * 32,
            "encoder": {"name": "enc", "weights_sha256": "cd" * 32, "card": {"base": "small-cnn"}},
            "tiling": {"mpp": 0.5, "tile_px": 224}, "training": {"cross_validation": {"folds": 2}}}
    (model / "model.json").write_text(json.dumps(meta))
    (model / "cv" / "oof_predictions.csv").write_text("slide_id,stil_true,stil_pred,fold\ns1,40.0,35.0,1\ns2,10.0,20.0,2\n")
    (model / "cv" / "metrics.json").write_text(json.dumps({"n": 2, "r2": 0.5, "mae": 7.5, "threshold": 0.3}))
    for name in ("scatter.png", "roc.png"):
        Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(model / "cv" / name)
    proc = run_cli("report", "--model", model, "--out", tmp_path / "rep")
    # old: exit 0, the report's headline "AUC sTIL-high ≥0.3%"
    assert proc.returncode == 1 and "model.json threshold 0.3 looks like a fraction" in proc.stderr, proc.stderr
    assert "Fix: write it as a percentage (30 for 30 %)" in proc.stderr and not (tmp_path / "rep").exists()
