"""jaxmix.fit_gee against statsmodels' GEE on the same data: estimates, robust and naive SEs, α, φ.

statsmodels (test extra) is the reference: its ``GEE.fit`` with default settings, ``Autoregressive(grid=True)``
for ar1 (the estimator statsmodels is moving to), ``Unstructured`` with an integer ``time``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.errors import JaxmixError

sm = pytest.importorskip("statsmodels.api")

DATA = Path(__file__).parent / "data"
RTOL = 1e-6


def _sm_cov(corstr):
    cs = sm.cov_struct
    return {"independence": cs.Independence, "exchangeable": cs.Exchangeable,
            "ar1": lambda: cs.Autoregressive(grid=True), "unstructured": cs.Unstructured}[corstr]()


def _sm_family(family):
    return {"gaussian": sm.families.Gaussian, "binomial": sm.families.Binomial, "poisson": sm.families.Poisson}[family]()


def _statsmodels(formula, data, groups, family, corstr, time=None, offset=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sm.GEE.from_formula(formula, groups=groups, data=data, family=_sm_family(family),
                                    cov_struct=_sm_cov(corstr), time=time, offset=offset)
        return model.fit()


def _close(ours, theirs, rtol=RTOL):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max() * 1e-3)


def _assert_same(res, ref, corstr):
    _close(res.fixef.to_numpy(), ref.params.to_numpy())
    _close(res.se.to_numpy(), ref.bse.to_numpy())
    _close(res.se_naive.to_numpy(), ref.standard_errors("naive"))
    _close(res.scale, ref.scale)
    if corstr in ("exchangeable", "ar1"):
        _close(res.working_correlation, ref.cov_struct.dep_params)
    elif corstr == "unstructured":
        _close(res.working_correlation.to_numpy(), ref.cov_struct.dep_params)
    assert res.converged and ref.converged


def _sleepstudy():
    return pd.read_csv(DATA / "sleepstudy.csv")


def _cbpp_binary():
    d = pd.read_csv(DATA / "cbpp_binary.csv")
    d["period"] = d["period"].astype(str)
    return d


def _counts(seed=7, clusters=40, times=4):
    """Poisson counts: a cluster effect, a within and a between covariate, exposure, 15% rows missing."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(clusters), times)
    t = np.tile(np.arange(times), clusters)
    x = rng.normal(size=g.size)
    z = rng.normal(size=clusters)[g]
    expo = rng.uniform(0.5, 2.0, size=g.size)
    b = rng.normal(scale=0.5, size=clusters)[g]
    y = rng.poisson(np.exp(0.3 + 0.4 * x - 0.3 * z + 0.1 * t + b) * expo)
    d = pd.DataFrame({"y": y, "x": x, "z": z, "t": t, "g": g, "expo": expo, "logexpo": np.log(expo)})
    keep = rng.uniform(size=g.size) > 0.15
    return d[keep].reset_index(drop=True)


def _binary(seed=3, clusters=60, times=4):
    """Binary outcomes with a cluster effect (for unstructured: integer time points 0..3, some missing)."""
    d = _counts(seed, clusters, times)
    rng = np.random.default_rng(seed + 1)
    b = rng.normal(scale=1.0, size=clusters)[d["g"]]
    d["y"] = (rng.uniform(size=len(d)) < 1.0 / (1.0 + np.exp(-(-0.2 + 0.8 * d["x"] + 0.5 * d["z"] + b)))) * 1
    return d


CORSTRS = ["independence", "exchangeable", "ar1", "unstructured"]


@pytest.mark.parametrize("corstr", CORSTRS)
def test_gaussian_sleepstudy(corstr):
    ss = _sleepstudy()
    time = "Days" if corstr == "unstructured" else None
    res = jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", corstr=corstr, time=time)
    ref = _statsmodels("Reaction ~ Days", ss, "Subject", "gaussian", corstr,
                       time=ss["Days"].to_numpy() if time else None)
    _assert_same(res, ref, corstr)
    assert res.nobs == 180 and res.n_clusters == 18


@pytest.mark.parametrize("corstr", ["independence", "exchangeable", "ar1"])
def test_binomial_cbpp_binary(corstr):
    cb = _cbpp_binary()
    res = jaxmix.fit_gee("y ~ period", cb, groups="herd", family="binomial", corstr=corstr)
    ref = _statsmodels("y ~ period", cb, "herd", "binomial", corstr)
    _assert_same(res, ref, corstr)
    assert res.scale == 1.0


