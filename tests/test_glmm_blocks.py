"""The closed-form gradient of the Laplace deviance with vector random terms against reverse mode.

:func:`jaxmix.core.glmm_blocks.value_and_grad` must give the value of
:func:`jaxmix.core.glmm.laplace_objective` and the gradient of reverse mode through one Newton step of
the modes (the fit's program for the other models), on the padded systems the fit uses: a random slope
alone, a random slope nested in a scalar term (the diagonal Schur complement), a scalar term crossed with
a random slope, two crossed slope terms and a '||' (diagonal) slope term, for the binomial (with trials)
and Poisson families, rows of zero and double prior weight, inside and with a variance or a correlation
at 0.  On all-scalar models it equals :func:`jaxmix.core.glmm_scalar.value_and_grad`; whole fits through
it equal the reverse-mode fits.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmix.core import glmm_blocks, glmm_scalar
from jaxmix.core.glmm import laplace_objective
from jaxmix.fitting.glmm import glmm_structure
from jaxmix.spec.covariance import ThetaLayout, theta_layout
from jaxmix.spec.families import get_family

from conftest import assert_matches_differences, fast_jit
from test_glmm_scalar import assert_same_fit, padded_system, use_reverse_mode

KINDS = ["slope", "nested", "crossed", "two_slopes", "diagonal"]


def case(kind: str, family: str, seed: int = 0):
    """(family, data, index, layout, θ layout, params) of a padded GLMM system of 300 rows."""
    rng = np.random.default_rng(seed)
    n = 300
    x = rng.normal(size=n)
    one = np.ones((n, 1))
    slope = np.column_stack([np.ones(n), x])
    if kind == "nested":  # (1 + x | b/a): a's slope term nested in b's intercept
        b = rng.integers(0, 10, n)
        codes, nlev, Zs = [b * 5 + rng.integers(0, 5, n), b], [50, 10], [slope, one]
    elif kind == "crossed":  # (1 | a) + (1 + x | b)
        codes, nlev, Zs = [rng.integers(0, 40, n), rng.integers(0, 12, n)], [40, 12], [one, slope]
    elif kind == "two_slopes":  # (1 + x | a) + (1 + x | b)
        codes, nlev, Zs = [rng.integers(0, 30, n), rng.integers(0, 9, n)], [30, 9], [slope, slope]
    else:  # (1 + x | g) or (1 + x || g)
        codes, nlev, Zs = [rng.integers(0, 15, n)], [15], [slope]
    K = len(codes)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    beta = np.array([-0.3, 0.4])
    eta = X @ beta + sum(np.sum(Zs[k] * 0.5 * rng.normal(size=(nlev[k], Zs[k].shape[1]))[codes[k]], axis=1)
                         for k in range(K))
    fam, d, idx, layout = padded_system(family, codes, nlev, Zs, X, eta, rng)
    if kind == "diagonal":  # θ: the two diagonal entries of Λ only
        tl = ThetaLayout(q=(2,), rows=((0, 1),), cols=((0, 1),), starts=(0,))
    else:
        tl = theta_layout(layout.q)
    theta = np.resize([0.7, -0.25, 0.4, 0.5, 0.1, 0.3], tl.size)
    return fam, d, idx, layout, tl, jnp.asarray(np.r_[theta, beta + 0.05])


def programs(fam, d, idx, layout, tl):
    closed = fast_jit(lambda p: glmm_blocks.value_and_grad(p, fam, d, idx, layout, tl)[:2])
    reverse = fast_jit(jax.value_and_grad(lambda p: laplace_objective(p, fam, d, idx, layout, tl, newton_steps=1)))
    return closed, reverse


#: two structures with one family each in the quick set, the rest among the slow tests
QUICK = {("slope", "binomial"), ("two_slopes", "poisson")}
PAIRS = [pytest.param(k, f, marks=[] if (k, f) in QUICK else [pytest.mark.slow])
         for k in KINDS for f in ["binomial", "poisson"]]


@pytest.mark.parametrize("kind,family", PAIRS)
def test_value_and_gradient_equal_reverse_mode(kind, family):
    fam, d, idx, layout, tl, prm = case(kind, family)
    assert glmm_blocks.applies(fam, layout) and not glmm_scalar.applies(fam, layout)
    assert layout.r_diagonal == (kind == "nested")
    closed, reverse = programs(fam, d, idx, layout, tl)
    # inside; θ's second entry at 0 (a correlation, or a variance); a slope's variance at 0
    zero_slope = [s + i for rows, cols, s in zip(tl.rows, tl.cols, tl.starts)
                  for i, (r, c) in enumerate(zip(rows, cols)) if r == c == 1][0]
    for p in (prm, prm.at[1].set(0.0), prm.at[zero_slope].set(0.0)):
        (v1, g1), (v0, g0) = closed(p), reverse(p)
        assert float(v1) == pytest.approx(float(v0), abs=1e-9)
        # reverse mode through one Newton step carries the modes' error squared
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=0, atol=1e-6 * float(jnp.max(jnp.abs(g0))))


@pytest.mark.slow
def test_gradient_equals_central_differences():
    fam, d, idx, layout, tl, prm = case("two_slopes", "poisson", seed=1)
    closed, _ = programs(fam, d, idx, layout, tl)
    assert_matches_differences(lambda z: float(closed(z)[0]), closed(prm)[1], prm)


@pytest.mark.slow
def test_equals_the_scalar_form_on_scalar_terms():
    """On an all-scalar model (which the fit gives to glmm_scalar) the blocked form is the same function."""
    from test_glmm_scalar import case as scalar_case

    fam, d, idx, layout, tl, prm = scalar_case("crossed", "binomial")
    blocks = fast_jit(lambda p: glmm_blocks.value_and_grad(p, fam, d, idx, layout, tl)[:2])
    scalar = fast_jit(lambda p: glmm_scalar.value_and_grad(p, fam, d, idx, layout, tl)[:2])
    (v1, g1), (v0, g0) = blocks(prm), scalar(prm)
    assert float(v1) == pytest.approx(float(v0), abs=1e-10)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-10, atol=1e-10)


def test_applies_to_vector_terms_of_canonical_families_without_dispersion():
    fam_b, fam_p = get_family("binomial"), get_family("poisson")
    vec = case("crossed", "binomial")[3]
    sca = glmm_structure([np.arange(10) % 3], [3], [np.ones((10, 1))], 10)[0]
    assert glmm_blocks.applies(fam_b, vec) and glmm_blocks.applies(fam_p, vec)
    assert not glmm_blocks.applies(fam_b, sca)  # all scalar: glmm_scalar's
    assert not glmm_blocks.applies(fam_b, vec, nagq=5)
    assert not glmm_blocks.applies(get_family("binomial", "probit"), vec)
    assert not glmm_blocks.applies(get_family("gaussian"), vec)


@pytest.mark.parametrize("formula,family", [
    ("y ~ x + (1 + x | a)", "binomial"),
    pytest.param("y ~ x + (1 | a) + (1 + x | b)", "poisson", marks=pytest.mark.slow),
])
def test_fit_with_the_closed_form_equals_the_fit_with_reverse_mode(monkeypatch, formula, family):
    """A random-slope GLMM fitted by the program with the closed-form gradient (the default for these
    models) and by the reverse-mode program: the same optimum, the same standard errors to the
    forward-difference Hessian's accuracy."""
    import pandas as pd

    import jaxmix

    rng = np.random.default_rng(6)
    n = 400
    df = pd.DataFrame({"a": rng.integers(0, 25, n).astype(str), "b": rng.integers(0, 8, n).astype(str),
                       "x": rng.normal(size=n)})
    ia, ib = df.a.astype(int).to_numpy(), df.b.astype(int).to_numpy()
    eta = (-0.2 + 0.6 * df.x + rng.normal(size=25)[ia] * 0.7 + rng.normal(size=25)[ia] * 0.4 * df.x
           + rng.normal(size=8)[ib] * 0.5 * df.x)
    df["y"] = ((rng.uniform(size=n) < 1 / (1 + np.exp(-eta))) if family == "binomial"
               else rng.poisson(np.exp(eta))).astype(float)
    closed = jaxmix.fit(formula, df, family=family)
    traced = use_reverse_mode(monkeypatch, glmm_blocks, "applies")
    reverse = jaxmix.fit(formula, df, family=family)
    assert traced  # the reverse-mode program was traced (not the closed-form one handed back)
    assert_same_fit(closed, reverse)


def test_batched_points_equal_single_points():
    """Under vmap (a sweep's batch of points off the CPU) each point's value and gradient are its own."""
    fam, d, idx, layout, tl, prm = case("crossed", "poisson", seed=2)
    one = lambda p: glmm_blocks.value_and_grad(p, fam, d, idx, layout, tl)[:2]  # noqa: E731
    P = jnp.stack([prm, prm * 0.9, prm.at[1].set(0.0)])
    vb, gb = fast_jit(jax.vmap(one))(P)
    single = fast_jit(one)
    for i in range(P.shape[0]):
        v, g = single(P[i])
        assert float(vb[i]) == pytest.approx(float(v), rel=1e-12)
        np.testing.assert_allclose(np.asarray(gb[i]), np.asarray(g), rtol=1e-9, atol=1e-10)
    assert abs(float(vb[0]) - float(vb[1])) > 1e-3  # the points differ
