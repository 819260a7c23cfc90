"""GLMMs against lme4's glmer: Laplace (logit, probit, cloglog, Poisson) and adaptive Gauss–Hermite.

Two sets of lme4 numbers are pinned: the shared reference fits (lme4 defaults) and fits with a tight
PIRLS tolerance (tests/data/export_glmm_tight.R).  lme4's default tolerance leaves its cbpp Laplace
deviance 5e-4 above the exact value, which moves its estimates by ~2e-3 SE and its SEs by ~1 %; jaxmix
evaluates the Laplace approximation exactly, so the tight fits are the ones to match closely.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import gammaln

import jaxmix
from conftest import DATA_DIR, REFERENCE, load_csv

TIGHT = json.loads((DATA_DIR / "lme4_glmm_tight.json").read_text())["cases"]
_FITS: dict = {}


def _fit(key):
    if key not in _FITS:
        c = TIGHT[key]
        data = load_csv({"grouseticks": "grouseticks.csv", "cbpp_binary": "cbpp_binary.csv"}.get(key, "cbpp.csv"))
        fam = "poisson" if key == "grouseticks" else "binomial"
        with warnings.catch_warnings():
            warnings.simplefilter("error", jaxmix.JaxmixWarning)
            _FITS[key] = jaxmix.fit(c["formula"], data, family=fam, link=c.get("link"), trials=c.get("trials"))
    return _FITS[key]


@pytest.mark.parametrize("key", sorted(TIGHT))
def test_matches_lme4_tight(key):
    c, r = TIGHT[key], _fit(key)
    assert r.converged and not r.singular
    assert r.loglik == pytest.approx(c["loglik"], abs=1e-5)
    se = np.asarray(c["se"])
    np.testing.assert_array_less(np.abs(r.beta - np.asarray(c["fixef"])) / se, 1e-3)
    np.testing.assert_allclose(r.se.to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(r.theta, np.atleast_1d(c["theta"]), rtol=1e-3)
    re = r.ranef
    assert list(re["level"]) == c["ranef"]["level"]
    np.testing.assert_allclose(re["mode"], c["ranef"]["mode"], rtol=1e-3, atol=1e-4 * np.max(np.abs(c["ranef"]["mode"])))
    np.testing.assert_allclose(re["condsd"], c["ranef"]["condsd"], rtol=1e-3)
    assert "Residual" not in set(r.varcorr["group"])
    assert r.aic == pytest.approx(-2 * r.loglik + 2 * (len(r.beta) + len(r.theta)))


@pytest.mark.parametrize("case", ["cbpp_binomial", "grouseticks_poisson"])
def test_matches_shared_reference(case):
    """The shared lme4 fits (default tolerance): log-likelihood within 1e-3, estimates within lme4's error."""
    ref = REFERENCE[case]["fits"]["Laplace"]
    r = _fit("cbpp_logit" if case.startswith("cbpp") else "grouseticks")
    assert r.loglik >= ref["loglik"] - 1e-5  # exact Laplace optimum: never worse than lme4's
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-3)
    se = np.asarray(list(ref["se"].values()))
    np.testing.assert_array_less(np.abs(r.beta - np.asarray(list(ref["fixef"].values()))) / se, 5e-3)
    np.testing.assert_allclose(r.se.to_numpy(), se, rtol=2e-2)
    vc = r.varcorr
    np.testing.assert_allclose(vc["sdcor"], [row["sdcor"] for row in ref["varcorr"]], rtol=1e-3)
    assert list(vc["group"]) == [row["group"] for row in ref["varcorr"]]


def _saturated_binomial(k, n):
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(k > 0, k * np.log(k / n), 0.0)
        t2 = np.where(n - k > 0, (n - k) * np.log((n - k) / n), 0.0)
    return float(np.sum(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + t1 + t2))


def test_agq25_matches_lme4():
    case = REFERENCE["cbpp_binomial_agq"]
    ref = case["fits"]["AGQ25"]
    d = load_csv("cbpp.csv")
    r = jaxmix.fit(case["formula_python"], d, family="binomial", trials="size", method="AGQ", nagq=25)
    assert r.method == "AGQ" and r.extra["nagq"] == 25
    # lme4 reports the AGQ log-likelihood relative to the saturated model (LME4-CONVENTIONS.md)
    sat = _saturated_binomial(d["incidence"], d["size"])
    assert sat == pytest.approx(-41.978, abs=1e-3)
    assert r.loglik == pytest.approx(ref["loglik"] + sat, abs=1e-3)
    se = np.asarray(list(ref["se"].values()))
    np.testing.assert_array_less(np.abs(r.beta - np.asarray(list(ref["fixef"].values()))) / se, 1e-3)
    np.testing.assert_allclose(r.se.to_numpy(), se, rtol=5e-3)
    np.testing.assert_allclose(r.theta, ref["theta"], rtol=1e-3)


