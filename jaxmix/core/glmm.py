"""Generalised linear mixed models: Laplace and adaptive Gauss–Hermite deviance (pure JAX).

With η = Xβ + o + ZΛu, u ~ N(0, I) and the conditional log-likelihood ℓ(y | u) = Σᵢ wᵢ ℓᵢ(ηᵢ):

* The conditional modes û maximise ℓ(y | u) − ‖u‖²/2 (penalised IRLS: each step solves the penalised
  weighted least-squares problem with the blocked Cholesky of Λ′Z′WZΛ + I, W = −∂²ℓ/∂η², with step
  halving).  The families and links here are log-concave in η, so W > 0 and the steps are Newton
  steps, except Gamma with the identity link, which takes Fisher-scoring steps (``Family.scoring_weight``).
* Laplace:  −2 log L(θ, β) ≈ −2 ℓ(y | û) + ‖û‖² + log|L|²,  L L′ = Λ′Z′W_F ZΛ + I with lme4's
  Fisher weights W_F = w μ′(η)²/V(μ) at û (equal to W for canonical links); for the negative binomial
  and Gamma families W_F is the observed W, the exact Laplace approximation (as glmmTMB).
* AGQ (one scalar term): −2 Σⱼ log[ σⱼ Σₖ ωₖ exp(ℓⱼ(ûⱼ + σⱼxₖ) − (ûⱼ + σⱼxₖ)²/2 + xₖ²/2) ] with
  σⱼ = 1/L₁₁ⱼ and (xₖ, ωₖ) the Gauss–Hermite rule for the standard normal; nagq = 1 is Laplace.

Exact derivatives in (θ, β): û is found by a loop whose inputs are detached, then Newton steps are
taken differentiably.  At the exact mode one step has the derivative of the implicit function û(θ, β)
(so the deviance's gradient is exact); the error of that step is quadratic in the distance from û, so
after two steps û(θ, β) is exact to fourth order and the Hessian is exact too.  The optimiser uses
one step for values and gradients and two for the exact Hessian.  For scalar random terms of the
canonical-link families the fit takes the gradient in closed form instead
(:mod:`jaxmix.core.glmm_scalar`, from the polished modes of :func:`conditional_modes`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .blocked import factorize, logdets
from ..spec.covariance import ThetaLayout, column_signs, lambdas
from .crossprod import Index, Layout, RowData, cross_products
from ..spec.families import Family
from .linalg import sequential_lapack
from .lmm import solve_factor

__all__ = ["GlmmData", "laplace_objective", "conditional_modes", "zero_modes"]


class GlmmData(NamedTuple):
    Z1: jnp.ndarray  # (n, q1)
    ZR: jnp.ndarray  # (n, s_R)
    X: jnp.ndarray  # (n, p)
    y: jnp.ndarray  # successes or counts
    ntr: jnp.ndarray  # binomial trials (1 for 0/1 data, unused for poisson); NB θ / Gamma shape per row
    pw: jnp.ndarray  # prior weights
    offset: jnp.ndarray


def glmm_data(arrays: dict) -> GlmmData:
    """:class:`GlmmData` from a dict with its field names as keys (a sweep's per-outcome arrays)."""
    return GlmmData(*(jnp.asarray(arrays[name]) for name in GlmmData._fields))


def lam_apply(uR, lams, layout: Layout):
    """Λ_R u for the R terms, block by block (levels x q_k each)."""
    if layout.m_R == 0:
        return uR
    parts = []
    for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], layout.nlev[1:]):
        parts.append((uR[off : off + lk * qk].reshape(lk, qk) @ lam.T).reshape(-1))
    return jnp.concatenate(parts)


def _eta_re(u1, uR, lams, d: GlmmData, idx: Index, layout: Layout):
    b1 = u1 @ lams[0].T
    eta = jnp.sum(d.Z1 * b1[idx.code1], axis=1)
    if layout.m_R:
        bR = lam_apply(uR, lams, layout)
        eta = eta + jnp.sum(d.ZR * bR[idx.rpos], axis=1)
    return eta


def _derivs(fam: Family, d: GlmmData, eta):
    """Per-row weighted log-likelihood, score and observed information in η."""
    if fam.score_info is not None:
        g, info = fam.score_info(d.y, d.ntr, eta)
    else:
        ll = lambda e, y, n: fam.kernel(y, n, e)  # noqa: E731
        g = jax.vmap(jax.grad(ll))(eta, d.y, d.ntr)
        info = -jax.vmap(jax.grad(jax.grad(ll)))(eta, d.y, d.ntr)
    return d.pw * fam.loglik(d.y, d.ntr, eta), d.pw * g, d.pw * info


