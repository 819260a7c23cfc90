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
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..spec.covariance import ThetaLayout, lambdas
from .linalg import chol, chol_small, solve_lower

__all__ = ["level_classes", "class_tails", "class_flops", "factor_classes", "objective_classes"]


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
    if reml:
        nmp = n - p
        return ldL2 - ldW + ldRX2 + nmp * (1.0 + jnp.log(2.0 * jnp.pi * r2 / nmp)), LTT
    return ldL2 - ldW + n * (1.0 + jnp.log(2.0 * jnp.pi * r2 / n)), LTT
