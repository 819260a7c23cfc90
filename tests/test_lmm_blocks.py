"""The closed-form gradient of the LMM criterion with vector random terms against reverse mode.

:func:`jaxmix.core.lmm_blocks.value_and_grad` must give :func:`jaxmix.core.lmm.objective` and its
reverse-mode gradient through the factor, ML and REML, with and without prior weights, for every shape
of test_blocked (one vector term, a vector term after a scalar one, two crossed vector terms, three terms;
the scalar shapes too), a term of three columns, a diagonal Λ, a vector term nested in a scalar one,
inside and at a singular Λ; whole fits through it equal the fits through
reverse mode.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxmix.core import lmm_blocks
from jaxmix.core.lmm import objective
from jaxmix.spec.covariance import ThetaLayout, theta_layout
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula
from jaxmix.fitting.lmm import lmm_arrays

from conftest import assert_matches_differences, fast_jit
from test_blocked import SHAPES, make_data, random_theta

FORMULAS = dict(SHAPES, three="y ~ x + (1 + x + z | g)", diagonal="y ~ z + (1 + x | g)",
                nested_vector="y ~ x + (1 + x | b:a) + (1 | b)")


def case(kind: str, weighted: bool, seed: int = 0):
    design = build_design(parse_formula(FORMULAS[kind]), make_data(seed), weights="w" if weighted else None)
    layout, idx, xp = lmm_arrays(design, jnp.float64)
    if kind == "diagonal":  # θ: Λ's diagonal only
        q = layout.q[0]
        tl = ThetaLayout(q=(q,), rows=(tuple(range(q)),), cols=(tuple(range(q)),), starts=(0,))
    else:
        tl = theta_layout(layout.q)
    n, p = design.X.shape
    ldW = float(np.sum(np.log(design.weights)))
    return layout, idx, xp, tl, float(n), p, ldW


QUICK = {"vector", "two_vectors_crossed"}


@pytest.mark.parametrize("kind", [k if k in QUICK else pytest.param(k, marks=pytest.mark.slow) for k in FORMULAS])
def test_value_and_gradient_equal_reverse_mode(kind):
    rng = np.random.default_rng(3)
    for weighted in (False, True):
        layout, idx, xp, tl, n, p, ldW = case(kind, weighted)
        theta = jnp.asarray(random_theta(tl, rng))
        # a variance at 0 (the last diagonal entry of θ: a singular Λ)
        zero = int(np.flatnonzero(tl.is_diagonal())[-1])
        for reml in (False, True):
            closed = fast_jit(lambda th: lmm_blocks.value_and_grad(th, xp, idx, layout, tl, n, p, ldW, reml))
            rev = fast_jit(jax.value_and_grad(lambda th: objective(th, xp, idx, layout, tl, n, p, ldW, reml)))
            for th in (theta, theta.at[zero].set(0.0)):
                (v1, g1), (v0, g0) = closed(th), rev(th)
                assert float(v1) == pytest.approx(float(v0), rel=1e-12, abs=1e-10)
                np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-8, atol=1e-9)


@pytest.mark.slow  # the potri path itself stays quick in test_linalg
def test_gradient_by_the_host_inverse_equals_reverse_mode(monkeypatch):
    """Ā_DD from LAPACK's potri on the host (from POTRI_MIN rows on; forced here on a small crossed
    problem) gives the gradient of reverse mode through the factor."""
    from jaxmix.core import linalg

    if jax.default_backend() != "cpu":
        pytest.skip("the host inverse is the CPU's")
    monkeypatch.setattr(linalg, "POTRI_MIN", 1)
    layout, idx, xp, tl, n, p, ldW = case("vector_second", True)
    assert layout.m_R > 0 and linalg.host_inverse(layout.m_R + layout.t)
    theta = jnp.asarray(random_theta(tl, np.random.default_rng(11)))
    for reml in (False, True):
        v1, g1 = jax.jit(lambda th: lmm_blocks.value_and_grad(th, xp, idx, layout, tl, n, p, ldW, reml))(theta)
        v0, g0 = jax.jit(jax.value_and_grad(lambda th: objective(th, xp, idx, layout, tl, n, p, ldW, reml)))(theta)
        assert float(v1) == pytest.approx(float(v0), rel=1e-12)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-8, atol=1e-9)


@pytest.mark.slow
def test_gradient_equals_central_differences():
    layout, idx, xp, tl, n, p, ldW = case("two_vectors_crossed", True, seed=1)
    theta = jnp.asarray(random_theta(tl, np.random.default_rng(4)))
    closed = fast_jit(lambda th: lmm_blocks.value_and_grad(th, xp, idx, layout, tl, n, p, ldW, True))
    assert_matches_differences(lambda z: float(closed(z)[0]), closed(theta)[1], theta)


def test_applies_to_vector_terms():
    assert lmm_blocks.applies(case("vector", False)[0])
    assert lmm_blocks.applies(case("vector_second", False)[0])
    for kind in ("scalar", "crossed", "uncorrelated"):  # all scalar: lmm_scalar's
        assert not lmm_blocks.applies(case(kind, False)[0]), kind


@pytest.mark.parametrize("formula,reml", [
    ("y ~ x + (1 + x | g)", True),
    ("y ~ x + (1 + x | a) + (1 + z | b)", True),
    pytest.param("y ~ x + (1 + x | a) + (1 + z | b)", False, marks=pytest.mark.slow),
])
def test_fit_with_the_closed_form_equals_the_fit_with_reverse_mode(monkeypatch, formula, reml):
    """Fits by the program with the closed-form gradient (the default for vector terms) and by reverse
    mode through the factor: the same optimum and standard errors."""
    import jaxmix
    import jaxmix.fitting.lmm as fl

    d = make_data(2)
    method = "REML" if reml else "ML"
    closed = jaxmix.fit(formula, d, method=method, weights="w")
    traced = []

    def reverse(theta, xp, idx, layout, tl, n, p, ldW, reml):
        traced.append(1)
        return jax.value_and_grad(lambda th: objective(th, xp, idx, layout, tl, n, p, ldW, reml))(theta)

    monkeypatch.setattr(lmm_blocks, "value_and_grad", reverse)
    # a new function object: JAX's tracing cache would hand back the closed-form program
    monkeypatch.setattr(fl, "_vg_jit", jax.jit(functools.partial(fl._vg_points),
                                               static_argnames=("layout", "tl", "p", "reml", "width")))
    rev = jaxmix.fit(formula, d, method=method, weights="w")
    assert traced
    assert closed.converged and rev.converged
    assert closed.loglik == pytest.approx(rev.loglik, abs=1e-9)
    np.testing.assert_allclose(closed.theta, rev.theta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(closed.fixef, rev.fixef, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(closed.coef_table()["se"], rev.coef_table()["se"], rtol=1e-6)


@pytest.mark.slow
def test_crossed_random_slopes_match_lme4_style_data():
    """Subjects crossed with items, a random slope for each (the psycholinguists' maximal model): the
    closed form's fit converges and its criterion is the dense one's (the check can fail: another θ)."""
    import jaxmix

    rng = np.random.default_rng(0)
    ns, ni = 12, 10
    s, it = np.repeat(np.arange(ns), ni), np.tile(np.arange(ni), ns)
    c = rng.choice([-0.5, 0.5], size=s.size)
    y = (1 + 0.3 * c + rng.normal(size=ns)[s] + 0.4 * rng.normal(size=ns)[s] * c + 0.5 * rng.normal(size=ni)[it]
         + 0.3 * rng.normal(size=ni)[it] * c + rng.normal(size=s.size))
    d = pd.DataFrame({"y": y, "c": c, "subj": s.astype(str), "item": it.astype(str)})
    r = jaxmix.fit("y ~ c + (1 + c | subj) + (1 + c | item)", d)
    assert r.converged
    design = build_design(parse_formula("y ~ c + (1 + c | subj) + (1 + c | item)"), d)
    layout, idx, xp = lmm_arrays(design, jnp.float64)
    tl = theta_layout(layout.q)
    n, p = design.X.shape
    # the fit's θ is in lme4's term order; the structure's term 1 is the one with the most levels
    f_hat = float(objective(jnp.asarray(r.theta), xp, idx, layout, tl, float(n), p, 0.0, True))
    assert -0.5 * f_hat == pytest.approx(r.loglik, abs=1e-8)
    assert -0.5 * float(objective(jnp.asarray(r.theta) * 1.2, xp, idx, layout, tl, float(n), p, 0.0, True)) < r.loglik - 1e-6


@pytest.mark.slow
def test_sweep_of_a_vector_class_equals_the_single_fits():
    """Three outcomes of `(1 + x | a) + (1 | b)` fitted together (one program over a batch of points,
    vmapped; one outcome with missing rows, a second weight group) equal the fits one by one."""
    import jaxmix

    d = make_data(5)
    rng = np.random.default_rng(1)
    d["y2"] = d["y"] + rng.normal(size=len(d))
    d["y3"] = 0.5 * d["y"] + rng.normal(size=len(d))
    d.loc[:6, "y3"] = np.nan
    sw = jaxmix.fit_many("~ x + (1 + x | a) + (1 | b)", d, outcomes=["y", "y2", "y3"])
    for o in ("y", "y2", "y3"):
        one = jaxmix.fit(f"{o} ~ x + (1 + x | a) + (1 | b)", d.dropna(subset=[o]))
        assert sw.loglik[o] == pytest.approx(one.loglik, abs=1e-8), o
