"""``weakstil demo``: the whole method on a synthetic cohort, end to end, on a laptop CPU.

synthetic cohort -> short self-supervised pretraining -> embedding -> tumour-bed detector
(trained on a few annotated slides) -> MIL training with cross-validation -> scoring of
held-out slides through ``weakstil score`` -> metrics against the generator's exact truth.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    n_slides: int
    size_mm: float
    held_out: int
    pretrain_steps: int
    tumorbed_slides: int
    folds: int
    epochs: int


FULL = DemoPlan(n_slides=40, size_mm=1.6, held_out=10, pretrain_steps=150, tumorbed_slides=10, folds=4, epochs=80)
QUICK = DemoPlan(n_slides=40, size_mm=1.0, held_out=8, pretrain_steps=25, tumorbed_slides=6, folds=3, epochs=40)


def run_demo(out: Path, *, quick: bool = False, seed: int = 0, device: str = "auto", workers: int = 0,
             threads: int = 0, decode: str = "auto") -> dict:
    """Run the demo into ``out`` and return its summary (also written to ``out/summary.json``).

    ``workers``/``threads``: decode processes and torch threads while embedding (0: planned)."""
    import pandas as pd

    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.metrics import regression_metrics
    from weakstil.mil.config import TrainConfig
    from weakstil.pretrain import PretrainConfig, pretrain
    from weakstil.score import ScoreOptions, score_batch
    from weakstil.synth import generate_cohort
    from weakstil.tiles import TilingParams
    from weakstil.train import train_cohort

    plan = QUICK if quick else FULL
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("demo: %s done in %.1f s", name, timings[name])

    # 1. synthetic cohort with exact truth
    t0 = time.perf_counter()
    cohort_dir = out / "cohort"
    labels = generate_cohort(cohort_dir, plan.n_slides, seed, size_mm=(plan.size_mm, plan.size_mm), stratified=True)
    labels["abs_path"] = [str((cohort_dir / p).resolve()) for p in labels["path"]]
    held_idx = held_out_indices(labels["stil"].to_numpy(), plan.held_out, np.random.default_rng(seed))
    held = labels.iloc[held_idx]
    train = labels.drop(index=labels.index[held_idx])
    train_csv = out / "train.csv"
    train[["slide_id", "abs_path", "stil", "group"]].rename(columns={"abs_path": "path"}).to_csv(train_csv, index=False)
    step("synthetic cohort", t0)

    # 2. short self-supervised pretraining on the training slides (no labels used)
    t0 = time.perf_counter()
    encoder_dir = out / "encoder"
    if not (encoder_dir / "model.safetensors").exists():
        if encoder_dir.exists():
            shutil.rmtree(encoder_dir)
        pretrain(list(train["abs_path"]), encoder_dir,
                 PretrainConfig(steps=plan.pretrain_steps, seed=seed, tiles_per_slide=64, batch_size=32),
                 device=device, workers=workers or 2)
    step("self-supervised pretraining", t0)

    # 3. embed the training slides
    t0 = time.perf_counter()
    encoder = create_encoder(encoder_dir, device=device)
    features = out / "features"
    params = TilingParams()
    from weakstil.decode import ThreadPlanner

    planner = ThreadPlanner(encoder, workers=workers or None, threads=threads or None)
    for path in train["abs_path"]:
        embed_slide(path, encoder, out_dir=features, params=params, planner=planner, decode=decode)
    step("embedding", t0)

    # 4. tumour-bed detector from a few annotated slides (the generator's GeoJSON outlines)
    t0 = time.perf_counter()
    model_dir = out / "model"
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache
    from weakstil.tumorbed.resolver import BedSources

    detector = train_tumorbed_from_cache(features, cohort_dir / "truth",
                                         slide_ids=list(train["slide_id"])[:plan.tumorbed_slides], seed=seed,
                                         warn_unmatched=False)  # (the held-out slides' truth is there too, unused)
    step("tumour-bed detector", t0)

    # 5. MIL regression on slide labels only, tumour beds from the annotations
    t0 = time.perf_counter()
    cfg = TrainConfig(epochs=plan.epochs, seed=seed, device="cpu" if device == "auto" else device)
    # the detector is bundled into the model's temporary folder before it is renamed into place, as
    # 'weakstil train --tumorbed' does: saved into model/ afterwards, a demo stopped in between left a
    # model without its detector
    with tempfile.TemporaryDirectory(dir=out, prefix=".tumorbed.") as saved:
        detector.save(Path(saved))
        summary = train_cohort(train_csv, features, model_dir, cfg, n_folds=plan.folds, overwrite=True,
                               beds=BedSources(annotations=cohort_dir / "truth"), bundle=True,
                               bundle_tumorbed=saved)
    step("MIL training", t0)

    # 6. score the held-out slides like a lab would: slide files in, results out
    t0 = time.perf_counter()
    scores_dir = out / "scores"
    rows = score_batch([Path(p) for p in held["abs_path"]],
                       ScoreOptions(model=model_dir, out=scores_dir, features=features, device=device,
                                    workers=workers, threads=threads, decode=decode))
    step("scoring held-out slides", t0)

    # 7. compare with the generator's truth
    pred = pd.DataFrame(rows).set_index("slide_id")
    truth = held.set_index("slide_id")["stil"]
    from weakstil.score import SCORED

    ok = pred["status"].isin(SCORED)
    y, p = truth[ok.index[ok]].to_numpy(float), pred.loc[ok, "stil"].to_numpy(float)
    held_metrics = regression_metrics(y, p) if ok.sum() >= 3 else {}
    bed_dice = _tumorbed_dice(scores_dir, cohort_dir / "truth", list(pred.index[ok]))
    result = {
        "plan": asdict(plan), "seed": seed, "timings_s": timings,
        "total_s": round(time.perf_counter() - t_all, 1),
        "cv_metrics": (summary.get("cv") or {}).get("metrics"),
        "held_out_metrics": held_metrics,
        "held_out_tumorbed_dice": bed_dice,
        "held_out": [{"slide_id": sid, "true_stil": float(truth[sid]), "pred_stil": _num(pred.loc[sid, "stil"]),
                      "status": pred.loc[sid, "status"]} for sid in pred.index],
        "heatmaps": str(scores_dir / "*_heatmap.png"),
        "results_csv": str(scores_dir / "results.csv"),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=_jsonable), encoding="utf-8")
    return result


def held_out_indices(stil: np.ndarray, n_held: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``n_held`` held-out slides, one drawn from each of ``n_held`` blocks of
    the slides ordered by sTIL%, never the highest one.

    Why: the demo model must see the cohort's TIL-rich tail. A random hold-out on 40 slides can
    take the only slide above 35 % out of training, and the model then under-scores every
    TIL-rich slide it meets (a 57 % slide at 41 %) beyond its calibrated interval.
    """
    order = np.argsort(np.asarray(stil, np.float64), kind="stable")
    n = len(order)
    if not 0 <= n_held < n:
        raise ValueError(f"cannot hold out {n_held} of {n} slides")
    edges = np.linspace(0, n - 1, n_held + 1).round().astype(int)  # n - 1: the top slide stays in training
    picks = [order[rng.integers(lo, hi)] for lo, hi in zip(edges[:-1], edges[1:])]
    return np.sort(np.asarray(picks, dtype=int))


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _tumorbed_dice(scores_dir: Path, truth_dir: Path, slide_ids: list[str]) -> float | None:
    from skimage.transform import resize

    from weakstil.files import SlideScoresFile, slide_file
    from weakstil.synth import read_truth
    from weakstil.tissue import dice

    values = []
    for sid in slide_ids:
        detected = SlideScoresFile.read(slide_file(scores_dir, sid)).tumorbed_mask
        truth = read_truth(slide_file(truth_dir, sid))[0].tumorbed.astype(np.float32)
        values.append(dice(detected, resize(truth, detected.shape, order=1, anti_aliasing=True) > 0.5))
    return float(np.mean(values)) if values else None


