"""The Laplace deviance of a GLMM with vector random terms (random slopes), with its gradient in closed form.

The formulas of :mod:`jaxmix.core.glmm_scalar` hold block by block.  For η = Xβ + o + Σ_k Z_kΛ_k u_k
(Λ_k the q_k x q_k factor of term k), the canonical-link families (binomial logit, Poisson log) and the
conditional modes û,

    D(θ, β) = −2 Σᵢ wᵢℓᵢ(η̂ᵢ) + ‖û‖² + log|A|,   A = I + Λ′Z′WZΛ.

With ζᵢ the row of ZΛ at row i's levels (Λ₁′zᵢ₁ for term 1, Λ_k′zᵢₖ for each term k after it), Aᵢ⁻¹
the (Σq) x (Σq) block of A⁻¹ among those levels, mᵢ = Aᵢ⁻¹ζᵢ, hᵢ = ζᵢ′mᵢ, s = ∂ℓ/∂η, W′ = ∂W/∂η,
r = h ⊙ W′, q = A⁻¹Λ′Z′r, e = ZΛq and v = −2s + r − W ⊙ e (per row, prior weights included):

    ∂D/∂β = X′v,   ∂D/∂Λ_k = Σᵢ zᵢₖ (vᵢûₖ₍ᵢ₎ + sᵢqₖ₍ᵢ₎ + 2Wᵢmᵢₖ)′

(ûₖ₍ᵢ₎, qₖ₍ᵢ₎ the q_k-vectors of row i's level of term k, mᵢₖ term k's part of mᵢ), and ∂D/∂θ is
∂D/∂Λ read at θ's entries of the Λ_k (a reverse pass through :func:`jaxmix.spec.covariance.lambdas`
alone).  A⁻¹ is read at the rows' blocks only, from the blocked factor (:func:`jaxmix.core.blocked.schur`:
L₁₁ⱼ the q₁ x q₁ factor of level j of term 1, lₑ = L₁₁ⱼ⁻¹b̃ₑ the q₁-vector of coupling entry e = (j, r),
S the Schur complement of the other terms):

    (A⁻¹)_RR = S⁻¹,   (A⁻¹)_{j,r(e)} = −L₁₁ⱼ⁻ᵀỹₑ,   (A⁻¹)_jj = L₁₁ⱼ⁻ᵀ(I + Σ_{e∈j} lₑỹₑ′)L₁₁ⱼ⁻¹,
    ỹₑ = Σ_{e′∈j} S⁻¹_{r(e′), r(e)} lₑ′

(entries of S⁻¹ at same-level pairs only; S⁻¹ dense from its factor, or diagonal where term 1 is nested
in the one scalar term after it).  One evaluation is the mode iterations and one factor at û; no reverse
pass through the factorizations (which costs about half of such a program's compile time).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .blocked import schur
from .crossprod import Index, Layout, RowData, cross_products, pair_sums
from .glmm import GlmmData, conditional_modes
from .glmm_scalar import schur_inverse, sinv_apply, sinv_at
from .linalg import solve_lower
from ..spec.covariance import ThetaLayout, lambdas
from ..spec.families import Family

__all__ = ["applies", "value_and_grad"]


def applies(fam: Family, layout: Layout, nagq: int = 1) -> bool:
    """Whether :func:`value_and_grad` serves this model: Laplace (nagq ≤ 1), a random term with more than
    one column, a family whose Fisher weights are the observed information and without a dispersion
    parameter (binomial with the logit link, Poisson with the log link).  All-scalar models take
    :func:`jaxmix.core.glmm_scalar.value_and_grad`."""
    return (nagq <= 1 and fam.score_info is not None and fam.dispersion is None and fam.scoring_weight is None
            and any(qk > 1 for qk in layout.q))


def _r_columns(layout: Layout) -> list:
    """Per term after the first, its columns of Z_R (and of the index's ``rpos`` and ``ent``)."""
    out, c = [], 0
    for qk in layout.q[1:]:
        out.append(slice(c, c + qk))
        c += qk
    return out


def value_and_grad(params, fam: Family, d: GlmmData, idx: Index, layout: Layout, tl: ThetaLayout, u_start=None,
                   constant: bool = True):
    """(D, ∇D, û) at params = (θ, β) for any random terms (module docstring), with the arguments of
    :func:`jaxmix.core.glmm_scalar.value_and_grad`."""
    nt = tl.size
    m_R, q1, l1 = layout.m_R, layout.q1, layout.l1
    theta, beta = params[:nt], params[nt:]
    n = d.y.shape[0]
    dt = params.dtype
    # polished: the gradient is exact at the mode only
    u, _ = conditional_modes(theta, beta, fam, d, idx, layout, tl, u_start=u_start, polish=True)
    lams = lambdas(theta, tl)
    j = idx.code1
    cols = _r_columns(layout)
    zeta1 = d.Z1 @ lams[0]  # (n, q₁): Λ₁′zᵢ₁ per row
    U1 = u[0][j]
    eta = d.X @ beta + d.offset + jnp.sum(zeta1 * U1, axis=1)
    if m_R:
        zetaR = jnp.concatenate([d.ZR[:, c] @ lam for c, lam in zip(cols, lams[1:])], axis=1)  # (n, c_R)
        UR = u[1][idx.rpos]
        eta = eta + jnp.sum(zetaR * UR, axis=1)
    ll = (fam.loglik if constant else fam.kernel)(d.y, d.ntr, eta) * d.pw
    info = lambda e: fam.score_info(d.y, d.ntr, e)  # noqa: E731
    (g, w), (_, wp) = jax.jvp(info, (eta,), (jnp.ones_like(eta),))
    s, W, Wp = d.pw * g, d.pw * w, d.pw * wp
    # materialise the per-row arrays (XLA's CPU backend would recompute the gathers per consumer)
    zeta1, U1, s, W, Wp = jax.lax.optimization_barrier((zeta1, U1, s, W, Wp))

    xp = cross_products(RowData(d.Z1, d.ZR, jnp.zeros((n, 0), dt)), W, idx, layout)
    L11, lR, _, M = schur(lams, xp, idx, layout)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L11, axis1=1, axis2=2)))
    Li = solve_lower(L11, jnp.broadcast_to(jnp.eye(q1, dtype=dt), L11.shape))  # L₁₁ⱼ⁻¹
    seg1 = lambda x: jax.ops.segment_sum(x, j, num_segments=l1)  # noqa: E731  (over term 1's levels)
    mv = lambda A, x: jnp.einsum("...ab,...b->...a", A, x)  # noqa: E731
    mtv = lambda A, x: jnp.einsum("...ba,...b->...a", A, x)  # noqa: E731  (A′x)
    if m_R:
        diag = layout.r_diagonal
        Sinv, ld_S = schur_inverse(M, diag)
        logdet = logdet + ld_S
        er, eb = idx.e_row, idx.e_blk
        # ỹ_e over the same-level pairs (a, b), a ≥ b, each pair adding to both its entries
        yt = pair_sums(lR, sinv_at(Sinv, diag, er[idx.pa], er[idx.pb]), idx.pa, idx.pb)
        a_jr = -mtv(Li[eb], yt)  # (A⁻¹)_{j, r(e)}, (E, q₁)
        inner = jnp.eye(q1, dtype=dt) + jax.ops.segment_sum(lR[:, :, None] * yt[:, None, :], eb, num_segments=l1)
        a_jj = jnp.einsum("jba,jbc,jcd->jad", Li, inner, Li)
    else:
        a_jj = jnp.einsum("jba,jbd->jad", Li, Li)
    # m_i = A_i⁻¹ ζ_i, the row's block of A⁻¹ times its row of ZΛ
    m1 = mv(a_jj[j], zeta1)
    if m_R:
        cR = zetaR.shape[1]
        ajr = [a_jr[idx.ent[:, c]] for c in range(cR)]  # (A⁻¹)_{j, rpos[:, c]} per row, (n, q₁)
        m1 = m1 + sum(ajr[c] * zetaR[:, c, None] for c in range(cR))
        mR = jnp.stack([jnp.sum(ajr[c] * zeta1, axis=1)
                        + sum(sinv_at(Sinv, diag, idx.rpos[:, c], idx.rpos[:, c2]) * zetaR[:, c2] for c2 in range(cR))
                        for c in range(cR)], axis=1)
        h = jnp.sum(zeta1 * m1, axis=1) + jnp.sum(zetaR * mR, axis=1)
    else:
        h = jnp.sum(zeta1 * m1, axis=1)
    r = h * Wp
    m1, r = jax.lax.optimization_barrier((m1, r))
    # q = A⁻¹Λ′Z′r by the blocks (forward with L, back with L′; term 1 eliminated), e = ZΛq
    w1 = mv(Li, seg1(zeta1 * r[:, None]))  # L₁₁⁻¹ c₁
    if m_R:
        cRv = jax.ops.segment_sum((zetaR * r[:, None]).reshape(-1), idx.rpos.reshape(-1), num_segments=m_R)
        qR = sinv_apply(Sinv, diag, cRv - jax.ops.segment_sum(jnp.sum(lR * w1[eb], axis=1), er, num_segments=m_R))
        q1v = mtv(Li, w1 - jax.ops.segment_sum(lR * qR[er][:, None], eb, num_segments=l1))
        QR = qR[idx.rpos]
    else:
        q1v = mtv(Li, w1)
    Q1 = q1v[j]
    e = jnp.sum(zeta1 * Q1, axis=1) + (jnp.sum(zetaR * QR, axis=1) if m_R else 0.0)
    v = -2.0 * s + r - W * e
    g_beta = v @ d.X  # X′v (X.T @ v made XLA transpose X on every call: 1.35 against 0.25 ms at 57k rows)
    # ∂D/∂Λ_k = Σᵢ zᵢₖ(vᵢûₖ + sᵢqₖ + 2Wᵢmᵢₖ)′, then read at θ's entries
    P1 = v[:, None] * U1 + s[:, None] * Q1 + 2.0 * W[:, None] * m1
    G = [d.Z1.T @ P1]
    if m_R:
        PR = v[:, None] * UR + s[:, None] * QR + 2.0 * W[:, None] * mR
        G += [d.ZR[:, c].T @ PR[:, c] for c in cols]
    _, pull = jax.vjp(lambda th: lambdas(th, tl), theta)
    (g_theta,) = pull(G)
    value = -2.0 * jnp.sum(ll) + jnp.sum(u[0] ** 2) + jnp.sum(u[1] ** 2) + logdet
    return value, jnp.concatenate([g_theta, g_beta]), u
