"""The profiled criterion of an LMM whose random terms are all scalar, with its gradient in closed form.

For models such as ``(1 | s) + (1 | d) + (1 | dept)`` (crossed or nested intercepts) every Λ_k = θ_k,
and the blocked system of :mod:`jaxmix.core.blocked` takes a simple form.  With a_j = Z₁′WZ₁ for level j
of term 1 (s = θ₁), d_j = s²a_j + 1, w_j = s²/d_j and g_j = [b_j; t_j] the level's column of
[Z_R T]′WZ₁ (b_j sparse: its entries of Z_R′WZ₁, t_j its row of T′WZ₁), the Schur complement is

    M(θ) = D G(s) D + J,   G(s) = C − Σ_j w_j g_j g_j′,   D = diag(θ_k over term k's rows, 1 over T),

J = diag(1 over the R rows, 0 over T) and C = [Z_R T]′W[Z_R T].  With L = chol(M) and
log|L_Z|² = Σ_j log d_j + 2 Σ_{i∈R} log Lᵢᵢ, the criterion is that of :func:`jaxmix.core.lmm.objective`.
It is a function φ(M) of L's log-diagonal, whose derivative Ā = ∂φ/∂M = ½ L⁻ᵀ diag(v) L⁻¹ (v the
coefficients of the log Lᵢᵢ: 2 on R, 2 or 0 on X for REML or ML, 2ν on y;
:func:`jaxmix.core.linalg.logdiag_adjoint`) gives the gradient without differentiating through the
assembly of M (reverse mode through its scatter of same-level pairs costs more than the factor):

    ∂f/∂θ_k = 2 · 1_k′ (Ā ∘ G) D 1                                (k ≥ 2: ∂M/∂θ_k = P_k G D + D G P_k)
    ∂f/∂s   = Σ_j 2 s a_j / d_j − Σ_j w′_j (D g_j)′ Ā (D g_j),   w′_j = 2s / d_j²,

the last sum over the same-level pairs of entries (b_j's part), the entries times Ā's R–T block, and
t_j′ Ā_TT t_j.  Both are exact at θ_k = 0 (a singular fit's boundary), unlike the equivalent
(a·n_k − 2 Σ_{i∈k} Āᵢᵢ)/θ_k.  When term 2 is the only other term and term 1 is nested in it
(``layout.r_diagonal``), M's R block is diagonal and only Ā's diagonal there, its R–T block and T–T
block are formed (O(m_R t²), no dense factor of the R rows).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .crossprod import CrossProducts, Index, Layout
from .linalg import chol_small, chol_upper, logdiag_adjoint, solve_lower

__all__ = ["applies", "Pairs", "pairs_host", "value_and_grad"]


def applies(layout: Layout) -> bool:
    """Whether every random term is scalar (one column): the closed-form gradient's models."""
    return all(qk == 1 for qk in layout.q)


def _scales(theta, layout: Layout):
    """The diagonal of D over the R rows: θ_k repeated over term k's (padded) rows."""
    if layout.m_R == 0:
        return jnp.zeros((0,), theta.dtype)
    return jnp.concatenate([jnp.broadcast_to(theta[k + 1], (lk,)) for k, lk in enumerate(layout.nlev[1:])])


def _term_sums(r, layout: Layout):
    """Σ over each R term's rows of r (m_R,) -> (K − 1,)."""
    out, off = [], 0
    for lk in layout.nlev[1:]:
        out.append(jnp.sum(r[off : off + lk]))
        off += lk
    return jnp.stack(out) if out else r[:0]


def _criterion(ldL2, ldRX2, r2, n, p: int, ldW, reml: bool):
    if reml:
        nmp = n - p
        return ldL2 - ldW + ldRX2 + nmp * (1.0 + jnp.log(2.0 * jnp.pi * r2 / nmp))
    return ldL2 - ldW + n * (1.0 + jnp.log(2.0 * jnp.pi * r2 / n))


class Pairs(NamedTuple):
    """The same-level pairs' data the closed form reads (formed once per design on the host by
    :func:`pairs_host`, in the order of ``Index.ptgt``): Z₁′WZ₁ of the pair's level of term 1 and the
    product of the pair's two entries of Z_R′WZ₁ (so that an evaluation reads no index but the target)."""

    a: jnp.ndarray  # (P,)
    prod: jnp.ndarray  # (P,)


