"""Families with an estimated dispersion parameter φ (negative binomial θ, Gamma shape α).

φ is estimated by maximum likelihood jointly with the other parameters, as log φ in the optimiser
(glmmTMB's ``nbinom2`` and ``Gamma`` parametrisations: Var y = μ + μ²/θ, Var y = μ²/α).  This module
holds the pieces that are not the Laplace deviance itself (:mod:`jaxmix.core.glmm`):

* starts for φ from a GLM fit (moment estimates);
* the fixed-effects-only fit (a GLM by maximum likelihood over (log φ, β), exact Hessian);
* the standard error of φ from the deviance Hessian (delta method: se(φ) = φ·se(log φ));
* the variance function and deviance residuals for :meth:`jaxmix.MixedResults.residuals_of`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.structure import bucket
from ..errors import JaxmixError
from ..spec.families import Family
from .cache import compiled_program
from .lmm import FAST_COMPILE, first_rows

__all__ = ["has_dispersion", "with_dispersion", "dispersion_start", "eta_start", "fit_glm_dispersion", "log_dispersion_se",
           "dispersion_record", "variance", "deviance_contributions", "check_dispersion_response",
           "dispersion_warning", "NB_THETA_POISSON", "simulate_dispersion"]

#: clip of the starting values of φ
PHI_START_RANGE = (0.05, 100.0)


def has_dispersion(fam: Family) -> bool:
    return fam.dispersion is not None


def with_dispersion(params, fam, d, nt: int):
    """((θ, β), data) from the parameters (θ, log φ, β) of a family with a dispersion parameter φ
    (NB θ, Gamma shape; :mod:`jaxmix.spec.families` passes it in the ``ntr`` slot): ntr = φ on every row.
    Other families: (params, d) unchanged."""
    if fam.dispersion is None:
        return params, d
    phi = jnp.exp(params[nt])
    return jnp.concatenate([params[:nt], params[nt + 1:]]), d._replace(ntr=phi * jnp.ones_like(d.y))


def eta_start(fam: Family, y) -> np.ndarray:
    """The linear predictor to start IRLS from: g(y) (+0.1 for log of counts, as R's NB/Poisson)."""
    y = np.asarray(y, dtype=float)
    if fam.link == "log":
        return np.log(y + (0.1 if fam.name != "gamma" else 0.0))
    if fam.link == "inverse":
        return 1.0 / y
    if fam.link == "identity":
        return y.copy()
    raise JaxmixError(f"no start for the {fam.name!r} family with link {fam.link!r}")


def dispersion_start(fam: Family, y, mu, pw) -> float:
    """Moment estimate of φ from fitted means μ (prior weights w, rows with w > 0):

    * NB: Σ w(y − μ)² = Σ w(μ + μ²/θ)  ⇒  θ = Σ wμ² / Σ w((y − μ)² − μ)  (100 without overdispersion);
    * Gamma: 1/α = mean of ((y − μ)/μ)² (squared Pearson residuals).

    Clipped to :data:`PHI_START_RANGE`; the optimum does not depend on it."""
    y, mu, pw = (np.asarray(a, dtype=float) for a in (y, mu, pw))
    use = (pw > 0) & np.isfinite(mu) & (mu > 0)
    y, mu, pw = y[use], mu[use], pw[use]
    if fam.name == "negative_binomial":
        den = np.sum(pw * ((y - mu) ** 2 - mu))
        phi = np.sum(pw * mu**2) / den if den > 0 else PHI_START_RANGE[1]
    else:
        cv2 = np.sum(pw * ((y - mu) / mu) ** 2) / max(np.sum(pw), 1e-300)
        phi = 1.0 / cv2 if cv2 > 0 else PHI_START_RANGE[1]
    return float(np.clip(phi, *PHI_START_RANGE))


@functools.lru_cache(maxsize=None)
def _glm_programs(fam: Family):
    """Jitted −2 log L of the GLM over z = (log φ, β) with its gradient, and its exact Hessian."""

    def dev(z, X, y, pw, off):
        phi = jnp.exp(z[0])
        eta = X @ z[1:] + off
        return -2.0 * jnp.sum(pw * fam.loglik(y, phi * jnp.ones_like(y), eta))

    return jax.jit(jax.value_and_grad(dev)), jax.jit(jax.hessian(dev))


GLM_ROWS_MIN = 256  # the rows of the GLM programs: padded to :func:`jaxmix.core.structure.bucket` sizes


def glm_program_args(X, y, pw, offset) -> tuple[np.ndarray, ...]:
    """(X, y, pw, offset) with rows padded to a bucket size, so that data sets of one model class share
    the compiled programs (a negative binomial GLMM on 300, 403 and 806 rows compiled them three
    times, 4.8–7.0 s each).  A padded row repeats the first row with weight 0: a log-likelihood term
    as finite as that row's (wherever the optimiser goes), which the weight removes."""
    X, y, pw, offset = (np.asarray(a, dtype=float) for a in (X, y, pw, offset))
    n = y.shape[0]
    N = bucket(n, GLM_ROWS_MIN)
    return first_rows(X, N), first_rows(y, N), np.concatenate([pw, np.zeros(N - n)]), first_rows(offset, N)


def fit_glm_dispersion(fam: Family, X, y, pw, offset, beta0, phi0, gtol: float = 1e-6, max_iter: int = 500):
    """Maximum-likelihood GLM with dispersion: minimise −2 Σ wᵢ ℓᵢ(y | η = Xβ + o, φ) over (log φ, β).

    The host optimiser (:func:`jaxmix.core.newton.minimize_bounded`) on the exact gradient; the
    covariance of (log φ, β̂) is 2 H⁻¹ with H the exact (autodiff) Hessian of −2 log L.
    Returns (β, φ, −2 log L, vcov of (log φ, β), optimiser result)."""
    from ..core.newton import FLOAT64, minimize_bounded

    args = tuple(jax.device_put(a) for a in glm_program_args(X, y, pw, offset))
    z0 = np.concatenate([[np.log(phi0)], np.asarray(beta0, dtype=float)])
    # XLA's quick options: these programs run a few dozen times on a few hundred rows
    vg_fn, h_fn = (compiled_program(prog, (z0,) + args, options=FAST_COMPILE)[0] for prog in _glm_programs(fam))

    def vg(z):
        v, g = vg_fn(jnp.asarray(z), *args)
        return float(v), np.asarray(g, dtype=float)

    lower = np.full(z0.shape, -np.inf)
    opt = minimize_bounded(vg, z0, lower, gtol=gtol, max_iter=max_iter, prec=FLOAT64)
    H = np.asarray(h_fn(jnp.asarray(opt.x), *args), dtype=float)
    try:
        vcov = 2.0 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        vcov = np.full(H.shape, np.nan)
    return opt.x[1:], float(np.exp(opt.x[0])), float(opt.fun), vcov, opt


def log_dispersion_se(H, on_boundary, k: int) -> float:
    """se(log φ) = √[2 H⁻¹]ₖₖ over the free coordinates of the deviance Hessian H (k the index of log φ);
    NaN where H is not invertible there."""
    free = ~np.asarray(on_boundary, dtype=bool)
    if not free[k]:
        return float("nan")
    try:
        cov = 2.0 * np.linalg.inv(np.asarray(H)[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return float("nan")
    v = cov[int(np.sum(free[:k])), int(np.sum(free[:k]))]
    return float(np.sqrt(v)) if np.isfinite(v) and v > 0 else float("nan")


def dispersion_record(fam: Family, phi: float, se_log_phi: float) -> dict:
    """``res.extra["dispersion"]``: its name, estimate φ, se(φ) = φ·se(log φ) and se(log φ) (NaN for an NB θ
    at the Poisson limit, :data:`NB_THETA_POISSON`)."""
    if fam.name == "negative_binomial" and phi > NB_THETA_POISSON:
        se_log_phi = float("nan")
    return {"name": fam.dispersion, "estimate": float(phi), "se": float(phi * se_log_phi),
            "se_log": float(se_log_phi)}


def variance(family: str, mu, phi):
    """The variance function V(μ) of R's family object: NB μ + μ²/θ (MASS ``negative.binomial(θ)``),
    Gamma μ² (R's ``Gamma()``; Var y = V(μ)/α)."""
    mu = np.asarray(mu, dtype=float)
    return mu + mu**2 / phi if family == "negative_binomial" else mu**2


def deviance_contributions(family: str, y, mu, w, phi):
    """R's ``dev.resids``: NB 2w[y log(y/μ) − (y + θ) log((y + θ)/(μ + θ))]; Gamma −2w[log(y/μ) − (y − μ)/μ]."""
    from scipy.special import xlogy

    y, mu, w = (np.asarray(a, dtype=float) for a in (y, mu, w))
    if family == "negative_binomial":
        return 2.0 * w * (xlogy(y, y / mu) - (y + phi) * np.log((y + phi) / (mu + phi)))
    return -2.0 * w * (np.log(y / mu) - (y - mu) / mu)


def check_dispersion_response(fam: Family, y, name: str) -> None:
    """NB: counts ≥ 0 (a warning for non-integers, by the caller's rule for Poisson); Gamma: y > 0."""
    y = np.asarray(y, dtype=float)
    if fam.name == "negative_binomial":
        bad = y < 0
        what = "negative counts"
    else:
        bad = y <= 0
        what = "values <= 0 (the Gamma family needs a positive response)"
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise JaxmixError(f"{fam.name} response {name!r} has {what} (row {i}: {y[i]:g})")


def simulate_dispersion(family: str, key, mu, phi):
    """Draws with mean μ: NB y ~ Poisson(μ·G), G ~ Gamma(shape θ, mean 1) (Var y = μ + μ²/θ); Gamma
    y = μ·G, G ~ Gamma(shape α, mean 1) (Var y = μ²/α).  Pure JAX (``key`` a jax.random key)."""
    k1, k2 = jax.random.split(key)
    g = jax.random.gamma(k1, phi, mu.shape, dtype=jnp.float64) / phi
    if family == "negative_binomial":
        return jax.random.poisson(k2, mu * g, dtype=jnp.int64).astype(jnp.float64)
    return mu * g


#: an NB θ above this is the Poisson limit (μ²/θ negligible beside μ)
NB_THETA_POISSON = 1e4


def dispersion_warning(record: dict | None) -> str | None:
    """A warning for an NB θ at the Poisson limit (θ̂ → ∞: no overdispersion, the likelihood flat in θ)."""
    if record is None or record["name"] != "theta (NB shape)" or not record["estimate"] > NB_THETA_POISSON:
        return None
    return (f"theta (NB shape) = {record['estimate']:.3g} is at the Poisson limit: the counts show no "
            "overdispersion (the likelihood keeps increasing with theta), so theta and its SE are not "
            "estimable; family='poisson' fits the same model")