def fisher_weights(fam: Family, d: GlmmData, eta):
    """w μ′(η)² / V(μ) (lme4's PIRLS weights)."""
    if fam.score_info is not None:  # canonical link: Fisher = observed information
        return d.pw * fam.score_info(d.y, d.ntr, eta)[1]
    mu_eta = jax.vmap(jax.grad(fam.linkinv))(eta)
    mu = jnp.clip(fam.linkinv(eta), 1e-300, 1.0 - 1e-16)
    return d.pw * d.ntr * mu_eta**2 / (mu * (1.0 - mu))


def _newton(u, lams, beta, fam, d: GlmmData, idx, layout: Layout, eta_fix, exact: bool = True):
    """One penalised-IRLS (Newton) step: argmin ‖W^½(z − ZΛu′)‖² + ‖u′‖², z = ZΛu + s/W.

    A family whose ℓ is not concave in η (``fam.scoring_weight``: Gamma with the identity link) takes
    Fisher-scoring steps in the mode iterations (``exact=False``, W > 0) and exact Newton steps with
    the observed information, of either sign, in the differentiable steps at the mode."""
    u1, uR = u
    er = _eta_re(u1, uR, lams, d, idx, layout)
    _, s, W = _derivs(fam, d, eta_fix + er)
    if fam.scoring_weight is None:
        W = jnp.maximum(W, 1e-12)
    elif not exact:
        W = jnp.maximum(d.pw * fam.scoring_weight(d.y, d.ntr, eta_fix + er), 1e-12)
    z = er + s / jnp.where(W == 0, 1.0, W)  # a row of zero weight (s = 0 there) adds nothing, not 0/0
    lay1 = layout
    xp = _tail_positive(cross_products(RowData(d.Z1, d.ZR, z[:, None]), W, idx, lay1), fam, W, z)
    f = factorize(lams, xp, idx, lay1)
    sol = solve_factor(f, idx, lay1, 0)
    return (sol.u1, sol.uR)


def _tail_positive(xp, fam, W, tail):
    """With weights of either sign (``fam.scoring_weight``) the tail column's own block T′WT of the
    cross-products may be negative, and the factor's tail entry √(…) NaN, which poisons the gradient
    though neither û nor log|L_Z| uses it: add Σ|W|t² + 1 there (changes nothing else)."""
    if fam.scoring_weight is None:
        return xp
    return xp._replace(CTT=xp.CTT + jnp.sum(jnp.abs(W) * tail**2) + 1.0)


def _pdev(u, lams, fam, d, idx, layout, eta_fix):
    """Penalised deviance up to a constant: −2 Σ wᵢ (ℓᵢ − cᵢ) + ‖u‖² (c = the η-free part of ℓ)."""
    u1, uR = u
    eta = eta_fix + _eta_re(u1, uR, lams, d, idx, layout)
    return -2.0 * jnp.sum(d.pw * fam.kernel(d.y, d.ntr, eta)) + jnp.sum(u1**2) + jnp.sum(uR**2)


def zero_modes(layout: Layout, dtype):
    """u = 0 in the (term 1, other terms) layout of the spherical random effects."""
    return jnp.zeros((layout.l1, layout.q1), dtype), jnp.zeros((layout.m_R,), dtype)