def _brute_force_deviance(y, g, x, theta, beta):
    """−2 log ∫ Π p(y | u) φ(u) du per group by adaptive quadrature (scipy.integrate.quad)."""
    total = 0.0
    for j in np.unique(g):
        yj, xj = y[g == j], x[g == j]

        def f(u):
            eta = beta[0] + beta[1] * xj + theta * u
            ll = np.sum(yj * eta - np.logaddexp(0.0, eta))
            return np.exp(ll - 0.5 * u * u) / np.sqrt(2 * np.pi)

        val, _ = integrate.quad(f, -12, 12, epsabs=1e-14, epsrel=1e-12, limit=200)
        total += -2 * np.log(val)
    return total


def test_agq_converges_to_brute_force_integral_and_laplace_does_not():
    import jax.numpy as jnp

    from jaxmix.core.crossprod import build_structure
    from jaxmix.spec.covariance import theta_layout
    from jaxmix.spec.families import get_family
    from jaxmix.core.glmm import GlmmData, gauss_hermite, laplace_objective

    rng = np.random.default_rng(3)
    n_groups, per = 6, 5
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    theta, beta = 1.3, np.array([-0.4, 0.8])
    y = (rng.uniform(size=g.size) < 1 / (1 + np.exp(-(beta[0] + beta[1] * x + theta * rng.normal(size=n_groups)[g])))).astype(float)
    layout, idx = build_structure([g], [n_groups], [1], 1)
    idx = type(idx)(*(jnp.asarray(a) for a in idx))
    d = GlmmData(jnp.ones((g.size, 1)), jnp.zeros((g.size, 0)), jnp.asarray(np.column_stack([np.ones_like(x), x])),
                 jnp.asarray(y), jnp.ones(g.size), jnp.ones(g.size), jnp.zeros(g.size))
    tl = theta_layout([1])
    fam = get_family("binomial")
    params = jnp.asarray([theta, *beta])
    exact = _brute_force_deviance(y, g, x, theta, beta)
    lap = float(laplace_objective(params, fam, d, idx, layout, tl))
    xk, wk = gauss_hermite(25)
    agq = float(laplace_objective(params, fam, d, idx, layout, tl, jnp.asarray(xk), jnp.asarray(wk)))
    assert abs(agq - exact) < 1e-6
    assert abs(lap - exact) > 1e-4  # Laplace is an approximation on groups of 5 binary rows
    xk, wk = gauss_hermite(1)
    agq1 = float(laplace_objective(params, fam, d, idx, layout, tl, jnp.asarray(xk), jnp.asarray(wk)))
    assert agq1 == pytest.approx(lap, abs=1e-9)  # one node is the Laplace approximation


def test_cbind_response_equals_trials():
    d = load_csv("cbpp.csv")
    r = jaxmix.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial")
    ref = _fit("cbpp_logit")
    np.testing.assert_allclose(r.beta, ref.beta, rtol=1e-8)
    assert r.loglik == pytest.approx(ref.loglik, abs=1e-8)


def test_binary_rows_equal_aggregated_counts():
    """The same data as 0/1 rows or as successes/trials: same estimates, log-likelihoods differ by the
    binomial coefficients only."""
    agg, rows = _fit("cbpp_logit"), _fit("cbpp_binary")
    np.testing.assert_allclose(rows.beta, agg.beta, atol=1e-6)
    d = load_csv("cbpp.csv")
    logc = float(np.sum(gammaln(d["size"] + 1) - gammaln(d["incidence"] + 1) - gammaln(d["size"] - d["incidence"] + 1)))
    assert agg.loglik - rows.loglik == pytest.approx(logc, abs=1e-5)


def test_poisson_offset_in_formula_and_argument_agree():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(15), 8)
    expo = rng.uniform(0.5, 3.0, size=g.size)
    x = rng.normal(size=g.size)
    mu = expo * np.exp(0.3 + 0.5 * x + 0.4 * rng.normal(size=15)[g])
    d = pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": g, "expo": expo, "logexpo": np.log(expo)})
    a = jaxmix.fit("y ~ x + offset(log(expo)) + (1 | g)", d, family="poisson")
    b = jaxmix.fit("y ~ x + (1 | g)", d, family="poisson", offset="logexpo")
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-8)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    # predictions include the offset and the random effects; response scale = exp(link scale)
    np.testing.assert_allclose(b.predict(type="response"), np.exp(b.predict(type="link")))
    new = d.iloc[:3].assign(g=[99, 0, 1])
    eta_new = b.predict(new, type="link")
    assert eta_new[0] == pytest.approx(b.beta[0] + b.beta[1] * new["x"].iloc[0] + new["logexpo"].iloc[0])


