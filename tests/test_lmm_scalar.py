"""The closed-form gradient of the scalar-term criterion against reverse mode through the blocked factor.

:func:`jaxmix.core.lmm.objective` is checked against a dense textbook likelihood in test_blocked.py; here
:func:`jaxmix.core.lmm_scalar.value_and_grad` must give its value and ``jax.grad`` of it on the padded
systems the fit uses — crossed, nested (the diagonal R block), three terms, one term, a dense block large
enough for LAPACK's potri — at θ inside, with a variance at 0 (a singular fit's boundary) and with
negative entries.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxmix.core import lmm_scalar
from jaxmix.core.crossprod import CrossProducts, Index
from jaxmix.core.linalg import POTRI_MIN, sequential_lapack, spd_inverse_host
from jaxmix.core.lmm import objective
from jaxmix.core.structure import padded_system
from jaxmix.spec.covariance import theta_layout
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula

from conftest import fast_jit
from test_blocked import make_data

FORMULAS = {
    "crossed": "y ~ x + (1 | a) + (1 | b)",
    "nested": "y ~ x + (1 | b/a)",
    "three": "y ~ z + x + (1 | a) + (1 | b) + (1 | g)",
    "one": "y ~ x + (1 | g)",
    "interaction_nested": "y ~ x + (1 | a:b) + (1 | a)",
}


def system(formula: str, data: pd.DataFrame, weights: str | None = "w"):
    design = build_design(parse_formula(formula), data, weights=weights)
    terms = design.terms
    T = np.column_stack([design.X, design.y])
    lay, idx, xp = padded_system([t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms], T,
                                 design.weights)
    ph = lmm_scalar.pairs_host(xp.BR, xp.CRR, idx) if lay.m_R else None
    xpj = CrossProducts(*(jnp.asarray(a) for a in xp))
    idxj = Index(*(jnp.asarray(a) for a in idx))
    n = jnp.asarray(float(design.nobs))
    ldW = jnp.asarray(float(np.sum(np.log(design.weights))))
    return lay, idxj, xpj, ph, n, design.X.shape[1], ldW


def thetas(size: int, rng) -> list[np.ndarray]:
    inside = rng.uniform(0.2, 2.0, size)
    return [inside, np.r_[inside[:-1], 0.0], np.r_[0.0, inside[1:]], -inside]


@fast_jit(static_argnums=(3, 4, 6, 8))
def _reverse(th, xp, idx, lay, tl, n, p, ldW, reml):
    return jax.value_and_grad(lambda z: objective(z, xp, idx, lay, tl, n, p, ldW, reml))(th)


_closed_form = fast_jit(lmm_scalar.value_and_grad, static_argnames=("layout", "p", "reml"))
_stage = fast_jit(lmm_scalar.dense_stage, static_argnames=("layout", "p", "reml"))
_finish = fast_jit(lmm_scalar.dense_finish, static_argnames=("layout", "p", "reml"))


def compare(lay, idx, xp, ph, n, p, ldW, th, reml):
    tl = theta_layout(lay.q)
    th = jnp.asarray(th)
    f0, g0 = _reverse(th, xp, idx, lay, tl, n, p, ldW, reml)
    pairs = None if ph is None else lmm_scalar.Pairs(*(jnp.asarray(a) for a in ph))
    with sequential_lapack():
        vg = _closed_form
        f1, g1 = vg(th, xp, idx, layout=lay, n=n, p=p, ldW=ldW, reml=reml, pairs=pairs)
    scale = 1.0 + abs(float(f0))
    assert abs(float(f1) - float(f0)) < 1e-12 * scale
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-9, atol=1e-9 * scale)
    if lay.m_R and not lay.r_diagonal:  # the fit's two programs with LAPACK's potri on the host between them
        with sequential_lapack():
            st = _stage(th, xp, idx, layout=lay, n=n, p=p, ldW=ldW, reml=reml, pairs=pairs)
            Ainv = spd_inverse_host(np.asarray(st.L))
            L = np.asarray(st.L)
            np.testing.assert_allclose(np.tril(Ainv), np.tril(np.linalg.inv(L @ L.T)), rtol=1e-8, atol=1e-12)
            f2, g2 = _finish(st, layout=lay, p=p, reml=reml, pairs=pairs, Ainv_lower=jnp.asarray(Ainv))
            # the fit's form: the same-level pairs' sums on the host, the pattern alone in the program
            S = lmm_scalar.slot_sums_host(lmm_scalar.slot_matrices(ph, lay.nlev[0]), np.zeros(1, np.int64),
                                          np.asarray(th[:1]), np.asarray(xp.A11)[None, :, 0, 0])[0]
            bare = pairs._replace(prod=jnp.zeros((0,)), blk=jnp.zeros(0, jnp.int32), seg=jnp.zeros(0, jnp.int32))
            st3 = _stage(th, xp, idx, layout=lay, n=n, p=p, ldW=ldW, reml=reml, pairs=bare, S=jnp.asarray(S))
            f3, g3 = _finish(st3, layout=lay, p=p, reml=reml, pairs=bare,
                             Ainv_lower=jnp.asarray(spd_inverse_host(np.asarray(st3.L))))
        assert abs(float(f2) - float(f0)) < 1e-12 * scale
        np.testing.assert_allclose(np.asarray(g2), np.asarray(g0), rtol=1e-9, atol=1e-9 * scale)
        assert abs(float(f3) - float(f0)) < 1e-12 * scale
        np.testing.assert_allclose(np.asarray(g3), np.asarray(g0), rtol=1e-9, atol=1e-9 * scale)


#: the README's test command runs crossed, nested and one-term models on one seed; the rest is marked slow
CASES = [pytest.param(shape, seed, marks=() if seed == 0 and shape in ("crossed", "nested", "one") else pytest.mark.slow)
         for shape in sorted(FORMULAS) for seed in (0, 1)]


@pytest.mark.parametrize("shape,seed", CASES)
def test_value_and_gradient_equal_reverse_mode_through_the_factor(shape, seed):
    lay, idx, xp, ph, n, p, ldW = system(FORMULAS[shape], make_data(seed))
    assert lmm_scalar.applies(lay)
    if shape in ("nested", "interaction_nested"):
        assert lay.r_diagonal  # the diagonal R block's own formulas are the ones under test
    rng = np.random.default_rng(seed)
    for reml in (True, False):
        for th in thetas(len(lay.q), rng):
            compare(lay, idx, xp, ph, n, p, ldW, th, reml)


def crossed_data(seed: int, n: int, la: int, lb: int, sd_b: float) -> pd.DataFrame:
    """y ~ x + (1 | a) + (1 | b) data with every level of the crossed factors a, b present: with
    la + lb ≥ POTRI_MIN, a dense Schur complement that takes LAPACK's inverse."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, la, n), rng.integers(0, lb, n)
    a[:la], b[:lb] = np.arange(la), np.arange(lb)
    x = rng.normal(size=n)
    y = 0.3 * x + rng.normal(size=la)[a] + sd_b * rng.normal(size=lb)[b] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str)})


