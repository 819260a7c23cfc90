"""Blocked Cholesky factor of the scaled, augmented system (pure JAX, jit/vmap-able).

For relative covariance factors Λ = blockdiag(Λ₁ ⊗ I_ℓ₁, …) and S = blockdiag(Λ_R, I_t), factor

    [ Λ₁′A11Λ₁ + I        ·                 ]     [ L11   0   ]
    [ S′[BR;BT]Λ₁     S′[CRR CRT; · CTT]S + [I 0; 0 0] ]  =  L L′,   L = [ LD1  LDD ]

L11 is block diagonal (one q₁ x q₁ Cholesky per level), LD1 = S′BΛ₁L11⁻ᵀ keeps the sparsity of B, and
LDD is the dense Cholesky of the Schur complement S′CS + [I 0; 0 0] − LD1 LD1′, where the product
LD1 LD1′ is accumulated only over pairs of entries that share a level of term 1 (into its upper
triangle).  This is the
factorisation of lme4 / MixedModels.jl (Bates et al. 2015, JSS 67(1), section 3) with the first block
kept block diagonal and the coupling blocks kept sparse.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .crossprod import CrossProducts, Index, Layout
from .linalg import chol, chol_diag_head, chol_small, solve_lower

__all__ = ["Factor", "factorize", "schur", "scale_rows", "scalar_scales", "logdets"]


class Factor(NamedTuple):
    L11: jnp.ndarray  # (ℓ₁, q₁, q₁)
    lR: jnp.ndarray  # (E, q₁): entries of LD1 in the R rows, lR[e] = L11[j]⁻¹ b̃_e
    lT: jnp.ndarray  # (ℓ₁, t, q₁): LD1 in the tail rows, per level
    LDD: jnp.ndarray  # (m_R + t, m_R + t), lower


def scale_rows(M, lams, layout: Layout):
    """S_R′ M for M with m_R rows: rows of term k, level l are multiplied by Λ_k′ (block-wise)."""
    if layout.m_R == 0:
        return M
    parts = []
    for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], layout.nlev[1:]):
        blk = M[off : off + lk * qk].reshape((lk, qk) + M.shape[1:])
        blk = jnp.einsum("ba,lb...->la...", lam, blk)
        parts.append(blk.reshape((lk * qk,) + M.shape[1:]))
    return jnp.concatenate(parts, axis=0)


def scalar_scales(lams, layout: Layout):
    """With every term after the first scalar (q = 1), the diagonal of S_R: θ_k repeated over the
    (padded) levels of term k; None otherwise."""
    if any(qk != 1 for qk in layout.q[1:]):
        return None
    return jnp.concatenate([jnp.broadcast_to(lam[0, 0], (lk,)) for lam, lk in zip(lams[1:], layout.nlev[1:])])


def _scale_entries(BR, lams, layout: Layout):
    """Λ_k′ b Λ₁ for every entry block of Z_R′Z₁."""
    lam1 = lams[0]
    parts = []
    for lam, es, qk, npair in zip(lams[1:], layout.entry_starts, layout.q[1:], layout.n_pairs):
        blk = BR[es : es + npair * qk].reshape(npair, qk, -1)
        blk = jnp.einsum("ba,pbc,cd->pad", lam, blk, lam1)
        parts.append(blk.reshape(npair * qk, -1))
    return jnp.concatenate(parts, axis=0) if parts else BR


def factorize(lams, xp: CrossProducts, idx: Index, layout: Layout) -> Factor:
    """The blocked Cholesky factor for the relative covariance factors ``lams`` (one per term)."""
    L11, lR, lT, M = schur(lams, xp, idx, layout)
    LDD = chol_diag_head(M, layout.m_R) if layout.r_diagonal else chol(M)
    return _barrier(Factor(L11, lR, lT, LDD))


def schur(lams, xp: CrossProducts, idx: Index, layout: Layout):
    """The first block's factor L11, the coupling entries lR and lT, and the (symmetric) Schur
    complement M = S′CS + [I 0; 0 0] − LD1 LD1′ whose Cholesky factor is the factor's LDD."""
    lam1 = lams[0]
    q1, m_R, t = layout.q1, layout.m_R, xp.CTT.shape[-1]  # t: the cross-products' tail columns
    dt = xp.A11.dtype
    A = jnp.einsum("ba,jbc,cd->jad", lam1, xp.A11, lam1) + jnp.eye(q1, dtype=dt)
    L11 = chol_small(A)
    BT = jnp.einsum("jtc,cd->jtd", xp.BT, lam1)
    # lT[j] = BT[j] L11[j]^{-T}  <=>  lT[j]' = L11[j]^{-1} BT[j]'
    lT = jnp.swapaxes(solve_lower(L11, jnp.swapaxes(BT, 1, 2)), 1, 2)
    MTT = xp.CTT - jnp.einsum("jtc,jsc->ts", lT, lT)
    if m_R == 0:
        L11, lT, MTT = jax.lax.optimization_barrier((L11, lT, MTT))
        return L11, jnp.zeros((0, q1), dt), lT, MTT
    BR = _scale_entries(xp.BR, lams, layout)
    lR = solve_lower(L11[idx.e_blk], BR[:, :, None])[:, :, 0]
    sv = scalar_scales(lams, layout)
    if sv is not None:  # scalar terms 2..K: S = diag(sv), one fused elementwise product
        CRR = xp.CRR * sv[:, None] * sv[None, :]
    else:
        CRR = scale_rows(scale_rows(xp.CRR, lams, layout).T, lams, layout)  # S′ C S (C symmetric)
    CRR = CRR + jnp.eye(m_R, dtype=dt)
    prod = jnp.sum(lR[idx.pa] * lR[idx.pb], axis=-1)
    CRT = xp.CRT * sv[:, None] if sv is not None else scale_rows(xp.CRT, lams, layout)
    MRT = CRT - jax.ops.segment_sum(
        jnp.einsum("ec,etc->et", lR, lT[idx.e_blk]), idx.e_row, num_segments=m_R
    )
    MRR = (CRR.reshape(-1) - jax.ops.segment_sum(prod, idx.ptgt, num_segments=m_R * m_R,
                                                 indices_are_sorted=True)).reshape(m_R, m_R)
    # materialise the scattered blocks: fused into the Cholesky's input, XLA's CPU backend re-runs the
    # scatters per element (100x slower)
    MRR, MRT, MTT = jax.lax.optimization_barrier((MRR, MRT, MTT))
    if t == 0:  # no tail columns (a GLMM's random-effects system alone)
        M = jnp.triu(MRR) + jnp.triu(MRR, 1).T
    else:
        M = jnp.block([[jnp.triu(MRR), MRT], [jnp.zeros((t, m_R), dt), jnp.triu(MTT)]])
        M = M + jnp.triu(M, 1).T  # only the upper triangle of MRR holds the Schur update
    L11, lR, lT = jax.lax.optimization_barrier((L11, lR, lT))
    return L11, lR, lT, M


def _barrier(f: Factor) -> Factor:
    """Materialise the factor: XLA's CPU fusion otherwise recomputes gathers and scatters inside it."""
    return Factor(*jax.lax.optimization_barrier(tuple(f)))


def logdets(f: Factor, layout: Layout, p: int):
    """(log|L_Z|², log|L_X|², squared last diagonal entry) of the factor."""
    m_R = layout.m_R
    dD = jnp.diagonal(f.LDD)
    logdD = jnp.log(dD)
    ldL2, ldRX2 = _logdets(f.L11, jnp.sum(logdD[:m_R]), logdD[m_R:], p)
    return ldL2, ldRX2, dD[m_R + p] ** 2


def _logdets(L11, sR, logdT, p: int):
    """log|L_Z|² and log|L_X|² from term 1's blocks, the sum sR of the dense block's log-diagonal over
    the R rows and its log-diagonal logdT over the tail (X, then y)."""
    d11 = jnp.diagonal(L11, axis1=1, axis2=2)
    return 2.0 * (jnp.sum(jnp.log(d11)) + sR), 2.0 * jnp.sum(logdT[:p])
