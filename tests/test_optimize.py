"""The optimiser: it must find the global optimum of the profiled criterion, not a stationary point.

The criterion is even in each scalar θ, so θ = 0 is always stationary; when it is a maximum the fit
must leave it (a plain gradient test would stop there).
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

import jax.numpy as jnp
import jaxmix
from jaxmix.covariance import theta_layout
from jaxmix.lmm import objective
from jaxmix.model import lmm_arrays
from jaxmix.optimize import minimize


def _datasets(n_rep=12, seed=7):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(20), 10)
    for _ in range(n_rep):
        x = rng.normal(size=g.size)
        y = 1.0 + 0.5 * x + rng.normal(0, 1.0, 20)[g] + rng.normal(0, 2.0, g.size)
        yield pd.DataFrame({"y": y, "x": x, "g": g})


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_random_intercept_fits_reach_the_global_minimum(method):
    for d in _datasets():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jaxmix.JaxmixWarning)
            r = jaxmix.fit("y ~ x + (1 | g)", d, method=method)
        layout, idx, xp = lmm_arrays(r.design, jnp.float64)
        tl = theta_layout(layout.q)
        crit = lambda t: float(objective(jnp.asarray([t]), xp, idx, layout, tl, r.nobs, 2, 0.0, method == "REML"))  # noqa: E731
        grid = np.linspace(0.0, 3.0, 301)
        best = grid[np.argmin([crit(t) for t in grid])]
        opt = minimize_scalar(crit, bounds=(max(best - 0.02, 0.0), best + 0.02), method="bounded",
                              options={"xatol": 1e-10})
        assert r.converged and r.optim.hess_min_eig > 0
        assert r.objective <= min(opt.fun, crit(0.0)) + 1e-7
        assert r.theta[0] == pytest.approx(opt.x if opt.fun < crit(0.0) else 0.0, abs=1e-4)


def test_newton_leaves_a_maximum_with_zero_gradient():
    """f(x) = (x² − 1)² has a maximum at 0 with zero gradient; the minimiser must reach ±1."""
    fun = lambda x: jnp.sum((x**2 - 1.0) ** 2)  # noqa: E731
    res = minimize(fun, jnp.zeros(1), jnp.ones(1), jnp.abs, lbfgs=False)
    assert float(res.x[0]) == pytest.approx(1.0, abs=1e-8)
    assert int(res.status) == 0 and float(res.hess_min_eig) > 0


def test_boundary_fit_reported_exactly_zero():
    """When the minimum is at θ = 0 the fit reports exactly 0 (lme4's boundary convention)."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(10), 6)
    d = pd.DataFrame({"y": rng.normal(size=60), "g": g})  # no group effect; this draw has θ̂ = 0
    r = jaxmix.fit("y ~ 1 + (1 | g)", d)
    layout, idx, xp = lmm_arrays(r.design, jnp.float64)
    tl = theta_layout(layout.q)
    at0 = float(objective(jnp.zeros(1), xp, idx, layout, tl, 60, 1, 0.0, True))
    small = float(objective(jnp.full(1, 1e-3), xp, idx, layout, tl, 60, 1, 0.0, True))
    assert small > at0  # this data set's criterion increases away from 0: a boundary fit
    assert r.theta[0] == 0.0 and r.singular and r.varcorr["vcov"].iloc[0] == 0.0
    assert r.objective == pytest.approx(at0, abs=1e-10)
