"""The host optimiser (:mod:`jaxmix.core.newton`) on real criteria: it must find the global optimum of the profiled criterion, not a stationary point.

The criterion is even in each scalar θ, so θ = 0 is always stationary; when it is a maximum the fit
must leave it (a plain gradient test would stop there).
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

import jax
import jax.numpy as jnp
import jaxmix
from jaxmix.spec.covariance import theta_layout
from jaxmix.core.lmm import objective
from jaxmix.fitting.lmm import lmm_arrays
from jaxmix.core.newton import minimize_bounded
from jaxmix.status import status_message


def minimize(fun, x0, lower):
    """The host optimiser on a JAX function (value and exact gradient compiled once)."""
    vg = jax.jit(jax.value_and_grad(fun))
    return minimize_bounded(lambda x: tuple(np.asarray(a, dtype=float) for a in vg(jnp.asarray(x))),
                            np.asarray(x0, dtype=float), np.asarray(lower, dtype=float))


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
    res = minimize(fun, np.zeros(1), np.zeros(1))
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


def _cosh_bowl(z):
    """A smooth convex function that Newton needs several steps on; minimum near (1, 2)."""
    return jnp.sum(jnp.cosh(z - jnp.asarray([1.0, 2.0]))) + 0.5 * (z[0] - z[1]) ** 2


@pytest.mark.parametrize("scale", [1e-8, 1e-4])
def test_minimum_does_not_depend_on_the_scale_of_a_coordinate(scale):
    """x₂ in units `scale` times another's: the same minimum, status 0 and number of evaluations.  An
    absolute gradient rule stops short at scale 1e-8 (its gradient in x₂ is 1e-8 times smaller)."""
    s = jnp.asarray([1.0, scale])
    ref = minimize(_cosh_bowl, np.ones(2), np.full(2, -np.inf))
    res = minimize(lambda x: _cosh_bowl(s * x), np.ones(2) / np.asarray(s), np.full(2, -np.inf))
    assert int(ref.status) == 0 and int(res.status) == 0
    assert float(res.fun) == pytest.approx(float(ref.fun), abs=1e-12)
    np.testing.assert_allclose(np.asarray(res.x * s), np.asarray(ref.x), rtol=1e-7)
    assert int(res.n_eval) == int(ref.n_eval)


def test_noisy_objective_is_not_reported_converged():
    """Values with noise far above the tolerance that the derivatives do not see (as the rounding
    noise of an LMM's cross-products at a residual SD ~1e-6 of the group SD) cannot confirm the
    minimum: status 5, not 0; without the noise the same fit converges."""
    noise = lambda x: 1e-4 * jnp.sin(1e9 * jnp.sum(x))  # noqa: E731
    clean = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    res = minimize(lambda x: clean(x) + jax.lax.stop_gradient(noise(x)), np.zeros(2), np.full(2, -np.inf))
    np.testing.assert_allclose(np.asarray(res.x), 1.0, atol=1e-8)  # the derivatives lead there
    assert int(res.status) == 5 and "disagree" in status_message(5)
    assert int(minimize(clean, np.zeros(2), np.full(2, -np.inf)).status) == 0