@pytest.mark.parametrize("corstr", CORSTRS)
def test_binomial_simulated(corstr):
    d = _binary()
    time = "t" if corstr == "unstructured" else None
    res = jaxmix.fit_gee("y ~ x + z", d, groups="g", family="binomial", corstr=corstr, time=time)
    ref = _statsmodels("y ~ x + z", d, "g", "binomial", corstr, time=d["t"].to_numpy() if time else None)
    _assert_same(res, ref, corstr)


@pytest.mark.parametrize("corstr", CORSTRS)
def test_poisson_counts_with_offset(corstr):
    d = _counts()
    time = "t" if corstr == "unstructured" else None
    res = jaxmix.fit_gee("y ~ x + z + offset(logexpo)", d, groups="g", family="poisson", corstr=corstr, time=time)
    ref = _statsmodels("y ~ x + z", d, "g", "poisson", corstr, time=d["t"].to_numpy() if time else None,
                       offset=d["logexpo"].to_numpy())
    _assert_same(res, ref, corstr)
    same = jaxmix.fit_gee("y ~ x + z", d, groups="g", family="poisson", corstr=corstr, time=time, offset="logexpo")
    _close(same.fixef.to_numpy(), ref.params.to_numpy())


def test_ar1_time_orders_rows_within_clusters():
    """ar1 with time= on shuffled rows = statsmodels on the rows sorted by cluster and time."""
    ss = _sleepstudy()
    shuffled = ss.sample(frac=1.0, random_state=1).reset_index(drop=True)
    res = jaxmix.fit_gee("Reaction ~ Days", shuffled, groups="Subject", corstr="ar1", time="Days")
    ordered = shuffled.sort_values(["Subject", "Days"], kind="stable")
    ref = _statsmodels("Reaction ~ Days", ordered, "Subject", "gaussian", "ar1")
    _assert_same(res, ref, "ar1")
    unordered = jaxmix.fit_gee("Reaction ~ Days", shuffled, groups="Subject", corstr="ar1")
    assert abs(unordered.working_correlation - res.working_correlation) > 0.1  # data order is another model


@pytest.mark.parametrize("corstr", ["exchangeable", "ar1", "unstructured"])
def test_many_outcomes_match_one_at_a_time(corstr):
    """outcomes=[...] with different missing rows: each outcome = statsmodels on its complete rows."""
    d = _counts(seed=11, clusters=30)
    rng = np.random.default_rng(5)
    d["y2"] = rng.poisson(np.exp(0.5 + 0.2 * d["x"]))
    d["y3"] = d["y"] + rng.poisson(1.0, size=len(d))
    d.loc[rng.uniform(size=len(d)) < 0.1, "y2"] = np.nan
    d.loc[rng.uniform(size=len(d)) < 0.1, "y3"] = np.nan
    time = "t" if corstr == "unstructured" else None
    fits = jaxmix.fit_gee("~ x + z", d, groups="g", family="poisson", corstr=corstr, outcomes=["y", "y2", "y3"],
                          time=time)
    assert fits.names == ["y", "y2", "y3"]
    for name in fits.names:
        sub = d.dropna(subset=[name])
        ref = _statsmodels(f"{name} ~ x + z", sub, "g", "poisson", corstr, time=sub["t"].to_numpy() if time else None)
        _assert_same(fits[name], ref, corstr)
        assert fits[name].nobs == len(sub)
    tab = fits.to_frame()
    assert list(tab.columns) == ["outcome", "term", "estimate", "se", "se_naive", "z", "p", "ci_low", "ci_high"]
    assert len(tab) == 9


