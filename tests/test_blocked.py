"""The blocked (structured) likelihood against a dense textbook evaluation on small random problems.

For random θ the profiled ML deviance and REML criterion from :func:`jaxmix.core.lmm.objective` must equal

    ML:    −2 log N(y; Xβ̂, σ̂² V₀)                                     σ̂² = r²/n
    REML:  −2 log N(y; Xβ̂, σ̂² V₀) + log|X′(σ̂²V₀)⁻¹X| − p log 2π         σ̂² = r²/(n − p)

with V₀ = ZΛΛ′Z′ + W⁻¹, β̂ the GLS estimate and r² = (y − Xβ̂)′V₀⁻¹(y − Xβ̂), all computed densely in
numpy with the full n × q matrix Z built here from the design (lme4's conventions: the REML criterion
has no −log|X′X| term, the ML deviance includes −Σ log wᵢ through |W⁻¹|).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from scipy import stats

from jaxmix.spec.covariance import lambdas_np, theta_layout
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula
from jaxmix.core.lmm import cond_var, objective, ranef_from_u, solve
from jaxmix.fitting.lmm import lmm_arrays

SHAPES = {
    "scalar": "y ~ x + (1 | g)",
    "vector": "y ~ x + (1 + x | g)",
    "nested": "y ~ x + (1 | a/b)",
    "crossed": "y ~ x + (1 | a) + (1 | b)",
    "uncorrelated": "y ~ x + (x || g)",
    "vector_second": "y ~ x + z + (1 | a) + (1 + x | b)",
    "two_vectors_crossed": "y ~ x + (1 + x | a) + (1 + z | b)",
    "three_terms": "y ~ z + (1 | a) + (0 + x | b) + (1 + z | g)",
}
SEEDS = [0, 1, 2]


def make_data(seed: int) -> pd.DataFrame:
    """A small unbalanced data set with crossed factors a, b and a factor g."""
    rng = np.random.default_rng(seed)
    # fixed sizes (the level assignment is random), so that seeds share JAX's compiled kernels
    n, la, lb, lg = 60, 8, 4, 6
    a = rng.integers(0, la, n)
    a[:la] = np.arange(la)  # every level occurs
    b = rng.integers(0, lb, n)
    b[:lb] = np.arange(lb)
    g = rng.integers(0, lg, n)
    g[:lg] = np.arange(lg)
    x = rng.normal(size=n)
    z = rng.uniform(-1, 2, size=n)
    y = 1.0 + 0.5 * x - z + rng.normal(size=la)[a] + rng.normal(size=lb)[b] * 0.7 + rng.normal(size=n)
    return pd.DataFrame({
        "y": y, "x": x, "z": z,
        "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b], "g": [f"g{i}" for i in g],
        "w": rng.uniform(0.3, 3.0, size=n),
    })


def random_theta(tl, rng) -> np.ndarray:
    diag = tl.is_diagonal()
    th = np.where(diag, rng.uniform(0.2, 2.0, size=tl.size), rng.normal(scale=0.6, size=tl.size))
    return th


@functools.lru_cache(maxsize=None)
def problem(shape: str, seed: int, weighted: bool):
    data = make_data(seed)
    design = build_design(parse_formula(SHAPES[shape]), data, weights="w" if weighted else None)
    layout, idx, xp = lmm_arrays(design, jnp.float64)
    tl = theta_layout(layout.q)
    return design, layout, idx, xp, tl


def dense_pieces(design, theta, tl):
    """Dense Z, Λ and the column offset of every term (term k, level l, column a -> off_k + l q_k + a)."""
    n = design.nobs
    lams = lambdas_np(np.asarray(theta, dtype=float), tl)
    Zs, Ls, offs, off = [], [], [], 0
    for t, lam in zip(design.terms, lams):
        Zk = np.zeros((n, t.nlevels * t.q))
        for a in range(t.q):
            Zk[np.arange(n), t.codes * t.q + a] = t.Z[:, a]
        Zs.append(Zk)
        Ls.append(np.kron(np.eye(t.nlevels), lam))
        offs.append(off)
        off += t.nlevels * t.q
    return np.hstack(Zs), scipy.linalg.block_diag(*Ls), offs, lams


def dense_fit(design, theta, tl, reml: bool):
    X, y, w = design.X, design.y - design.offset, design.weights
    n, p = X.shape
    Z, Lam, offs, lams = dense_pieces(design, theta, tl)
    ZL = Z @ Lam
    V0 = ZL @ ZL.T + np.diag(1.0 / w)
    V0inv = np.linalg.inv(V0)
    XtVX = X.T @ V0inv @ X
    beta = np.linalg.solve(XtVX, X.T @ V0inv @ y)
    res = y - X @ beta
    r2 = float(res @ V0inv @ res)
    sigma2 = r2 / (n - p if reml else n)
    V = sigma2 * V0
    m2ll = -2.0 * stats.multivariate_normal(mean=X @ beta, cov=V).logpdf(y)
    if reml:
        m2ll += np.linalg.slogdet(X.T @ np.linalg.inv(V) @ X)[1] - p * np.log(2 * np.pi)
    # conditional modes and the σ²-free conditional covariance Λ(Λ′Z′WZΛ + I)⁻¹Λ′
    b = Lam @ Lam.T @ Z.T @ V0inv @ res
    C = Lam @ np.linalg.inv(ZL.T @ (w[:, None] * ZL) + np.eye(ZL.shape[1])) @ Lam.T
    return dict(m2ll=m2ll, beta=beta, r2=r2, XtVX=XtVX, b=b, C=C, offs=offs)


# the package's functions compiled whole (run op by op they compiled ~100 small programs per case)
_objective = jax.jit(objective, static_argnames=("layout", "tl", "p", "reml"))
_solve = jax.jit(solve, static_argnames=("layout", "tl", "p"))
_cond_var = jax.jit(cond_var, static_argnames=("layout",))


def _structured_objective(theta, design, layout, idx, xp, tl, reml):
    n, p = design.X.shape
    ldW = float(np.sum(np.log(design.weights)))
    return float(_objective(jnp.asarray(theta), xp, idx, layout=layout, tl=tl, n=jnp.asarray(float(n)), p=p,
                            ldW=jnp.asarray(ldW), reml=reml))


# the first seed of each shape runs by default; the other seeds (other level assignments of the same
# shapes) are long checks, marked slow
CASES = [pytest.param(s, seed, wt, id=f"{s}-seed{seed}-{'w' if wt else 'unw'}",
                      marks=() if seed == SEEDS[0] else pytest.mark.slow)
         for s in SHAPES for seed in SEEDS for wt in (False, True)]


@pytest.mark.parametrize("shape,seed,weighted", CASES)
def test_objective_matches_dense(shape, seed, weighted):
    design, layout, idx, xp, tl = problem(shape, seed, weighted)
    rng = np.random.default_rng(100 + seed)
    thetas = [random_theta(tl, rng) for _ in range(2)]
    # a boundary point: the first diagonal entry exactly 0
    th0 = random_theta(tl, rng)
    th0[np.flatnonzero(tl.is_diagonal())[0]] = 0.0
    thetas.append(th0)
    for theta in thetas:
        for reml in (False, True):
            got = _structured_objective(theta, design, layout, idx, xp, tl, reml)
            want = dense_fit(design, theta, tl, reml)["m2ll"]
            assert got == pytest.approx(want, rel=1e-8), (shape, reml, theta, got, want)


@pytest.mark.parametrize("shape,seed,weighted", CASES)
def test_solution_matches_dense(shape, seed, weighted):
    design, layout, idx, xp, tl = problem(shape, seed, weighted)
    rng = np.random.default_rng(200 + seed)
    theta = random_theta(tl, rng)
    p = design.X.shape[1]
    sol = _solve(jnp.asarray(theta), xp, idx, layout=layout, tl=tl, p=p)
    d = dense_fit(design, theta, tl, reml=False)
    # β̂ is the GLS estimate and r² the GLS residual quadratic form
    np.testing.assert_allclose(np.asarray(sol.beta), d["beta"], rtol=1e-8, atol=1e-10)
    assert float(sol.r2) == pytest.approx(d["r2"], rel=1e-8)
    # L_X L_X′ = X′V₀⁻¹X
    RX = np.asarray(sol.RX)
    np.testing.assert_allclose(RX @ RX.T, d["XtVX"], rtol=1e-8, atol=1e-10 * np.abs(d["XtVX"]).max())
    # conditional modes b = ΛΛ′Z′V₀⁻¹(y − Xβ̂)
    lams = [jnp.asarray(L) for L in lambdas_np(np.asarray(theta, dtype=float), tl)]
    bs = ranef_from_u(sol, lams, layout)
    for k, t in enumerate(design.terms):
        want = d["b"][d["offs"][k] : d["offs"][k] + t.nlevels * t.q].reshape(t.nlevels, t.q)
        np.testing.assert_allclose(np.asarray(bs[k]), want, rtol=1e-7, atol=1e-9 * np.abs(d["b"]).max())
    # conditional variances: diagonal blocks of Λ(Λ′Z′WZΛ + I)⁻¹Λ′
    cv = _cond_var(sol.factor, lams, idx, layout=layout)
    for k, t in enumerate(design.terms):
        got = np.asarray(cv[k])
        assert got.shape == (t.nlevels, t.q, t.q)
        for lev in range(t.nlevels):
            s = d["offs"][k] + lev * t.q
            want = d["C"][s : s + t.q, s : s + t.q]
            np.testing.assert_allclose(got[lev], want, rtol=1e-8, atol=1e-12 * np.abs(d["C"]).max())


def test_dense_reference_detects_a_wrong_theta():
    # guard against a vacuous comparison: different θ give clearly different criteria
    design, layout, idx, xp, tl = problem("vector", 0, True)
    rng = np.random.default_rng(7)
    t1, t2 = random_theta(tl, rng), random_theta(tl, rng)
    v1 = _structured_objective(t1, design, layout, idx, xp, tl, True)
    v2 = dense_fit(design, t2, tl, True)["m2ll"]
    assert abs(v1 - v2) > 1e-3


def test_term_order_in_layout():
    # lme4 order (decreasing number of levels) is what the structure sees: nested b:a before a
    design, layout, *_ = problem("nested", 0, False)
    assert [t.group for t in design.terms] == ["b:a", "a"]
    assert layout.nlev[0] == design.terms[0].nlevels > layout.nlev[1]
