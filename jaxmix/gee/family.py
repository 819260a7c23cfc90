"""Mean, mean derivative and variance functions of the GEE families (NumPy, float64).

The GEE works with the first two moments only: μ = g⁻¹(η), ∂μ/∂η and the variance function V(μ)
(the variance of an observation is φ·V(μ)):

==========  ========  ==========================  ==========================
family      link      μ = g⁻¹(η)                  V(μ)
==========  ========  ==========================  ==========================
gaussian    identity  η                           1
binomial    logit     1 / (1 + e^−η)              μ (1 − μ)
binomial    probit    Φ(η)                        μ (1 − μ)
binomial    cloglog   1 − exp(−e^η)               μ (1 − μ)
poisson     log       e^η                         μ
==========  ========  ==========================  ==========================

The families and links are those of :mod:`jaxmix.spec.families` (validated by its ``get_family``); these
are their NumPy twins, because the GEE's few dense steps are cheaper on the host than compiled.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from scipy.special import expit, logit, ndtr, ndtri

from ..errors import JaxmixError
from ..spec.families import get_family

__all__ = ["GeeFamily", "gee_family"]


class GeeFamily(NamedTuple):
    name: str
    link: str
    linkfun: Callable  # μ -> η
    linkinv: Callable  # η -> μ
    mu_eta: Callable  # η -> ∂μ/∂η
    variance: Callable  # μ -> V(μ)
    start_mu: Callable  # (y (K, n), ȳ (K, 1)) -> μ to start the GLM's IRLS from (statsmodels' starting_mu)
    fixed_scale: bool  # φ = 1 (binomial, Poisson) rather than the Pearson χ² / (N − p)


def _logit_mu_eta(eta):
    mu = expit(eta)
    return mu * (1.0 - mu)


def _probit_mu_eta(eta):
    return np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)


def _cloglog_linkinv(eta):
    return -np.expm1(-np.exp(np.minimum(eta, 30.0)))


def _cloglog_mu_eta(eta):
    e = np.exp(np.minimum(eta, 30.0))
    return e * np.exp(-e)


def _binomial_var(mu):
    return mu * (1.0 - mu)


_LINKS = {  # g, g⁻¹, ∂μ/∂η
    "identity": (lambda mu: mu, lambda eta: eta, np.ones_like),
    "logit": (logit, expit, _logit_mu_eta),
    "probit": (ndtri, ndtr, _probit_mu_eta),
    "cloglog": (lambda mu: np.log(-np.log1p(-mu)), _cloglog_linkinv, _cloglog_mu_eta),
    "log": (np.log, np.exp, np.exp),
}

_FAMILY = {  # variance, starting μ, fixed scale
    "gaussian": (np.ones_like, lambda y, ybar: y, False),
    "binomial": (_binomial_var, lambda y, ybar: (y + 0.5) / 2.0, True),
    "poisson": (lambda mu: mu, lambda y, ybar: (y + ybar) / 2.0, True),
}


def gee_family(family: str, link: str | None = None) -> GeeFamily:
    """The moment functions of ``family``/``link`` (a :class:`jaxmix.errors.JaxmixError` if unknown)."""
    fam = get_family(family, link)
    if fam.name not in _FAMILY or fam.link not in _LINKS:
        raise JaxmixError(f"fit_gee: family {fam.name!r} with link {fam.link!r} is not available; "
                          f"families: {', '.join(sorted(_FAMILY))}")
    linkfun, linkinv, mu_eta = _LINKS[fam.link]
    variance, start_mu, fixed = _FAMILY[fam.name]
    return GeeFamily(fam.name, fam.link, linkfun, linkinv, mu_eta, variance, start_mu, fixed)