# ---- bad input --------------------------------------------------------------------------------
def test_gtol_reaches_the_glmm_optimiser():
    """jaxmix.fit(..., gtol=) is passed to the GLMM fit: a loose tolerance stops sooner, further from the
    optimum."""
    d = load_csv("cbpp.csv")
    f = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    tight = jaxmix.fit(f, d, family="binomial")
    loose = jaxmix.fit(f, d, family="binomial", gtol=1e3)
    assert loose.converged and loose.optim.evaluations < tight.optim.evaluations
    assert np.max(np.abs(loose.optim.grad)) > 100 * np.max(np.abs(tight.optim.grad))
    assert loose.loglik <= tight.loglik


@pytest.fixture(scope="module")
def small_binary():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=g.size)
    y = (rng.uniform(size=g.size) < 1 / (1 + np.exp(-(x + rng.normal(size=12)[g])))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": np.tile(np.arange(10), 12), "n": 3})


def test_binomial_response_outside_01(small_binary):
    d = small_binary.assign(y=small_binary["y"] * 2)
    with pytest.raises(jaxmix.JaxmixError, match="'y'.*0/1"):
        jaxmix.fit("y ~ x + (1 | g)", d, family="binomial")


def test_successes_above_trials(small_binary):
    d = small_binary.assign(y=small_binary["y"] * 4)
    with pytest.raises(jaxmix.JaxmixError, match="successes > trials"):
        jaxmix.fit("y ~ x + (1 | g)", d, family="binomial", trials="n")


def test_poisson_negative_and_nonfinite_counts(small_binary):
    d = small_binary.assign(y=small_binary["y"] - 1)
    with pytest.raises(jaxmix.JaxmixError, match="negative counts"):
        jaxmix.fit("y ~ x + (1 | g)", d, family="poisson")
    d = small_binary.assign(y=small_binary["y"].astype(float))
    d.loc[3, "y"] = np.inf
    with pytest.raises(jaxmix.JaxmixError, match="inf"):
        jaxmix.fit("y ~ x + (1 | g)", d, family="poisson")


def test_poisson_non_integer_counts_warn(small_binary):
    d = small_binary.assign(y=small_binary["y"] + 0.5)
    with pytest.warns(jaxmix.JaxmixWarning, match="non-integer"):
        jaxmix.fit("y ~ x + (1 | g)", d, family="poisson")


def test_agq_refused_for_crossed_or_vector_terms(small_binary):
    with pytest.raises(jaxmix.JaxmixError, match="single scalar random-effect term"):
        jaxmix.fit("y ~ x + (1 | g) + (1 | h)", small_binary, family="binomial", nagq=5)
    with pytest.raises(jaxmix.JaxmixError, match="single scalar random-effect term"):
        jaxmix.fit("y ~ x + (x | g)", small_binary, family="binomial", method="AGQ", nagq=5)


def test_unknown_family_and_link(small_binary):
    with pytest.raises(jaxmix.JaxmixError, match="unknown family 'tweedie'"):
        jaxmix.fit("y ~ x + (1 | g)", small_binary, family="tweedie")
    with pytest.raises(jaxmix.JaxmixError, match="unknown link 'sqrt'"):
        jaxmix.fit("y ~ x + (1 | g)", small_binary, family="binomial", link="sqrt")
    with pytest.raises(jaxmix.JaxmixError, match="method"):
        jaxmix.fit("y ~ x + (1 | g)", small_binary, family="binomial", method="REML")


def test_group_with_all_zero_responses_converges(small_binary):
    d = small_binary.copy()
    d.loc[d["g"] == 0, "y"] = 0
    r = jaxmix.fit("y ~ x + (1 | g)", d, family="binomial")
    assert r.converged
    assert np.all(np.isfinite(r.beta)) and np.all(np.isfinite(r.se)) and np.isfinite(r.loglik)
    re = r.ranef
    assert np.all(np.isfinite(re["mode"])) and np.all(np.isfinite(re["condsd"]))
    # the all-zero group is pulled down, but shrunk: finite and the smallest mode
    assert re["mode"].iloc[0] == re["mode"].min()


def test_complete_separation_warns_without_nan(small_binary):
    d = small_binary.copy()
    d["sep"] = (d["x"] > 0).astype(float)
    d["y"] = d["sep"].astype(int)
    with pytest.warns(jaxmix.JaxmixWarning, match="separat"):
        r = jaxmix.fit("y ~ sep + (1 | g)", d, family="binomial")
    assert np.all(np.isfinite(r.beta)) and np.isfinite(r.loglik)


def test_glm_without_random_effects_matches_irls_reference():
    """A formula without a bar term is an ordinary GLM (same results object)."""
    d = load_csv("cbpp.csv")
    r = jaxmix.fit("incidence ~ period", d, family="binomial", trials="size")
    # R: glm(cbind(incidence, size - incidence) ~ period, binomial, cbpp) with numeric period
    X = np.column_stack([np.ones(len(d)), d["period"]])
    k, n = d["incidence"].to_numpy(float), d["size"].to_numpy(float)
    mu = 1 / (1 + np.exp(-X @ r.beta))
    score = X.T @ (k - n * mu)
    np.testing.assert_allclose(score, 0.0, atol=1e-7)
    info = (X * (n * mu * (1 - mu))[:, None]).T @ X
    np.testing.assert_allclose(r.se.to_numpy(), np.sqrt(np.diag(np.linalg.inv(info))), rtol=1e-6)
    ll = np.sum(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + k * np.log(mu) + (n - k) * np.log(1 - mu))
    assert r.loglik == pytest.approx(ll, abs=1e-8)
    assert not r.is_mixed and r.varcorr.empty


def test_theta_start_is_the_moment_estimate_of_the_group_sd():
    """θ starts near the SD of a (1 | g) term (binary data, SD 0.5), at 0.1 without group variation,
    and at lme4's Λ = I for terms it does not estimate (a random slope)."""
    from jaxmix.spec.covariance import theta_layout
    from jaxmix.spec.design import build_design
    from jaxmix.spec.families import get_family
    from jaxmix.spec.formula import parse_formula
    from jaxmix.api.generalized import glm_irls, theta_start

    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(300), 60)
    x = rng.normal(size=g.size)
    fam = get_family("binomial", None)
    starts = {}
    for sd in (0.5, 0.0):
        eta = -0.3 + 0.5 * x + rng.normal(0, sd, 300)[g] if sd else -0.3 + 0.5 * x
        d = pd.DataFrame({"y": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(float), "x": x,
                          "g": g.astype(str)})
        des = build_design(parse_formula("y ~ x + (1 | g) + (0 + x | g)"), d)
        ones = np.ones(des.nobs)
        beta0 = glm_irls(fam, des.X, des.y, ones, ones, des.offset)[0]
        tl = theta_layout([t.q for t in des.terms])
        starts[sd] = theta_start(fam, des.X, des.y, ones, ones, des.offset, beta0, des.terms, tl)
    assert 0.35 < starts[0.5][0] < 0.65 and starts[0.5][1] == 1.0
    assert starts[0.0][0] == 0.1 and starts[0.0][1] == 1.0


