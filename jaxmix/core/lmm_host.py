"""An LMM's solution at its estimate in numpy: :func:`jaxmix.core.lmm.solve` without a compiled program.

A single fit needs the blocked factor and the solution (β̂, the modes u, r², L_X) once, at θ̂.  For a small
model class a compiled program for that one call cost more than everything else in the fit — its tracing
and XLA compile (0.3–0.4 s on a second thread) ended after the optimiser had finished, while numpy
forms the same factor in a few milliseconds.  The arithmetic is :mod:`jaxmix.core.blocked`'s and
:func:`jaxmix.core.lmm.solve_factor`'s, step for step, on the same padded blocks:

* L11ⱼ = chol(Λ₁′A11ⱼΛ₁ + I);  lTⱼ = (L11ⱼ⁻¹ Λ₁′BTⱼ′)′;  lR_e = L11_{j(e)}⁻¹ Λ_k′ b_e Λ₁;
* M = S′[CRR CRT; · CTT]S + [I 0; 0 0] − LD1 LD1′ (the product over the same-level pairs), LDD = chol(M);
* β̂ = L_X⁻ᵀ c_X,  u_R = L_RR⁻ᵀ(c_R − L_XR′β̂),  u1ⱼ = L11ⱼ⁻ᵀ(c1ⱼ − Σ_e lR_e u_R[row e] − lTⱼ[X]′β̂).

The results equal the program's to rounding (tests/test_lmm_host.py).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

from .blocked import Factor
from .crossprod import CrossProducts, Index, Layout
from .lmm import Solution

__all__ = ["factorize_host", "solve_host"]


def _scale_rows(M: np.ndarray, lams, layout: Layout) -> np.ndarray:
    """S_R′M: the rows of term k, level l multiplied by Λ_k′ (block-wise)."""
    parts = []
    for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], layout.nlev[1:]):
        blk = M[off : off + lk * qk].reshape((lk, qk) + M.shape[1:])
        parts.append(np.einsum("ba,lb...->la...", lam, blk).reshape((lk * qk,) + M.shape[1:]))
    return np.concatenate(parts, axis=0)


def factorize_host(lams, xp: CrossProducts, idx: Index, layout: Layout) -> Factor:
    """:func:`jaxmix.core.blocked.factorize` in numpy (``lams``: numpy Λ per term; ``xp`` and ``idx``:
    numpy arrays)."""
    A11, BR, BT, CRR, CRT, CTT = (np.asarray(a, dtype=float) for a in xp)
    lams = [np.asarray(lam, dtype=float) for lam in lams]
    lam1 = lams[0]
    q1, m_R = layout.q1, layout.m_R
    t = CTT.shape[-1]
    L11 = np.linalg.cholesky(np.einsum("ba,jbc,cd->jad", lam1, A11, lam1) + np.eye(q1))
    BTs = np.einsum("jtc,cd->jtd", BT, lam1)
    lT = np.swapaxes(np.linalg.solve(L11, np.swapaxes(BTs, 1, 2)), 1, 2)
    MTT = CTT - np.einsum("jtc,jsc->ts", lT, lT)
    if m_R == 0:
        return Factor(L11, np.zeros((0, q1)), lT, np.linalg.cholesky(0.5 * (MTT + MTT.T)))
    e_blk, e_row = np.asarray(idx.e_blk), np.asarray(idx.e_row)
    parts = []
    for lam, es, qk, npair in zip(lams[1:], layout.entry_starts, layout.q[1:], layout.n_pairs):
        blk = BR[es : es + npair * qk].reshape(npair, qk, -1)
        parts.append(np.einsum("ba,pbc,cd->pad", lam, blk, lam1).reshape(npair * qk, -1))
    BRs = np.concatenate(parts, axis=0)
    lR = np.linalg.solve(L11[e_blk], BRs[:, :, None])[:, :, 0]
    CRRs = _scale_rows(_scale_rows(CRR, lams, layout).T, lams, layout) + np.eye(m_R)
    CRTs = _scale_rows(CRT, lams, layout)
    pa, pb, ptgt = (np.asarray(a) for a in (idx.pa, idx.pb, idx.ptgt))
    prod = np.sum(lR[pa] * lR[pb], axis=-1)
    MRR = CRRs.reshape(-1) - np.bincount(ptgt, weights=prod, minlength=m_R * m_R)[: m_R * m_R]
    MRR = MRR.reshape(m_R, m_R)
    MRT = CRTs.copy()
    np.subtract.at(MRT, e_row, np.einsum("ec,etc->et", lR, lT[e_blk]))
    M = np.zeros((m_R + t, m_R + t))
    M[:m_R, :m_R] = np.triu(MRR)
    M[:m_R, m_R:] = MRT
    M[m_R:, m_R:] = np.triu(MTT)
    M = M + np.triu(M, 1).T  # only the upper triangle of MRR holds the Schur update
    return Factor(L11, lR, lT, np.linalg.cholesky(M))


def solve_host(lams, xp: CrossProducts, idx: Index, layout: Layout, p: int) -> Solution:
    """:func:`jaxmix.core.lmm.solve` in numpy at the relative covariance factors ``lams``."""
    f = factorize_host(lams, xp, idx, layout)
    m_R = layout.m_R
    LDD = f.LDD
    yrow = LDD[m_R + p]
    LX = LDD[m_R : m_R + p, m_R : m_R + p]
    beta = solve_triangular(LX, yrow[m_R : m_R + p], lower=True, trans="T") if p else yrow[:0]
    rhsR = yrow[:m_R] - LDD[m_R : m_R + p, :m_R].T @ beta
    uR = solve_triangular(LDD[:m_R, :m_R], rhsR, lower=True, trans="T") if m_R else rhsR
    rhs1 = f.lT[:, p, :] - np.einsum("jtc,t->jc", f.lT[:, :p, :], beta)
    if m_R:
        contrib = f.lR * uR[np.asarray(idx.e_row)][:, None]
        sub = np.zeros_like(rhs1)
        np.add.at(sub, np.asarray(idx.e_blk), contrib)
        rhs1 = rhs1 - sub
    u1 = np.linalg.solve(np.swapaxes(f.L11, 1, 2), rhs1[:, :, None])[:, :, 0]
    return Solution(beta=beta, u1=u1, uR=uR, r2=LDD[m_R + p, m_R + p] ** 2, RX=LX, factor=f)
