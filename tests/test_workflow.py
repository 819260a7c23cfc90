"""The lme4 workflow on a fitted model: getME, condVar, predict(re.form, intervals), simulate, refit,
update, R's binomial responses and formula functions, pinned to lme4 (tests/data/export_workflow.R ->
tests/data/workflow_reference.json) or to independent computations."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.special import expit

import jaxmix
from jaxmix.errors import JaxmixError, JaxmixWarning
from jaxmix.results.refit import update_formula

from conftest import DATA_DIR, REFERENCE

REF = json.loads((DATA_DIR / "workflow_reference.json").read_text())


def _sleep():
    d = pd.read_csv(DATA_DIR / "sleepstudy.csv")
    d["Subject"] = d["Subject"].astype(str)
    return d


@pytest.fixture(scope="module")
def sleep_fit():
    return jaxmix.fit("Reaction ~ Days + (Days | Subject)", _sleep())


@pytest.fixture(scope="module")
def pen_fit():
    return jaxmix.fit("diameter ~ 1 + (1 | plate) + (1 | sample)", pd.read_csv(DATA_DIR / "Penicillin.csv"))


@pytest.fixture(scope="module")
def cbpp():
    return pd.read_csv(DATA_DIR / "cbpp.csv", dtype={"period": str})  # herd numeric: levels 1..15 as R's


def _postvar(r, g):
    """lme4's q × q × levels postVar array (column-major in the JSON) as (levels, q, q)."""
    dim = r["postvar"][g]["dim"]
    return np.asarray(r["postvar"][g]["values"]).reshape(dim[::-1]).transpose(0, 2, 1)