def test_theta_start_separates_nested_terms():
    """Physicians nested in hospitals (binary data, SDs 0.3 and 0.5): the joint moment estimate
    starts each term near its own SD (within 0.1; the GLM's attenuated residuals put both a little
    low), where the physicians' group means alone carry the hospitals' variance too (a separate
    estimate of the physicians' SD targets √(0.3² + 0.5²) = 0.58)."""
    from jaxmix.spec.covariance import theta_layout
    from jaxmix.spec.design import build_design
    from jaxmix.spec.families import get_family
    from jaxmix.spec.formula import parse_formula
    from jaxmix.api.generalized import glm_irls, theta_start

    rng = np.random.default_rng(4)
    hosp = np.repeat(np.arange(150), 8 * 25)
    phys = np.repeat(np.arange(150 * 8), 25)
    x = rng.normal(size=hosp.size)
    eta = -0.5 + 0.4 * x + rng.normal(0, 0.5, 150)[hosp] + rng.normal(0, 0.3, 150 * 8)[phys]
    d = pd.DataFrame({"y": (rng.random(hosp.size) < 1 / (1 + np.exp(-eta))).astype(float), "x": x,
                      "h": hosp.astype(str), "p": phys.astype(str)})
    fam = get_family("binomial", None)
    starts = {}
    for form in ("y ~ x + (1 | h) + (1 | p)", "y ~ x + (1 | p)"):
        des = build_design(parse_formula(form), d)
        ones = np.ones(des.nobs)
        beta0 = glm_irls(fam, des.X, des.y, ones, ones, des.offset)[0]
        tl = theta_layout([t.q for t in des.terms])
        starts[form] = dict(zip([t.group for t in des.terms],
                                theta_start(fam, des.X, des.y, ones, ones, des.offset, beta0, des.terms, tl)))
    joint, alone = starts["y ~ x + (1 | h) + (1 | p)"], starts["y ~ x + (1 | p)"]
    assert abs(joint["p"] - 0.3) < 0.1 and abs(joint["h"] - 0.5) < 0.1, joint
    assert alone["p"] > joint["p"] + 0.15, (joint, alone)