def conditional_modes(theta, beta, fam, d: GlmmData, idx, layout: Layout, tl: ThetaLayout,
                      max_iter: int = 60, tol: float = 1e-11, u_start=None, polish: bool = False):
    """û by penalised IRLS with step halving, from ``u_start`` (default u = 0; not differentiated).

    Each step u → u′ solves the penalised weighted least-squares problem; it is kept when the penalised
    deviance pd decreases, halved (up to 12 times) when pd rises by more than ``tol``·(1 + |pd|), and
    the iterations stop when a step changes pd by less than that (at the mode a full step changes pd
    by rounding noise only, in either direction).  ``polish``: return one more Newton step from the
    last iterate (the iterations stop when pd no longer moves, which leaves û accurate to about the
    square root of pd's rounding; after the step it is accurate to rounding, as a closed-form gradient
    at û needs).

    The start changes the number of iterations, not the mode: the optimiser warm-starts each
    evaluation from the modes of the last accepted point (lme4 does the same).  A start whose
    penalised deviance is not finite is replaced by u = 0 (from any other the halved steps converge
    all the same: pd is convex in u for the log-concave families; comparing the start with u = 0
    cost a pass over the rows at every evaluation).

    One loop holds one penalised deviance and one Newton step (each costs compile time per copy; the
    log-likelihood's transcendental functions most): every pass evaluates pd at one trial point
    u + t(u_N − u) — t = 0 the point itself (the start), t = 1 the Newton point u_N, t < 1 a halved
    step — and a pass that ends an iteration computes the next Newton point.
    """
    lams = lambdas(theta, tl)
    eta_fix = d.X @ beta + d.offset
    zero = zero_modes(layout, theta.dtype)
    u0 = zero if u_start is None else u_start
    dt = theta.dtype
    tmap = jax.tree_util.tree_map
    newton = lambda u: _newton(u, lams, beta, fam, d, idx, layout, eta_fix, exact=False)  # noqa: E731

    def body(c):
        u, pd, un, t, k, h, conv = c
        trial = tmap(lambda a, b: a + t * (b - a), u, un)
        v = _pdev(trial, lams, fam, d, idx, layout, eta_fix)
        v = jnp.where(jnp.isfinite(v), v, jnp.inf)
        start = t == 0.0
        small = tol * (1.0 + jnp.abs(pd))
        # at the mode the full step changes pd by rounding noise only, either way: that is the
        # convergence test, not a reason to halve (twelve halvings cost ~10 mode steps)
        near = (t == 1.0) & (jnp.abs(v - pd) < small)
        done = ~start & ((v < pd) | near | (h >= 12))  # this iteration's step is settled
        better = v < pd
        conv_n = done & (~better | (pd - v < small))
        bad_start = start & ~jnp.isfinite(v) & (k == 0) & (h == 0)  # the start is replaced by u = 0
        u_n = tmap(lambda a, b, z: jnp.where(bad_start, z, jnp.where(done & better, b, a)), u, trial, zero)
        pd_n = jnp.where(start & ~bad_start, v, jnp.where(done & better, v, pd))
        step = (start & ~bad_start) | (done & (~conv_n | polish))
        un_n = jax.lax.cond(step, newton, lambda x: un, u_n)
        t_n = jnp.where(bad_start, 0.0, jnp.where(step, 1.0, t * 0.5)).astype(dt)
        k_n = k + done.astype(k.dtype)
        h_n = jnp.where(bad_start, 1, jnp.where(done | start, 0, h + 1))  # halvings (1 marks the replaced start)
        return u_n, pd_n, un_n, t_n, k_n, h_n, conv_n

    def cond(c):
        return (c[4] < max_iter) & ~c[6]

    init = (u0, jnp.asarray(jnp.inf, dt), u0, jnp.asarray(0.0, dt), jnp.asarray(0), jnp.asarray(0),
            jnp.asarray(False))
    u, _, un, _, k, _, conv = jax.lax.while_loop(cond, body, init)
    if polish:
        u = tmap(lambda a, b: jnp.where(conv, b, a), u, un)
    return u, k


def laplace_parts(params, fam: Family, d: GlmmData, idx: Index, layout: Layout, tl: ThetaLayout, u_start=None,
                  newton_steps: int = 2, modes_given: bool = False):
    """(deviance pieces) at params = (θ, β): the differentiable modes and the Fisher factor, and û.

    ``newton_steps`` differentiable Newton steps from the detached û: with 0 the value is exact, with
    1 also its gradient, with 2 also its Hessian (see the module docstring).  ``modes_given``: u_start
    already is û at these parameters (no mode iterations)."""
    ntheta = tl.size
    theta, beta = params[:ntheta], params[ntheta:]
    if u_start is not None:
        u_start = jax.lax.stop_gradient(u_start)
    if modes_given:
        u_hat = u_start
    else:
        # d.ntr carries the NB / Gamma shape, a parameter too (jaxmix.spec.families): detached here as well
        d_fixed = d._replace(ntr=jax.lax.stop_gradient(d.ntr))
        u_hat, _ = conditional_modes(jax.lax.stop_gradient(theta), jax.lax.stop_gradient(beta), fam, d_fixed, idx,
                                     layout, tl, u_start=u_start)
    u_hat = jax.lax.stop_gradient(u_hat)
    lams = lambdas(theta, tl)
    eta_fix = d.X @ beta + d.offset
    u = u_hat
    for _ in range(newton_steps):
        u = _newton(u, lams, beta, fam, d, idx, layout, eta_fix)
    eta = eta_fix + _eta_re(u[0], u[1], lams, d, idx, layout)
    Wf = fisher_weights(fam, d, eta)
    n = d.y.shape[0]
    # the tail column only keeps the factor well defined (its values do not enter log|L_Z|²)
    xp = _tail_positive(cross_products(RowData(d.Z1, d.ZR, jnp.ones((n, 1), eta.dtype)), Wf, idx, layout), fam, Wf,
                        jnp.ones_like(eta))
    f = factorize(lams, xp, idx, layout)
    return u, eta, f, lams, u_hat


