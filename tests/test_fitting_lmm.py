"""jaxmix.fitting.lmm: one compiled objective per model class; optimum whatever the scale."""
from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

import jaxmix
from conftest import load_csv
from jaxmix.spec.covariance import theta_layout
from jaxmix.core.lmm import objective
from jaxmix.fitting.lmm import lmm_arrays

SLEEP = "Reaction ~ Days + (Days | Subject)"


def test_new_data_of_the_same_class_compiles_nothing():
    d = load_csv("sleepstudy.csv")
    jaxmix.fit(SLEEP, d)
    for keep in (14, 11):
        sub = d[d.Subject.isin(sorted(d.Subject.unique())[:keep])].reset_index(drop=True)
        r = jaxmix.fit(SLEEP, sub)
        assert r.converged and r.optim.compile_seconds == 0.0
    r = jaxmix.fit(SLEEP, d.iloc[::2].reset_index(drop=True))  # other n
    assert r.converged and r.optim.compile_seconds == 0.0


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3, 1e6])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_the_optimum_does_not_depend_on_the_units_of_a_slope(scale, method):
    """y ~ x + (x | g) is invariant to rescaling x: same log-likelihood (up to log|X'X| under REML,
    which moves by log(scale)) and SDs scaled by 1/scale."""
    d = load_csv("sleepstudy.csv")
    r0 = jaxmix.fit(SLEEP, d, method=method)
    e = d.assign(Days=d.Days * scale)
    r = jaxmix.fit(SLEEP, e, method=method)
    shift = -np.log(scale) if method == "REML" else 0.0
    assert r.converged
    assert abs(r.loglik - (r0.loglik + shift)) < 1e-7
    sd0, sd = r0.varcorr.sdcor.to_numpy(), r.varcorr.sdcor.to_numpy()
    np.testing.assert_allclose(sd, sd0 * np.array([1.0, 1.0 / scale, 1.0, 1.0]), rtol=1e-4)
    np.testing.assert_allclose(r.fixef.to_numpy(), r0.fixef.to_numpy() * np.array([1.0, 1.0 / scale]), rtol=1e-5)


def _tiny_residual(seed=1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 5)
    x = rng.normal(size=150)
    y = 1 + 0.5 * x + rng.normal(size=30)[g] + 1e-6 * rng.normal(size=150)
    return pd.DataFrame(dict(y=y, x=x, g=g))


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_a_tiny_residual_sd_reaches_the_optimum_or_says_not_converged(method):
    d = _tiny_residual()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxmix.JaxmixWarning)
        r = jaxmix.fit("y ~ x + (1 | g)", d, method=method)
    layout, idx, xp = lmm_arrays(r.design, jnp.float64)
    tl = theta_layout(layout.q)
    crit_jit = jax.jit(lambda th: objective(th, xp, idx, layout, tl, r.nobs, 2, 0.0, method == "REML"))
    crit = lambda lt: float(crit_jit(jnp.asarray([np.exp(lt)])))  # noqa: E731
    grid = np.linspace(np.log(1e3), np.log(1e8), 201)
    vals = np.array([crit(t) for t in grid])  # NaN where r² cancels to ≤ 0
    lbest = grid[np.nanargmin(vals)]
    best = minimize_scalar(crit, bounds=(lbest - 0.05, lbest + 0.05), method="bounded").fun
    best = np.nanmin([best, np.nanmin(vals)])
    assert (not r.converged) or r.objective <= best + 1e-6


def test_singular_fit_sets_the_variance_exactly_to_zero():
    r = jaxmix.fit("Yield ~ 1 + (1 | Batch)", load_csv("Dyestuff2.csv"))
    assert r.converged and r.singular
    assert r.theta[0] == 0.0 and r.varcorr.vcov.iloc[0] == 0.0


