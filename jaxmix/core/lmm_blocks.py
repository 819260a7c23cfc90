"""The profiled criterion of an LMM with vector random terms, with its gradient in closed form.

For the scaled augmented system Ω = S′CS + J of :mod:`jaxmix.core.blocked` (C = [Z₁ Z_R T]′W[Z₁ Z_R T], S =
blockdiag(Λ₁ per level of term 1, Λ_k per level of term k, I over the tail T = [X y])), the criterion of
:func:`jaxmix.core.lmm.objective` is f = Σᵢ cᵢ log Lᵢᵢ + const with L = chol(Ω), c = 2 on the Z rows and
v on the tail (2 on X's rows for REML, 0 for ML, 2ν on y's).  With Ā = ½L⁻ᵀdiag(c)L⁻¹,
df = tr(Ā dΩ) = 2 tr(ĀS′C dS), so

    ∂f/∂Λ_k = 2 Σ_{levels l of term k} (CSĀ)_{(k,l),(k,l)},

read at θ's entries by a reverse pass through :func:`jaxmix.spec.covariance.lambdas` alone.  C is sparse,
so only Ā's blocks on C's pattern are needed: with the blocked factor L = [[L₁₁, 0], [Y, L_D]] (D = the R
rows and the tail, Y_j = LD1's columns of level j: lₑ′ at its entries' rows r(e), lT_j on the tail),
Ā_DD = ½L_D⁻ᵀdiag(c_D)L_D⁻¹ (dense) and, per level j of term 1, Z_j = Ā_DD Y_j read at its rows
(ỹₑ = Z_j[r(e)] over the same-level pairs, z_j = Z_j[T]),

    Ā_jj = L₁₁ⱼ⁻ᵀ(I + Σ_{e∈j} lₑỹₑ′ + lT_j′z_j)L₁₁ⱼ⁻¹,   Ā_{j,r(e)} = −L₁₁ⱼ⁻ᵀỹₑ,   Ā_{T,j} = −z_jL₁₁ⱼ⁻¹.

Term 1 gets 2Σ_j[A11_jΛ₁Ā_jj + Σ_{e∈j} bₑ(S_RĀ_{R,j})_{r(e)} + BT_j′Ā_{T,j}]; term k ≥ 2 gets
2Σ_l[Σ_{pairs p} b_pΛ₁Ā_{j(p),(k,l)} + (C_RR S_RĀ_RR)_{(k,l),(k,l)} + C_RT,(k,l)Ā_{T,(k,l)}] (bₑ, b_p the
entries of Z_R′WZ₁).  No reverse pass through the factors.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .blocked import Factor, factorize, logdets, scale_rows
from .crossprod import CrossProducts, Index, Layout, pair_sums
from .linalg import logdiag_adjoint, solve_lower
from .lmm import profiled_criterion
from ..spec.covariance import ThetaLayout, lambdas

__all__ = ["applies", "value_and_grad"]


def applies(layout: Layout) -> bool:
    """Whether :func:`value_and_grad` serves this model: a random term with more than one column
    (all-scalar models take :mod:`jaxmix.core.lmm_scalar`)."""
    return any(qk > 1 for qk in layout.q)


def _per_pair(X, layout: Layout, k: int):
    """Term k's (≥ 2) entries of X (E, …) as (pairs, q_k, …)."""
    es, qk, npair = layout.entry_starts[k - 1], layout.q[k], layout.n_pairs[k - 1]
    return X[es : es + npair * qk].reshape((npair, qk) + X.shape[1:])


