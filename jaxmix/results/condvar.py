"""Conditional covariances of the random effects: lme4's ``attr(ranef(m, condVar = TRUE)[[g]], "postVar")``.

For a linear mixed model, Var(bₗ | y) = σ² Λₗ (L⁻ᵀ L⁻¹)ₗₗ Λₗ′ with L the sparse Cholesky factor of
Λ′Z′ZΛ + I (the diagonal block of level ℓ only; lme4's ``condVar``); for a GLMM the same with the Fisher
weights inside and no σ².  jaxmix computes the blocks with its blocked factor (no dense n × n matrix).
lme4 returns a qₖ × qₖ × ℓₖ array; here it is (ℓₖ, qₖ, qₖ).  Terms that share a grouping factor
(``(Days || Subject)``) are returned together, block diagonal, as lme4 does.
"""
from __future__ import annotations

import numpy as np

from ..errors import JaxmixError

__all__ = ["condvar"]


def condvar(res, group: str) -> np.ndarray:
    """(levels, q, q) conditional covariance matrices of grouping factor ``group``'s random effects."""
    terms = res.design.terms
    idx = [k for k, t in enumerate(terms) if t.group == group]
    if not idx:
        groups = list(dict.fromkeys(t.group for t in terms))
        raise JaxmixError(f"no grouping factor {group!r} in the model; its grouping factors are {groups}")
    if res._condvar_fn is None:
        raise JaxmixError("this fit has no conditional variances")
    cv = res._condvar_fn()
    blocks = [np.asarray(cv[k], dtype=float) for k in idx]
    nlev = blocks[0].shape[0]
    qtot = sum(b.shape[1] for b in blocks)
    out = np.zeros((nlev, qtot, qtot))
    s = 0
    for b in blocks:
        q = b.shape[1]
        out[:, s : s + q, s : s + q] = b
        s += q
    return out
