"""Families: link, inverse link, variance and log-likelihood per observation (pure JAX).

==========  =====================  ==========================================
family      links                  log-likelihood of one observation
==========  =====================  ==========================================
gaussian    identity               (profiled out in the LMM)
binomial    logit, probit, cloglog  log C(n,k) + k log μ + (n − k) log(1 − μ)
poisson     log                    k log μ − μ − log k!
==========  =====================  ==========================================
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
from jax.scipy.special import gammaln, ndtr, log_ndtr

from .errors import JaxmixError

__all__ = ["Family", "get_family", "FAMILIES"]


class Family(NamedTuple):
    name: str
    link: str
    linkinv: Callable
    loglik: Callable  # (y, n, eta) -> per-observation log-likelihood (weights applied outside)
    score_info: Callable | None = None  # (y, n, eta) -> (∂ℓ/∂η, −∂²ℓ/∂η²), analytic where simple
    kernel: Callable | None = None  # ℓ without its η-free constant (cheaper in inner loops)


def _binom_const(y, n):
    return gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)


def _logit_k(y, n, eta):
    # log μ = −softplus(−η), log(1 − μ) = −softplus(η)
    return -y * jnp.logaddexp(0.0, -eta) - (n - y) * jnp.logaddexp(0.0, eta)


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


def _poisson_const(y, n):
    return -gammaln(y + 1.0)


def _sigmoid(eta):
    return 1.0 / (1.0 + jnp.exp(-eta))


def _logit_si(y, n, eta):
    mu = _sigmoid(eta)
    return y - n * mu, n * mu * (1.0 - mu)


def _poisson_si(y, n, eta):
    mu = jnp.exp(eta)
    return y - mu, mu


FAMILIES = {
    ("gaussian", "identity"): Family("gaussian", "identity", lambda eta: eta, None),
    ("binomial", "logit"): Family("binomial", "logit", _sigmoid, _with_const(_logit_k, _binom_const), _logit_si,
                                  _logit_k),
    ("binomial", "probit"): Family("binomial", "probit", ndtr, _with_const(_probit_k, _binom_const), None, _probit_k),
    ("binomial", "cloglog"): Family("binomial", "cloglog", lambda eta: -jnp.expm1(-jnp.exp(eta)),
                                    _with_const(_cloglog_k, _binom_const), None, _cloglog_k),
    ("poisson", "log"): Family("poisson", "log", jnp.exp, _with_const(_poisson_k, _poisson_const), _poisson_si,
                               _poisson_k),
}
DEFAULT_LINK = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}


def get_family(family: str, link: str | None = None) -> Family:
    fam = str(family).lower()
    if fam not in DEFAULT_LINK:
        raise JaxmixError(f"unknown family {family!r}; choose one of {', '.join(DEFAULT_LINK)}")
    link = DEFAULT_LINK[fam] if link is None else str(link).lower()
    if (fam, link) not in FAMILIES:
        ok = [lk for f, lk in FAMILIES if f == fam]
        raise JaxmixError(f"unknown link {link!r} for family {fam!r}; choose one of {', '.join(ok)}")
    return FAMILIES[(fam, link)]