def _gn_start_case():
    """Binary data, physicians nested in hospitals, and the start model of its Hessian."""
    from jaxmix.fitting.glmm import gauss_newton_start, glmm_structure
    from jaxmix.spec.covariance import theta_layout
    from jaxmix.spec.families import get_family

    rng = np.random.default_rng(3)
    n = 1200
    g1 = rng.integers(0, 60, n)
    g2 = g1 // 6
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.binomial(1, 0.4, n)])
    eta = -0.5 + 0.4 * x + rng.normal(0, 0.5, 60)[g1] + rng.normal(0, 0.6, 10)[g2]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    fam = get_family("binomial")
    codes, nlev, Zs = [g1, g2], [60, 10], [np.ones((n, 1)), np.ones((n, 1))]
    layout, idx, ZR, N = glmm_structure(codes, nlev, Zs, n)
    tl = theta_layout(layout.q)
    c = np.array([1.0, 2.0, 1.0, 0.5, 3.0])  # the scaled parameters: H ⊙ c c′
    model = gauss_newton_start(fam, codes, nlev, Zs, X, y[:, None], np.ones((n, 1)), np.ones(n), np.zeros(n), c, tl)
    return dict(fam=fam, X=X, y=y, Zs=Zs, layout=layout, idx=idx, ZR=ZR, N=N, tl=tl, c=c, model=model,
                beta=np.array([-0.5, 0.4, 0.0]), theta=np.array([0.5, 0.6]))


def test_gauss_newton_start_is_the_profiled_fisher_information_of_beta():
    """The start model of a GLMM's Hessian (``gauss_newton_start``): with Λ = 0 exactly the GLM's
    2X′WX (scaled); with random effects its intercept entry is cut to a fraction (the groups carry
    that information), θ's rows zero and θ's columns flagged for differences."""
    k = _gn_start_case()
    c, beta, X = k["c"], k["beta"], k["X"]
    H, cols = k["model"](np.concatenate([k["theta"], beta])[None] / c, np.array([0]))
    np.testing.assert_array_equal(cols, [True, True, False, False, False])
    assert np.all(H[0, :2] == 0.0) and np.all(H[0, :, :2] == 0.0)
    H0, _ = k["model"](np.concatenate([[0.0, 0.0], beta])[None] / c, np.array([0]))
    mu = 1 / (1 + np.exp(-(X @ beta)))
    np.testing.assert_allclose(H0[0, 2:, 2:], 2 * (X * (mu * (1 - mu))[:, None]).T @ X * np.outer(c[2:], c[2:]),
                               rtol=1e-12)
    assert 0.0 < H[0, 2, 2] < 0.2 * H0[0, 2, 2]


def test_gauss_newton_start_is_near_the_exact_laplace_hessian():
    """Its β block is the exact Laplace Hessian's up to the weights' dependence on the modes (within
    20 %; the intercept's entry within 5 %)."""
    import jax
    import jax.numpy as jnp

    from jaxmix.core.crossprod import Index
    from jaxmix.core.glmm import GlmmData, conditional_modes, laplace_objective
    from jaxmix.fitting.glmm import first_rows, pad_rows

    k = _gn_start_case()
    c, N, n, layout, tl, fam = k["c"], k["N"], len(k["y"]), k["layout"], k["tl"], k["fam"]
    H, _ = k["model"](np.concatenate([k["theta"], k["beta"]])[None] / c, np.array([0]))
    d = GlmmData(*(jnp.asarray(first_rows(np.asarray(a, float), N)) for a in (k["Zs"][0], k["ZR"], k["X"], k["y"],
                                                                                 np.ones(n))),
                 jnp.asarray(pad_rows(np.ones(n), N)), jnp.zeros(N))
    idx = Index(*(jnp.asarray(a) for a in k["idx"]))
    prm = jnp.asarray(np.concatenate([k["theta"], k["beta"]]))
    u, _ = jax.jit(lambda p: conditional_modes(p[:2], p[2:], fam, d, idx, layout, tl))(prm)
    # the exact Hessian in β alone (two Newton steps from the modes: :mod:`jaxmix.core.glmm`)
    dev_b = jax.jit(jax.hessian(lambda b: laplace_objective(jnp.concatenate([prm[:2], b]), fam, d, idx, layout, tl,
                                                            u_start=u, newton_steps=2, modes_given=True)[0]))
    He = np.asarray(dev_b(prm[2:])) * np.outer(c[2:], c[2:])
    assert np.max(np.abs(H[0, 2:, 2:] - He)) < 0.2 * np.max(np.abs(He))
    assert H[0, 2, 2] == pytest.approx(He[0, 0], rel=0.05)


