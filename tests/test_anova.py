"""Likelihood-ratio tables (``jaxmix.anova``) against lme4's ``anova``, and Bryk & Raudenbush's
homogeneity test against a direct computation."""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import jaxmix
from conftest import DATA_DIR, REFERENCE, load_csv, rel_close, reference_fit

LRT = json.loads((DATA_DIR / "inference_reference.json").read_text())["lrt"]


@pytest.fixture(scope="module")
def null_reml():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=jaxmix.JaxmixWarning)
        return jaxmix.fit("Reaction ~ 1 + (1 | Subject)", load_csv("sleepstudy.csv"))


def _check_table(tab, ref):
    for col in ("npar", "AIC", "BIC", "logLik", "deviance"):
        rel_close(tab[col], ref[col], rtol=1e-6)
    rel_close(tab["Chisq"].iloc[1:], ref["Chisq"][1:], rtol=1e-5)
    assert tab["Df"].iloc[1] == ref["Df"][1]
    rel_close(tab["p"].iloc[1:], ref["p"][1:], rtol=1e-3)
    assert np.isnan(tab["Chisq"].iloc[0])


def test_lrt_ml_fits_match_reference_logliks():
    m_int, m_slope = reference_fit("sleepstudy_intercept", "ML"), reference_fit("sleepstudy_slope", "ML")
    tab = jaxmix.anova(m_slope, m_int)  # sorted by npar
    assert list(tab.index) == [m_int.formula, m_slope.formula]
    assert list(tab.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p", "p_mixture",
                                 "criterion"]
    ll0 = REFERENCE["sleepstudy_intercept"]["fits"]["ML"]["loglik"]
    ll1 = REFERENCE["sleepstudy_slope"]["fits"]["ML"]["loglik"]
    chisq = 2 * (ll1 - ll0)
    rel_close([tab["Chisq"].iloc[1]], [chisq], rtol=1e-5)
    rel_close([tab["p"].iloc[1]], [stats.chi2.sf(chisq, 2)], rtol=1e-3)
    _check_table(tab, LRT["sleepstudy_int_vs_slope"])
    assert list(tab["criterion"]) == ["ML", "ML"]
    # one added variance (the slope's) on its boundary: ½χ²₁ + ½χ²₂
    x = tab["Chisq"].iloc[1]
    np.testing.assert_allclose(tab["p_mixture"].iloc[1], 0.5 * stats.chi2.sf(x, 1) + 0.5 * stats.chi2.sf(x, 2))


def test_lrt_reml_same_fixed_and_refit():
    m_int, m_slope = reference_fit("sleepstudy_intercept", "REML"), reference_fit("sleepstudy_slope", "REML")
    tab = jaxmix.anova(m_int, m_slope, refit=None)  # same fixed effects: the REML criteria are comparable
    assert list(tab["criterion"]) == ["REML", "REML"]
    assert "REML criterion" in tab.attrs["note"]
    np.testing.assert_allclose(tab["logLik"], [m_int.loglik, m_slope.loglik])
    lme4 = jaxmix.anova(m_int, m_slope)  # lme4's default: refit by ML
    assert list(lme4["criterion"]) == ["ML (refitted)"] * 2
    _check_table(lme4, LRT["sleepstudy_int_vs_slope"])


def test_lrt_reml_different_fixed_refits(null_reml):
    m_int = reference_fit("sleepstudy_intercept", "REML")
    tab = jaxmix.anova(null_reml, m_int, refit=None)
    assert "refitted with ML" in tab.attrs["note"] and "fixed effects differ" in tab.attrs["note"]
    _check_table(tab, LRT["sleepstudy_days_vs_null"])
    assert np.isnan(tab["p_mixture"].iloc[1])  # differs in the fixed part, not a variance
    with pytest.raises(jaxmix.JaxmixError, match="not comparable"):
        jaxmix.anova(null_reml, m_int, refit=False)


