"""Responses simulated from a fitted model with new random effects: lme4's ``simulate(m, use.u = FALSE)``.

Each simulation draws, for every term k and level ℓ, bₖₗ = s Λₖ zₖₗ with zₖₗ ~ N(0, I) (s = σ for a
Gaussian model, 1 otherwise), forms η = X β̂ + offset + Σₖ Zₖ bₖ[codeₖ] and draws

* Gaussian: y = η + σ ε/√wᵢ, ε ~ N(0, 1) (wᵢ the prior weights);
* binomial: y ~ Binomial(nᵢ, μᵢ) successes (nᵢ the trials, 1 for a 0/1 response), μ = g⁻¹(η);
* Poisson: y ~ Poisson(μᵢ).

So for a Gaussian model E yᵢ = xᵢ′β̂ and Var yᵢ = Σₖ zᵢₖ′Ωₖzᵢₖ + σ²/wᵢ.  numpy's PCG64 generator;
the same ``seed`` gives the same draws (not lme4's, whose generator is R's).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec.covariance import lambdas_np, theta_layout
from ..errors import JaxmixError

__all__ = ["simulate_responses"]

_FAMILIES = ("gaussian", "binomial", "poisson")
_CHUNK = 2_000_000  # floats of random effects expanded to the rows at once


def simulate_responses(res, nsim: int = 1, seed=None) -> pd.DataFrame:
    """An n × nsim DataFrame (columns ``sim_1 … sim_nsim``, the fit's row labels) of simulated responses.

    For a binomial model with trials the values are numbers of successes."""
    from ..spec.families import get_family

    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise JaxmixError(f"nsim must be a positive integer, got {nsim!r}")
    if res.family not in _FAMILIES:
        raise JaxmixError(f"cannot simulate from family {res.family!r}; supported: {', '.join(_FAMILIES)}")
    rng = np.random.default_rng(seed)
    d = res.design
    n = d.nobs
    gauss = res.family == "gaussian"
    scale = float(res.sigma) if gauss else 1.0
    tl = theta_layout([t.q for t in d.terms])
    lams = lambdas_np(np.asarray(res.theta, dtype=float), tl) if d.terms else []
    eta = np.repeat((d.X @ res.beta + d.offset)[:, None], nsim, axis=1)
    for t, lam in zip(d.terms, lams):
        b = rng.standard_normal((nsim, t.nlevels, t.q)) @ (scale * lam).T  # (nsim, levels, q)
        codes = np.asarray(t.codes)
        step = max(1, _CHUNK // max(1, n * t.q))  # b at the rows: (step, n, q) at a time, not (nsim, n, q)
        for s0 in range(0, nsim, step):
            eta[:, s0 : s0 + step] += np.einsum("nq,snq->ns", t.Z, b[s0 : s0 + step][:, codes, :])
    if gauss:
        w = np.asarray(d.weights, dtype=float)
        sd = res.sigma / np.sqrt(np.where(w > 0, w, np.inf))
        y = eta + sd[:, None] * rng.standard_normal((n, nsim))
    else:
        mu = np.asarray(get_family(res.family, res.link).linkinv(eta), dtype=float)
        if res.family == "binomial":
            ntr = np.asarray(res.extra.get("trials", np.ones(n)), dtype=float)
            y = rng.binomial(np.round(ntr).astype(np.int64)[:, None], np.clip(mu, 0.0, 1.0)).astype(float)
        else:
            y = rng.poisson(mu).astype(float)
    return pd.DataFrame(y, index=d.rows, columns=[f"sim_{i + 1}" for i in range(nsim)])