def pairs_host(A11, BR, idx) -> Pairs:
    """:class:`Pairs` from numpy A11 (ℓ₁, 1, 1) and BR (E, 1) (or (G, ℓ₁, 1, 1) and (G, E, 1), one row
    per weight group) and the index."""
    A11, BR = np.asarray(A11)[..., 0, 0], np.asarray(BR)[..., 0]
    pa, pb = np.asarray(idx.pa), np.asarray(idx.pb)
    return Pairs(A11[..., np.asarray(idx.e_blk)[pa]], BR[..., pa] * BR[..., pb])


def value_and_grad(theta, xp: CrossProducts, idx: Index, layout: Layout, n, p: int, ldW, reml: bool,
                   pairs: Pairs | None = None):
    """(f(θ), ∇f(θ)) of the profiled ML deviance or REML criterion for all-scalar random terms
    (module docstring); θ = (θ₁, …, θ_K) in term order, as :func:`jaxmix.spec.covariance.lambdas`
    reads it.  ``pairs``: :func:`pairs_host`'s arrays (formed here from ``xp.BR`` when None)."""
    dt = xp.A11.dtype
    m_R, t = layout.m_R, layout.t
    s = theta[0]
    a1 = xp.A11[:, 0, 0]
    d = s * s * a1 + 1.0
    W2 = jnp.stack([s * s / d, 2.0 * s / (d * d)], axis=1)  # (w_j, w′_j)
    BT = xp.BT[:, :, 0]  # (ℓ₁, t)
    sv = _scales(theta, layout)
    # G_TT and ∂G_TT/∂s
    STT = jnp.einsum("jc,jt,js->cts", W2, BT, BT)
    GTT, dGTT = xp.CTT - STT[0], -STT[1]
    nu = n - p if reml else n
    v = jnp.concatenate([jnp.full((p,), 2.0 if reml else 0.0, dt), jnp.reshape(2.0 * nu, (1,)).astype(dt)])
    a = jnp.asarray(2.0, dt)
    if m_R:
        BR = xp.BR[:, 0]
        eb, er = idx.e_blk, idx.e_row
        SRT = jax.ops.segment_sum((W2[eb] * BR[:, None])[:, :, None] * BT[eb][:, None, :], er, num_segments=m_R)
        GRT, dGRT = xp.CRT - SRT[:, 0], -SRT[:, 1]
        if layout.r_diagonal:
            logd, gk, T1 = _diag_head(sv, xp, idx, layout, W2, GRT, dGRT, GTT, dGTT, a, v)
        else:
            if pairs is None:
                pairs = Pairs(a1[eb[idx.pa]], BR[idx.pa] * BR[idx.pb])
            logd, gk, T1 = _dense(s, sv, xp, idx, layout, pairs, GRT, dGRT, GTT, dGTT, a, v)
    else:
        L = chol_upper(GTT)
        logd = jnp.log(jnp.diagonal(L))
        ATT = logdiag_adjoint(L, 0, a, v)
        T1 = jnp.sum(_sym(ATT) * dGTT)
        gk = jnp.zeros((0,), dt)
    g1 = jnp.sum(2.0 * s * a1 / d) + T1
    ldL2 = jnp.sum(jnp.log(d)) + 2.0 * jnp.sum(logd[:m_R])
    ldRX2 = 2.0 * jnp.sum(logd[m_R : m_R + p])
    r2 = jnp.exp(2.0 * logd[m_R + p])
    f = _criterion(ldL2, ldRX2, r2, n, p, ldW, reml)
    return f, jnp.concatenate([g1[None], gk])


def _sym(A):
    """The symmetric matrix whose upper triangle A holds."""
    return jnp.triu(A) + jnp.triu(A, 1).T


