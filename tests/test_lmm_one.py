"""The closed-form gradient of the one-vector-term LMM criterion against reverse mode through the factor.

:func:`jaxmix.core.lmm_one.value_and_grad` must give :func:`jaxmix.core.lmm.objective` and its reverse-mode
gradient, ML and REML, with and without prior weights, for a random slope (q = 2), a term of three
columns, a diagonal Λ, inside and at a singular Λ (a zero diagonal entry); whole fits through it equal the
fits through reverse mode.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmix.core import lmm_one
from jaxmix.core.lmm import objective
from jaxmix.spec.covariance import ThetaLayout, theta_layout
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula
from jaxmix.fitting.lmm import lmm_arrays

from conftest import assert_matches_differences, fast_jit
from test_blocked import make_data, random_theta

FORMULAS = {"slope": "y ~ x + (1 + x | g)", "three": "y ~ x + (1 + x + z | g)", "diagonal": "y ~ z + (1 + x | g)"}


def case(kind: str, weighted: bool, seed: int = 0):
    design = build_design(parse_formula(FORMULAS[kind]), make_data(seed), weights="w" if weighted else None)
    layout, idx, xp = lmm_arrays(design, jnp.float64)
    q = layout.q[0]
    if kind == "diagonal":  # θ: Λ's diagonal only
        tl = ThetaLayout(q=(q,), rows=(tuple(range(q)),), cols=(tuple(range(q)),), starts=(0,))
    else:
        tl = theta_layout(layout.q)
    n, p = design.X.shape
    ldW = float(np.sum(np.log(design.weights)))
    return layout, idx, xp, tl, float(n), p, ldW


@pytest.mark.parametrize("kind,weighted", [
    ("slope", False), ("three", True), ("diagonal", True),
    pytest.param("slope", True, marks=pytest.mark.slow), pytest.param("three", False, marks=pytest.mark.slow),
    pytest.param("diagonal", False, marks=pytest.mark.slow)])
def test_value_and_gradient_equal_reverse_mode(kind, weighted):
    layout, idx, xp, tl, n, p, ldW = case(kind, weighted)
    assert lmm_one.applies(layout)
    rng = np.random.default_rng(3)
    theta = jnp.asarray(random_theta(tl, rng))
    first_diag = int(np.flatnonzero(tl.is_diagonal())[1])  # the slope's variance
    for reml in (False, True):
        closed = fast_jit(lambda th: lmm_one.value_and_grad(th, xp, layout, tl, n, p, ldW, reml))
        rev = fast_jit(jax.value_and_grad(lambda th: objective(th, xp, idx, layout, tl, n, p, ldW, reml)))
        for th in (theta, theta.at[first_diag].set(0.0)):
            (v1, g1), (v0, g0) = closed(th), rev(th)
            assert float(v1) == pytest.approx(float(v0), rel=1e-12, abs=1e-10)
            np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-8, atol=1e-9)


@pytest.mark.slow
def test_gradient_equals_central_differences():
    layout, idx, xp, tl, n, p, ldW = case("three", True, seed=1)
    theta = jnp.asarray(random_theta(tl, np.random.default_rng(4)))
    closed = fast_jit(lambda th: lmm_one.value_and_grad(th, xp, layout, tl, n, p, ldW, True))
    assert_matches_differences(lambda z: float(closed(z)[0]), closed(theta)[1], theta)


def test_applies_to_one_vector_term_only():
    assert lmm_one.applies(case("slope", False)[0])
    for f in ("y ~ x + (1 | g)", "y ~ x + (1 | a) + (1 + x | b)", "y ~ x + (x || g)"):
        design = build_design(parse_formula(f), make_data(0))
        assert not lmm_one.applies(lmm_arrays(design, jnp.float64)[0]), f


@pytest.mark.parametrize("reml", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_fit_with_the_closed_form_equals_the_fit_with_reverse_mode(monkeypatch, reml):
    """sleepstudy-like data fitted by the program with the closed-form gradient (the default for one
    vector term) and by reverse mode: the same optimum and standard errors."""
    import jaxmix
    import jaxmix.fitting.lmm as fl

    d = make_data(2)
    formula = "y ~ x + (1 + x | g)"
    closed = jaxmix.fit(formula, d, method="REML" if reml else "ML", weights="w")
    monkeypatch.setattr(lmm_one, "applies", lambda layout: False)
    # a new function object: JAX's tracing cache would hand back the closed-form program
    monkeypatch.setattr(fl, "_vg_jit", jax.jit(functools.partial(fl._vg_points),
                                               static_argnames=("layout", "tl", "p", "reml", "width")))
    traced, real = [], fl.objective
    monkeypatch.setattr(fl, "objective", lambda *a, **k: (traced.append(1), real(*a, **k))[1])
    reverse = jaxmix.fit(formula, d, method="REML" if reml else "ML", weights="w")
    assert traced
    assert closed.converged and reverse.converged
    assert closed.loglik == pytest.approx(reverse.loglik, abs=1e-9)
    np.testing.assert_allclose(closed.theta, reverse.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(closed.fixef, reverse.fixef, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(closed.coef_table()["se"], reverse.coef_table()["se"], rtol=1e-6)
