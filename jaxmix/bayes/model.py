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

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ..core.crossprod import CrossProducts, Index, Layout, RowData, cross_products, terms_structure
from .likelihood import gaussian_marginal_loglik, gaussian_ols_loglik, glmm_loglik, linear_predictor_re
from .priors import Priors
from .spec import BayesSpec

__all__ = ["ModelData", "BayesArrays", "build_arrays", "make_model", "log_likelihood", "stack_data", "term_lambdas", "fixef_vector"]


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


def _site(name: str, d, replicates: int | None):
    """numpyro.sample of one prior; with ``replicates`` R, R independent copies (leading axis R)."""
    if replicates is None:
        return numpyro.sample(name, d)
    return numpyro.sample(name, d.expand((replicates,) + d.batch_shape).to_event(1 + len(d.batch_shape)))


def _sample_slopes(pri: Priors, replicates: int | None):
    if pri.slopes is None:
        return None
    if isinstance(pri.slopes, tuple):  # per-coefficient priors of different families
        return jnp.stack([_site(f"beta_{i}", d, replicates) for i, d in enumerate(pri.slopes[1])], axis=-1)
    return _site("beta", pri.slopes, replicates)


def log_likelihood(params: dict, arr: ModelData, spec: BayesSpec, layout: Layout | None):
    """log p(y | parameters) for one data set; ``params`` holds the sampled sites (one draw)."""
    p = spec.Xc.shape[1]
    terms = spec.design.terms
    slopes = params.get("beta")
    if slopes is None and "beta_0" in params:
        slopes = jnp.stack([params[f"beta_{i}"] for i in range(p - (spec.intercept is not None))], axis=-1)
    beta = fixef_vector(params.get("alpha"), slopes, p, spec.intercept) if p else jnp.zeros(0, arr.X.dtype)
    sds = [params[f"sd_{k}"] for k in range(len(terms))]
    lcs = [params[f"Lcorr_{k}"] if t.q > 1 else None for k, t in enumerate(terms)]
    if spec.gaussian:
        sigma = params["sigma"]
        if terms:
            lams = term_lambdas(sds, lcs, sigma)
            return gaussian_marginal_loglik(lams, beta, sigma, arr.xp, arr.idx, layout, arr.n, arr.ldW)[0]
        return gaussian_ols_loglik(beta, sigma, *arr.ols, arr.n, arr.ldW)
    eta = arr.offset + arr.X @ beta
    if terms:
        uR = params.get("uR", jnp.zeros(0, arr.X.dtype))
        eta = eta + linear_predictor_re(params["u1"], uR, term_lambdas(sds, lcs), arr.Z1, arr.ZR, arr.idx, layout)
    return glmm_loglik(spec.family, eta, arr.y, arr.ntr, arr.w)


def make_model(spec: BayesSpec, layout: Layout | None, pri: Priors, replicates: int | None = None):
    """The numpyro model, a function of the :class:`ModelData` (the structure and priors are fixed).

    With ``replicates`` R the model holds R independent copies of every parameter and ``arr`` is R
    data sets stacked on a leading axis (:func:`stack_data`): the posterior is the product of the R
    posteriors, so one run samples all of them (simulation-based calibration).
    """
    terms = spec.design.terms
    R = replicates

    def model(arr: ModelData):
        params = {}
        if pri.intercept is not None:
            params["alpha"] = _site("alpha", pri.intercept, R)
        slopes = _sample_slopes(pri, R)
        if slopes is not None:
            params["beta"] = slopes
        for k, t in enumerate(terms):
            params[f"sd_{k}"] = _site(f"sd_{k}", pri.sd[k], R)
            if t.q > 1:
                lkj = pri.cor[k]
                params[f"Lcorr_{k}"] = numpyro.sample(f"Lcorr_{k}", lkj if R is None else lkj.expand((R,)).to_event(1))
        if spec.gaussian:
            params["sigma"] = _site("sigma", pri.sigma, R)
        elif terms:
            shapes = {"u1": (layout.l1, layout.q1)}
            if layout.m_R:
                shapes["uR"] = (layout.m_R,)
            for name, shp in shapes.items():
                shp = shp if R is None else (R,) + shp
                params[name] = numpyro.sample(name, dist.Normal(jnp.zeros(shp)).to_event(len(shp)))
        if R is None:
            ll = log_likelihood(params, arr, spec, layout)
        else:
            ll = jnp.sum(jax.vmap(lambda pr, a: log_likelihood(pr, a, spec, layout))(params, arr))
        numpyro.factor("loglik", ll)

    return model


def stack_data(arrays: list) -> ModelData:
    """R data sets of one structure as one :class:`ModelData` with a leading axis R."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[a.data for a in arrays])
