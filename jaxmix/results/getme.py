"""lme4's ``getME()``: the pieces of a fitted mixed model as matrices, in lme4's layout.

The random-effects vector b has q = Σₖ ℓₖ qₖ entries: term k (in the fit's term order) contributes
ℓₖ levels × qₖ columns, level-major (lme4's order: terms, then levels, then columns within a level).
With Λ = blockdiag(I_{ℓₖ} ⊗ Λₖ) the relative covariance factor (Λₖ lower triangular from θ) and u the
spherical random effects, b = Λ u, and the linear predictor is η = X β + Z b + offset.
The sparse matrices are built from each term's n × qₖ columns and level codes, never a dense n × q.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from ..core.sparse import sparse_lambda, sparse_z
from ..spec.covariance import lambdas_np, theta_layout
from ..errors import JaxmixError

__all__ = ["GETME_NAMES", "getme", "z_matrix", "lambda_matrix", "b_vector", "u_vector", "flist"]

GETME_NAMES = ("X", "Z", "Lambda", "theta", "b", "u", "beta", "sigma", "flist")


def z_matrix(design) -> sp.csr_matrix:
    """Z (n × q, scipy CSR): row i has term k's columns Zₖ[i] at offₖ + codeₖ[i]·qₖ + (0..qₖ−1).

    Structural zeros (e.g. ``Days = 0`` in a slope column) are not stored, as in lme4's Z."""
    terms = design.terms
    Z, _ = sparse_z([t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms], design.nobs)
    Z.eliminate_zeros()
    return Z


def lambda_matrix(theta, design) -> sp.csr_matrix:
    """Λ (q × q, scipy CSR) = blockdiag(I_{ℓₖ} ⊗ Λₖ): lme4's ``t(getME(m, "Lambdat"))``.

    Every θ position is stored (a θ of 0 stays a stored zero, as in lme4's Lambdat)."""
    terms = design.terms
    return sparse_lambda(theta, theta_layout([t.q for t in terms]), [t.nlevels for t in terms])


def b_vector(res) -> np.ndarray:
    """The conditional modes b in lme4's order (terms, levels, columns within a level)."""
    if not res.b:
        return np.zeros(0)
    return np.concatenate([np.asarray(bk, dtype=float).reshape(-1) for bk in res.b])


def u_vector(res) -> np.ndarray:
    """Spherical modes u with Λ u = b, solved per term: Λₖ uₗ = bₗ for every level ℓ.

    A singular Λₖ (a θ diagonal of 0) is solved by least squares (minimum-norm u, 0 where Λ is)."""
    terms = res.design.terms
    tl = theta_layout([t.q for t in terms])
    out = []
    for bk, lam in zip(res.b, lambdas_np(np.asarray(res.theta, dtype=float), tl)):
        bk = np.asarray(bk, dtype=float)
        if np.all(np.abs(np.diag(lam)) > 0):
            uk = scipy.linalg.solve_triangular(lam, bk.T, lower=True).T
        else:
            uk = np.linalg.lstsq(lam, bk.T, rcond=None)[0].T
        out.append(uk.reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def flist(design) -> pd.DataFrame:
    """The grouping factors, one categorical column per distinct factor (lme4's ``getME(m, "flist")``)."""
    cols: dict[str, pd.Categorical] = {}
    for t in design.terms:
        if t.group not in cols:
            labels = np.asarray(t.levels, dtype=object)
            cols[t.group] = pd.Categorical(labels[np.asarray(t.codes)], categories=pd.unique(labels))
    return pd.DataFrame(cols, index=design.rows)


def getme(res, name: str):
    """One named piece of the fit, as lme4's ``getME(m, name)``.

    ``"X"`` (n × p ndarray), ``"Z"`` (scipy CSR n × q), ``"Lambda"`` (scipy CSR q × q, Lambdat′),
    ``"theta"``, ``"b"``, ``"u"``, ``"beta"`` (ndarrays), ``"sigma"`` (float; 1 for binomial/Poisson),
    ``"flist"`` (DataFrame of grouping factors).  Identities: X β + Z b + offset = η (the fitted values
    of an LMM, the linear predictor of a GLMM) and Λ u = b.
    """
    d = res.design
    if name == "X":
        return np.array(d.X, dtype=float)
    if name == "Z":
        return z_matrix(d)
    if name == "Lambda":
        return lambda_matrix(res.theta, d)
    if name == "theta":
        return np.array(res.theta, dtype=float)
    if name == "b":
        return b_vector(res)
    if name == "u":
        return u_vector(res)
    if name == "beta":
        return np.array(res.beta, dtype=float)
    if name == "sigma":
        return float(res.sigma)
    if name == "flist":
        return flist(d)
    raise JaxmixError(f"getme name must be one of {', '.join(map(repr, GETME_NAMES))}, got {name!r}")
