"""The closed-form gradient of the scalar-term Laplace deviance against reverse mode and differences.

:func:`jaxmix.core.glmm.laplace_objective` is checked against brute-force integrals and lme4 in
test_glmm.py; here :func:`jaxmix.core.glmm_scalar.value_and_grad` must give its value and the gradient
of reverse mode through one Newton step of the modes (the fit's program for other models), on the padded
systems the fit uses — one term with non-constant z, a term nested in another (the diagonal Schur
complement), crossed terms with a slope, an observation-level term beside crossed ones — for the
binomial (with trials) and Poisson families, rows of zero and of double prior weight, inside and with a
variance at 0.  The mode iterations' single-loop form is checked for a start it must replace.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmix.core import glmm_scalar
from jaxmix.core.crossprod import Index
from jaxmix.core.glmm import GlmmData, conditional_modes, laplace_objective
from jaxmix.fitting.glmm import first_rows, glmm_structure, pad_rows
from jaxmix.spec.covariance import lambdas, theta_layout
from jaxmix.spec.families import get_family

from conftest import assert_matches_differences, fast_jit

KINDS = ["single", "nested", "crossed", "observation"]


def case(kind: str, family: str, seed: int = 0):
    """(family, data, index, layout, θ layout, params) of a padded GLMM system of 300 rows."""
    rng = np.random.default_rng(seed)
    n = 300
    if kind == "crossed":  # (1 | a) + (0 + x | b) + (1 | c)
        codes = [rng.integers(0, 40, n), rng.integers(0, 12, n), rng.integers(0, 7, n)]
        nlev = [40, 12, 7]
        Zs = [np.ones((n, 1)), rng.normal(size=(n, 1)), np.ones((n, 1))]
    elif kind == "nested":  # (1 | b/a)
        b = rng.integers(0, 10, n)
        codes, nlev = [b * 6 + rng.integers(0, 6, n), b], [60, 10]
        Zs = [np.ones((n, 1))] * 2
    elif kind == "observation":  # (1 | obs) + (1 | b) + (1 | c)
        codes, nlev = [np.arange(n), rng.integers(0, 20, n), rng.integers(0, 9, n)], [n, 20, 9]
        Zs = [np.ones((n, 1))] * 3
    else:  # (0 + z | g), z not constant
        codes, nlev = [rng.integers(0, 15, n)], [15]
        Zs = [rng.normal(size=(n, 1)) + 1.0]
    K = len(codes)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    theta, beta = np.array([0.8, 0.5, 0.3][:K]), np.array([-0.3, 0.4])
    eta = X @ beta + sum(theta[k] * Zs[k][:, 0] * rng.normal(size=nlev[k])[codes[k]] for k in range(K))
    fam, d, idx, layout = padded_system(family, codes, nlev, Zs, X, eta, rng)
    return fam, d, idx, layout, theta_layout(layout.q), jnp.asarray(np.r_[theta * 1.1, beta + 0.05])


def padded_system(family: str, codes, nlev, Zs, X, eta, rng):
    """(family, data, index, layout) of the padded GLMM system the fit builds for responses drawn at η:
    binomial with 1–5 trials or Poisson, seven rows of prior weight 0 and ten of 2."""
    n = X.shape[0]
    if family == "binomial":
        ntr = rng.integers(1, 6, n).astype(float)
        y = rng.binomial(ntr.astype(int), 1.0 / (1.0 + np.exp(-eta))).astype(float)
    else:
        ntr, y = np.ones(n), rng.poisson(np.exp(eta)).astype(float)
    pw = np.ones(n)
    pw[:7], pw[10:20] = 0.0, 2.0
    layout, idx_np, ZR, N = glmm_structure(codes, nlev, Zs, n)
    assert N > n  # padded rows (zero prior weight) are part of the check
    d = GlmmData(*(jnp.asarray(first_rows(np.asarray(a, float), N)) for a in (Zs[0], ZR, X, y, ntr)),
                 jnp.asarray(pad_rows(pw, N)), jnp.zeros(N))
    idx = Index(*(jnp.asarray(a) for a in idx_np))
    return get_family(family), d, idx, layout


def programs(fam, d, idx, layout, tl):
    closed = fast_jit(lambda p: glmm_scalar.value_and_grad(p, fam, d, idx, layout, tl)[:2])
    reverse = fast_jit(jax.value_and_grad(lambda p: laplace_objective(p, fam, d, idx, layout, tl, newton_steps=1)))
    return closed, reverse


#: each structure with one family in the quick set, with the other among the slow tests
PAIRS = [pytest.param(k, f, marks=[pytest.mark.slow] if (i + j) % 2 else [])
         for i, k in enumerate(KINDS) for j, f in enumerate(["binomial", "poisson"])]


@pytest.mark.parametrize("kind,family", PAIRS)
def test_value_and_gradient_equal_reverse_mode(kind, family):
    fam, d, idx, layout, tl, prm = case(kind, family)
    assert glmm_scalar.applies(fam, layout)
    assert layout.r_diagonal == (kind == "nested")
    closed, reverse = programs(fam, d, idx, layout, tl)
    # inside, and with the second variance (the only one for one term) at the boundary 0
    for p in (prm, prm.at[min(1, tl.size - 1)].set(0.0)):
        (v1, g1), (v0, g0) = closed(p), reverse(p)
        assert float(v1) == pytest.approx(float(v0), abs=1e-9)
        # reverse mode through one Newton step carries the modes' error squared (measured ≤ 4e-8 here)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=0, atol=1e-6 * float(jnp.max(jnp.abs(g0))))


@pytest.mark.parametrize("kind,family", [("crossed", "poisson"), ("single", "binomial"), ("nested", "binomial")])
def test_gradient_equals_central_differences(kind, family):
    fam, d, idx, layout, tl, prm = case(kind, family, seed=1)
    closed, _ = programs(fam, d, idx, layout, tl)
    assert_matches_differences(lambda z: float(closed(z)[0]), closed(prm)[1], prm)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_agq_value_and_gradient_equal_reverse_mode(family):
    """Adaptive Gauss–Hermite quadrature of one scalar term (non-constant z, zero and double prior
    weights, padded rows and levels): the closed form's value and gradient equal reverse mode through
    one Newton step, inside, at λ = 0 and at a large λ; and central differences of its value."""
    from jaxmix.core.glmm import gauss_hermite

    fam, d, idx, layout, tl, prm = case("single", family)
    assert glmm_scalar.agq_applies(fam, layout)
    xk, wk = (jnp.asarray(a) for a in gauss_hermite(7))
    closed = fast_jit(lambda p: glmm_scalar.agq_value_and_grad(p, fam, d, idx, layout, tl, xk, wk)[:2])
    reverse = fast_jit(jax.value_and_grad(lambda p: laplace_objective(p, fam, d, idx, layout, tl, xk, wk,
                                                                      newton_steps=1)))
    for p in (prm, prm.at[0].set(0.0), prm.at[0].set(2.0)):
        (v1, g1), (v0, g0) = closed(p), reverse(p)
        assert float(v1) == pytest.approx(float(v0), abs=1e-9)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=0, atol=1e-8 * float(jnp.max(jnp.abs(g0))))
    assert_matches_differences(lambda z: float(closed(z)[0]), closed(prm)[1], prm)
    # the Laplace deviance (one node) is not the 7-node one: the comparison can fail
    x1, w1 = (jnp.asarray(a) for a in gauss_hermite(1))
    one_node = fast_jit(lambda p: glmm_scalar.agq_value_and_grad(p, fam, d, idx, layout, tl, x1, w1)[0])
    assert abs(float(one_node(prm)) - float(closed(prm)[0])) > 1e-3


def test_applies_to_scalar_terms_of_canonical_families_without_dispersion():
    *_, layout, _, _ = case("crossed", "poisson")
    *_, layout_v, _, _ = case("single", "poisson")
    assert glmm_scalar.applies(get_family("binomial"), layout)
    assert glmm_scalar.applies(get_family("poisson"), layout)
    assert not glmm_scalar.applies(get_family("binomial"), layout, nagq=5)  # AGQ: its own closed form
    assert glmm_scalar.agq_applies(get_family("binomial"), layout_v)  # one scalar term
    assert not glmm_scalar.agq_applies(get_family("binomial"), layout)  # several terms: no AGQ
    assert not glmm_scalar.agq_applies(get_family("binomial", "probit"), layout_v)
    assert not glmm_scalar.applies(get_family("binomial", "probit"), layout)  # Fisher ≠ observed weights
    assert not glmm_scalar.applies(get_family("negative_binomial"), layout)  # a dispersion parameter
    from dataclasses import replace

    assert not glmm_scalar.applies(get_family("poisson"), replace(layout_v, q=(2,)))  # a vector term


def test_modes_replace_a_start_of_infinite_deviance_and_polish_to_stationarity():
    """From a start whose penalised deviance overflows the modes are those from u = 0; polished, the
    penalised deviance's gradient 2(u − Λ′Z′s) at them is at rounding level."""
    fam, d, idx, layout, tl, prm = case("crossed", "poisson")
    nt = tl.size
    modes = fast_jit(lambda p, u0, pol: conditional_modes(p[:nt], p[nt:], fam, d, idx, layout, tl, u_start=u0,
                                                          polish=pol), static_argnums=2)
    zero = (jnp.zeros((layout.l1, 1)), jnp.zeros(layout.m_R))
    huge = jax.tree_util.tree_map(lambda a: a + 1e4, zero)  # exp(η) overflows: pd = inf
    (u_a, k_a), (u_b, k_b) = modes(prm, huge, False), modes(prm, zero, False)
    assert int(k_a) == int(k_b) > 1
    for a, b in zip(u_a, u_b):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    u, _ = modes(prm, zero, True)
    lams = lambdas(prm[:nt], tl)
    from jaxmix.core.glmm import _eta_re

    eta = d.X @ prm[nt:] + d.offset + _eta_re(u[0], u[1], lams, d, idx, layout)
    s = d.pw * fam.score_info(d.y, d.ntr, eta)[0]
    # Λ′Z′s by the chain rule of η in u
    grad_u = jax.grad(lambda v: jnp.sum(s * _eta_re(v[0], v[1], lams, d, idx, layout)))(u)
    resid = max(float(jnp.max(jnp.abs(gu - uu))) for gu, uu in zip(grad_u, u))
    assert resid < 1e-10
    u_raw, _ = modes(prm, zero, False)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(u_raw, u)) > 0.0  # the polish step moved it