def test_a_dense_block_above_potri_min_takes_lapacks_inverse():
    """m_R ≥ POTRI_MIN: Ā from potri plus the tail's rank-t term (the InstEval-sized path)."""
    df = crossed_data(5, 3000, 400, 300, 0.5)
    lay, idx, xp, ph, nn, p, ldW = system("y ~ x + (1 | a) + (1 | b)", df, weights=None)
    assert lay.m_R + lay.t >= POTRI_MIN and not lay.r_diagonal
    assert lmm_scalar.dense_split(lay) == (jax.default_backend() == "cpu")
    for reml in (True, False):
        for th in ([0.8, 0.4], [0.0, 0.7], [0.9, 0.0]):
            compare(lay, idx, xp, ph, nn, p, ldW, th, reml)


def test_host_slot_sums_equal_the_programs_for_each_weight_group():
    """:func:`slot_sums_host` (scipy's sparse product, one matrix per weight group, several points per
    call) equals :func:`slot_sums` in the program, point by point, with each point's own θ₁ and group."""
    rng = np.random.default_rng(3)
    P, U, L1 = 500, 60, 40
    seg = np.sort(rng.integers(0, U - 5, P)).astype(np.int32)  # the last slots without pairs
    blk = rng.integers(0, L1, P).astype(np.int32)
    prod = rng.normal(size=(2, P))
    ph = lmm_scalar.Pairs(prod, np.zeros((2, U)), blk, seg, np.zeros(U, np.int32), np.zeros(U, np.int32),
                          np.ones(U))
    a1 = rng.uniform(0.0, 5.0, (2, L1))
    groups = np.array([1, 0, 1, 1])
    s = np.array([0.3, 1.7, 0.0, 2.2])
    host = lmm_scalar.slot_sums_host(lmm_scalar.slot_matrices(ph, L1), groups, s, a1)
    for i, (g, si) in enumerate(zip(groups, s)):
        W = lmm_scalar.level_weights(si, a1[g])
        d = si * si * a1[g] + 1.0
        np.testing.assert_allclose(W, np.stack([si * si / d, 2 * si / d**2], axis=1), rtol=1e-15)
        want = lmm_scalar.slot_sums(jnp.asarray(W), lmm_scalar.Pairs(*(jnp.asarray(x) for x in ph))._replace(
            prod=jnp.asarray(prod[g])))
        np.testing.assert_allclose(host[i], np.asarray(want), rtol=1e-13, atol=1e-13)
    assert np.all(host[:, U - 5 :] == 0.0) and np.any(host[0] != host[1])


def test_gradient_detects_a_wrong_criterion():
    """The comparison can fail: the ML criterion's gradient is not the REML one's."""
    lay, idx, xp, ph, n, p, ldW = system(FORMULAS["crossed"], make_data(0))
    th = jnp.asarray([0.7, 1.3])
    tl = theta_layout(lay.q)
    _, g_reml = _reverse(th, xp, idx, lay, tl, n, p, ldW, True)
    with sequential_lapack():
        _, g_ml = _closed_form(
            th, xp, idx, layout=lay, n=n, p=p, ldW=ldW, reml=False,
            pairs=lmm_scalar.Pairs(*(jnp.asarray(a) for a in ph)))
    assert float(jnp.max(jnp.abs(g_ml - g_reml))) > 1e-3


def test_applies_to_scalar_terms_only():
    lay, *_ = system("y ~ x + (1 + x | g)", make_data(0))
    assert not lmm_scalar.applies(lay)