def format_summary(result: dict) -> str:
    """The demo's closing table, for people."""
    lines = ["", "WeakSTIL demo — held-out slides scored by `weakstil score`", ""]
    lines.append(f"{'slide':<12} {'true sTIL%':>10} {'predicted':>10}  status")
    for row in result["held_out"]:
        pred = row["pred_stil"]
        lines.append(f"{row['slide_id']:<12} {row['true_stil']:>10.1f} "
                     f"{'' if pred != pred else f'{pred:.1f}':>10}  {row['status']}")
    m = result.get("held_out_metrics") or {}
    cv = result.get("cv_metrics") or {}
    lines.append("")
    if cv:
        lines.append(f"cross-validation (training slides): R² {cv.get('r2', float('nan')):.3f}, "
                     f"Pearson {cv.get('pearson_r', float('nan')):.3f}, MAE {cv.get('mae', float('nan')):.2f}")
    if m:
        lines.append(f"held-out: R² {m.get('r2', float('nan')):.3f}, Pearson {m.get('pearson_r', float('nan')):.3f}, "
                     f"MAE {m.get('mae', float('nan')):.2f}")
    if result.get("held_out_tumorbed_dice") is not None:
        lines.append(f"held-out tumour-bed Dice vs truth: {result['held_out_tumorbed_dice']:.3f}")
    lines.append(f"time: {result['total_s']:.0f} s ({', '.join(f'{k} {v:.0f}s' for k, v in result['timings_s'].items())})")
    lines.append(f"heatmaps: {result['heatmaps']}")
    lines.append(f"results:  {result['results_csv']}")
    return "\n".join(lines)
