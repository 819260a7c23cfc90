"""Families: link, inverse link, variance and log-likelihood per observation (pure JAX).

==========  =====================  ==========================================
family      links                  log-likelihood of one observation
==========  =====================  ==========================================
gaussian    identity               (profiled out in the LMM)
binomial    logit, probit, cloglog  log C(n,k) + k log μ + (n − k) log(1 − μ)
poisson     log                    k log μ − μ − log k!
negative_   log                    log Γ(y+θ) − log Γ(θ) − log y! + θ log θ + y log μ − (y+θ) log(μ+θ)
binomial                           (NB2: Var y = μ + μ²/θ; θ the shape, estimated)
gamma       inverse, log, identity α log α − log Γ(α) + (α−1) log y − α y/μ − α log μ
                                   (Var y = μ²/α; α the shape, estimated)
==========  =====================  ==========================================

The per-observation functions take (y, n, η).  ``n`` is the binomial number of trials; for the
families with a dispersion parameter (``Family.dispersion`` names it) ``n`` carries that parameter
(the NB θ or the Gamma shape α, the same on every row), so the GLMM code passes it where it passes
the trials.  For these families ``score_info`` gives the observed information −∂²ℓ/∂η², which the
Laplace approximation uses (as glmmTMB: the exact Hessian of the joint log-likelihood in the random
effects; lme4's glmer uses the expected information, equal for canonical links only).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln, gammaln, ndtr, log_ndtr

from ..errors import JaxmixError

__all__ = ["Family", "get_family", "FAMILIES", "data_constant"]


class Family(NamedTuple):
    name: str
    link: str
    linkinv: Callable
    loglik: Callable  # (y, n, eta) -> per-observation log-likelihood (weights applied outside)
    score_info: Callable | None = None  # (y, n, eta) -> (∂ℓ/∂η, −∂²ℓ/∂η²), analytic where simple
    kernel: Callable | None = None  # ℓ without its η-free constant (cheaper in inner loops)
    dispersion: str | None = None  # the name of the family's estimated dispersion parameter (carried as n)
    scoring_weight: Callable | None = None  # Fisher weight where ℓ is not concave in η (mode iterations)
    #: ℓ − kernel, a function of the data alone (y, n, gammaln) where it has no parameter (binomial, Poisson):
    #: :func:`data_constant` sums it once on the host instead of at every evaluation
    const: Callable | None = None


def _binom_const(y, n, lgamma=gammaln):
    return lgamma(n + 1.0) - lgamma(y + 1.0) - lgamma(n - y + 1.0)


@jax.custom_jvp
def softplus(x):
    """log(1 + eˣ) = max(x, 0) + log1p(e^−|x|), exact for every x; derivative 1/(1 + e⁻ˣ).

    (``jnp.logaddexp(0, x)`` gives the same numbers about 6x slower on the CPU: a GLMM's mode
    iterations evaluate it on every row at every step.)"""
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return softplus(x), _logistic(x) * t


@jax.custom_jvp
def _logistic(x):
    """1/(1 + e⁻ˣ) from e^−|x| ≤ 1 (finite for every x, and so is its derivative σ(1 − σ))."""
    t = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1.0 / (1.0 + t), t / (1.0 + t))


@_logistic.defjvp
def _logistic_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    s = _logistic(x)
    return s, s * (1.0 - s) * t


@jax.custom_jvp
def _logit_k(y, n, eta):
    """y log μ + (n − y) log(1 − μ) = −y softplus(−η) − (n − y) softplus(η), with softplus(±η) =
    max(±η, 0) + log1p(e^−|η|): one exponential and one logarithm per row (written as two softplus
    calls, XLA computes both)."""
    return -y * jnp.maximum(-eta, 0.0) - (n - y) * jnp.maximum(eta, 0.0) - n * jnp.log1p(jnp.exp(-jnp.abs(eta)))


@_logit_k.defjvp
def _logit_k_jvp(primals, tangents):
    # ∂/∂η = y(1 − μ) − (n − y)μ from e^−|η| (exact in relative terms for every η), ∂/∂y = η,
    # ∂/∂n = −softplus(η)
    (y, n, eta), (ty, tn, te) = primals, tangents
    return _logit_k(y, n, eta), (ty * eta - tn * softplus(eta)
                                 + te * (y * _logistic(-eta) - (n - y) * _logistic(eta)))


def _probit_k(y, n, eta):
    return y * log_ndtr(eta) + (n - y) * log_ndtr(-eta)


def _cloglog_k(y, n, eta):
    # μ = 1 − exp(−exp η): log(1 − μ) = −exp η, log μ = log(−expm1(−exp η))
    e = jnp.exp(jnp.minimum(eta, 30.0))
    return y * jnp.log(-jnp.expm1(-e)) - (n - y) * e


def _poisson_k(y, n, eta):
    return y * eta - jnp.exp(eta)


def _with_const(kernel, const):
    return lambda y, n, eta: const(y, n) + kernel(y, n, eta)


def _poisson_const(y, n, lgamma=gammaln):
    return -lgamma(y + 1.0)


def _sigmoid(eta):
    return 1.0 / (1.0 + jnp.exp(-eta))


def _logit_si(y, n, eta):
    mu = _sigmoid(eta)
    return y - n * mu, n * mu * (1.0 - mu)


def _poisson_si(y, n, eta):
    mu = jnp.exp(eta)
    return y - mu, mu


def _log_rising_over_power(y, th):
    """log Γ(y + θ) − log Γ(θ) − y log θ = Σ_{k<y} log(1 + k/θ) for counts y ≥ 0: as written for θ below
    1,000; above, log Γ(y) − log B(y, θ) − y log θ (the two log-gamma values grow like θ log θ and
    their difference lost ~1e-8 at θ = 10⁷, 1e-5 at 10¹⁰; the beta function's form keeps ~1e-13)."""
    yp = jnp.maximum(y, 1.0)
    lth = jnp.log(th)
    small = gammaln(y + th) - gammaln(th) - y * lth
    large = jnp.where(y > 0, gammaln(yp) - betaln(yp, jnp.maximum(th, 1e3)) - y * lth, 0.0)
    return jnp.where(th < 1e3, small, large)


def _nb_const(y, th):
    # log Γ(y + θ) − log Γ(θ) − log y! + θ log θ − (y + θ) log θ: the last two terms of ℓ's kernel and
    # constant in θ log θ − (y + θ) log θ = −y log θ, taken together (at large θ each is ~θ log θ)
    return _log_rising_over_power(y, th) - gammaln(y + 1.0)


def _nb_k(y, th, eta):
    # y log μ − (y + θ) log(μ + θ) + (y + θ) log θ, log(μ + θ) = log θ + softplus(η − log θ)
    lth = jnp.log(th)
    return y * eta - (y + th) * softplus(eta - lth)


def _nb_si(y, th, eta):
    # p = μ/(μ+θ): ∂ℓ/∂η = θ(y − μ)/(μ + θ) = y(1 − p) − θp;  −∂²ℓ/∂η² = θμ(y + θ)/(μ + θ)² = (y + θ)p(1 − p)
    p = _sigmoid(eta - jnp.log(th))
    return y * (1.0 - p) - th * p, (y + th) * p * (1.0 - p)


def _gamma_const(y, a):
    return a * jnp.log(a) - gammaln(a) + (a - 1.0) * jnp.log(y)


def _gamma_log_k(y, a, eta):  # −α(y/μ + log μ), μ = exp η
    return -a * (y * jnp.exp(-eta) + eta)


def _gamma_log_si(y, a, eta):
    r = y * jnp.exp(-eta)
    return a * (r - 1.0), a * r


def _pos(eta):
    return jnp.where(eta > 0, eta, 1.0)


def _gamma_inv_k(y, a, eta):  # μ = 1/η (η > 0): α(log η − yη)
    return jnp.where(eta > 0, a * (jnp.log(_pos(eta)) - y * eta), -jnp.inf)


def _gamma_inv_si(y, a, eta):
    e = _pos(eta)
    return a * (1.0 / e - y), a / e**2


def _gamma_id_k(y, a, eta):  # μ = η (η > 0): −α(y/η + log η)
    e = _pos(eta)
    return jnp.where(eta > 0, -a * (y / e + jnp.log(e)), -jnp.inf)


def _gamma_id_si(y, a, eta):
    e = _pos(eta)
    return a * (y / e**2 - 1.0 / e), a * (2.0 * y - e) / e**3


def _gamma_id_fisher(y, a, eta):  # α μ′(η)²/V(μ) = α/η²; the observed information above can be < 0
    return a / _pos(eta) ** 2


NB_DISPERSION = "theta (NB shape)"
GAMMA_DISPERSION = "Gamma shape"


FAMILIES = {
    ("gaussian", "identity"): Family("gaussian", "identity", lambda eta: eta, None),
    ("binomial", "logit"): Family("binomial", "logit", _sigmoid, _with_const(_logit_k, _binom_const), _logit_si,
                                  _logit_k, const=_binom_const),
    ("binomial", "probit"): Family("binomial", "probit", ndtr, _with_const(_probit_k, _binom_const), None, _probit_k,
                                   const=_binom_const),
    ("binomial", "cloglog"): Family("binomial", "cloglog", lambda eta: -jnp.expm1(-jnp.exp(eta)),
                                    _with_const(_cloglog_k, _binom_const), None, _cloglog_k,
                                    const=_binom_const),
    ("poisson", "log"): Family("poisson", "log", jnp.exp, _with_const(_poisson_k, _poisson_const), _poisson_si,
                               _poisson_k, const=_poisson_const),
    ("negative_binomial", "log"): Family("negative_binomial", "log", jnp.exp, _with_const(_nb_k, _nb_const), _nb_si,
                                         _nb_k, NB_DISPERSION),
    ("gamma", "inverse"): Family("gamma", "inverse", lambda eta: 1.0 / eta, _with_const(_gamma_inv_k, _gamma_const),
                                 _gamma_inv_si, _gamma_inv_k, GAMMA_DISPERSION),
    ("gamma", "log"): Family("gamma", "log", jnp.exp, _with_const(_gamma_log_k, _gamma_const), _gamma_log_si,
                             _gamma_log_k, GAMMA_DISPERSION),
    ("gamma", "identity"): Family("gamma", "identity", lambda eta: eta, _with_const(_gamma_id_k, _gamma_const),
                                  _gamma_id_si, _gamma_id_k, GAMMA_DISPERSION, _gamma_id_fisher),
}
#: R's default links (Gamma: "inverse", as ``Gamma()`` in R and glmmTMB)
DEFAULT_LINK = {"gaussian": "identity", "binomial": "logit", "poisson": "log", "negative_binomial": "log",
                "gamma": "inverse"}


def data_constant(fam: Family, y, n, w):
    """Σᵢ wᵢ cᵢ(yᵢ, nᵢ), the η-free part of the weighted log-likelihood (``fam.const``), in numpy on the
    host (log C(n, y) for the binomial, −log y! for the Poisson); None where it depends on a
    parameter (the negative binomial's and Gamma's shape) or the family has none."""
    if fam.const is None:
        return None
    from scipy.special import gammaln as lgamma

    c = fam.const(np.asarray(y, dtype=float), np.asarray(n, dtype=float), lgamma)
    w = np.asarray(w, dtype=float)
    return float(np.sum(np.where(w != 0.0, w * c, 0.0)))


def get_family(family: str, link: str | None = None) -> Family:
    fam = str(family).lower()
    if fam not in DEFAULT_LINK:
        raise JaxmixError(f"unknown family {family!r}; choose one of {', '.join(DEFAULT_LINK)}")
    link = DEFAULT_LINK[fam] if link is None else str(link).lower()
    if (fam, link) not in FAMILIES:
        ok = [lk for f, lk in FAMILIES if f == fam]
        raise JaxmixError(f"unknown link {link!r} for family {fam!r}; choose one of {', '.join(ok)}")
    return FAMILIES[(fam, link)]