# ---- separation and the fit arguments --------------------------------------------------------------
@pytest.fixture(scope="module")
def cbpp_separated():
    """cbpp with two separating covariates: ``quasi`` (1 where a row has cases: the rows without any
    have quasi = 0, the others mix) and ``x`` with a response ``ysep`` = all cases where x > 0, none else."""
    d = load_csv("cbpp.csv")
    rng = np.random.default_rng(3)
    d["quasi"] = (d["incidence"] > 0).astype(float)
    d["x"] = rng.normal(size=len(d))
    d["ysep"] = np.where(d["x"] > 0, d["size"], 0)
    return d


def _separation_checks(r, column):
    assert column in r.fixef.index and not r.converged and r.optim.status == 20
    assert "separated" in r.optim.message
    assert np.isnan(r.se.to_numpy()).all() and np.isnan(r.vcov.to_numpy()).all()


def test_complete_separation_is_a_status_not_a_crash(cbpp_separated):
    """A response that x predicts perfectly: a warning naming x, NaN SEs, not converged (status 20)."""
    with pytest.warns(jaxmix.JaxmixWarning, match=r"separated by x: .*infinite.*status 20.*NaN"):
        r = jaxmix.fit("ysep ~ x + (1 | herd)", cbpp_separated, family="binomial", trials="size")
    _separation_checks(r, "x")


def test_quasi_separation_is_not_reported_as_converged(cbpp_separated):
    """Quasi-complete separation: the optimiser stops on a flat deviance (its gradient is small), but the
    estimates are infinite: not converged, NaN SEs; the finite deviance is kept."""
    f = "cbind(incidence, size - incidence) ~ quasi + (1 | herd)"
    with pytest.warns(jaxmix.JaxmixWarning, match=r"separated by Intercept, quasi"):
        r = jaxmix.fit(f, cbpp_separated, family="binomial")
    _separation_checks(r, "quasi")
    assert np.isfinite(r.loglik) and r.fixef["quasi"] > 15


def test_separated_columns_is_exact_and_scale_free():
    """The linear program finds separation whatever the scale of x, and none in cbpp itself."""
    from jaxmix.spec.families import get_family
    from jaxmix.api.generalized import separated_columns

    fam = get_family("binomial", None)
    x = np.array([-2.0, -1.0, -0.5, 0.5, 1.0, 3.0])
    y = (x > 0).astype(float)
    ones = np.ones_like(x)
    for scale in (1e-6, 1.0, 1e6):
        X = np.column_stack([ones, scale * x])
        assert separated_columns(fam, X, y, ones, ones, ["Intercept", "x"]) == ["x"]
    y[0] = 1.0  # overlap: no separation
    assert separated_columns(fam, np.column_stack([ones, x]), y, ones, ones, ["Intercept", "x"]) == []
    d = load_csv("cbpp.csv")
    X = np.column_stack([np.ones(len(d))] + [(d["period"] == k).to_numpy(float) for k in (2, 3, 4)])
    assert separated_columns(fam, X, d["incidence"].to_numpy(float), d["size"].to_numpy(float),
                             np.ones(len(d)), ["Intercept", "p2", "p3", "p4"]) == []
    pois = get_family("poisson", None)  # a level with zero counts only: its coefficient is -inf
    g = np.repeat([0.0, 1.0], 3)
    counts = np.array([2.0, 1.0, 4.0, 0.0, 0.0, 0.0])
    assert separated_columns(pois, np.column_stack([np.ones(6), g]), counts, np.ones(6), np.ones(6),
                             ["Intercept", "g"]) == ["g"]


