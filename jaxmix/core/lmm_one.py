"""The profiled criterion of an LMM with one vector random term, with its gradient in closed form.

For ``y ~ x + (1 + x | g)`` (one term, q columns: a random slope; all-scalar models take
:mod:`jaxmix.core.lmm_scalar`) the blocked system of :mod:`jaxmix.core.blocked` has no R rows: per level
j, with G_j = Z_j′WZ_j, K_j = T′WZ_j (t x q, T = [X y]) and Λ the term's factor,

    A_j = Λ′G_jΛ + I,   B_j = K_jΛ,   M = T′WT − Σ_j B_jA_j⁻¹B_j′,   L_T = chol(M),

and the criterion of :func:`jaxmix.core.lmm.objective` is f = Σ_j log|A_j| + Σ_τ v_τ log (L_T)_ττ + c
(v: 2 on X's rows for REML, 0 for ML, 2ν on y's; c free of θ).  With Ā = ½L_T⁻ᵀdiag(v)L_T⁻¹ and
P_j = A_j⁻¹B_j′ĀB_jA_j⁻¹,

    ∂f/∂Λ = 2 Σ_j [G_jΛ(A_j⁻¹ + P_j) − K_j′ĀB_jA_j⁻¹]

(d log|A_j| = tr(A_j⁻¹dA_j), dA_j = dΛ′G_jΛ + Λ′G_jdΛ, dB_j = K_jdΛ), read at θ's entries of Λ by a
reverse pass through :func:`jaxmix.spec.covariance.lambdas` alone: no reverse pass through the factors
(about half of such a program's compile time).  Exact at a singular Λ too.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .crossprod import CrossProducts, Layout
from .linalg import chol, chol_small, logdiag_adjoint, solve_lower
from .lmm import profiled_criterion
from ..spec.covariance import ThetaLayout, lambdas

__all__ = ["applies", "value_and_grad"]


def applies(layout: Layout) -> bool:
    """Whether :func:`value_and_grad` serves this model: one random term, with more than one column."""
    return len(layout.q) == 1 and layout.q[0] > 1


def value_and_grad(theta, xp: CrossProducts, layout: Layout, tl: ThetaLayout, n, p: int, ldW, reml: bool):
    """(f(θ), ∇f(θ)) of the profiled ML deviance or REML criterion (module docstring)."""
    dt = xp.A11.dtype
    q = layout.q[0]
    lam = lambdas(theta, tl)[0]
    G, K = xp.A11, xp.BT  # (ℓ, q, q), (ℓ, t, q)
    eye = jnp.broadcast_to(jnp.eye(q, dtype=dt), G.shape)
    L11 = chol_small(jnp.einsum("ba,jbc,cd->jad", lam, G, lam) + eye)
    Li = solve_lower(L11, eye)
    Ainv = jnp.einsum("jba,jbc->jac", Li, Li)  # A_j⁻¹ = L₁₁ⱼ⁻ᵀL₁₁ⱼ⁻¹
    BA = jnp.einsum("jtc,cd,jde->jte", K, lam, Ainv)  # B_jA_j⁻¹
    M = xp.CTT - jnp.einsum("jtc,jsd,dc->ts", BA, K, lam)  # T′WT − Σ B_jA_j⁻¹B_j′
    LT = chol(M)
    logd = jnp.log(jnp.diagonal(LT))
    ldL2 = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L11, axis1=1, axis2=2)))
    f = profiled_criterion(ldL2, 2.0 * jnp.sum(logd[:p]), jnp.exp(2.0 * logd[p]), n, p, ldW, reml)
    nu = n - p if reml else n
    v = jnp.concatenate([jnp.full((p,), 2.0 if reml else 0.0, dt), jnp.reshape(2.0 * nu, (1,)).astype(dt)])
    Ab = logdiag_adjoint(LT, 0, jnp.asarray(2.0, dt), v)
    Ab = jnp.triu(Ab) + jnp.triu(Ab, 1).T  # its upper triangle is the one set
    P = jnp.einsum("jtc,ts,jsd->jcd", BA, Ab, BA)
    dlam = 2.0 * (jnp.einsum("jab,bc,jcd->ad", G, lam, Ainv + P) - jnp.einsum("jta,ts,jsd->ad", K, Ab, BA))
    _, pull = jax.vjp(lambda th: lambdas(th, tl), theta)
    (g,) = pull([dlam])
    return f, g
