"""jaxmix.core.structure: the padded blocks give the same criterion as the unpadded ones."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from conftest import fast_jit, load_csv
from jaxmix.core.structure import bucket, padded_system
from jaxmix.spec.covariance import theta_layout
from jaxmix.core.crossprod import CrossProducts, Index
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula
from jaxmix.core.lmm import objective
from jaxmix.fitting.lmm import lmm_arrays


def _crossed3(seed=0):
    rng = np.random.default_rng(seed)
    n = 400
    d = pd.DataFrame({"a": rng.integers(0, 37, n), "b": rng.integers(0, 11, n), "c": rng.integers(0, 5, n),
                      "x": rng.normal(size=n)})
    d["y"] = d.x + rng.normal(size=37)[d.a] + rng.normal(size=11)[d.b] + rng.normal(size=n)
    return d


CASES = [
    ("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv")),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", load_csv("Penicillin.csv")),
    ("score ~ Machine + (1 | Worker/Machine)", load_csv("Machines.csv")),
    ("y ~ x + (1 | a) + (x | b) + (1 | c)", _crossed3()),
    ("y ~ x + (x || a) + (1 | b:c)", _crossed3(1)),
]


@pytest.mark.parametrize("formula,data", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("reml", [True, False])
def test_padded_criterion_equals_unpadded(formula, data, reml):
    design = build_design(parse_formula(formula), data)
    layout, idx, xp = lmm_arrays(design, jnp.float64)
    T = np.column_stack([design.X, design.y])
    lay2, idx2, xp2 = padded_system([t.codes for t in design.terms], [t.nlevels for t in design.terms],
                                    [t.Z for t in design.terms], T, design.weights)
    assert lay2.nlev[0] >= layout.nlev[0] and lay2.m_R >= layout.m_R and lay2.n_entries >= layout.n_entries
    tl = theta_layout(layout.q)
    p, n = design.X.shape[1], design.nobs
    xp2 = CrossProducts(*(jnp.asarray(a) for a in xp2))
    idx2 = Index(*(jnp.asarray(a) for a in idx2))
    crit = fast_jit(lambda th: objective(th, xp, idx, layout, tl, n, p, 0.0, reml))
    crit_padded = fast_jit(lambda th: objective(th, xp2, idx2, lay2, tl, n, p, 0.0, reml))
    rng = np.random.default_rng(3)
    for _ in range(3):
        th = jnp.asarray(tl.init() + rng.normal(0, 0.4, tl.size))
        a, b = float(crit(th)), float(crit_padded(th))
        assert np.isfinite(a) and abs(a - b) < 1e-9 * abs(a)


def test_buckets_round_up_geometrically():
    assert bucket(5, 64) == 64 and bucket(64, 64) == 64
    assert bucket(65, 64) == 96 and bucket(97, 64) == 128 and bucket(129, 64) == 192
    assert bucket(1000, 16, (1.0, 1.25, 1.5, 1.75)) == 1024
    assert bucket(1100, 16, (1.0, 1.25, 1.5, 1.75)) == 1280
    for x in [1, 7, 63, 65, 100, 1000, 12345]:
        b = bucket(x, 1)
        assert x <= b <= 1.5 * x + 1


def test_large_terms_pad_their_dense_rows_in_eighths():
    """A second term of 1,127 levels (InstEval's lecturers) pads to 1,152 rows of the dense Schur
    complement, not FINE's 1,280; one of 100 levels keeps FINE's 112; the first term is not dense."""
    rng = np.random.default_rng(0)
    n = 6000
    codes = [np.arange(n) % 3000, np.arange(n) % 1127, np.arange(n) % 100]
    Zs = [np.ones((n, 1))] * 3
    lay, _, _ = padded_system(codes, [3000, 1127, 100], Zs, rng.normal(size=(n, 2)), np.ones(n))
    assert lay.nlev[1:] == (1152, 112)
    assert lay.m_R == 1152 + 112


def test_subsets_of_one_model_share_a_class():
    """Other rows and level counts within a bucket give the same padded sizes (one compiled program)."""
    d = load_csv("sleepstudy.csv")
    sizes = set()
    for keep in (18, 14, 9):
        sub = d[d.Subject.isin(sorted(d.Subject.unique())[:keep])]
        design = build_design(parse_formula("Reaction ~ Days + (Days | Subject)"), sub)
        lay, idx, xp = padded_system([t.codes for t in design.terms], [t.nlevels for t in design.terms],
                                     [t.Z for t in design.terms], np.column_stack([design.X, design.y]),
                                     design.weights)
        sizes.add((lay, tuple(a.shape for a in idx), tuple(a.shape for a in xp)))
    assert len(sizes) == 1


@pytest.mark.parametrize("qR", [[1], [1, 1], [2]], ids=["one scalar R term", "two scalar R terms", "R slope"])
def test_cross_products_equal_dense_blocks(qR):
    """The blocks of [Z₁ Z_R T]′W[Z₁ Z_R T] by segment sums equal the dense products (numpy, small n),
    on the one-scalar-R-column path and the general one."""
    from jaxmix.core.crossprod import RowData, build_structure, cross_products

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(3)
    n, l1 = 300, 23
    nl = [l1] + [7 + 2 * k for k in range(len(qR))]
    qs = [1] + qR
    codes = [rng.integers(0, m, n) for m in nl]
    for c, m in zip(codes, nl):
        c[:m] = np.arange(m)  # every level has rows
    Zs = [np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(q - 1)]) for q in qs]
    T = rng.normal(size=(n, 2))
    w = rng.uniform(0.1, 2.0, n)
    layout, idx = build_structure(codes, nl, qs, 2)
    ZR = np.column_stack(Zs[1:])
    xp = cross_products(RowData(jnp.asarray(Zs[0]), jnp.asarray(ZR), jnp.asarray(T)), jnp.asarray(w),
                        Index(*(jnp.asarray(a) for a in idx)), layout)
    dense = []  # dense Z per term, columns level-major (level, column)
    for c, m, Z in zip(codes, nl, Zs):
        D = np.zeros((n, m * Z.shape[1]))
        for j in range(Z.shape[1]):
            D[np.arange(n), c * Z.shape[1] + j] = Z[:, j]
        dense.append(D)
    Z1d, ZRd = dense[0], np.column_stack(dense[1:])
    W = w[:, None]
    np.testing.assert_allclose(np.asarray(xp.CTT), T.T @ (W * T), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(xp.A11)[:, 0, 0], np.diag(Z1d.T @ (W * Z1d)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(xp.BT)[:, :, 0], Z1d.T @ (W * T), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(xp.CRR), ZRd.T @ (W * ZRd), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(xp.CRT), ZRd.T @ (W * T), rtol=1e-12, atol=1e-12)
    # B_R: one entry per observed (R row, level of term 1) pair
    ZRZ1 = ZRd.T @ (W * Z1d)
    e_row, e_blk = np.asarray(idx.e_row), np.asarray(idx.e_blk)
    np.testing.assert_allclose(np.asarray(xp.BR)[:, 0], ZRZ1[e_row, e_blk], rtol=1e-12, atol=1e-12)


def test_a_term_nested_in_the_next_gets_a_diagonal_schur_block_and_the_same_factor():
    """Machines' ``(1 | Worker/Machine)``: Machine-within-Worker (term 1, 18 levels) is nested in
    Worker (6), so every same-level pair is on the diagonal of M_RR and the factor is taken by
    :func:`jaxmix.core.linalg.chol_diag_head` (``Layout.r_diagonal``); Penicillin's crossed plate
    and sample are not.  The factor and the GLMM-style value and gradient through it equal the dense
    Cholesky's at random θ."""
    import dataclasses

    from jaxmix.core import lmm_scalar
    from jaxmix.core.blocked import factorize
    from jaxmix.spec.covariance import lambdas

    def system(formula, data):
        design = build_design(parse_formula(formula), data)
        T = np.column_stack([design.X, design.y])
        lay, idx, xp = padded_system([t.codes for t in design.terms], [t.nlevels for t in design.terms],
                                     [t.Z for t in design.terms], T, design.weights)
        return lay, Index(*(jnp.asarray(a) for a in idx)), CrossProducts(*(jnp.asarray(a) for a in xp))

    design = build_design(parse_formula("score ~ Machine + (1 | Worker/Machine)"), load_csv("Machines.csv"))
    lay, idx, xp = system("score ~ Machine + (1 | Worker/Machine)", load_csv("Machines.csv"))
    assert lay.r_diagonal and lay.m_R >= 6
    assert not system("diameter ~ 1 + (1 | plate) + (1 | sample)", load_csv("Penicillin.csv"))[0].r_diagonal
    assert not system("y ~ x + (1 | a) + (x | b) + (1 | c)", _crossed3())[0].r_diagonal
    dense = dataclasses.replace(lay, r_diagonal=False)
    tl = theta_layout(lay.q)

    def crit(th, layout):
        f = factorize(lambdas(th, tl), xp, idx, layout)
        return jnp.sum(jnp.log(jnp.diagonal(f.LDD))) + jnp.sum(f.LDD[lay.m_R :, : lay.m_R] ** 2), f.LDD

    vg_head = fast_jit(jax.value_and_grad(lambda th: crit(th, lay), has_aux=True))
    vg_dense = fast_jit(jax.value_and_grad(lambda th: crit(th, dense), has_aux=True))
    rng = np.random.default_rng(5)
    for _ in range(3):
        th = jnp.asarray(np.abs(tl.init() + rng.normal(0, 0.5, tl.size)))
        (v1, L1), g1 = vg_head(th)
        (v2, L2), g2 = vg_dense(th)
        np.testing.assert_allclose(np.asarray(L1), np.asarray(L2), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(float(v1), float(v2), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-9, atol=1e-10)
    # the optimiser's closed form through the diagonal head (lmm_scalar) equals the criterion through the
    # dense factor and its reverse-mode gradient, REML and ML
    n, p = design.nobs, design.X.shape[1]
    for reml in (True, False):
        head = fast_jit(lambda th: lmm_scalar.value_and_grad(th, xp, idx, lay, float(n), p, 0.0, reml))
        full = fast_jit(jax.value_and_grad(lambda th: objective(th, xp, idx, dense, tl, float(n), p, 0.0, reml)))
        for _ in range(2):
            th = jnp.asarray(np.abs(tl.init() + rng.normal(0, 0.5, tl.size)))
            (v1, g1), (v2, g2) = head(th), full(th)
            np.testing.assert_allclose(float(v1), float(v2), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("q", [0, 2], ids=["scalar l", "vector l"])
def test_pair_sums_are_the_same_level_products(q):
    """pair_sums(l, S[r(pa), r(pb)], pa, pb) = Σ over the entries e′ of e's level of term 1 of
    S[r(e), r(e′)] l_{e′}, for a symmetric S and l of shape (E,) or (E, q) (numpy, brute force)."""
    from jaxmix.core.crossprod import build_structure, pair_sums

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(4)
    n, nl = 200, [17, 6, 5]
    codes = [rng.integers(0, m, n) for m in nl]
    layout, idx = build_structure(codes, nl, [1, 1, 2], 1)
    m_R, E = layout.m_R, idx.e_row.shape[0]
    S = rng.normal(size=(m_R, m_R))
    S = S + S.T
    l = rng.normal(size=(E,) + ((q,) if q else ()))
    got = pair_sums(jnp.asarray(l), jnp.asarray(S[idx.e_row[idx.pa], idx.e_row[idx.pb]]), jnp.asarray(idx.pa),
                    jnp.asarray(idx.pb))
    want = np.zeros_like(l)
    for e in range(E):
        for e2 in np.flatnonzero(idx.e_blk == idx.e_blk[e]):
            want[e] += S[idx.e_row[e], idx.e_row[e2]] * l[e2]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)