@pytest.mark.parametrize("nagq, match", [
    ("abc", "nagq must be a positive integer.*got 'abc'"),
    (2.5, "nagq must be a positive integer.*got 2.5"),
    (True, "nagq must be a positive integer.*got True"),
    (26, "nagq must be at most 25 .*got 26"),
    (1000, "nagq must be at most 25 .*got 1000"),
])
def test_nagq_is_checked(cbpp_separated, nagq, match):
    """lme4's glmer takes nAGQ up to 25; a non-integer or larger value is an error naming nagq."""
    with pytest.raises(jaxmix.JaxmixError, match=match):
        jaxmix.fit("incidence ~ period + (1 | herd)", cbpp_separated, family="binomial", trials="size", nagq=nagq)


@pytest.mark.parametrize("kw, match", [
    ({"gtol": -1e-4}, r"gtol must be a finite number >= 0.*got -0.0001"),
    ({"gtol": float("nan")}, r"gtol must be a finite number >= 0.*got nan"),
    ({"max_iter": 0}, r"max_iter must be a positive integer, got 0"),
    ({"max_iter": 2.5}, r"max_iter must be a positive integer, got 2.5"),
])
def test_tolerances_are_checked(cbpp_separated, kw, match):
    with pytest.raises(jaxmix.JaxmixError, match=match):
        jaxmix.fit("incidence ~ period + (1 | herd)", cbpp_separated, family="binomial", trials="size", **kw)


def test_glmm_arguments_refused_for_gaussian_and_poisson(cbpp_separated, sleepstudy):
    f = "Reaction ~ Days + (1 | Subject)"
    with pytest.raises(jaxmix.JaxmixError, match="nagq=5 applies to binomial and poisson GLMMs.*not to family "
                                                  "'gaussian'"):
        jaxmix.fit(f, sleepstudy, nagq=5)
    with pytest.raises(jaxmix.JaxmixError, match="trials= is only for the binomial family, not 'gaussian'"):
        jaxmix.fit(f, sleepstudy.assign(n=3), trials="n")
    with pytest.raises(jaxmix.JaxmixError, match="trials= is only for the binomial family, not 'poisson'"):
        jaxmix.fit("incidence ~ period + (1 | herd)", cbpp_separated, family="poisson", trials="size")


def test_rescaled_covariate_slope_reaches_the_same_optimum():
    """A random slope on a covariate x 1e-6 is the same model with its rows of θ (and its β) x 1e6:
    the same Laplace log-likelihood (an absolute gradient rule stopped 0.40 short)."""
    d = load_csv("cbpp.csv").assign(x=lambda t: t["period"].astype(float))
    f = "incidence ~ x + (x | herd)"
    s = 1e-6
    base = jaxmix.fit(f, d, family="binomial", trials="size")
    r = jaxmix.fit(f, d.assign(x=d["x"] * s), family="binomial", trials="size")
    assert base.converged and r.converged
    assert r.loglik == pytest.approx(base.loglik, abs=1e-6)
    np.testing.assert_allclose(r.theta * [1.0, s, s], base.theta, rtol=1e-4)
    assert r.fixef["x"] * s == pytest.approx(base.fixef["x"], rel=1e-5)


def test_glm_irls_matches_statsmodels():
    """The GLM fit behind GLMM starts and single-level comparisons: β, −2 log L and vcov equal
    statsmodels' logistic GLM; with an exactly collinear column (X′WX singular) the least-squares path
    gives the same fitted deviance."""
    import statsmodels.api as sm

    from jaxmix.api.generalized import glm_irls
    from jaxmix.spec.families import get_family

    rng = np.random.default_rng(5)
    n = 2000
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.binomial(1, 0.3, n), rng.normal(10, 3, n)])
    y = rng.binomial(1, 1 / (1 + np.exp(-(X @ np.array([-1.0, 0.5, 0.8, 0.05])))))
    one = np.ones(n)
    beta, dev, vcov, conv, sep = glm_irls(get_family("binomial", "logit"), X, y.astype(float), one, one, 0 * one)
    ref = sm.GLM(y, X, family=sm.families.Binomial()).fit(tol=1e-12)
    assert conv and not sep
    np.testing.assert_allclose(beta, ref.params, rtol=1e-8)
    np.testing.assert_allclose(dev, -2 * ref.llf, rtol=1e-12)
    np.testing.assert_allclose(vcov, ref.cov_params(), rtol=1e-6)
    Xc = np.column_stack([X, X[:, 1] + X[:, 2]])
    _, dev_c, _, conv_c, _ = glm_irls(get_family("binomial", "logit"), Xc, y.astype(float), one, one, 0 * one)
    assert conv_c
    np.testing.assert_allclose(dev_c, -2 * ref.llf, rtol=1e-10)


