"""Profiled ML deviance and REML criterion of a linear mixed model (pure, jit/vmap-able).

With L the blocked Cholesky factor of the scaled augmented system for θ (see :mod:`jaxmix.core.blocked`),
r² = L_yy² the penalised weighted residual sum of squares, log|L_Z|² and log|L_X|² the log-determinants
of its Z and X diagonal blocks and log|W| = Σ log wᵢ (lme4's ``ldW``):

    ML:    d(θ)   = log|L_Z|² − log|W| + n  (1 + log(2π r² / n))
    REML:  d_R(θ) = log|L_Z|² − log|W| + log|L_X|² + (n − p)(1 + log(2π r² / (n − p)))

(Bates et al. 2015, JSS 67(1), eqs. 34 and 41).  At the optimum β̂ solves L_X′β = c_X, the spherical
random effects u solve L_Z′u = c_Z − L_XZ′β̂, b = Λu, and σ̂² = r²/n (ML) or r²/(n − p) (REML).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .blocked import Factor, factorize, logdets
from ..spec.covariance import ThetaLayout, lambdas
from .crossprod import CrossProducts, Index, Layout
from .linalg import solve_lower, solve_lower_t, trsm

__all__ = ["objective", "profiled_criterion", "Solution", "solve", "cond_var"]


def objective(theta, xp: CrossProducts, idx: Index, layout: Layout, tl: ThetaLayout, n, p: int,
              ldW, reml: bool):
    """−2 × (restricted) profiled log-likelihood at θ, through the blocked factor (differentiable
    any number of times).  The optimiser's value and gradient are in closed form
    (:func:`jaxmix.core.lmm_scalar.value_and_grad`, :func:`jaxmix.core.lmm_blocks.value_and_grad`)."""
    ldL2, ldRX2, r2 = logdets(factorize(lambdas(theta, tl), xp, idx, layout), layout, p)
    return profiled_criterion(ldL2, ldRX2, r2, n, p, ldW, reml)


def profiled_criterion(ldL2, ldRX2, r2, n, p: int, ldW, reml: bool):
    """The ML deviance or REML criterion of the module docstring from log|L_Z|², log|L_X|², r² and
    log|W| (ldRX2 is not read for ML)."""
    if reml:
        nmp = n - p
        return ldL2 - ldW + ldRX2 + nmp * (1.0 + jnp.log(2.0 * jnp.pi * r2 / nmp))
    return ldL2 - ldW + n * (1.0 + jnp.log(2.0 * jnp.pi * r2 / n))


class Solution(NamedTuple):
    beta: jnp.ndarray  # (p,)
    u1: jnp.ndarray  # (ℓ₁, q₁) spherical random effects of term 1
    uR: jnp.ndarray  # (m_R,) spherical random effects of terms 2..K
    r2: jnp.ndarray  # penalised residual sum of squares
    RX: jnp.ndarray  # (p, p) lower Cholesky factor L_X: vcov(β) = σ² (L_X L_X′)⁻¹
    factor: Factor


def solve(theta, xp, idx, layout: Layout, tl: ThetaLayout, p: int) -> Solution:
    """β̂, the spherical modes u and the pieces for vcov at θ (the tail's last column is y)."""
    f = factorize(lambdas(theta, tl), xp, idx, layout)
    return solve_factor(f, idx, layout, p)


def solve_factor(f: Factor, idx: Index, layout: Layout, p: int) -> Solution:
    m_R = layout.m_R
    LDD = f.LDD
    yrow = LDD[m_R + p]
    LX = LDD[m_R : m_R + p, m_R : m_R + p]
    beta = solve_lower_t(LX, yrow[m_R : m_R + p, None])[:, 0] if p else yrow[:0]  # jnp up to 8 x 8
    LXR = LDD[m_R : m_R + p, :m_R]
    LRR = LDD[:m_R, :m_R]
    rhsR = yrow[:m_R] - LXR.T @ beta
    uR = trsm(LRR, rhsR, True) if m_R else rhsR
    # term 1: L11_j′ u1_j = c1_j − Σ_e lR[e] uR[row e] − lT_j[X]′ β
    c1 = f.lT[:, p, :]  # response row of the tail
    rhs1 = c1 - jnp.einsum("jtc,t->jc", f.lT[:, :p, :], beta)
    if m_R:
        rhs1 = rhs1 - jax.ops.segment_sum(f.lR * uR[idx.e_row][:, None], idx.e_blk,
                                          num_segments=layout.l1)
    u1 = solve_lower_t(f.L11, rhs1[:, :, None])[:, :, 0]
    return Solution(beta=beta, u1=u1, uR=uR, r2=LDD[m_R + p, m_R + p] ** 2, RX=LX, factor=f)


def ranef_from_u(sol: Solution, lams, layout: Layout) -> list:
    """b = Λu per term, as (levels, q) arrays in lme4 order."""
    out = [sol.u1 @ lams[0].T]
    for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], layout.nlev[1:]):
        uk = sol.uR[off : off + lk * qk].reshape(lk, qk)
        out.append(uk @ lam.T)
    return out


def cond_var(f: Factor, lams, idx: Index, layout: Layout) -> list:
    """Diagonal blocks of Λ (L_Z L_Z′)⁻¹ Λ′ per term and level, shape (levels, q, q) each.

    Multiplied by σ² these are lme4's conditional variances (``ranef(condVar = TRUE)``).  With
    L_Z = [L11 0; L_R1 L_RR]: for the R terms the blocks of L_RR⁻ᵀL_RR⁻¹; for term 1, level j,
    L11_j⁻ᵀL11_j⁻¹ + G_j′G_j with G_j = L_RR⁻¹ L_R1[:, j] L11_j⁻¹.
    """
    m_R, q1, l1 = layout.m_R, layout.q1, layout.l1
    eye1 = jnp.broadcast_to(jnp.eye(q1, dtype=f.L11.dtype), f.L11.shape)
    L11inv = solve_lower(f.L11, eye1)
    V1 = jnp.einsum("jba,jbc->jac", L11inv, L11inv)
    out = []
    if m_R:
        LRR = f.LDD[:m_R, :m_R]
        Linv = trsm(LRR, jnp.eye(m_R, dtype=LRR.dtype))
        G = jax.ops.segment_sum(Linv[:, idx.e_row].T[:, :, None] * f.lR[:, None, :], idx.e_blk,
                                num_segments=l1)  # (ℓ₁, m_R, q₁)
        G = jnp.einsum("jmc,jcd->jmd", G, L11inv)
        V1 = V1 + jnp.einsum("jma,jmb->jab", G, G)
    out.append(jnp.einsum("ab,jbc,dc->jad", lams[0], V1, lams[0]))
    for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], layout.nlev[1:]):
        cols = Linv[:, off : off + lk * qk].reshape(m_R, lk, qk)
        Vk = jnp.einsum("mla,mlb->lab", cols, cols)
        out.append(jnp.einsum("ab,lbc,dc->lad", lam, Vk, lam))
    return out


