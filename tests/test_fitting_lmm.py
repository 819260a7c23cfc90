"""jaxmix.fitting.lmm: one compiled objective per model class; optimum whatever the scale."""
from __future__ import annotations

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