def test_glm_irls_fits_the_same_inputs_once(monkeypatch):
    """A GLM of the same inputs (a GLMM's start, then its single-level comparison) is fitted once: the
    second call returns equal copies (changing them changes nothing kept); another response, weight,
    family or tolerance is fitted anew."""
    import jaxmix.api.generalized as gen
    from jaxmix.spec.families import get_family

    rng = np.random.default_rng(8)
    n = 500
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.binomial(1, 0.4, n).astype(float)
    one = np.ones(n)
    calls = []
    inner = gen._glm_irls
    monkeypatch.setattr(gen, "_glm_irls", lambda *a: calls.append(1) or inner(*a))
    logit = get_family("binomial", "logit")
    a = gen.glm_irls(logit, X, y, one, one, 0 * one)
    b = gen.glm_irls(logit, X.copy(), y.copy(), one, one.copy(), 0 * one)
    assert len(calls) == 1
    np.testing.assert_array_equal(a[0], b[0])
    b[0][:] = 0.0
    b[2][:] = 0.0
    c = gen.glm_irls(logit, X, y, one, one, 0 * one)
    np.testing.assert_array_equal(c[0], a[0])
    np.testing.assert_array_equal(c[2], a[2])
    w = one.copy()
    w[0] = 0.0
    for args, kw in [((logit, X, 1 - y, one, one, 0 * one), {}), ((logit, X, y, one, w, 0 * one), {}),
                     ((get_family("binomial", "probit"), X, y, one, one, 0 * one), {}),
                     ((logit, X, y, one, one, 0 * one), {"tol": 1e-8})]:
        gen.glm_irls(*args, **kw)
    assert len(calls) == 5


def test_glm_digest_of_a_large_read_only_array_is_taken_once():
    """The GLM memo's digest of a design's X (read-only, 1 MB and more) is kept while the array lives;
    a writable array is hashed at every call, so a change to it is seen."""
    import gc

    import jaxmix.api.generalized as gen

    X = np.arange(2**18, dtype=float).reshape(-1, 4)  # 2 MB
    d0 = gen._digest(X)
    X[0, 0] = -1.0
    assert gen._digest(X) != d0 and id(X) not in gen._DIGESTS
    R = X.copy()
    R.setflags(write=False)
    dr = gen._digest(R)
    assert gen._DIGESTS[id(R)] == dr == gen._digest(X)
    key = id(R)
    del R
    gc.collect()
    assert key not in gen._DIGESTS


def test_a_warm_start_that_stalls_the_modes_is_replaced_by_zero(monkeypatch):
    """grouseticks with a random slope (Poisson): at the optimiser's start, the modes of the optimum as
    the warm start put the penalised deviance near 1e18 (exp(η) near overflow), where its relative
    convergence test is met by tiny steps and the evaluation came back NaN (which the optimiser takes
    as +inf: a rejected step).  Such a point is evaluated again from u = 0: the deviance, as from any
    other start."""
    import jaxmix.fitting.glmm as fg

    cap = {}
    real = fg.minimize_batch

    def capture(vg, x0, *a, **k):
        cap["vg"], cap["x0"] = vg, np.array(x0, dtype=float)
        out = real(vg, x0, *a, **k)
        cap["x"] = out.x.copy()
        return out

    monkeypatch.setattr(fg, "minimize_batch", capture)
    r = jaxmix.fit("TICKS ~ YEAR + cHEIGHT + (1 + cHEIGHT | LOCATION)", load_csv("grouseticks.csv"), family="poisson")
    assert r.converged
    vg, x0, xh, w = cap["vg"], cap["x0"], cap["x"], np.zeros(1, dtype=np.int64)
    fh = vg(xh, w)[0][0]  # the warm start of the next call: the optimum's modes
    f1, g1 = vg(x0, w)
    f2, g2 = vg(x0, w)  # now started from x0's own modes
    assert np.isfinite(f1[0]) and f1[0] > fh + 100.0
    assert f1[0] == pytest.approx(f2[0], rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-7, atol=1e-8)


def test_index_arrays_are_32_bit_where_their_values_fit():
    """The GLMM program's index arrays go in as int32 (no narrowing on every pass) unless a value needs
    64 bits, as the flat pair targets of a Schur complement with more than 46,340 rows do."""
    from jaxmix.fitting.lmm import index_array

    small = index_array(np.array([0, 5, 2**31 - 2], dtype=np.int64))
    assert small.dtype == np.int32 and small.tolist() == [0, 5, 2**31 - 2]
    big = index_array(np.array([0, 46341 * 46341], dtype=np.int64))
    assert big.dtype == np.int64 and big[1] == 46341 * 46341
    assert index_array(np.zeros(0, dtype=np.int64)).dtype == np.int32
