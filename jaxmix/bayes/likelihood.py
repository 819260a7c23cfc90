"""Likelihoods the sampler evaluates (pure JAX, jit/vmap-able; no numpyro here).

Gaussian (random effects integrated out).  For y ~ N(Xβ + o, σ²(ZΛΛ′Z′ + W⁻¹)) with Λ the relative
covariance factor (the random-effect covariance is σ²ΛΛ′), the blocked Cholesky factor L of the
augmented system for Λ (:func:`jaxmix.core.blocked.factorize`, as the ML fit uses) gives, without ever
forming an n x n matrix,

    −2 log p(y | β, θ, σ) = n log(2πσ²) − log|W| + log|L_Z|² + (r² + ‖L_X′β − c_X‖²) / σ²

where log|L_Z|² = log|Λ′Z′WZΛ + I|, r² = L_yy² is the minimal penalised residual sum of squares,
L_X the fixed-effects block of L and c_X the response row of L in the X columns (L_X′β̂ = c_X), so
r² + ‖L_X′β − c_X‖² is the penalised residual sum of squares at β (Bates et al. 2015, JSS 67(1),
section 3.6).  Only the cross-products (:func:`jaxmix.core.crossprod.cross_products`) enter.

GLMMs (random effects sampled, non-centred).  u ~ N(0, I), b = Λu, η = Xβ + o + Zb and
log p(y | β, u) = Σᵢ wᵢ ℓᵢ(ηᵢ) with ℓ the family's log-likelihood (:mod:`jaxmix.spec.families`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core.blocked import Factor, factorize, logdets
from ..core.crossprod import CrossProducts, Index, Layout
from ..core.glmm import lam_apply
from ..core.linalg import solve_lower_t, trsm

__all__ = ["gaussian_marginal_loglik", "gaussian_ols_loglik", "linear_predictor_re", "glmm_loglik",
           "conditional_u"]


def gaussian_marginal_loglik(lams, beta, sigma, xp: CrossProducts, idx: Index, layout: Layout, n, ldW):
    """log p(y | β, Λ, σ) with the random effects integrated out (formula in the module docstring).

    ``lams`` are the relative factors Λ_k (covariance σ²Λ_kΛ_k′); the tail of ``xp`` is [X, y − o].
    Returns (log-likelihood, factor).
    """
    p = beta.shape[0]
    f = factorize(lams, xp, idx, layout)
    ldL2, _, r2 = logdets(f, layout, p)
    m_R = layout.m_R
    yrow = f.LDD[m_R + p]
    LX = f.LDD[m_R : m_R + p, m_R : m_R + p]
    resid = LX.T @ beta - yrow[m_R : m_R + p]
    prss = r2 + jnp.sum(resid**2)
    s2 = sigma**2
    return -0.5 * (n * jnp.log(2.0 * jnp.pi * s2) - ldW + ldL2 + prss / s2), f


def gaussian_ols_loglik(beta, sigma, XtWX, XtWy, ytWy, n, ldW):
    """log p(y | β, σ) without random effects: −½[n log(2πσ²) − log|W| + (y′Wy − 2β′X′Wy + β′X′WXβ)/σ²]."""
    rss = ytWy - 2.0 * beta @ XtWy + beta @ XtWX @ beta
    s2 = sigma**2
    return -0.5 * (n * jnp.log(2.0 * jnp.pi * s2) - ldW + rss / s2)


def linear_predictor_re(u1, uR, lams, Z1, ZR, idx: Index, layout: Layout):
    """(Zb)ᵢ for b = Λu: term 1 by its level code, the other terms through Z_R's row positions."""
    b1 = u1 @ lams[0].T
    eta = jnp.sum(Z1 * b1[idx.code1], axis=1)
    if layout.m_R:
        bR = lam_apply(uR, lams, layout)
        eta = eta + jnp.sum(ZR * bR[idx.rpos], axis=1)
    return eta


def glmm_loglik(fam, eta, y, ntr, pw):
    """Σᵢ wᵢ ℓᵢ(ηᵢ) (binomial with ``ntr`` trials, or poisson)."""
    return jnp.sum(pw * fam.loglik(y, ntr, eta))


def conditional_u(f: Factor, beta, sigma, z1, zR, idx: Index, layout: Layout):
    """A draw of the spherical random effects u | y, β, Λ, σ of the Gaussian model.

    u | y ~ N(û(β), σ²(L_Z L_Z′)⁻¹) with L_Z′û(β) = c_Z − L_XZ′β, so u = L_Z⁻ᵀ(c_Z − L_XZ′β + σz) for
    z ~ N(0, I): the back-substitution of the ML solution (:func:`jaxmix.core.lmm.solve_factor`) with
    the noise added to its right-hand side.  ``z1`` (levels₁, q₁), ``zR`` (m_R,).
    """
    m_R, p = layout.m_R, beta.shape[0]
    LDD = f.LDD
    yrow = LDD[m_R + p]
    LXR = LDD[m_R : m_R + p, :m_R]
    LRR = LDD[:m_R, :m_R]
    rhsR = yrow[:m_R] - LXR.T @ beta + sigma * zR
    uR = trsm(LRR, rhsR, True) if m_R else rhsR
    c1 = f.lT[:, p, :]
    rhs1 = c1 - jnp.einsum("jtc,t->jc", f.lT[:, :p, :], beta) + sigma * z1
    if m_R:
        rhs1 = rhs1 - jax.ops.segment_sum(f.lR * uR[idx.e_row][:, None], idx.e_blk, num_segments=layout.l1)
    u1 = solve_lower_t(f.L11, rhs1[:, :, None])[:, :, 0]
    return u1, uR
