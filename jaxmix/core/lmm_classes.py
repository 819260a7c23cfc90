"""The profiled criterion of a one-term Gaussian LMM by classes of levels with equal Z′WZ blocks
(pure JAX; the many-outcome sweep's fast form of :func:`jaxmix.core.lmm.objective`).

With one random term (m_R = 0) the blocked factor of :mod:`jaxmix.core.blocked` is, per level j,
L11ⱼL11ⱼ′ = Λ′A11ⱼΛ + I and lTⱼ = BTⱼΛL11ⱼ⁻ᵀ, and the tail block is

    M_TT = C_TT − Σⱼ lTⱼ lTⱼ′ = C_TT − Σⱼ BTⱼ Mⱼ BTⱼ′,     Mⱼ = Λ (Λ′A11ⱼΛ + I)⁻¹ Λ′  (q x q).

Mⱼ depends on the level only through A11ⱼ.  Grouping the levels into classes c of equal A11 blocks
(every level of a balanced design is one class: the same covariate values in every group),

    M_TT = C_TT − Σ_c Σ_ab M_c[a, b] S_c[a, b],     S_c[a, b] = Σ_{j∈c} BTⱼ[:, a] BTⱼ[:, b]′  (t x t),
    log|L_Z|² = Σ_c n_c log|Λ′A11_cΛ + I|,

with n_c the levels of class c.  L_TT = chol(M_TT) then gives log|L_X|² (its first p diagonal
entries), r² = L_TT[p, p]² and the criterion of :func:`jaxmix.core.lmm.objective` (the same formula,
Bates et al. 2015, eqs. 34 and 41); β̂ = L_X⁻ᵀ L_TT[p, :p]′ and vcov(β̂) = σ²(L_X L_X′)⁻¹.  A point
costs O(C q² t²) instead of O(ℓ (q³ + t q² + t² q)): independent of the number of levels when the
design is balanced.  :func:`level_classes` and :func:`class_tails` form the classes and the S_c of
each outcome once, in numpy.

:func:`value_grad_classes` gives the criterion with its gradient in closed form (no automatic
differentiation: a program a fraction of the size, quicker to trace, compile and run).  With
W = [M_XX⁻¹ 0; 0 0]·[REML] + (n′/r²)·vv′ (n′ = n − p for REML, n for ML; v = (−β̂, 1)), the
tail's part of dd is tr(W dM_TT) = −Σ_c tr(R_c dM_c) with R_c[a, b] = ⟨W, S_c[a, b]⟩, and with
B_c = A_c⁻¹Λ′, P_c = B_c R_c B_c′, A_c = Λ′A11_cΛ + I:

    tr(R dM) = 2 tr((BR − PΛ′A11) dΛ),      d log|A| = 2 tr(A⁻¹Λ′A11 dΛ),

so ∂d/∂Λ = 2 Σ_c [n_c A11_cΛA_c⁻¹ − (B_cR_c − P_cΛ′A11_c)′], read at θ's positions in Λ.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..spec.covariance import ThetaLayout, lambdas
from .linalg import chol, chol_small, solve_lower
from .lmm import profiled_criterion

__all__ = ["level_classes", "class_tails", "class_flops", "factor_classes", "objective_classes",
           "value_grad_classes"]


def level_classes(A11: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct blocks of A11 (ℓ, q, q), bitwise equal: (blocks (C, q, q), levels per class (C,),
    class of each level (ℓ,))."""
    flat = np.ascontiguousarray(np.asarray(A11, dtype=float).reshape(A11.shape[0], -1))
    uniq, inv, cnt = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    q = A11.shape[-1]
    return uniq.reshape(-1, q, q), cnt.astype(float), inv.reshape(-1)


def class_tails(BT: np.ndarray, cls: np.ndarray, n_classes: int) -> np.ndarray:
    """S[k, c, a, b] = Σ_{j∈c} BT[k, j, :, a] BT[k, j, :, b]′ for BT (k, ℓ, t, q) and classes ``cls``
    (ℓ,): shape (k, C, q, q, t, t)."""
    onehot = (cls[None, :] == np.arange(n_classes)[:, None]).astype(float)  # (C, ℓ)
    return np.einsum("cj,kjta,kjsb->kcabts", onehot, BT, BT, optimize=True)


def class_flops(n_classes: int, n_levels: int, q: int, t: int) -> tuple[int, int]:
    """Multiply-adds of one point's tail block: (by classes, by levels) — the classes are worth it
    when the first is not larger."""
    return n_classes * q * q * t * t, n_levels * (q**3 + t * q * q + t * t * q)


def _chol(M):
    return chol_small(M) if M.shape[-1] <= 8 else chol(M)


