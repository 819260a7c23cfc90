"""The Laplace deviance of a GLMM whose random terms are all scalar, with its gradient in closed form.

For η = Xβ + o + ZΛu, Λ = diag(θ_k over term k's levels), the canonical-link families (binomial logit,
Poisson log: the Fisher weights are the observed information W = −∂²ℓ/∂η²) and the conditional modes û
(:func:`jaxmix.core.glmm.conditional_modes`),

    D(θ, β) = −2 Σᵢ wᵢℓᵢ(η̂ᵢ) + ‖û‖² + log|A|,   A = I + Λ′Z′WZΛ at η̂ = η(û).

Its gradient needs no derivative of û in the penalised part (û is stationary there) and, for log|A|,
only the diagonal hᵢ = (ZΛA⁻¹Λ′Z′)ᵢᵢ and one solve with A (û′ = A⁻¹(∂Λ′Z′s − Λ′Z′W ∂η), implicit
function theorem, the Hessian of the penalised deviance in u being 2A).  With s = ∂ℓ/∂η, W′ = ∂W/∂η,
r = h ⊙ W′, q = A⁻¹Λ′Z′r, e = ZΛq and v = −2s + r − W ⊙ e (all per row, prior weights included):

    ∂D/∂β   = X′v
    ∂D/∂θ_k = Σᵢ zᵢₖ (vᵢ ûₖ₍ᵢ₎ + sᵢ qₖ₍ᵢ₎) + 2 Σᵢ Wᵢ zᵢₖ mᵢₖ,   mᵢ = Aᵢ⁻¹ ζᵢ,

where k(i) is row i's level of term k, ζᵢ = (θ_k zᵢₖ)_k the row of ZΛ and Aᵢ⁻¹ the K x K block of A⁻¹
among the row's levels (so hᵢ = ζᵢ′mᵢ, and the last sum is tr(A⁻¹ ∂A/∂θ_k) at fixed W).  A⁻¹ is read at
those blocks only: with term 1 (the most levels, A₁₁ = diag(d_j), d_j = 1 + θ₁²Σ_{i∈j}Wᵢzᵢ₁²)
eliminated, S = A_RR − A_R1 D⁻¹A_1R is the Schur complement of :func:`jaxmix.core.blocked.schur`,
l_e = A_{j,r}/√d_j the coupling entry e = (j, r), and

    (A⁻¹)_RR = S⁻¹,   (A⁻¹)_{j,r(e)} = −ỹ_e/√d_j,   (A⁻¹)_{jj} = (1 + Σ_{e∈j} l_e ỹ_e)/d_j,
    ỹ_e = Σ_{e′∈j} l_{e′} S⁻¹_{r(e′), r(e)}

(entries of S⁻¹ at same-level pairs only).  S⁻¹ is dense from its Cholesky factor, or diagonal where term
1 is nested in the only other term (``layout.r_diagonal``).  One evaluation is the mode iterations and
one factor at û; nothing is differentiated by JAX (no reverse pass through the factorizations, which
was half of the program's compile time and of each evaluation).

Adaptive Gauss–Hermite quadrature of one scalar term (lme4's nAGQ > 1) has its own closed form,
:func:`agq_value_and_grad`: there the nodes move with û and σ, so the modes' and the curvature's
derivatives (third derivatives of ℓ) enter, level by level.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .blocked import scalar_scales, schur
from .crossprod import Index, Layout, RowData, cross_products, pair_sums
from .glmm import GlmmData, conditional_modes
from .linalg import chol, trsm
from ..spec.covariance import ThetaLayout, lambdas
from ..spec.families import Family

__all__ = ["applies", "agq_applies", "value_and_grad", "agq_value_and_grad", "schur_inverse", "sinv_apply", "sinv_at"]


def applies(fam: Family, layout: Layout, nagq: int = 1) -> bool:
    """Whether :func:`value_and_grad` serves this model: Laplace (nagq ≤ 1), every random term scalar,
    a family whose Fisher weights are the observed information and without a dispersion parameter
    (binomial with the logit link, Poisson with the log link)."""
    return (nagq <= 1 and fam.score_info is not None and fam.dispersion is None and fam.scoring_weight is None
            and all(qk == 1 for qk in layout.q))


def agq_applies(fam: Family, layout: Layout) -> bool:
    """Whether :func:`agq_value_and_grad` serves this model: adaptive Gauss–Hermite quadrature (one
    scalar random term) of the families of :func:`applies`."""
    return applies(fam, layout) and len(layout.q) == 1


def agq_value_and_grad(params, fam: Family, d: GlmmData, idx: Index, layout: Layout, tl: ThetaLayout, gh_nodes,
                       gh_weights, u_start=None, constant: bool = True):
    """(D, ∇D, û) of the adaptive Gauss–Hermite deviance of one scalar term (lme4's nAGQ > 1) at
    params = (λ, β), as :func:`jaxmix.core.glmm.laplace_objective` with nodes x_k and weights w_k.

    Per level j, with hⱼ(u) = Σ_{i∈j} wᵢℓᵢ(Xᵢβ + oᵢ + zᵢλu) − u²/2, its mode ûⱼ (hⱼ′ = 0), Hⱼ = hⱼ″(ûⱼ) =
    λ²S₂ⱼ − 1 (canonical links: the observed information is Fisher's), σⱼ = (−Hⱼ)^(−½) and the nodes
    u_jk = ûⱼ + σⱼx_k,

        D = −2 Σⱼ [log σⱼ + log Σ_k exp(T_jk)],   T_jk = hⱼ(u_jk) + x_k²/2 + log w_k.

    Its total derivative, with p_jk = softmax_k T_jk, Aⱼ = Σ_k p_jk hⱼ′(u_jk), Bⱼ = Σ_k p_jk hⱼ′(u_jk) x_k,
    αⱼ = σⱼ²(1 + σⱼBⱼ)/2 and γⱼ = Aⱼ + αⱼhⱼ‴(ûⱼ) (dû = −∂hⱼ′/∂ψ / Hⱼ by the implicit function theorem,
    dσⱼ = σⱼ³ dHⱼ/2, dHⱼ = ∂hⱼ″/∂ψ + hⱼ‴ dûⱼ), is

        ∂D/∂ψ = −2 Σⱼ [αⱼ ∂hⱼ″/∂ψ − (γⱼ/Hⱼ) ∂hⱼ′/∂ψ + Σ_k p_jk ∂hⱼ/∂ψ(u_jk)]

    with S_mⱼ = Σ_{i∈j} wᵢℓᵢ⁽ᵐ⁾(η̂ᵢ)zᵢᵐ: for β, −2X′r with rᵢ = αⱼλ²ℓᵢ‴zᵢ² − (γⱼ/Hⱼ)λℓᵢ″zᵢ + Σ_k p_jk ℓᵢ′(η_ik);
    for λ, ∂hⱼ″/∂λ = 2λS₂ⱼ + λ²ûⱼS₃ⱼ, ∂hⱼ′/∂λ = S₁ⱼ + λûⱼS₂ⱼ and ∂hⱼ/∂λ(u) = u Σ_{i∈j} wᵢℓᵢ′zᵢ.  No
    reverse pass: the modes, one pass over the rows at û and one per node."""
    lam, beta = params[0], params[tl.size:]
    u, _ = conditional_modes(params[: tl.size], beta, fam, d, idx, layout, tl, u_start=u_start, polish=True)
    j, z, uh = idx.code1, d.Z1[:, 0], u[0][:, 0]
    L1 = layout.l1
    seg = lambda x: jax.ops.segment_sum(x, j, num_segments=L1)  # noqa: E731  (over each level's rows)
    eta_fix = d.X @ beta + d.offset
    eta = eta_fix + z * lam * uh[j]
    info = lambda e: fam.score_info(d.y, d.ntr, e)  # noqa: E731
    (g, w), (_, wp) = jax.jvp(info, (eta,), (jnp.ones_like(eta),))
    l1, l2, l3 = d.pw * g, -d.pw * w, -d.pw * wp  # wᵢℓᵢ′, wᵢℓᵢ″, wᵢℓᵢ‴ at η̂
    S1, S2, S3 = seg(l1 * z), seg(l2 * z * z), seg(l3 * z * z * z)
    H = lam * lam * S2 - 1.0
    sig = 1.0 / jnp.sqrt(-H)
    uk = uh[:, None] + sig[:, None] * gh_nodes[None, :]  # (ℓ₁, K)
    zl = z * lam
    eta_k = eta_fix[:, None] + zl[:, None] * uk[j]  # (n, K)
    kern = jax.vmap(lambda e: fam.kernel(d.y, d.ntr, e) * d.pw, in_axes=1, out_axes=1)(eta_k)
    score = jax.vmap(lambda e: fam.score_info(d.y, d.ntr, e)[0] * d.pw, in_axes=1, out_axes=1)(eta_k)
    T = seg(kern) - 0.5 * uk**2 + 0.5 * gh_nodes[None, :] ** 2 + jnp.log(gh_weights)[None, :]
    lse = jax.scipy.special.logsumexp(T, axis=1)
    value = -2.0 * jnp.sum(jnp.log(sig) + lse)
    if constant:  # the η-free part of ℓ (the same at every node)
        value = value - 2.0 * jnp.sum((fam.loglik(d.y, d.ntr, eta) - fam.kernel(d.y, d.ntr, eta)) * d.pw)
    p = jnp.exp(T - lse[:, None])
    Sk = seg(score * z[:, None])  # Σ_{i∈j} wᵢℓᵢ′(η_ik)zᵢ
    hp = lam * Sk - uk  # hⱼ′(u_jk)
    A = jnp.sum(p * hp, axis=1)
    B = jnp.sum(p * hp * gh_nodes[None, :], axis=1)
    alpha = 0.5 * sig**2 * (1.0 + sig * B)
    c = (A + alpha * lam**3 * S3) / H  # γⱼ/Hⱼ
    r = alpha[j] * lam * lam * l3 * z * z - c[j] * lam * l2 * z + jnp.sum(p[j] * score, axis=1)
    g_beta = -2.0 * (r @ d.X)  # X′r (X.T @ r made XLA transpose X on every call)
    g_lam = -2.0 * jnp.sum(alpha * (2.0 * lam * S2 + lam * lam * uh * S3) - c * (S1 + lam * uh * S2)
                           + jnp.sum(p * uk * Sk, axis=1))
    return value, jnp.concatenate([g_lam[None], g_beta]), u


def sinv_apply(Sinv, diag: bool, x):
    """S⁻¹x, S⁻¹ held as its diagonal (``diag``) or dense."""
    return Sinv * x if diag else Sinv @ x


def schur_inverse(M, diag: bool):
    """(S⁻¹, log|S|) of the Schur complement M of the R rows: its diagonal where M is diagonal
    (``layout.r_diagonal``), else dense from its Cholesky factor."""
    if diag:
        Sd = jnp.diagonal(M)
        return 1.0 / Sd, jnp.sum(jnp.log(Sd))
    L = chol(M)
    Linv = trsm(L, jnp.eye(M.shape[0], dtype=M.dtype))
    return Linv.T @ Linv, 2.0 * jnp.sum(jnp.log(jnp.diagonal(L)))


def sinv_at(Sinv, diag: bool, r, c):
    """S⁻¹ at the positions (r, c) (any shape)."""
    if diag:
        return jnp.where(r == c, Sinv[r], 0.0)
    return Sinv[r, c]


def value_and_grad(params, fam: Family, d: GlmmData, idx: Index, layout: Layout, tl: ThetaLayout, u_start=None,
                   constant: bool = True):
    """(D, ∇D, û) at params = (θ, β) (module docstring); ``u_start`` starts the mode iterations,
    ``constant=False`` leaves out the data's constant −2 Σ wᵢcᵢ (as
    :func:`jaxmix.core.glmm.laplace_objective`)."""
    nt = tl.size
    theta, beta = params[:nt], params[nt:]
    m_R = layout.m_R
    n = d.y.shape[0]
    dt = params.dtype
    # polished: the gradient below is exact at the mode only (its error is first order in the distance
    # from it; after one more Newton step it is second order)
    u, _ = conditional_modes(theta, beta, fam, d, idx, layout, tl, u_start=u_start, polish=True)
    lams = lambdas(theta, tl)
    s1 = theta[0]
    j = idx.code1
    z1 = d.Z1[:, 0]
    u1 = u[0][:, 0]
    # per row: the term-wise levels' modes, z and θ (term 1, then the R columns)
    uz = [u1[j]]
    zs = [z1]
    ths = [jnp.broadcast_to(s1, (n,))]
    if m_R:
        sv = scalar_scales(lams, layout)
        uR = u[1]
        uz += [uR[idx.rpos[:, k]] for k in range(d.ZR.shape[1])]
        zs += [d.ZR[:, k] for k in range(d.ZR.shape[1])]
        ths += [sv[idx.rpos[:, k]] for k in range(d.ZR.shape[1])]
    Zr = jnp.stack(zs, axis=1)  # (n, K)
    zeta = Zr * jnp.stack(ths, axis=1)  # rows of ZΛ
    Ur = jnp.stack(uz, axis=1)
    eta = d.X @ beta + d.offset + jnp.sum(zeta * Ur, axis=1)
    ll = (fam.loglik if constant else fam.kernel)(d.y, d.ntr, eta) * d.pw
    info = lambda e: fam.score_info(d.y, d.ntr, e)  # noqa: E731
    (g, w), (_, wp) = jax.jvp(info, (eta,), (jnp.ones_like(eta),))
    s, W, Wp = d.pw * g, d.pw * w, d.pw * wp
    # materialise the per-row arrays (fused into their several consumers, XLA's CPU backend recomputes
    # the gathers behind them per consumer)
    Zr, zeta, Ur, s, W, Wp = jax.lax.optimization_barrier((Zr, zeta, Ur, s, W, Wp))

    xp = cross_products(RowData(d.Z1, d.ZR, jnp.zeros((n, 0), dt)), W, idx, layout)
    L11, lR, _, M = schur(lams, xp, idx, layout)
    dd = L11[:, 0, 0] ** 2  # d_j
    rd = L11[:, 0, 0]
    logdet = jnp.sum(jnp.log(dd))
    diag = layout.r_diagonal
    if m_R:
        le = lR[:, 0]  # l_e
        Sinv, ld_S = schur_inverse(M, diag)
        logdet = logdet + ld_S
        er, eb = idx.e_row, idx.e_blk
        # ỹ_e over the same-level pairs (a, b), a ≥ b, each pair adding to both its entries
        yt = pair_sums(le, sinv_at(Sinv, diag, er[idx.pa], er[idx.pb]), idx.pa, idx.pb)
        a_jr = -yt / rd[eb]  # (A⁻¹)_{j, r(e)}
        a_jj = (1.0 + jax.ops.segment_sum(le * yt, eb, num_segments=layout.l1)) / dd
    else:
        a_jj = 1.0 / dd
    # m_i = A_i⁻¹ ζ_i, the row's block of A⁻¹ times its row of ZΛ
    K = Zr.shape[1]
    m_cols = []
    for k in range(K):
        acc = 0.0
        for c in range(K):
            if k == 0 and c == 0:
                blk = a_jj[j]
            elif k == 0 or c == 0:
                blk = a_jr[idx.ent[:, max(k, c) - 1]]
            else:
                blk = sinv_at(Sinv, diag, idx.rpos[:, k - 1], idx.rpos[:, c - 1])
            acc = acc + blk * zeta[:, c]
        m_cols.append(acc)
    Mr = jnp.stack(m_cols, axis=1)
    h = jnp.sum(zeta * Mr, axis=1)
    r = h * Wp
    Mr, r = jax.lax.optimization_barrier((Mr, r))
    # q = A⁻¹ Λ′Z′r by the blocks (term 1 eliminated), e = ZΛq
    cz = zeta * r[:, None]
    c1 = jax.ops.segment_sum(cz[:, 0], j, num_segments=layout.l1)
    if m_R:
        cR = jax.ops.segment_sum(cz[:, 1:].reshape(-1), idx.rpos.reshape(-1), num_segments=m_R)
        qR = sinv_apply(Sinv, diag, cR - jax.ops.segment_sum(le * (c1 / rd)[eb], er, num_segments=m_R))
        q1 = (c1 / rd - jax.ops.segment_sum(le * qR[er], eb, num_segments=layout.l1)) / rd
        Qr = jnp.concatenate([q1[j][:, None], qR[idx.rpos]], axis=1)
    else:
        q1 = c1 / dd
        Qr = q1[j][:, None]
    Qr = jax.lax.optimization_barrier(Qr)
    e = jnp.sum(zeta * Qr, axis=1)
    v = -2.0 * s + r - W * e
    g_beta = v @ d.X  # X′v (X.T @ v made XLA transpose X on every call: 1.35 against 0.25 ms at 57k rows)
    per_col = jnp.sum(Zr * (v[:, None] * Ur + s[:, None] * Qr + 2.0 * W[:, None] * Mr), axis=0)  # (K,)
    # each column is one scalar term, in θ's order
    value = -2.0 * jnp.sum(ll) + jnp.sum(u[0] ** 2) + jnp.sum(u[1] ** 2) + logdet
    return value, jnp.concatenate([per_col, g_beta]), u
