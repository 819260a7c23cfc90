"""The numpyro model of a Bayesian fit: priors (:mod:`jaxmix.bayes.priors`) + likelihood
(:mod:`jaxmix.bayes.likelihood`) on the arrays of a :class:`jaxmix.bayes.spec.BayesSpec`.

Sampled sites: ``alpha`` (intercept of the centred predictors), ``beta`` (the other fixed effects),
per random term k ``sd_k`` (the q_k standard deviations τ) and, for q_k ≥ 2, ``Lcorr_k`` (Cholesky
factor of the correlation matrix R = L L′); ``sigma`` (Gaussian); for GLMMs ``u1`` (levels of term 1 x
q₁) and ``uR`` (the other terms), the spherical random effects u ~ N(0, I).

The term's covariance is Ω_k = diag(τ) R diag(τ).  Gaussian models integrate the random effects out
with Λ_k = diag(τ) L / σ (Ω_k = σ²Λ_kΛ_k′); GLMMs use b = Λ_k u with Λ_k = diag(τ) L (non-centred).
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..crossprod import CrossProducts, Index, Layout, RowData, cross_products, terms_structure
from .likelihood import gaussian_marginal_loglik, gaussian_ols_loglik, glmm_loglik, linear_predictor_re
from .priors import Priors
from .spec import BayesSpec

__all__ = ["ModelData", "BayesArrays", "build_arrays", "make_model", "term_lambdas", "fixef_vector"]


class ModelData(NamedTuple):
    """The data the likelihood reads (a pytree of arrays: NUTS recompiles nothing for new data of the
    same shapes).  Unused entries are empty arrays."""

    xp: CrossProducts | None  # Gaussian mixed: blocks of [Z₁ Z_R Xc (y − o)]′W[...]
    idx: Index | None
    Z1: jnp.ndarray | None
    ZR: jnp.ndarray | None
    X: jnp.ndarray  # centred X
    y: jnp.ndarray
    ntr: jnp.ndarray
    w: jnp.ndarray
    offset: jnp.ndarray
    n: jnp.ndarray
    ldW: jnp.ndarray
    ols: tuple | None  # Gaussian without random effects: (X′WX, X′W(y − o), (y − o)′W(y − o))


class BayesArrays(NamedTuple):
    layout: Layout | None  # static sizes of the random-effect structure
    data: ModelData

    # shortcuts
    def __getattr__(self, name):
        if name in ModelData._fields:
            return getattr(self.data, name)
        raise AttributeError(name)


def build_arrays(spec: BayesSpec, dt=jnp.float64) -> BayesArrays:
    """Everything the likelihood reads, built once (O(n) memory; no n x n or n x levels matrix)."""
    d = spec.design
    w = np.asarray(d.weights, dtype=float)
    X = spec.Xc
    off = np.asarray(d.offset, dtype=float)
    yc = spec.y - off
    n = float(len(spec.y))
    ldW = float(np.sum(np.log(w[w > 0])))
    layout = idx = xp = Z1 = ZR = ols = None
    if d.terms:
        t = X.shape[1] + 1 if spec.gaussian else 1
        layout, idx_np, ZR_np = terms_structure(d.terms, len(spec.y), t)
        idx = idx_np.as_jax()
        Z1 = jnp.asarray(d.terms[0].Z, dt)
        ZR = jnp.asarray(ZR_np, dt)
        if spec.gaussian:
            T = jnp.asarray(np.column_stack([X, yc]), dt)
            xp = cross_products(RowData(Z1, ZR, T), jnp.asarray(w, dt), idx, layout)
    elif spec.gaussian:
        Xw = X * w[:, None]
        ols = (jnp.asarray(Xw.T @ X, dt), jnp.asarray(Xw.T @ yc, dt), jnp.asarray(float(np.sum(w * yc**2)), dt))
    data = ModelData(xp=xp, idx=idx, Z1=Z1, ZR=ZR, X=jnp.asarray(X, dt), y=jnp.asarray(spec.y, dt),
                     ntr=jnp.asarray(spec.ntr, dt), w=jnp.asarray(w, dt), offset=jnp.asarray(off, dt),
                     n=jnp.asarray(n, dt), ldW=jnp.asarray(ldW, dt), ols=ols)
    return BayesArrays(layout=layout, data=data)


def fixef_vector(alpha, slopes, p: int, intercept: int | None):
    """β̃ (centred columns) from the intercept and the other coefficients, in X's column order."""
    if intercept is None:
        return slopes
    parts = [jnp.reshape(alpha, (1,))]
    if slopes is not None:
        parts = [slopes[:intercept], parts[0], slopes[intercept:]]
    return jnp.concatenate(parts)


def term_lambdas(sds, lcorrs, scale=1.0):
    """Λ_k = diag(τ_k) L_k / scale per term (L_k = 1 for q_k = 1)."""
    out = []
    for sd, L in zip(sds, lcorrs):
        if L is None:
            out.append(jnp.reshape(sd, (1, 1)) / scale)
        else:
            out.append(sd[:, None] * L / scale)
    return out


def _sample_slopes(pri: Priors):
    if pri.slopes is None:
        return None
    if isinstance(pri.slopes, tuple):  # per-coefficient priors of different families
        return jnp.stack([numpyro.sample(f"beta_{i}", d) for i, d in enumerate(pri.slopes[1])])
    return numpyro.sample("beta", pri.slopes)


def make_model(spec: BayesSpec, layout: Layout | None, pri: Priors):
    """The numpyro model, a function of the :class:`ModelData` (the structure and priors are fixed)."""
    p = spec.Xc.shape[1]
    terms = spec.design.terms
    fam = spec.family

    def model(arr: ModelData):
        alpha = numpyro.sample("alpha", pri.intercept) if pri.intercept is not None else None
        slopes = _sample_slopes(pri)
        beta = fixef_vector(alpha, slopes, p, spec.intercept) if p else jnp.zeros(0, arr.X.dtype)
        sds, lcs = [], []
        for k, t in enumerate(terms):
            sds.append(numpyro.sample(f"sd_{k}", pri.sd[k]))
            lcs.append(numpyro.sample(f"Lcorr_{k}", pri.cor[k]) if t.q > 1 else None)
        if spec.gaussian:
            sigma = numpyro.sample("sigma", pri.sigma)
            if terms:
                lams = term_lambdas(sds, lcs, sigma)
                ll, _ = gaussian_marginal_loglik(lams, beta, sigma, arr.xp, arr.idx, layout, arr.n, arr.ldW)
            else:
                ll = gaussian_ols_loglik(beta, sigma, *arr.ols, arr.n, arr.ldW)
        else:
            eta = arr.offset + arr.X @ beta
            if terms:
                lay = layout
                u1 = numpyro.sample("u1", dist.Normal(jnp.zeros((lay.l1, lay.q1))).to_event(2))
                uR = (numpyro.sample("uR", dist.Normal(jnp.zeros(lay.m_R)).to_event(1)) if lay.m_R
                      else jnp.zeros(0, arr.X.dtype))
                eta = eta + linear_predictor_re(u1, uR, term_lambdas(sds, lcs), arr.Z1, arr.ZR, arr.idx, lay)
            ll = glmm_loglik(fam, eta, arr.y, arr.ntr, arr.w)
        numpyro.factor("loglik", ll)

    return model