def laplace_objective(params, fam: Family, d: GlmmData, idx: Index, layout: Layout, tl: ThetaLayout,
                      gh_nodes=None, gh_weights=None, u_start=None, newton_steps: int = 2, modes_given: bool = False,
                      constant: bool = True):
    """Laplace (or, with Gauss–Hermite nodes, AGQ) approximation of −2 log L at (θ, β).

    With ``u_start`` (a start for the mode iterations), returns (value, û) for warm starts.
    ``newton_steps``: 2 (default) makes the Hessian exact, 1 the gradient (:func:`laplace_parts`).
    ``constant=False`` leaves out −2 Σ wᵢ cᵢ(yᵢ, nᵢ), the η-free part of ℓ (``fam.const``; a caller
    that adds :func:`jaxmix.spec.families.data_constant` once saves log-gamma functions of every row at
    every evaluation)."""
    u, eta, f, lams, u_hat = laplace_parts(params, fam, d, idx, layout, tl, u_start, newton_steps, modes_given)
    value = _laplace_value(u, eta, f, lams, fam, d, idx, layout, gh_nodes, gh_weights, constant)
    return value if u_start is None else (value, u_hat)


def _laplace_value(u, eta, f, lams, fam: Family, d: GlmmData, idx: Index, layout: Layout, gh_nodes, gh_weights,
                   constant: bool = True):
    ll = (fam.loglik if constant else fam.kernel)(d.y, d.ntr, eta) * d.pw
    if gh_nodes is None:
        ldL2, _, _ = logdets(f, layout, 0)
        return -2.0 * jnp.sum(ll) + jnp.sum(u[0] ** 2) + jnp.sum(u[1] ** 2) + ldL2
    # AGQ: a single scalar term, independent levels
    lam = lams[0][0, 0]
    sig = 1.0 / f.L11[:, 0, 0]  # (ℓ₁,)
    u1 = u[0][:, 0]
    shift = d.Z1[:, 0] * lam * sig[idx.code1]  # η change per unit node, per row
    eta_k = eta[:, None] + shift[:, None] * gh_nodes[None, :]
    ll_k = jax.vmap(lambda e: fam.kernel(d.y, d.ntr, e) * d.pw, in_axes=1, out_axes=1)(eta_k)
    if constant:
        ll_k = ll_k + ((fam.loglik(d.y, d.ntr, eta) - fam.kernel(d.y, d.ntr, eta)) * d.pw)[:, None]
    G = jax.ops.segment_sum(ll_k, idx.code1, num_segments=layout.l1)  # (ℓ₁, K)
    uk = u1[:, None] + sig[:, None] * gh_nodes[None, :]
    terms = G - 0.5 * uk**2 + 0.5 * gh_nodes[None, :] ** 2 + jnp.log(gh_weights)[None, :]
    return -2.0 * jnp.sum(jnp.log(sig) + jax.scipy.special.logsumexp(terms, axis=1))


def gauss_hermite(n: int):
    """Nodes and weights of the n-point Gauss–Hermite rule for ∫ f(x) φ(x) dx."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / np.sqrt(2.0 * np.pi)


def flip_modes(theta, u, tl: ThetaLayout, layout: Layout):
    """The modes at ``flip_columns(θ)`` from those at θ: Λ D (D = diag(±1)) gives the same ΛΛ′, and
    u ↦ D u keeps Λu and ‖u‖ (each flipped column's u changes sign)."""
    signs = column_signs(theta, tl)
    u1, uR = u
    u1 = u1 * signs[0][None, :]
    if layout.m_R:
        parts = [uR[off : off + lk * qk].reshape(lk, qk) * sg[None, :]
                 for sg, off, qk, lk in zip(signs[1:], layout.offsets, layout.q[1:], layout.nlev[1:])]
        uR = jnp.concatenate([pt.reshape(-1) for pt in parts])
    return u1, uR


def fisher_factor(params, u, fam: Family, d: GlmmData, idx: Index, layout: Layout, tl: ThetaLayout):
    """The blocked factor L, L L′ = Λ′Z′W_F ZΛ + I, at (θ, β) and the modes u (conditional variances)."""
    ntheta = tl.size
    theta, beta = params[:ntheta], params[ntheta:]
    lams = lambdas(theta, tl)
    eta = d.X @ beta + d.offset + _eta_re(u[0], u[1], lams, d, idx, layout)
    Wf = fisher_weights(fam, d, eta)
    xp = _tail_positive(cross_products(RowData(d.Z1, d.ZR, jnp.ones((eta.shape[0], 1), eta.dtype)), Wf, idx, layout),
                        fam, Wf, jnp.ones_like(eta))
    with sequential_lapack():
        return factorize(lams, xp, idx, layout)
