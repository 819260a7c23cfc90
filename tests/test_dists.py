"""jaxmix.dists: the same numbers as scipy.stats (which calls the same special functions)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from jaxmix import dists

X = np.array([-40.0, -3.2, -1e-3, 0.0, 0.5, 1.96, 4.0, 9.0, 38.0])
DF = np.array([0.7, 1.0, 2.5, 5.3, 17.0, 120.0, 1e6, np.inf])
P = np.array([1e-300, 1e-12, 0.001, 0.025, 0.3, 0.5, 0.8, 0.975, 1 - 1e-12])


def test_normal_and_t_equal_scipy_stats():
    np.testing.assert_allclose(dists.norm_sf(X), stats.norm.sf(X), rtol=1e-13, atol=1e-300)  # z = 38: subnormal
    np.testing.assert_allclose(dists.norm_ppf(P), stats.norm.ppf(P), rtol=1e-13)
    x, df = np.meshgrid(X, DF)
    np.testing.assert_allclose(dists.t_sf(x, df), stats.t.sf(x, df), rtol=1e-12, atol=1e-300)
    p, df = np.meshgrid(P[1:-1], DF)
    np.testing.assert_allclose(dists.t_ppf(p, df), stats.t.ppf(p, df), rtol=1e-10)
    # df = ∞ is the normal
    np.testing.assert_allclose(dists.t_sf(X, np.inf), stats.norm.sf(X), rtol=1e-13, atol=1e-300)
    assert dists.t_ppf(0.975, 5.3) > dists.t_ppf(0.975, np.inf)
    assert dists.t_ppf(0.975, np.inf) == pytest.approx(stats.norm.ppf(0.975), rel=1e-15)


def test_chi2_and_f_equal_scipy_stats():
    x = np.abs(X)
    for k in (1, 2, 3.5, 10, 200):
        np.testing.assert_allclose(dists.chi2_sf(x, k), stats.chi2.sf(x, k), rtol=1e-12, atol=1e-300)
        for d2 in (1.5, 7.0, 60.0, 1e5):
            np.testing.assert_allclose(dists.f_sf(x, k, d2), stats.f.sf(x, k, d2), rtol=1e-11, atol=1e-300)


def test_a_summary_does_not_import_scipy_stats():
    """A fit and its coefficient table (Satterthwaite t tests) leave scipy.stats and scipy.optimize
    (0.9 s and 0.29 s of imports; profile intervals import the latter) unimported."""
    code = ("import sys, jaxmix\n"
            "r = jaxmix.fit('Reaction ~ Days + (1 | Subject)', jaxmix.datasets.load('sleepstudy'))\n"
            "r.coef_table(); r.summary()\n"
            "print('scipy.stats' in sys.modules, 'scipy.optimize' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_t_test_is_t_where_df_is_finite_and_normal_where_infinite():
    stat, df = np.array([2.1, -2.1, 0.3, 4.0]), np.array([5.3, 12.0, np.inf, np.inf])
    p, crit = dists.t_test(stat, df, 0.9)
    np.testing.assert_allclose(p[:2], 2 * stats.t.sf(2.1, df[:2]), rtol=1e-12)
    np.testing.assert_allclose(crit[:2], stats.t.ppf(0.95, df[:2]), rtol=1e-12)
    np.testing.assert_allclose(p[2:], 2 * stats.norm.sf([0.3, 4.0]), rtol=1e-12)
    np.testing.assert_allclose(crit[2:], stats.norm.ppf(0.95), rtol=1e-15)