def test_start_from_the_glm_fits_gives_the_same_estimates():
    """start= (a sweep passes its single-level GLM fits, the default start): the same solution as
    from the GLM fitted inside, by a DataFrame, an array, or with a row to fit (NaN); a start of the
    wrong shape or without a coefficient's column is an error naming it."""
    d = _counts(seed=11, clusters=30)
    rng = np.random.default_rng(5)
    d["y2"] = rng.poisson(np.exp(0.5 + 0.2 * d["x"]))
    d.loc[rng.uniform(size=len(d)) < 0.1, "y2"] = np.nan
    outs = ["y", "y2"]
    ref = jaxmix.fit_gee("~ x + z", d, groups="g", family="poisson", outcomes=outs)
    glm = jaxmix.fit_many("~ x + z", d, outcomes=outs, family="poisson").fixef
    far = glm.to_numpy() + 0.3  # a start away from the solution: the iterations, not the start, decide it
    far[1] = np.nan
    for start in (glm, glm.to_numpy(), far):
        fits = jaxmix.fit_gee("~ x + z", d, groups="g", family="poisson", outcomes=outs, start=start)
        for name in outs:
            np.testing.assert_allclose(fits[name].fixef.to_numpy(), ref[name].fixef.to_numpy(), rtol=0, atol=1e-7)
            np.testing.assert_allclose(fits[name].se.to_numpy(), ref[name].se.to_numpy(), rtol=1e-6)
    with pytest.raises(JaxmixError, match=r"start= has shape \(2, 2\); expected \(2, 3\)"):
        jaxmix.fit_gee("~ x + z", d, groups="g", family="poisson", outcomes=outs, start=np.zeros((2, 2)))
    with pytest.raises(JaxmixError, match="no column for coefficient.*'z'"):
        jaxmix.fit_gee("~ x + z", d, groups="g", family="poisson", outcomes=outs, start=glm.drop(columns="z"))


def test_coef_table_wald():
    ss = _sleepstudy()
    res = jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", corstr="exchangeable")
    ref = _statsmodels("Reaction ~ Days", ss, "Subject", "gaussian", "exchangeable")
    tab = res.coef_table(alpha=0.1)
    _close(tab["z"].to_numpy(), ref.tvalues.to_numpy())
    _close(tab["p"].to_numpy(), ref.pvalues.to_numpy())
    ci = ref.conf_int(alpha=0.1).to_numpy()
    _close(tab[["ci_low", "ci_high"]].to_numpy(), ci)
    assert "exchangeable" in res.summary() and "Days" in res.summary()


def test_clear_errors():
    ss = _sleepstudy()
    cb = _cbpp_binary()
    with pytest.raises(JaxmixError, match="unknown corstr 'banded'"):
        jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", corstr="banded")
    with pytest.raises(JaxmixError, match="groups column 'Subjct'.*'Subject'"):
        jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subjct")
    with pytest.raises(JaxmixError, match=r"0/1 response \(or trials=\); 'Reaction'"):
        jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", family="binomial")
    with pytest.raises(JaxmixError, match=r"random-effect term\(s\) \(1 \| herd\)"):
        jaxmix.fit_gee("y ~ period + (1 | herd)", cb, groups="herd", family="binomial")
    with pytest.raises(JaxmixError, match="time column 'day'"):
        jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", corstr="ar1", time="day")
    with pytest.raises(JaxmixError, match="'period' at most once per cluster"):
        jaxmix.fit_gee("y ~ 1", cb, groups="herd", family="binomial", corstr="unstructured", time="period")
    big = pd.DataFrame({"y": np.arange(300) % 2, "g": np.repeat([1, 2], 150)})
    with pytest.raises(JaxmixError, match="the positions within clusters has 150 .at most 100."):
        jaxmix.fit_gee("y ~ 1", big, groups="g", family="binomial", corstr="unstructured")
    with pytest.raises(JaxmixError, match="unknown family"):
        jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", family="tweedie")
    with pytest.raises(JaxmixError, match="family 'gamma' with link 'inverse' is not available"):
        jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", family="gamma")
    with pytest.raises(JaxmixError, match="outcome column 'nope'"):
        jaxmix.fit_gee("~ Days", ss, groups="Subject", outcomes=["Reaction", "nope"])
    with pytest.raises(JaxmixError, match="non-negative"):
        jaxmix.fit_gee("y ~ x", pd.DataFrame({"y": [1.0, -1, 2, 3], "x": [0.0, 1, 2, 3], "g": [1, 1, 2, 2]}),
                       groups="g", family="poisson")


def test_missing_cluster_rows_are_dropped_like_statsmodels():
    ss = _sleepstudy()
    ss["Subject"] = ss["Subject"].astype(float)
    ss.loc[[3, 50, 51], "Subject"] = np.nan
    res = jaxmix.fit_gee("Reaction ~ Days", ss, groups="Subject", corstr="exchangeable")
    ref = _statsmodels("Reaction ~ Days", ss.dropna(), "Subject", "gaussian", "exchangeable")
    _assert_same(res, ref, "exchangeable")
    assert res.nobs == 177


