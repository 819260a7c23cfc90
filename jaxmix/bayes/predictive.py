"""Posterior predictive draws y_rep of a :class:`jaxmix.bayes.posterior.Posterior`.

For each selected posterior draw (β, Ω, σ):

* Gaussian mixed: u ~ u | y, β, θ, σ (:func:`jaxmix.bayes.likelihood.conditional_u`), b = Λu,
  y_rep = o + Xβ + Zb + σ ε / √w;
* Gaussian without random effects: y_rep = o + Xβ + σ ε / √w;
* GLMM: η = o + Xβ + ZΛu with the sampled u; y_rep ~ Binomial(trials, μ) or Poisson(μ), μ = g⁻¹(η).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.blocked import factorize
from ..errors import JaxmixError
from .likelihood import conditional_u, linear_predictor_re
from .model import fixef_vector, term_lambdas

__all__ = ["posterior_predictive", "select_draws"]


def select_draws(chains: int, draws: int, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(chain, draw) indices of n draws chosen without replacement (all draws when n is None)."""
    total = chains * draws
    if n is None:
        flat = np.arange(total)
    else:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= total:
            raise JaxmixError(f"n must be a whole number from 1 to {total} (the posterior draws), got {n!r}")
        flat = np.sort(np.random.default_rng(seed).choice(total, size=int(n), replace=False))
    return flat // draws, flat % draws


def _take(samples: dict, ci, di) -> dict:
    return {k: jnp.asarray(np.asarray(v)[ci, di]) for k, v in samples.items()}


def posterior_predictive(post, n: int | None = None, seed: int = 0) -> np.ndarray:
    """y_rep, shape (n, rows)."""
    spec, arr = post.spec, post.arrays
    ci, di = select_draws(post.chains, post.n_draws, n, seed)
    s = _take(post.samples, ci, di)
    m = len(ci)
    terms = spec.design.terms
    p = arr.X.shape[1]
    key = jax.random.PRNGKey(seed)
    k_u, k_e = jax.random.split(key)

    def beta_of(i):
        alpha = s["alpha"][i] if "alpha" in s else None
        if "beta" in s:
            slopes = s["beta"][i]
        elif "beta_0" in s:
            slopes = jnp.stack([s[f"beta_{j}"][i] for j in range(p - (spec.intercept is not None))])
        else:
            slopes = None
        return fixef_vector(alpha, slopes, p, spec.intercept) if p else jnp.zeros(0)

    def lams_of(i, scale=1.0):
        sds = [s[f"sd_{k}"][i] for k in range(len(terms))]
        lcs = [s[f"Lcorr_{k}"][i] if t.q > 1 else None for k, t in enumerate(terms)]
        return term_lambdas(sds, lcs, scale)

    if spec.gaussian:
        def one(i, ku, ke):
            beta, sigma = beta_of(i), s["sigma"][i]
            mu = arr.offset + arr.X @ beta
            if terms:
                lay = arr.layout
                lams = lams_of(i, sigma)
                f = factorize(lams, arr.xp, arr.idx, lay)
                k1, k2 = jax.random.split(ku)
                z1 = jax.random.normal(k1, (lay.l1, lay.q1), mu.dtype)
                zR = jax.random.normal(k2, (lay.m_R,), mu.dtype)
                u1, uR = conditional_u(f, beta, sigma, z1, zR, arr.idx, lay)
                mu = mu + linear_predictor_re(u1, uR, lams, arr.Z1, arr.ZR, arr.idx, lay)
            eps = jax.random.normal(ke, mu.shape, mu.dtype)
            return mu + sigma * eps / jnp.sqrt(jnp.where(arr.w > 0, arr.w, 1.0))

        ku, ke = jax.random.split(k_u, m), jax.random.split(k_e, m)
        return np.asarray(jax.jit(jax.vmap(one))(jnp.arange(m), ku, ke))

    def eta_of(i):
        eta = arr.offset + arr.X @ beta_of(i)
        if terms:
            lay = arr.layout
            uR = s["uR"][i] if "uR" in s else jnp.zeros(0, eta.dtype)
            eta = eta + linear_predictor_re(s["u1"][i], uR, lams_of(i), arr.Z1, arr.ZR, arr.idx, lay)
        return spec.family.linkinv(eta)

    mu = np.asarray(jax.jit(jax.vmap(eta_of))(jnp.arange(m)))
    rng = np.random.default_rng(seed)
    if spec.family.name == "binomial":
        ntr = np.asarray(spec.ntr).astype(np.int64)
        return rng.binomial(ntr[None, :], np.clip(mu, 0.0, 1.0)).astype(float)
    return rng.poisson(mu).astype(float)