def factor_classes(theta, A11c, cnt, S, CTT, tl: ThetaLayout):
    """(log|L_Z|², L_TT) at θ for one outcome (S (C, q, q, t, t), CTT (t, t))."""
    lam = lambdas(theta, tl)[0]
    q = lam.shape[0]
    A = jnp.einsum("ba,cbd,de->cae", lam, A11c, lam) + jnp.eye(q, dtype=A11c.dtype)
    L = chol_small(A)  # (C, q, q)
    ldL2 = 2.0 * jnp.sum(cnt * jnp.sum(jnp.log(jnp.diagonal(L, axis1=1, axis2=2)), axis=1))
    G = solve_lower(L, jnp.broadcast_to(lam.T, A.shape))  # L⁻¹Λ′, so M = G′G = Λ A⁻¹ Λ′
    M = jnp.sum(G[:, :, :, None] * G[:, :, None, :], axis=1)  # (C, q, q)
    MTT = CTT - jnp.sum(M[:, :, :, None, None] * S, axis=(0, 1, 2))
    return ldL2, _chol(MTT)


def objective_classes(theta, A11c, cnt, S, CTT, n, p: int, ldW, reml: bool, tl: ThetaLayout):
    """−2 × (restricted) profiled log-likelihood at θ (as :func:`jaxmix.core.lmm.objective`), and
    L_TT (aux: β̂, r² and L_X at the optimum)."""
    ldL2, LTT = factor_classes(theta, A11c, cnt, S, CTT, tl)
    dD = jnp.diagonal(LTT)
    ldRX2 = 2.0 * jnp.sum(jnp.log(dD[:p]))
    r2 = dD[p] ** 2
    return profiled_criterion(ldL2, ldRX2, r2, n, p, ldW, reml), LTT


def _mm(a, b):
    """a @ b over the last two axes, by broadcasting (tiny blocks: loops XLA fuses, no dot calls)."""
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def _t(a):
    return jnp.swapaxes(a, -1, -2)


def value_grad_classes(theta, A11c, cnt, S, CTT, n, p: int, ldW, reml: bool, tl: ThetaLayout):
    """(criterion, its gradient in θ, L_TT) of :func:`objective_classes`, the gradient in closed form
    (module docstring)."""
    lam = lambdas(theta, tl)[0]
    q = lam.shape[0]
    t = CTT.shape[-1]
    dt = A11c.dtype
    eye_q = jnp.asarray(np.eye(q), dt)
    ZL = _mm(A11c, lam)  # A11 Λ  (C, q, q)
    A = _mm(lam.T, ZL) + eye_q
    L = chol_small(A)
    logd = jnp.log(jnp.stack([L[:, i, i] for i in range(q)], axis=-1))
    ldL2 = 2.0 * jnp.sum(cnt[:, None] * logd)
    Linv = solve_lower(L, jnp.broadcast_to(eye_q, A.shape))
    Ainv = _mm(_t(Linv), Linv)
    B = _mm(Ainv, lam.T)  # A⁻¹Λ′
    M = _mm(lam, B)  # Λ A⁻¹ Λ′
    MTT = CTT - jnp.sum(M[:, :, :, None, None] * S, axis=(0, 1, 2))
    LTT = _chol(MTT)
    dD = jnp.stack([LTT[i, i] for i in range(t)])
    r2 = dD[p] ** 2
    nn = n - p if reml else n
    f = ldL2 - ldW + nn * (1.0 + jnp.log(2.0 * jnp.pi * r2 / nn))
    if p:
        LXinv = solve_lower(LTT[:p, :p], jnp.asarray(np.eye(p), dt))
        beta = jnp.sum(LXinv * LTT[p, :p, None], axis=0)  # L_X⁻ᵀ l′, l = L_TT[p, :p]
        v = jnp.concatenate([-beta, jnp.ones(1, dt)])
    else:
        v = jnp.ones(1, dt)
    W = (nn / r2) * v[:, None] * v[None, :]
    if reml:
        f = f + 2.0 * jnp.sum(jnp.log(dD[:p]))
        if p:
            W = W + jnp.pad(_mm(_t(LXinv), LXinv), ((0, 1), (0, 1)))
    R = jnp.sum(W * S, axis=(-2, -1))  # (C, q, q)
    BR = _mm(B, R)
    G = BR - _mm(_mm(BR, _t(B)), _t(ZL))  # B R − P Λ′A11
    gLam = 2.0 * jnp.sum(cnt[:, None, None] * _mm(ZL, Ainv) - _t(G), axis=0)
    rows, cols = np.asarray(tl.rows[0]), np.asarray(tl.cols[0])
    grad = jnp.stack([gLam[i, j] for i, j in zip(rows, cols)])
    return f, grad, LTT
