"""The interval's quantiles and the metrics' ranks without scipy.stats: every `score` and `train` process
imported it (about 0.7 s, scipy.special 0.3 s) for a t, normal and beta quantile and for ranks. The numbers
must stay scipy.stats's exactly (the interval's width and the cohort metrics depend on them)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from weakstil.confidence import coverage_spread, small_sample_factor
from weakstil.metrics import rankdata, roc_auc, spearman


@pytest.mark.parametrize("df", [1.0, 2.0, 3.5, 5.0, 20.0, 200.0])
def test_small_sample_factor_is_students_t_over_the_normal(df):
    p = 0.95
    assert small_sample_factor(df, 0.9) == pytest.approx(stats.t.ppf(p, df) / stats.norm.ppf(p), rel=1e-12)
    assert small_sample_factor(float("nan")) == 1.0


@pytest.mark.parametrize("n", [12, 30, 100])
def test_coverage_spread_is_the_beta_quantiles(n):
    k = int(np.ceil((n + 1) * 0.9))
    low, high = coverage_spread(n, 0.9)
    assert low == pytest.approx(stats.beta.ppf(0.05, k, n + 1 - k), rel=1e-10)
    assert high == pytest.approx(stats.beta.ppf(0.95, k, n + 1 - k), rel=1e-10)
    assert 0.7 < low < 0.9 < high < 1.0


def test_ranks_are_scipys_average_ranks_with_ties():
    rng = np.random.default_rng(0)
    for values in (rng.integers(0, 5, 40).astype(float), rng.normal(size=33), np.array([2.0, 2.0, 2.0]),
                   np.array([]), np.array([3.0, 1.0, 2.0, 1.0])):
        assert np.array_equal(rankdata(values), stats.rankdata(values)), values
    y, s = rng.integers(0, 2, 50).astype(bool), rng.integers(0, 6, 50).astype(float)
    assert roc_auc(y, s) == pytest.approx(stats.mannwhitneyu(s[y], s[~y]).statistic / (y.sum() * (~y).sum()))
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, rel=1e-12)


def test_none_of_them_imports_scipy_stats():
    code = ("import sys; from weakstil.confidence import coverage_spread, small_sample_factor; "
            "from weakstil.metrics import roc_auc, spearman; small_sample_factor(3.0); coverage_spread(30); "
            "roc_auc([0, 1, 1], [0.1, 0.5, 0.2]); spearman([1, 2, 3, 4], [2, 1, 4, 3]); "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