@pytest.mark.parametrize("case", ["pastes_nested", "penicillin_crossed"])
def test_henderson_start_is_the_reml_optimum_of_a_balanced_design(case):
    """Henderson's method I on a balanced design (Pastes: 10 batches x 3 casks x 2; Penicillin: 24
    plates x 6 samples) gives the ANOVA estimates, which are REML's optimum when positive: the start
    equals the optimum, and the fit from there needs a handful of evaluations (22 from Λ = I)."""
    from conftest import load_reference
    from jaxmix.fitting.lmm import henderson_start
    from jaxmix.spec.design import build_design
    from jaxmix.spec.formula import parse_formula

    ref = load_reference()[case]
    d = load_csv(ref["data"].split("/")[-1])
    design = build_design(parse_formula(ref["formula_python"]), d)
    layout, idx, xp = lmm_arrays(design, jnp.float64)
    p = design.X.shape[1]
    xp = [np.asarray(a) for a in xp]
    A11, BR, BT, CRR, CRT, CTT = xp
    th = henderson_start(A11, BR, CRR, BT[None, :, p, 0], CRT[None, :, p], np.array([CTT[p, p]]), layout,
                         np.asarray(idx.e_row), np.asarray(idx.e_blk))
    r = jaxmix.fit(ref["formula_python"], d)
    np.testing.assert_allclose(th[0], r.theta, rtol=1e-7)  # the optimum (lme4's θ to its tolerance, 3e-5)
    np.testing.assert_allclose(th[0], ref["fits"]["REML"]["theta"], rtol=1e-4)
    assert r.converged and r.optim.evaluations <= 8
    assert r.loglik == pytest.approx(ref["fits"]["REML"]["loglik"], abs=1e-6)


def test_henderson_start_unbalanced_crossed_reaches_the_optimum_from_lambda_one():
    """On unbalanced crossed and nested scalar terms (with a covariate the start ignores) the fit from
    Henderson's start reaches the optimum of the descent from Λ = I (a θ started at 1 where its
    moment estimate is negative)."""
    from jaxmix.datasets import simulate_evaluations
    from jaxmix.fitting import lmm as fl

    formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
    for seed in (2,):
        d = simulate_evaluations(n_students=60 + 10 * seed, n_lecturers=25, n_departments=4, n_ratings=900, seed=seed)
        for method in ("REML", "ML"):
            r = jaxmix.fit(formula, d, method=method)
            orig = fl.henderson_start
            fl.henderson_start = lambda *a, **k: np.full((1, 3), np.nan)  # noqa: E731  (the start Λ = I)
            try:
                r0 = jaxmix.fit(formula, d, method=method)
            finally:
                fl.henderson_start = orig
            assert r.converged and r0.converged
            assert r.loglik == pytest.approx(r0.loglik, abs=1e-7)
            assert r.optim.evaluations < r0.optim.evaluations


def test_crossed_fit_whose_small_variance_starts_far_above_it(monkeypatch):
    """Simulated course evaluations (students x lecturers, lecturers in 8 departments, 4,000 rows):
    Henderson's estimate of the department variance is negative, so θ_dept starts at lme4's 1 while
    the optimum is ~0.12.  The first Newton step crosses θ_dept = 0; tried reflected as well as
    projected (``ThetaLayout.mirrors``) the fit reaches the optimum in about two thirds of the
    evaluations of the projection alone, which stalls on the saddle at θ_dept = 0 first.  Both reach
    the same optimum; where the optimum is θ_dept = 0 (seed 0) the variance is still exactly 0."""
    from jaxmix.datasets import simulate_evaluations
    from jaxmix.spec.covariance import ThetaLayout

    f = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
    d7 = simulate_evaluations(300, 120, 8, 4000, seed=7)
    r = jaxmix.fit(f, d7)
    d0 = simulate_evaluations(300, 120, 8, 4000, seed=0)
    s = jaxmix.fit(f, d0)
    monkeypatch.setattr(ThetaLayout, "mirrors", lambda self: [])
    r0 = jaxmix.fit(f, d7)
    s0 = jaxmix.fit(f, d0)
    assert r.converged and r0.converged and s.converged and s0.converged
    assert abs(r.loglik - r0.loglik) < 1e-8 and abs(s.loglik - s0.loglik) < 1e-8
    np.testing.assert_allclose(r.theta, r0.theta, atol=1e-5)
    assert r.theta[2] > 0.05
    assert r.optim.evaluations <= r0.optim.evaluations - 5
    assert s.theta[2] == 0.0 and s0.theta[2] == 0.0 and s.singular



