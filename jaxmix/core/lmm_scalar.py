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
t_j′ Ā_TT t_j.  G's R block and ∂G/∂s are held on the pattern of observed pairs of levels
(:class:`Pairs`: one sorted segment sum over the pairs per channel) and Ā is read there; only M, for
LAPACK's factor, is dense.  Both derivatives are exact at θ_k = 0 (a singular fit's boundary), unlike the equivalent
(a·n_k − 2 Σ_{i∈k} Āᵢᵢ)/θ_k.  When term 2 is the only other term and term 1 is nested in it
(``layout.r_diagonal``), M's R block is diagonal and only Ā's diagonal there, its R–T block and T–T
block are formed (O(m_R t²), no dense factor of the R rows).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .blocked import scalar_scales
from .crossprod import CrossProducts, Index, Layout
from .linalg import chol_small, chol_upper, host_inverse, logdiag_adjoint, solve_lower, trsm
from .lmm import profiled_criterion
from ..spec.covariance import lambdas, theta_layout

__all__ = ["applies", "Pairs", "GROUP_FIELDS", "pairs_host", "slot_sums", "level_weights", "slot_matrices",
           "slot_sums_host", "value_and_grad", "DenseStage", "dense_split", "dense_stage", "dense_finish"]


def applies(layout: Layout) -> bool:
    """Whether every random term is scalar (one column): the closed-form gradient's models."""
    return all(qk == 1 for qk in layout.q)


def _term_sums(r, layout: Layout):
    """Σ over each R term's rows of r (m_R,) -> (K − 1,)."""
    out, off = [], 0
    for lk in layout.nlev[1:]:
        out.append(jnp.sum(r[off : off + lk]))
        off += lk
    return jnp.stack(out) if out else r[:0]


class Pairs(NamedTuple):
    """The same-level pairs and the pattern of G's R block, formed once per design on the host by
    :func:`pairs_host`.  The pattern holds the upper-triangle entries (r ≤ c) of the m_R x m_R block
    where C_RR or a pair of entries is non-zero, sorted by r·m_R + c and padded to a bucket (padding:
    the last entry, weight 0).  The pairs are sorted by their pattern slot, so that each slot's sums
    Σ_p prod_p·w(level_p) are one sorted segment sum.  ``prod`` and ``cpat`` hold one row per weight
    group (``GROUP_FIELDS``)."""

    prod: jnp.ndarray  # (P,) product of the pair's two entries of Z_R′WZ₁
    cpat: jnp.ndarray  # (U,) C_RR on the pattern
    blk: jnp.ndarray  # (P,) the pair's level of term 1
    seg: jnp.ndarray  # (P,) the pair's pattern slot (non-decreasing)
    pr: jnp.ndarray  # (U,) row r of each pattern entry
    pc: jnp.ndarray  # (U,) column c ≥ r
    mult: jnp.ndarray  # (U,) entries of the symmetric block it stands for: 1 (diagonal), 2, 0 (padding)


GROUP_FIELDS = ("prod", "cpat")