def _dense(s, sv, xp: CrossProducts, idx: Index, layout: Layout, pairs: Pairs, GRT, dGRT, GTT, dGTT, a, v):
    """The dense Schur complement: (log-diagonal of L, ∂f/∂θ_k for k ≥ 2, Σ Ā ∘ DD′ ∘ ∂G/∂s)."""
    m_R, t = layout.m_R, layout.t
    dt = GTT.dtype
    N = m_R + t
    tg = idx.ptgt
    dp = s * s * pairs.a + 1.0  # d_j of each pair's level

    def scatter(x):  # Σ over the pairs at their targets in the upper triangle of the R block
        return jax.ops.segment_sum(x * pairs.prod, tg, num_segments=m_R * m_R,
                                   indices_are_sorted=True).reshape(m_R, m_R)

    GRR = xp.CRR - scatter(s * s / dp)
    dGRR = -scatter(2.0 * s / (dp * dp))
    # materialise the scattered blocks (fused into their consumers, XLA's CPU backend re-runs the
    # scatters per element)
    GRR, dGRR = jax.lax.optimization_barrier((GRR, dGRR))
    zero = jnp.zeros((t, m_R), dt)
    G = jnp.block([[GRR, GRT], [zero, GTT]])  # upper triangles valid
    dG = jnp.block([[dGRR, dGRT], [zero, dGTT]])
    Dv = jnp.concatenate([sv, jnp.ones((t,), dt)])
    Jv = jnp.concatenate([jnp.ones((m_R,), dt), jnp.zeros((t,), dt)])
    U = G * Dv[:, None] * Dv[None, :] + jnp.diag(Jv)
    L = chol_upper(U)
    logd = jnp.log(jnp.diagonal(L))
    Abar = logdiag_adjoint(L, m_R, a, v)
    # sums over the symmetric matrices from their upper triangles: weight 1 on the diagonal, 2 above
    # it, 0 below (the strict lower triangles of Ā, G and ∂G/∂s are unspecified)
    i = jnp.arange(N)
    up = jnp.where(i[:, None] < i[None, :], 2.0, jnp.where(i[:, None] == i[None, :], 1.0, 0.0))
    T1 = jnp.sum(up * Abar * dG * Dv[:, None] * Dv[None, :])
    # 1_k′ (Ā ∘ G) D1 = 1_k′ (Hh + Hh′) D1 with Hh = ½ up ∘ Ā ∘ G
    Hh = 0.5 * up * Abar * G
    rv = Hh @ Dv + Dv @ Hh
    return logd, 2.0 * _term_sums(rv[:m_R], layout), T1


def _diag_head(sv, xp: CrossProducts, idx: Index, layout: Layout, W2, GRT, dGRT, GTT, dGTT, a, v):
    """M's R block diagonal (term 1 nested in the one scalar term after it): with M = [[Δ, B′], [B, C]],
    L = [[Δ^½, 0], [BΔ^-½, chol(C − BΔ⁻¹B′)]]; with Q = L₂₂⁻¹ and K = −QBΔ⁻¹ the needed blocks of
    Ā = ½L⁻ᵀdiag(a·1, v)L⁻¹ are diag(Ā_RR) = ½(a/Δ + Σ_τ v_τK_τ²), Ā_RT = ½K′diag(v)Q and
    Ā_TT = ½Q′diag(v)Q.  Returns (log-diagonal of L, ∂f/∂θ₂, Σ Ā ∘ DD′ ∘ ∂G/∂s)."""
    m_R, t = layout.m_R, layout.t
    BR = xp.BR[:, 0]
    eb, er = idx.e_blk, idx.e_row
    SRR = jax.ops.segment_sum(W2[eb] * (BR * BR)[:, None], er, num_segments=m_R)
    GRRd = jnp.diagonal(xp.CRR) - SRR[:, 0]
    dGRRd = -SRR[:, 1]
    Delta = sv * sv * GRRd + 1.0
    B = (GRT * sv[:, None]).T  # (t, m_R)
    L21 = B / jnp.sqrt(Delta)[None, :]
    L22 = chol_small(GTT - L21 @ L21.T)
    logd = jnp.concatenate([0.5 * jnp.log(Delta), jnp.log(jnp.diagonal(L22))])
    Q = solve_lower(L22, jnp.eye(t, dtype=GTT.dtype))
    K = -(Q @ B) / Delta[None, :]
    Ad = 0.5 * (a / Delta + jnp.sum(v[:, None] * K * K, axis=0))
    ART = 0.5 * (K.T * v[None, :]) @ Q
    ATT = 0.5 * (Q.T * v[None, :]) @ Q
    T1 = jnp.sum(Ad * sv * sv * dGRRd) + 2.0 * jnp.sum(ART * sv[:, None] * dGRT) + jnp.sum(ATT * dGTT)
    # ∂f/∂θ₂ = 2 Σ_i [Āᵢᵢ Gᵢᵢ θ₂ + Σ_τ Āᵢτ Gᵢτ]
    rv = Ad * GRRd * sv + jnp.sum(ART * GRT, axis=1)
    return logd, 2.0 * _term_sums(rv, layout), T1