def test_dense_scalar_class_runs_as_two_callback_free_programs(monkeypatch):
    """A crossed scalar model whose Schur complement is dense and large (≥ POTRI_MIN rows): on the CPU
    the fit evaluates it as two programs with LAPACK's potri on the host between them, neither holding
    a host callback (so JAX's persistent cache keeps both), and reaches the optimum of the one-program
    form to rounding."""
    from jaxmix.core import lmm_scalar
    from jaxmix.fitting import cache, lmm as fitting_lmm

    if jax.default_backend() != "cpu":
        pytest.skip("the host inverse is the CPU's")
    from test_lmm_scalar import crossed_data

    df = crossed_data(11, 2500, 350, 280, 0.6)
    f = "y ~ x + (1 | a) + (1 | b)"
    split = jaxmix.fit(f, df)
    programs = [exe for key, exe in cache._COMPILED.items()
                if key[0] in (fitting_lmm._stage_jit, fitting_lmm._finish_jit)]
    assert len(programs) == 2
    targets = [t for exe in programs for t in re.findall(r'custom_call_target="([^"]*)"', exe.as_text())]
    assert targets and not [t for t in targets if "callback" in t]  # LAPACK's calls, no Python
    monkeypatch.setattr(lmm_scalar, "dense_split", lambda layout: False)
    one = jaxmix.fit(f, df)
    one_program = [exe for key, exe in cache._COMPILED.items() if key[0] is fitting_lmm._vg_jit
                   and any("callback" in t for t in re.findall(r'custom_call_target="([^"]*)"', exe.as_text()))]
    assert one_program  # the check above can fail: the one-program form holds potri's callback
    assert split.optim.status == one.optim.status == 0
    assert split.loglik == pytest.approx(one.loglik, abs=1e-9)
    np.testing.assert_allclose(split.theta, one.theta, rtol=1e-6)
    np.testing.assert_allclose(split.beta, one.beta, rtol=1e-8)


def test_dense_scalar_class_in_a_sweep_equals_the_fits_one_by_one():
    """Several outcomes of a dense scalar class (two weight groups: one outcome with missing rows) fitted
    together — their same-level pair sums formed on the host per point and per group — equal the
    single fits."""
    from jaxmix.fitting import cache, lmm as fitting_lmm
    from test_lmm_scalar import crossed_data

    df = crossed_data(11, 2500, 350, 280, 0.6)
    rng = np.random.default_rng(0)
    df["y2"] = df["y"] + rng.normal(size=len(df))
    df["y3"] = 0.5 * df["y"] + rng.normal(size=len(df))
    df.loc[rng.choice(len(df), 300, replace=False), "y3"] = np.nan
    sweep = jaxmix.fit_many("~ x + (1 | a) + (1 | b)", df, ["y", "y2", "y3"])
    if jax.default_backend() == "cpu":  # the points went through the two programs, several at a time
        assert [k for k in cache._COMPILED if k[0] is fitting_lmm._stage_jit and dict(k[1])["width"] > 1]
    for y in ("y", "y2", "y3"):
        one = jaxmix.fit(f"{y} ~ x + (1 | a) + (1 | b)", df)
        assert sweep[y].loglik == pytest.approx(one.loglik, abs=1e-8)
        np.testing.assert_allclose(sweep[y].theta, one.theta, rtol=1e-6)
        np.testing.assert_allclose(sweep[y].beta, one.beta, rtol=1e-7)
