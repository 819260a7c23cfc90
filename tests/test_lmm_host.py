"""The numpy solution at θ̂ (:mod:`jaxmix.core.lmm_host`) against the compiled one (:func:`jaxmix.core.lmm.solve`).

On the padded systems a fit uses — one vector term, crossed and nested scalar terms, a vector term beside
a scalar one, three terms — at θ inside, with a variance at 0 and with negative off-diagonal entries: the
blocked factor and the solution (β̂, modes, r², L_X) equal to 1e-12; and a fit that takes the numpy path
gives the numbers of one that does not.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmix.core.crossprod import CrossProducts, Index
from jaxmix.core.lmm import solve
from jaxmix.core.lmm_host import solve_host
from jaxmix.core.structure import padded_system
from jaxmix.spec.covariance import lambdas_np, theta_layout
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula

from conftest import fast_jit
from test_blocked import make_data, random_theta

FORMULAS = {
    "vector": "y ~ x + (1 + z | g)",
    "crossed": "y ~ x + (1 | a) + (1 | b)",
    "nested": "y ~ x + (1 | b/a)",
    "vector_and_scalar": "y ~ x + (1 | a) + (1 + x | b)",
    "three": "y ~ z + x + (1 | a) + (1 | b) + (1 | g)",
}

_solve = fast_jit(solve, static_argnames=("layout", "tl", "p"))


@pytest.mark.parametrize("name", list(FORMULAS))
def test_host_solution_equals_the_compiled_one(name):
    d = make_data(3)
    design = build_design(parse_formula(FORMULAS[name]), d, weights="w")
    terms = design.terms
    lay, idx, xp = padded_system([t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms],
                                 np.column_stack([design.X, design.y]), design.weights)
    tl = theta_layout(lay.q)
    p = design.X.shape[1]
    rng = np.random.default_rng(7)
    th = random_theta(tl, rng)
    diag = np.flatnonzero(tl.is_diagonal())
    for theta in (th, np.where(np.arange(tl.size) == diag[-1], 0.0, th)):
        ref = _solve(jnp.asarray(theta), CrossProducts(*(jnp.asarray(a) for a in xp)),
                     Index(*(jnp.asarray(a) for a in idx)), layout=lay, tl=tl, p=p)
        got = solve_host(lambdas_np(theta, tl), xp, idx, lay, p)
        for field in ("beta", "u1", "uR", "r2", "RX"):
            np.testing.assert_allclose(getattr(got, field), np.asarray(getattr(ref, field)), rtol=1e-12, atol=1e-12,
                                       err_msg=field)
        for a, b, field in zip(got.factor, ref.factor, ref.factor._fields):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12, atol=1e-12, err_msg=field)


def test_fit_by_the_host_solution_equals_the_compiled_solution(monkeypatch):
    """``jaxmix.fit`` (one small model: the numpy solution) and the same fit forced through the
    compiled solution program: estimates, standard errors, modes and conditional variances."""
    import jaxmix
    import jaxmix.fitting.lmm as fl

    d = make_data(4)
    formula = "y ~ x + (1 | a) + (1 + x | b)"
    host = jaxmix.fit(formula, d, weights="w")
    monkeypatch.setattr(fl, "opts_small", lambda layout: False)  # the large-class path: the program
    monkeypatch.setattr(fl, "_vg_jit", jax.jit(fl._vg_points, static_argnames=("layout", "tl", "p", "reml", "width")))
    prog = jaxmix.fit(formula, d, weights="w")
    assert host.loglik == pytest.approx(prog.loglik, abs=1e-10)
    np.testing.assert_allclose(host.fixef, prog.fixef, rtol=1e-10)
    np.testing.assert_allclose(host.coef_table()["se"], prog.coef_table()["se"], rtol=1e-9)
    ra, rb = host.ranef, prog.ranef
    num = ra.select_dtypes("number").columns
    assert len(num) >= 2  # the modes and their conditional SDs
    np.testing.assert_allclose(ra[num].to_numpy(), rb[num].to_numpy(), rtol=1e-8, atol=1e-11)