def pairs_host(BR, CRR, idx, min_pattern: int = 1024) -> Pairs:
    """:class:`Pairs` from numpy BR (E, 1) and CRR (m_R, m_R) — or (G, ...) with one row per weight
    group, which share the structure — and the (padded) index."""
    from .structure import bucket

    BR, CRR = np.asarray(BR)[..., 0], np.asarray(CRR)
    m_R = CRR.shape[-1]
    pa, pb, tg = np.asarray(idx.pa), np.asarray(idx.pb), np.asarray(idx.ptgt)
    crr = CRR.reshape((-1, m_R * m_R))
    # the targets are sorted: their distinct values and each pair's rank among them in one pass
    new = np.ones(tg.shape[0], dtype=bool)
    new[1:] = tg[1:] != tg[:-1]
    rank = np.cumsum(new, dtype=np.int32 if tg.shape[0] < 2**31 - 1 else np.int64) - 1
    r, c = np.nonzero(np.triu(np.any(crr != 0, axis=0).reshape(m_R, m_R)))
    flat = np.sort(np.concatenate([tg[new], r * m_R + c]))
    keep = np.ones(flat.shape[0], dtype=bool)
    keep[1:] = flat[1:] != flat[:-1]
    flat = flat[keep]
    U = bucket(flat.shape[0], min_pattern)
    seg = np.searchsorted(flat, tg[new])[rank]
    pr, pc = np.divmod(flat, m_R)
    mult = np.where(pr == pc, 1.0, 2.0)
    pad = U - flat.shape[0]
    last = m_R * m_R - 1
    pr = np.concatenate([pr, np.full(pad, last // m_R)])
    pc = np.concatenate([pc, np.full(pad, last % m_R)])
    mult = np.concatenate([mult, np.zeros(pad)])
    cpat = np.concatenate([crr[:, flat], np.zeros((crr.shape[0], pad))], axis=1)
    cpat = cpat.reshape(CRR.shape[:-2] + (U,))
    i32 = lambda x: np.asarray(x, dtype=np.int32)  # noqa: E731
    prod = BR[..., pa]
    prod *= BR[..., pb]
    return Pairs(prod, cpat, i32(i32(idx.e_blk)[pa]), i32(seg), i32(pr), i32(pc), mult)


def slot_sums(W, pairs: Pairs):
    """(U, c): Σ over each pattern slot's pairs of prod_p · W[level_p] (W (ℓ₁, c)), a sorted segment sum."""
    return jax.ops.segment_sum(W[pairs.blk] * pairs.prod[:, None], pairs.seg, num_segments=pairs.pr.shape[0],
                               indices_are_sorted=True)


def level_weights(s, a1) -> np.ndarray:
    """(…, ℓ₁, 2): (w_j, w′_j) = (s²/d_j, 2s/d_j²) with d_j = s²a_j + 1, numpy (s (…,), a1 (…, ℓ₁)): the
    weights :func:`slot_sums` sums (the same as :func:`dense_stage` forms in the program)."""
    s = np.asarray(s, dtype=float)[..., None]
    d = s * s * np.asarray(a1, dtype=float) + 1.0
    return np.stack([s * s / d, 2.0 * s / (d * d)], axis=-1)


def slot_matrices(pairs: Pairs, n_levels: int) -> list:
    """Per weight group (a row of ``pairs.prod``), the sparse U x ℓ₁ matrix P with entries prod_p at
    (slot_p, level_p), so that :func:`slot_sums` (W) = P W: its host form (scipy CSR, the pairs already
    sorted by slot).  numpy ``pairs`` from :func:`pairs_host`; ℓ₁ = ``n_levels`` (term 1's, padded)."""
    from scipy import sparse

    seg, blk = np.asarray(pairs.seg), np.asarray(pairs.blk)
    U = int(np.asarray(pairs.pr).shape[0])
    L1 = int(n_levels)
    # indices and pointers of one integer type (else scipy copies the indices into the wider one)
    indptr = np.searchsorted(seg, np.arange(U + 1)).astype(blk.dtype)
    prod = np.asarray(pairs.prod, dtype=float).reshape(-1, seg.shape[0])
    return [sparse.csr_matrix((row, blk, indptr), shape=(U, L1)) for row in prod]


def slot_sums_host(mats: list, groups: np.ndarray, s: np.ndarray, a1: np.ndarray) -> np.ndarray:
    """(m, U, 2): :func:`slot_sums` of the weights :func:`level_weights` (s_i, a1[groups_i]) of m points,
    point i with the matrix of its weight group (:func:`slot_matrices`), on the host: one sparse product
    per group with the weights of all its points as columns."""
    m = len(groups)
    U = mats[0].shape[0]
    out = np.empty((m, U, 2))
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        P = mats[g]
        W = level_weights(s[rows], np.asarray(a1[g])[None, :])  # (r, ℓ₁, 2)
        out[rows] = np.moveaxis((P @ np.moveaxis(W, 0, 1).reshape(P.shape[1], -1)).reshape(U, rows.size, 2), 1, 0)
    return out


class DenseStage(NamedTuple):
    """The dense path's state between the factor and the gradient (:func:`dense_stage`): everything
    :func:`dense_finish` needs but Ā, so that LAPACK's potri (M⁻¹ from L) can run on the host between
    two programs instead of in a host callback (which keeps a program out of JAX's persistent cache)."""

    L: jnp.ndarray  # (N, N) lower Cholesky factor of M = D G D + J
    logd: jnp.ndarray  # (N,) log Lᵢᵢ
    s: jnp.ndarray  # θ₁
    a1: jnp.ndarray  # (ℓ₁,) a_j
    d: jnp.ndarray  # (ℓ₁,) d_j = s²a_j + 1
    sv: jnp.ndarray  # (m_R,) D over the R rows
    Gp: jnp.ndarray  # (U,) G's R block on the pattern
    dGp: jnp.ndarray  # (U,) ∂G/∂s there
    GRT: jnp.ndarray  # (m_R, t)
    dGRT: jnp.ndarray  # (m_R, t)
    dGTT: jnp.ndarray  # (t, t)
    v: jnp.ndarray  # (t,) the coefficients of the T rows' log Lᵢᵢ
    n: jnp.ndarray
    ldW: jnp.ndarray


def _tail(theta, xp: CrossProducts, layout: Layout, n, p: int, reml: bool):
    """(s, a₁, d, (w_j, w′_j), B_T, G_TT, ∂G_TT/∂s, v, a): the pieces every path shares."""
    dt = xp.A11.dtype
    s = theta[0]
    a1 = xp.A11[:, 0, 0]
    d = s * s * a1 + 1.0
    W2 = jnp.stack([s * s / d, 2.0 * s / (d * d)], axis=1)  # (w_j, w′_j)
    BT = xp.BT[:, :, 0]  # (ℓ₁, t)
    # G_TT and ∂G_TT/∂s
    STT = jnp.einsum("jc,jt,js->cts", W2, BT, BT)
    GTT, dGTT = xp.CTT - STT[0], -STT[1]
    nu = n - p if reml else n
    v = jnp.concatenate([jnp.full((p,), 2.0 if reml else 0.0, dt), jnp.reshape(2.0 * nu, (1,)).astype(dt)])
    return s, a1, d, W2, BT, GTT, dGTT, v, jnp.asarray(2.0, dt)


def _rt(theta, xp: CrossProducts, idx: Index, layout: Layout, W2, BT):
    """(D over the R rows, G_RT, ∂G_RT/∂s)."""
    m_R = layout.m_R
    sv = scalar_scales(lambdas(theta, theta_layout(layout.q)), layout)
    BR = xp.BR[:, 0]
    eb, er = idx.e_blk, idx.e_row
    SRT = jax.ops.segment_sum((W2[eb] * BR[:, None])[:, :, None] * BT[eb][:, None, :], er, num_segments=m_R)
    return sv, xp.CRT - SRT[:, 0], -SRT[:, 1]


def _finish(s, a1, d, logd, gk, T1, n, p: int, ldW, reml: bool, m_R: int):
    g1 = jnp.sum(2.0 * s * a1 / d) + T1
    ldL2 = jnp.sum(jnp.log(d)) + 2.0 * jnp.sum(logd[:m_R])
    ldRX2 = 2.0 * jnp.sum(logd[m_R : m_R + p])
    r2 = jnp.exp(2.0 * logd[m_R + p])
    f = profiled_criterion(ldL2, ldRX2, r2, n, p, ldW, reml)
    return f, jnp.concatenate([g1[None], gk])


def value_and_grad(theta, xp: CrossProducts, idx: Index, layout: Layout, n, p: int, ldW, reml: bool,
                   pairs: Pairs | None = None):
    """(f(θ), ∇f(θ)) of the profiled ML deviance or REML criterion for all-scalar random terms
    (module docstring); θ = (θ₁, …, θ_K) in term order, as :func:`jaxmix.spec.covariance.lambdas`
    reads it.  ``pairs``: :func:`pairs_host`'s arrays, needed where the R block is dense (not
    ``layout.r_diagonal``)."""
    m_R = layout.m_R
    if m_R and not layout.r_diagonal:
        return dense_finish(dense_stage(theta, xp, idx, layout, n, p, ldW, reml, pairs), layout, p, reml, pairs)
    s, a1, d, W2, BT, GTT, dGTT, v, a = _tail(theta, xp, layout, n, p, reml)
    if m_R:
        sv, GRT, dGRT = _rt(theta, xp, idx, layout, W2, BT)
        logd, gk, T1 = _diag_head(sv, xp, idx, layout, W2, GRT, dGRT, GTT, dGTT, a, v)
    else:
        L = chol_upper(GTT)
        logd = jnp.log(jnp.diagonal(L))
        ATT = logdiag_adjoint(L, 0, a, v)
        T1 = jnp.sum(_sym(ATT) * dGTT)
        gk = jnp.zeros((0,), GTT.dtype)
    return _finish(s, a1, d, logd, gk, T1, n, p, ldW, reml, m_R)


def dense_split(layout: Layout) -> bool:
    """Whether the criterion of this class takes the dense path with A⁻¹ from LAPACK's potri on the
    host (:func:`jaxmix.core.linalg.host_inverse`): then a fit runs :func:`dense_stage` and
    :func:`dense_finish` as two programs with :func:`jaxmix.core.linalg.spd_inverse_host` between
    them, and both stay in JAX's persistent cache."""
    return applies(layout) and bool(layout.m_R) and not layout.r_diagonal and host_inverse(layout.m_R + layout.t)


def _sym(A):
    """The symmetric matrix whose upper triangle A holds."""
    return jnp.triu(A) + jnp.triu(A, 1).T


def dense_stage(theta, xp: CrossProducts, idx: Index, layout: Layout, n, p: int, ldW, reml: bool,
                pairs: Pairs, S=None) -> DenseStage:
    """The dense Schur complement M = D G D + J and its factor: G's R block and ∂G/∂s live on the
    pattern of :class:`Pairs` (one sum over the pairs per slot); only M itself, for LAPACK's factor,
    is dense.  ``S``: those slot sums (U, 2) when the host formed them (:func:`slot_sums_host`; then
    ``pairs`` need not hold the pairs themselves, only the pattern)."""
    m_R, t = layout.m_R, layout.t
    s, a1, d, W2, BT, GTT, dGTT, v, a = _tail(theta, xp, layout, n, p, reml)
    sv, GRT, dGRT = _rt(theta, xp, idx, layout, W2, BT)
    dt = GTT.dtype
    S = slot_sums(W2, pairs) if S is None else S
    Gp = pairs.cpat - S[:, 0]
    dGp = -S[:, 1]
    Dr, Dc = sv[pairs.pr], sv[pairs.pc]
    RR = jnp.eye(m_R, dtype=dt).reshape(-1).at[pairs.pr * m_R + pairs.pc].add(
        Gp * Dr * Dc, indices_are_sorted=True).reshape(m_R, m_R)  # D G D + I, upper triangle
    # materialise the scattered block (fused into its consumers, XLA's CPU backend re-runs the scatter
    # per element)
    RR = jax.lax.optimization_barrier(RR)
    M = jnp.block([[RR, GRT * sv[:, None]], [jnp.zeros((t, m_R), dt), GTT]])  # upper triangle valid
    L = chol_upper(M)
    return DenseStage(L, jnp.log(jnp.diagonal(L)), s, a1, d, sv, Gp, dGp, GRT, dGRT, dGTT, v,
                      jnp.asarray(n, dt), jnp.asarray(ldW, dt))


def dense_finish(st: DenseStage, layout: Layout, p: int, reml: bool, pairs: Pairs, Ainv_lower=None):
    """(f, ∇f) from :func:`dense_stage`: Ā = ½L⁻ᵀdiag(v)L⁻¹ read on the pattern and the T rows — from
    :func:`jaxmix.core.linalg.logdiag_adjoint` (its upper triangle), or given M⁻¹ with its lower
    triangle set (``Ainv_lower``, from :func:`jaxmix.core.linalg.spd_inverse_host`)."""
    m_R = layout.m_R
    N = m_R + layout.t
    L = st.L
    a = jnp.asarray(2.0, L.dtype)
    Dr, Dc = st.sv[pairs.pr], st.sv[pairs.pc]
    if Ainv_lower is None:  # upper triangle
        Abar = logdiag_adjoint(L, m_R, a, st.v)
        Ap = Abar.reshape(-1)[pairs.pr * N + pairs.pc]
        ART, ATT = Abar[:m_R, m_R:], _sym(Abar[m_R:, m_R:])
    else:  # Ā = ½a·M⁻¹ + W′ diag(c) W (c = ½(v − a), W′ = L⁻ᵀ[e_m … e_N]) at the entries read only
        Wt = trsm(L, jnp.eye(N, layout.t, -m_R, dtype=L.dtype), True)  # (N, t)
        Wc = Wt * (0.5 * (st.v - a))
        Ap = 0.5 * a * Ainv_lower.reshape(-1)[pairs.pc * N + pairs.pr] + jnp.sum(Wc[pairs.pr] * Wt[pairs.pc], axis=1)
        ART = 0.5 * a * Ainv_lower[m_R:, :m_R].T + Wc[:m_R] @ Wt[m_R:].T
        ATT = 0.5 * a * _sym(Ainv_lower[m_R:, m_R:].T) + Wc[m_R:] @ Wt[m_R:].T
    T1 = (jnp.sum(pairs.mult * Ap * Dr * Dc * st.dGp) + 2.0 * jnp.sum(ART * st.sv[:, None] * st.dGRT)
          + jnp.sum(ATT * st.dGTT))
    # rᵢ = Σ_l Āᵢₗ Gᵢₗ D_l over the symmetric block: entry (r, c) adds to row r, and (off the diagonal)
    # its mirror (c, r) to row c
    h = Ap * st.Gp
    rv = (jax.ops.segment_sum(h * Dc, pairs.pr, num_segments=m_R, indices_are_sorted=True)
          + jax.ops.segment_sum(h * Dr * (pairs.mult == 2.0), pairs.pc, num_segments=m_R)
          + jnp.sum(ART * st.GRT, axis=1))
    return _finish(st.s, st.a1, st.d, st.logd, 2.0 * _term_sums(rv, layout), T1, st.n, p, st.ldW, reml, m_R)


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