def test_separation_and_non_convergence_warn():
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"x": rng.normal(size=200), "g": np.repeat(np.arange(20), 10)})
    d["y"] = (d["x"] > 0) * 1.0
    with pytest.warns(jaxmix.JaxmixWarning, match="outcome 'y': the estimates are not finite"):
        res = jaxmix.fit_gee("y ~ x", d, groups="g", family="binomial")
    assert not res.converged and np.isnan(res.se).all()
    with pytest.warns(jaxmix.JaxmixWarning, match="'Reaction' did not converge in 2 iterations"):
        res = jaxmix.fit_gee("Reaction ~ Days", _sleepstudy(), groups="Subject", corstr="ar1", maxiter=2)
    assert not res.converged and res.n_iter == 2


def _cbpp():
    d = pd.read_csv(DATA / "cbpp.csv")
    d["period"] = d["period"].astype(str)
    return d


def test_trials_independence_equals_binary_rows():
    """Aggregated successes of trials = the same model on one 0/1 row per trial (statsmodels)."""
    res = jaxmix.fit_gee("incidence ~ period", _cbpp(), groups="herd", family="binomial", trials="size",
                         corstr="independence")
    ref = _statsmodels("y ~ period", _cbpp_binary(), "herd", "binomial", "independence")
    assert len(_cbpp_binary()) == _cbpp()["size"].sum()
    _assert_same(res, ref, "independence")


def test_trials_exchangeable_solves_the_estimating_equations():
    """Dense per-herd check: U(β̂) = 0, ρ̂ = the moment estimate, SEs = the sandwich and φ B⁻¹, with
    V_i = A^½ R A^½, A = diag(μ(1 − μ)/n), computed here cluster by cluster with full matrices."""
    d = _cbpp()
    res = jaxmix.fit_gee("incidence ~ period", d, groups="herd", family="binomial", trials="size")
    X = pd.get_dummies(d["period"], drop_first=True, dtype=float)
    X.insert(0, "Intercept", 1.0)
    X = X.to_numpy()
    beta, rho = res.fixef.to_numpy(), res.working_correlation
    mu = 1.0 / (1.0 + np.exp(-X @ beta))
    prop, n = (d["incidence"] / d["size"]).to_numpy(), d["size"].to_numpy(float)
    r = (prop - mu) / np.sqrt(mu * (1 - mu) / n)
    U, B, meat = np.zeros(4), np.zeros((4, 4)), np.zeros((4, 4))
    pairs, npairs = 0.0, 0.0
    for _, idx in d.groupby("herd").indices.items():
        k = len(idx)
        R = (1 - rho) * np.eye(k) + rho * np.ones((k, k))
        a = np.sqrt(mu[idx] * (1 - mu[idx]) / n[idx])
        V = a[:, None] * R * a[None, :]
        D = X[idx] * (mu[idx] * (1 - mu[idx]))[:, None]
        Ui = D.T @ np.linalg.solve(V, prop[idx] - mu[idx])
        U += Ui
        B += D.T @ np.linalg.solve(V, D)
        meat += np.outer(Ui, Ui)
        pairs += (r[idx].sum() ** 2 - (r[idx] ** 2).sum()) / 2
        npairs += k * (k - 1) / 2
    assert np.abs(U).max() < 1e-6
    phi = (r ** 2).sum() / (len(d) - 4)
    np.testing.assert_allclose(rho, pairs / phi / (npairs - 4), rtol=1e-6)
    Binv = np.linalg.inv(B)
    _close(res.se.to_numpy(), np.sqrt(np.diag(Binv @ meat @ Binv)))
    _close(res.se_naive.to_numpy(), np.sqrt(np.diag(Binv)))
    with pytest.raises(JaxmixError, match="successes out of the trials"):
        jaxmix.fit_gee("bad ~ period", d.assign(bad=d["size"] + 1), groups="herd", family="binomial", trials="size")
    with pytest.raises(JaxmixError, match="trials= is for family='binomial'"):
        jaxmix.fit_gee("incidence ~ period", d, groups="herd", family="poisson", trials="size")