def test_lrt_against_least_squares():
    ols = reference_fit("sleepstudy_intercept", "ML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = jaxmix.fit("Reaction ~ Days", load_csv("sleepstudy.csv"))
    tab = jaxmix.anova(lm, ols, names=["lm", "lmm"])
    x = 2 * (ols.loglik - lm.loglik)
    np.testing.assert_allclose(tab.loc["lmm", "Chisq"], x)
    np.testing.assert_allclose(tab.loc["lmm", "p_mixture"], 0.5 * stats.chi2.sf(x, 1))


def test_anova_bad_input():
    m_int, m_slope = reference_fit("sleepstudy_intercept", "ML"), reference_fit("sleepstudy_slope", "ML")
    with pytest.raises(jaxmix.JaxmixError, match="at least two"):
        jaxmix.anova(m_int)
    with pytest.raises(jaxmix.JaxmixError, match="not a fitted model"):
        jaxmix.anova(m_int, "m1")
    d = m_slope.design
    other_y = dataclasses.replace(m_slope, design=dataclasses.replace(d, y=d.y + 1.0))
    with pytest.raises(jaxmix.JaxmixError, match="different data"):
        jaxmix.anova(m_int, other_y)
    fewer = dataclasses.replace(m_slope, design=dataclasses.replace(d, X=d.X[:-1], y=d.y[:-1], rows=d.rows[:-1]))
    with pytest.raises(jaxmix.JaxmixError, match="179 rows"):
        jaxmix.anova(m_int, fewer)


# ---- homogeneity of a coefficient across groups ---------------------------------------------------------
def _simulate(slope_sd: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(15), 12)
    x = rng.normal(size=g.size)
    slopes = 2.0 + rng.normal(0, slope_sd, 15)
    y = 1.0 + rng.normal(0, 1, 15)[g] + slopes[g] * x + rng.normal(0, 1.0, g.size)
    return pd.DataFrame({"y": y, "x": x, "school": [f"s{i}" for i in g]})


def test_homogeneity_test_direct_computation():
    df = _simulate(1.0, 3)
    ht = jaxmix.homogeneity_test("y ~ x + (x | school)", df, group="school", term="x")
    est, var, rss, dof = [], [], 0.0, 0
    for _, d in df.groupby("school"):
        X = np.column_stack([np.ones(len(d)), d["x"]])
        b, r, *_ = np.linalg.lstsq(X, d["y"], rcond=None)
        est.append(b[1])
        var.append(np.linalg.inv(X.T @ X)[1, 1])
        rss += float(r[0])
        dof += len(d) - 2
    s2 = rss / dof
    V = s2 * np.asarray(var)
    gamma = np.sum(np.asarray(est) / V) / np.sum(1 / V)
    H = np.sum((np.asarray(est) - gamma) ** 2 / V)
    np.testing.assert_allclose([ht.statistic, ht.estimate, ht.sigma2], [H, gamma, s2], rtol=1e-10)
    assert ht.df == 14 and ht.n_groups == 15
    assert ht.p == pytest.approx(stats.chi2.sf(H, 14))
    assert ht.p < 1e-6  # slopes vary
    same = jaxmix.homogeneity_test("y ~ x", _simulate(0.0, 4), group="school", term="x")
    assert same.p > 0.01


def test_homogeneity_test_errors_and_small_groups():
    df = _simulate(0.0, 5)
    df = pd.concat([df, pd.DataFrame({"y": [1.0, 2.0], "x": [0.1, 0.2], "school": ["tiny", "tiny"]})])
    ht = jaxmix.homogeneity_test("y ~ x", df, group="school", term="x")
    assert ht.n_groups == 15 and ht.n_groups_total == 16  # 2 rows for 2 coefficients: not used
    ht0 = jaxmix.homogeneity_test("y ~ x", df, group="school", term="(Intercept)")
    assert ht0.term == "Intercept"
    with pytest.raises(jaxmix.JaxmixError, match="unknown term 'z'"):
        jaxmix.homogeneity_test("y ~ x", df, group="school", term="z")
    with pytest.raises(jaxmix.JaxmixError, match="group column"):
        jaxmix.homogeneity_test("y ~ x", df, group="class", term="x")