def test_fit_with_the_closed_form_equals_the_fit_with_reverse_mode(monkeypatch):
    """A crossed binomial GLMM fitted by the program with the closed-form gradient (the default for
    these models) and by the reverse-mode program: the same optimum, the same standard errors to the
    forward-difference Hessian's accuracy."""
    import pandas as pd

    import jaxmix

    rng = np.random.default_rng(5)
    n = 400
    df = pd.DataFrame({"a": rng.integers(0, 30, n).astype(str), "b": rng.integers(0, 8, n).astype(str),
                       "x": rng.normal(size=n)})
    ua, ub = rng.normal(size=30) * 0.7, rng.normal(size=8) * 0.5
    eta = -0.2 + 0.6 * df.x + ua[df.a.astype(int)] + ub[df.b.astype(int)]
    df["y"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
    formula = "y ~ x + (1 | a) + (1 | b)"
    closed = jaxmix.fit(formula, df, family="binomial")
    traced = use_reverse_mode(monkeypatch, glmm_scalar, "applies")
    reverse = jaxmix.fit(formula, df, family="binomial")
    assert traced  # the reverse-mode program was traced (not the closed-form one handed back)
    assert_same_fit(closed, reverse)


def test_agq_fit_with_the_closed_form_equals_the_fit_with_reverse_mode(monkeypatch):
    """A binomial AGQ fit (nAGQ = 9, trials) by the closed-form program and by the reverse-mode one:
    the same optimum and standard errors."""
    import pandas as pd

    import jaxmix

    rng = np.random.default_rng(8)
    n = 300
    g = rng.integers(0, 25, n)
    x = rng.normal(size=n)
    ntr = rng.integers(1, 8, n)
    eta = -0.4 + 0.5 * x + 0.8 * rng.normal(size=25)[g]
    df = pd.DataFrame({"g": g.astype(str), "x": x, "n": ntr.astype(float),
                       "k": rng.binomial(ntr, 1 / (1 + np.exp(-eta))).astype(float)})
    df["p"] = df.k / df.n
    formula = "p ~ x + (1 | g)"
    closed = jaxmix.fit(formula, df, family="binomial", weights="n", nagq=9)
    traced = use_reverse_mode(monkeypatch, glmm_scalar, "agq_applies")
    reverse = jaxmix.fit(formula, df, family="binomial", weights="n", nagq=9)
    assert traced
    assert_same_fit(closed, reverse)


def use_reverse_mode(monkeypatch, module, name: str) -> list:
    """Make the GLMM fits that follow use the reverse-mode program: ``module.name`` (an ``applies``)
    False, and the program a new function object — JAX's tracing cache is keyed by the function, so
    ``jax.jit`` of the same one would hand back the closed-form program traced before (and the fits
    would be one program's twice).  Returns a list that grows each time the reverse-mode objective is
    traced."""
    import functools

    import jaxmix.fitting.glmm as fg

    monkeypatch.setattr(module, name, lambda *a, **k: False)
    monkeypatch.setattr(fg, "_vg_jit", jax.jit(functools.partial(fg._vg_points),
                                               static_argnames=("fam", "layout", "tl", "width")))
    traced, real = [], fg.laplace_objective
    monkeypatch.setattr(fg, "laplace_objective", lambda *a, **k: (traced.append(1), real(*a, **k))[1])
    return traced


def assert_same_fit(closed, reverse):
    """Both converged to the same optimum, with the same standard errors to the difference Hessian's
    accuracy."""
    assert closed.converged and reverse.converged
    assert closed.loglik == pytest.approx(reverse.loglik, abs=1e-8)
    np.testing.assert_allclose(closed.fixef, reverse.fixef, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(closed.theta, reverse.theta, rtol=1e-5, atol=1e-7)
    se_c, se_r = closed.coef_table()["se"].to_numpy(), reverse.coef_table()["se"].to_numpy()
    np.testing.assert_allclose(se_c, se_r, rtol=1e-4)