# ---- getME -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["sleepstudy", "penicillin"])
def test_getme_matches_lme4(case, sleep_fit, pen_fit):
    res, r = (sleep_fit, REF["sleepstudy"]) if case == "sleepstudy" else (pen_fit, REF["penicillin"])
    Z, Lam = res.getme("Z"), res.getme("Lambda")
    assert sp.issparse(Z) and sp.issparse(Lam)
    assert list(Z.shape) == r["Z"]["dim"] and Z.nnz == r["Z"]["nnz"]
    np.testing.assert_allclose(np.asarray(Z.sum(axis=0)).ravel(), r["Z"]["colsums"], atol=1e-12)
    np.testing.assert_allclose(np.asarray(Z.sum(axis=1)).ravel(), r["Z"]["rowsums"], atol=1e-12)
    np.testing.assert_allclose(Z[:6, :6].toarray(), r["Z"]["dense_first"], atol=1e-12)
    assert list(Lam.shape) == r["Lambda"]["dim"] and Lam.nnz == r["Lambda"]["nnz"]
    np.testing.assert_allclose(np.asarray(Lam.sum(axis=0)).ravel(), r["Lambda"]["colsums"], rtol=1e-5)
    np.testing.assert_allclose(Lam[:6, :6].toarray(), r["Lambda"]["dense_first"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.getme("theta"), r["theta"], rtol=1e-5)
    np.testing.assert_allclose(res.getme("b"), r["b"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.getme("u"), r["u"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.getme("beta"), r["beta"], rtol=1e-7)
    np.testing.assert_allclose(res.getme("sigma"), r["sigma"], rtol=1e-6)
    np.testing.assert_allclose(res.getme("X").sum(axis=0), r["X_colsums"], rtol=1e-12)


def test_getme_identities(sleep_fit, pen_fit):
    for res in (sleep_fit, pen_fit):
        X, Z, b, u, Lam = (res.getme(k) for k in ("X", "Z", "b", "u", "Lambda"))
        np.testing.assert_allclose(X @ res.getme("beta") + Z @ b, res.fitted, atol=1e-9)
        np.testing.assert_allclose(Lam @ u, b, atol=1e-9)
    fl = pen_fit.getme("flist")
    assert list(fl.columns) == ["plate", "sample"] and len(fl) == 144
    assert fl["sample"].iloc[:6].tolist() == list("ABCDEF") and len(fl["plate"].cat.categories) == 24
    with pytest.raises(JaxmixError, match="'Zt'"):
        sleep_fit.getme("Zt")


def test_getme_glmm_linear_predictor(cbpp):
    res = jaxmix.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    eta = res.getme("X") @ res.getme("beta") + res.getme("Z") @ res.getme("b")
    np.testing.assert_allclose(eta, REF["cbpp_prop"]["eta"], atol=1e-5)
    np.testing.assert_allclose(eta, res.predict(type="link"), atol=1e-12)


# ---- condVar -----------------------------------------------------------------------------------------
def test_condvar_matches_lme4(sleep_fit, pen_fit):
    cv = sleep_fit.condvar("Subject")
    assert cv.shape == (18, 2, 2)
    np.testing.assert_allclose(cv, _postvar(REF["sleepstudy"], "Subject"), rtol=1e-5)
    for g in ("plate", "sample"):
        np.testing.assert_allclose(pen_fit.condvar(g), _postvar(REF["penicillin"], g), rtol=1e-5)
    with pytest.raises(JaxmixError, match="'herd'"):
        sleep_fit.condvar("herd")


# ---- predict -----------------------------------------------------------------------------------------
def test_predict_re_form_matches_lme4(sleep_fit, pen_fit):
    r = REF["sleepstudy"]
    nd = pd.DataFrame(r["newdata"])
    with pytest.warns(JaxmixWarning, match=r"'999'.*'Subject'"):
        np.testing.assert_allclose(sleep_fit.predict(nd), r["predict_all"], rtol=1e-7)
    np.testing.assert_allclose(sleep_fit.predict(nd, re_form="NA"), r["predict_fixed"], rtol=1e-9)
    np.testing.assert_allclose(sleep_fit.predict(nd, include_re=False), r["predict_fixed"], rtol=1e-9)
    r = REF["penicillin"]
    nd = pd.DataFrame(r["newdata"])
    for key, form in [("predict_plate", "~(1|plate)"), ("predict_sample", "~ (1 | sample)"),
                      ("predict_fixed", "~0"), ("predict_all", None)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", JaxmixWarning)
            np.testing.assert_allclose(pen_fit.predict(nd, re_form=form), r[key], rtol=1e-7, err_msg=key)
    with pytest.raises(JaxmixError, match=r"\(1 \| batch\)"):
        pen_fit.predict(nd, re_form="~(1|batch)")


def test_predict_intervals_from_lme4_pieces(sleep_fit):
    """se² = x₀′Var(β̂)x₀ (confidence); + σ² + z₀′ condVar z₀ (seen level) or z₀′Ωz₀ (new level)."""
    r = REF["sleepstudy"]
    nd = pd.DataFrame(r["newdata"])
    X0 = np.column_stack([np.ones(len(nd)), nd["Days"]])
    V = np.asarray(r["vcov"])
    se_c = np.sqrt(np.einsum("np,pq,nq->n", X0, V, X0))
    ci = sleep_fit.predict(nd, re_form="NA", interval="confidence", level=0.9)
    np.testing.assert_allclose(ci["fit"], r["predict_fixed"], rtol=1e-9)
    np.testing.assert_allclose(ci["se"], se_c, rtol=1e-4)
    np.testing.assert_allclose(ci["upper"] - ci["fit"], 1.6448536269514722 * ci["se"], rtol=1e-12)
    pv = _postvar(r, "Subject")
    levels = sorted(set(_sleep()["Subject"]), key=int)
    lam = np.zeros((2, 2))
    lam[[0, 1, 1], [0, 0, 1]] = r["theta"]
    omega = r["sigma"] ** 2 * lam @ lam.T
    C = np.stack([pv[levels.index(s)] if s in levels else omega for s in nd["Subject"]])
    se_p = np.sqrt(se_c**2 + r["sigma"] ** 2 + np.einsum("nq,nqr,nr->n", X0, C, X0))
    with pytest.warns(JaxmixWarning):
        pi = sleep_fit.predict(nd, interval="prediction")
    np.testing.assert_allclose(pi["se"], se_p, rtol=1e-4)
    np.testing.assert_allclose(pi["fit"], r["predict_all"], rtol=1e-7)
    np.testing.assert_allclose(pi["lower"], pi["fit"] - 1.959963984540054 * pi["se"], rtol=1e-12)
    with pytest.raises(JaxmixError, match="interval"):
        sleep_fit.predict(nd, interval="credible")


# ---- formula functions and transform state on new data -------------------------------------------------
def test_poly_scale_log_factor_match_lme4():
    t = REF["transforms"]
    nd = pd.DataFrame(t["newdata"])
    m = jaxmix.fit("Reaction ~ poly(Days, 2) + (1 | Subject)", _sleep())
    np.testing.assert_allclose(m.getme("X")[:10, 1:], t["poly"]["poly_first"], rtol=1e-10)
    np.testing.assert_allclose(m.beta, t["poly"]["fixef"], rtol=1e-8)
    np.testing.assert_allclose(m.loglik, t["poly"]["loglik"], rtol=1e-9)
    np.testing.assert_allclose(m.predict(nd, re_form="NA"), t["poly"]["predict_fixed"], rtol=1e-9)
    np.testing.assert_allclose(m.predict(nd), t["poly"]["predict_all"], rtol=1e-7)
    m = jaxmix.fit("Reaction ~ scale(Days) + log(Days + 1) + factor(Days > 4) + (1 | Subject)", _sleep())
    np.testing.assert_allclose(m.beta, t["scale_log"]["fixef"], rtol=1e-8)
    np.testing.assert_allclose(m.loglik, t["scale_log"]["loglik"], rtol=1e-9)
    np.testing.assert_allclose(m.predict(nd, re_form="NA"), t["scale_log"]["predict_fixed"], rtol=1e-9)


def test_factor_is_c():
    d = _sleep()
    a = jaxmix.fit("Reaction ~ factor(Days) + (1 | Subject)", d)
    b = jaxmix.fit("Reaction ~ C(Days) + (1 | Subject)", d)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
    assert len(a.beta) == 10


def test_offset_in_poisson_formula_predicts_with_new_exposure():
    gt = pd.read_csv(DATA_DIR / "grouseticks.csv", dtype={"YEAR": str, "BROOD": str})
    gt["expo"] = 1.0 + (np.arange(len(gt)) % 3)
    m = jaxmix.fit("TICKS ~ YEAR + offset(log(expo)) + (1 | BROOD)", gt, family="poisson")
    nd = gt.iloc[:4].assign(expo=[1.0, 2.0, 3.0, 4.0])
    eta = m.predict(nd, type="link", re_form="NA")
    X0 = np.column_stack([np.ones(4), (nd["YEAR"] == "96"), (nd["YEAR"] == "97")]).astype(float)
    np.testing.assert_allclose(eta, X0 @ m.beta + np.log(nd["expo"].to_numpy()), rtol=1e-12)


# ---- binomial responses as R accepts them -----------------------------------------------------------
def test_proportion_response_with_weights_matches_glmer(cbpp):
    r = REF["cbpp_prop"]
    res = jaxmix.fit("incidence/size ~ period + (1 | herd)", cbpp, family="binomial", weights="size")
    np.testing.assert_allclose(res.beta, r["fixef"], rtol=1e-5)
    np.testing.assert_allclose(res.loglik, r["loglik"], rtol=1e-7)
    np.testing.assert_allclose(res.theta, r["theta"], rtol=1e-5)
    np.testing.assert_allclose(r["loglik"], r["loglik_cbind"], rtol=1e-10)
    np.testing.assert_allclose(res.condvar("herd"), _postvar(r, "herd"), rtol=1e-4)


def test_factor_string_bool_responses_match_glmer():
    f = REF["factor_response"]
    d = pd.DataFrame(f["data"])
    res = jaxmix.fit("y ~ x + (1 | g)", d, family="binomial")
    np.testing.assert_allclose(res.beta, f["fixef"], rtol=1e-5)
    np.testing.assert_allclose(res.loglik, f["loglik"], rtol=1e-7)
    cat = jaxmix.fit("y ~ x + (1 | g)", d.assign(y=pd.Categorical(d["y"], categories=["no", "yes"])),
                     family="binomial")
    np.testing.assert_allclose(cat.beta, f["fixef"], rtol=1e-5)
    flipped = jaxmix.fit("y ~ x + (1 | g)", d.assign(y=pd.Categorical(d["y"], categories=["yes", "no"])),
                         family="binomial")
    np.testing.assert_allclose(flipped.beta, -np.asarray(f["fixef"]), rtol=1e-5)
    boolean = jaxmix.fit("y ~ x + (1 | g)", d.assign(y=d["y"] == "yes"), family="binomial")
    np.testing.assert_allclose(boolean.beta, f["fixef"], rtol=1e-5)
    three = d.assign(y=np.where(np.arange(len(d)) % 7 == 0, "maybe", d["y"]))
    with pytest.raises(JaxmixError, match="'y' has 3 levels"):
        jaxmix.fit("y ~ x + (1 | g)", three, family="binomial")


# ---- simulate ----------------------------------------------------------------------------------------
def test_simulate_gaussian_moments(sleep_fit):
    """E y = Xβ̂, Var y = z′Ωz + σ² (theory), and the same as lme4's simulate() summaries."""
    s = REF["simulate"]["sleepstudy"]
    nsim = s["nsim"]
    sim = sleep_fit.simulate(nsim, seed=3)
    assert sim.shape == (180, nsim) and list(sim.columns[:2]) == ["sim_1", "sim_2"]
    X = sleep_fit.getme("X")
    om = sleep_fit.term_covariances()[0]
    v = np.einsum("nq,qr,nr->n", X, om, X) + sleep_fit.sigma**2
    mean = X @ sleep_fit.beta
    z = (sim.mean(axis=1).to_numpy() - mean) / np.sqrt(v / nsim)
    assert np.abs(z).max() < 5
    z_r = (np.asarray(s["row_mean"]) - mean) / np.sqrt(v / nsim)
    assert np.abs(z_r).max() < 5
    # 18 subjects' slopes and intercepts drive the row variances: compare averages within 10%
    np.testing.assert_allclose(sim.var(axis=1).mean(), v.mean(), rtol=0.1)
    np.testing.assert_allclose(np.mean(s["row_var"]), v.mean(), rtol=0.1)
    np.testing.assert_allclose(sim.to_numpy().var(), s["overall_var"], rtol=0.1)
    pd.testing.assert_frame_equal(sleep_fit.simulate(3, seed=7), sleep_fit.simulate(3, seed=7))
    with pytest.raises(JaxmixError, match="nsim"):
        sleep_fit.simulate(0)


def _gh_mean(eta, sd, f, k=40):
    """E f(η + b), b ~ N(0, sd²), by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(k)
    return (f(eta[:, None] + sd * x[None, :]) * w).sum(axis=1) / w.sum()


def test_simulate_poisson_and_binomial_moments(cbpp):
    gt = pd.read_csv(DATA_DIR / "grouseticks.csv", dtype={"YEAR": str, "BROOD": str})
    res = jaxmix.fit("TICKS ~ YEAR + (1 | BROOD)", gt, family="poisson")
    s = REF["simulate"]["grouseticks"]
    eta = res.getme("X") @ res.beta
    sd = res.theta[0]
    mean = np.exp(eta + sd**2 / 2)
    var = mean + mean**2 * (np.exp(sd**2) - 1)
    nsim = s["nsim"]
    sim = res.simulate(nsim, seed=11).to_numpy()
    assert np.abs((sim.mean(axis=1) - mean) / np.sqrt(var / nsim)).max() < 5
    assert np.abs((np.asarray(s["row_mean"]) - mean) / np.sqrt(var / nsim)).max() < 5
    np.testing.assert_allclose(sim.var(axis=1).mean(), var.mean(), rtol=0.1)
    res = jaxmix.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    s = REF["simulate"]["cbpp"]
    n = cbpp["size"].to_numpy(dtype=float)
    p = _gh_mean(res.getme("X") @ res.beta, res.theta[0], expit)
    p2 = _gh_mean(res.getme("X") @ res.beta, res.theta[0], lambda e: expit(e) ** 2)
    mean, var = n * p, n * p + n * (n - 1) * p2 - (n * p) ** 2
    sim = res.simulate(s["nsim"], seed=5).to_numpy()
    assert np.all((sim >= 0) & (sim <= n[:, None])) and np.all(sim == np.round(sim))
    assert np.abs((sim.mean(axis=1) - mean) / np.sqrt(var / s["nsim"])).max() < 5
    assert np.abs((np.asarray(s["row_mean"]) - mean) / np.sqrt(var / s["nsim"])).max() < 5
    np.testing.assert_allclose(sim.var(axis=1), s["row_var"], rtol=0.25)


# ---- refit and update --------------------------------------------------------------------------------
def test_refit_equals_fresh_fit(sleep_fit, cbpp):
    y = sleep_fit.simulate(1, seed=2)["sim_1"].to_numpy()
    a = sleep_fit.refit(y)
    b = jaxmix.fit("Reaction ~ Days + (Days | Subject)", _sleep().assign(Reaction=y))
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-8)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-10)
    g = jaxmix.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    k = g.simulate(1, seed=4)["sim_1"].to_numpy()
    ga = g.refit(k)
    gb = jaxmix.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp.assign(incidence=k),
                    family="binomial")
    np.testing.assert_allclose(ga.beta, gb.beta, rtol=1e-7)
    np.testing.assert_allclose(ga.loglik, gb.loglik, rtol=1e-9)
    with pytest.raises(JaxmixError, match="180"):
        sleep_fit.refit(y[:10])
    with pytest.raises(JaxmixError, match="missing or infinite"):
        sleep_fit.refit(np.where(np.arange(180) == 3, np.nan, y))


def test_update(sleep_fit):
    d = _sleep()
    up = sleep_fit.update(". ~ . - Days")
    fresh = jaxmix.fit("Reaction ~ (Days | Subject)", d)
    np.testing.assert_allclose(up.beta, fresh.beta, rtol=1e-10)
    ml = sleep_fit.update(method="ML")
    np.testing.assert_allclose(ml.loglik, REFERENCE["sleepstudy_slope"]["fits"]["ML"]["loglik"], rtol=1e-8)
    sub = sleep_fit.update(data=d[d["Days"] < 8])
    assert sub.nobs == 144
    with pytest.raises(JaxmixError, match="'methd'"):
        sleep_fit.update(methd="ML")


@pytest.mark.parametrize("old,new,expected", [
    ("y ~ x + (1 | g)", ". ~ . - x", "y ~ (1 | g)"),
    ("y ~ x + (1 | g)", ". ~ . + z", "y ~ x + (1 | g) + z"),
    ("y ~ x + (1 | g)", ". ~ . - (1|g) + (x | g)", "y ~ x + (x | g)"),
    ("y ~ x + z", "log(y) ~ .", "log(y) ~ x + z"),
    ("y ~ x + z", ". ~ . - 1", "y ~ x + z - 1"),
    ("y ~ x + x:z", ". ~ . - x:z", "y ~ x"),
])
def test_update_formula(old, new, expected):
    assert update_formula(old, new) == expected


def test_update_formula_unknown_term():
    with pytest.raises(JaxmixError, match="'w'"):
        update_formula("y ~ x + (1 | g)", ". ~ . - w")


def test_proportion_weights_equals_trials_and_refits(cbpp):
    prop = jaxmix.fit("incidence/size ~ period + (1 | herd)", cbpp, family="binomial", weights="size")
    tri = jaxmix.fit("incidence ~ period + (1 | herd)", cbpp, family="binomial", trials="size")
    np.testing.assert_allclose(prop.beta, tri.beta, rtol=1e-8)
    np.testing.assert_allclose(prop.loglik, tri.loglik, rtol=1e-10)
    k = tri.simulate(1, seed=9)["sim_1"].to_numpy()
    a, b = prop.refit(k), tri.refit(k)
    c = jaxmix.fit("incidence ~ period + (1 | herd)", cbpp.assign(incidence=k), family="binomial", trials="size")
    np.testing.assert_allclose(a.beta, c.beta, rtol=1e-7)
    np.testing.assert_allclose(b.loglik, c.loglik, rtol=1e-9)
    with pytest.raises(JaxmixError, match="whole number"):
        jaxmix.fit("incidence/size ~ period + (1 | herd)", cbpp, family="binomial", weights=np.full(56, 0.5))


def test_glmm_confidence_interval_on_response_scale(cbpp):
    res = jaxmix.fit("incidence ~ period + (1 | herd)", cbpp, family="binomial", trials="size")
    nd = pd.DataFrame({"period": ["1", "2", "3", "4"], "herd": ["1"] * 4})
    ci = res.predict(nd, re_form="NA", interval="confidence", type="response")
    X0 = np.eye(4)
    X0[:, 0] = 1.0
    eta = X0 @ res.beta
    se = np.sqrt(np.einsum("np,pq,nq->n", X0, res.vcov_beta, X0))
    np.testing.assert_allclose(ci["fit"], expit(eta), rtol=1e-12)
    np.testing.assert_allclose(ci["lower"], expit(eta - 1.959963984540054 * se), rtol=1e-10)
    np.testing.assert_allclose(ci["se"], se, rtol=1e-12)
    np.testing.assert_allclose(ci["se"][0], res.se.iloc[0], rtol=1e-12)  # period 1: the intercept's SE
    with pytest.raises(JaxmixError, match="Gaussian"):
        res.predict(nd, interval="prediction")


def test_update_adds_random_term():
    pen = pd.read_csv(DATA_DIR / "Penicillin.csv")
    one = jaxmix.fit("diameter ~ 1 + (1 | plate)", pen)
    both = one.update(". ~ . + (1 | sample)")
    np.testing.assert_allclose(both.theta, REF["penicillin"]["theta"], rtol=1e-5)


def test_binomial_offset_term_matches_glmer(cbpp):
    r = REF["cbpp_offset"]
    res = jaxmix.fit("cbind(incidence, size - incidence) ~ period + offset(log(size) / 10) + (1 | herd)", cbpp,
                     family="binomial")
    np.testing.assert_allclose(res.beta, r["fixef"], rtol=1e-5)
    np.testing.assert_allclose(res.loglik, r["loglik"], rtol=1e-8)
    nd = pd.DataFrame(r["newdata"]).assign(herd=lambda d: d["herd"].astype(int))
    np.testing.assert_allclose(res.predict(nd, re_form="NA", type="link"), r["predict_fixed"], rtol=1e-6)
    np.testing.assert_allclose(res.predict(nd, type="link"), r["predict_all"], rtol=1e-5)