def value_and_grad(theta, xp: CrossProducts, idx: Index, layout: Layout, tl: ThetaLayout, n, p: int, ldW,
                   reml: bool):
    """(f(θ), ∇f(θ)) of the profiled ML deviance or REML criterion (module docstring)."""
    dt = xp.A11.dtype
    m_R, q1, l1, K = layout.m_R, layout.q1, layout.l1, len(layout.q)
    lams = lambdas(theta, tl)
    f = factorize(lams, xp, idx, layout)
    ldL2, ldRX2, r2 = logdets(f, layout, p)
    value = profiled_criterion(ldL2, ldRX2, r2, n, p, ldW, reml)
    nu = n - p if reml else n
    v = jnp.concatenate([jnp.full((p,), 2.0 if reml else 0.0, dt), jnp.reshape(2.0 * nu, (1,)).astype(dt)])
    Ab = logdiag_adjoint(f.LDD, m_R, jnp.asarray(2.0, dt), v)
    Ab = jnp.triu(Ab) + jnp.triu(Ab, 1).T  # Ā_DD (its upper triangle is the one set)
    ARR, ART, ATT = Ab[:m_R, :m_R], Ab[:m_R, m_R:], Ab[m_R:, m_R:]
    eye = jnp.broadcast_to(jnp.eye(q1, dtype=dt), f.L11.shape)
    Li = solve_lower(f.L11, eye)  # L₁₁ⱼ⁻¹
    zT = jnp.einsum("ts,jsc->jtc", ATT, f.lT)  # Z_j on the tail: Ā_TT lT_j + Σ_e Ā_{T,r(e)} lₑ′
    if m_R:
        er, eb, pa, pb = idx.e_row, idx.e_blk, idx.pa, idx.pb
        zT = zT + jax.ops.segment_sum(ART[er][:, :, None] * f.lR[:, None, :], eb, num_segments=l1)
        # ỹₑ = Σ_{e′∈j} Ā_{r(e), r(e′)} lₑ′ + Ā_{r(e),T} lT_j over the same-level pairs (a ≥ b), both ways
        yt = pair_sums(f.lR, ARR[er[pa], er[pb]], pa, pb) + jnp.einsum("et,etc->ec", ART[er], f.lT[eb])
        a_e = -jnp.einsum("eba,eb->ea", Li[eb], yt)  # Ā_{j, r(e)}
        inner = eye + jnp.einsum("jta,jtb->jab", f.lT, zT) + jax.ops.segment_sum(
            f.lR[:, :, None] * yt[:, None, :], eb, num_segments=l1)
        SA = scale_rows(ARR, [lm.T for lm in lams], layout)  # S_R Ā_RR
    else:
        inner = eye + jnp.einsum("jta,jtb->jab", f.lT, zT)
    Ajj = jnp.einsum("jba,jbc,jcd->jad", Li, inner, Li)
    ATj = -jnp.einsum("jtb,jba->jta", zT, Li)  # Ā_{T,j}
    lam1 = lams[0]
    G1 = jnp.einsum("jab,bc,jcd->ad", xp.A11, lam1, Ajj) + jnp.einsum("jta,jtb->ab", xp.BT, ATj)
    G = [None] * K
    for k in range(1, K):
        lam, off_k, qk, lk = lams[k], layout.offsets[k - 1], layout.q[k], layout.nlev[k]
        BRk, ak = _per_pair(xp.BR, layout, k), _per_pair(a_e, layout, k)  # (pairs, q_k, q₁)
        # term 1's share: Σ_e bₑ (S_R Ā_{R,j})_{r(e)}, Λ_k applied across each pair's q_k entries
        G1 = G1 + jnp.einsum("pac,ab,pbd->cd", BRk, lam, ak)
        # term k's: Σ_p b_p Λ₁ Ā_{j,(k,l)} + (C_RR S_R Ā_RR) and C_RT Ā_{T,(k,l)} on its diagonal blocks
        rows = slice(off_k, off_k + lk * qk)
        Gk = jnp.einsum("pac,cd,pbd->ab", BRk, lam1, ak)
        Gk = Gk + jnp.einsum("lac,lbc->ab", xp.CRR[rows].reshape(lk, qk, m_R), SA[:, rows].T.reshape(lk, qk, m_R))
        Gk = Gk + jnp.einsum("lat,lbt->ab", xp.CRT[rows].reshape(lk, qk, -1), ART[rows].reshape(lk, qk, -1))
        G[k] = 2.0 * Gk
    G[0] = 2.0 * G1
    _, pull = jax.vjp(lambda th: lambdas(th, tl), theta)
    (g,) = pull(G)
    return value, g
