"""Z and Λ as scipy sparse matrices, in lme4's layout: term by term, then level by level, then the
term's columns within a level (term k's block starts at offₖ = Σ_{l<k} ℓₗqₗ).

Z (n × Σ ℓₖqₖ): row i holds term k's columns Zₖ[i] at offₖ + codeₖ[i]·qₖ + (0..qₖ−1).
Λ = blockdiag(I_{ℓₖ} ⊗ Λₖ), Λₖ lower triangular from θ.  Built from each term's n × qₖ columns and
level codes, never a dense n × q (numpy, host side: standard errors, starts, lme4's ``getME``)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..spec.covariance import ThetaLayout, lambdas_np

__all__ = ["sparse_z", "sparse_lambda"]


def sparse_z(codes, nlev, Zs, n: int) -> tuple[sp.csr_matrix, list[int]]:
    """(Z as scipy CSR, each term's first column) for per-term level codes (n,), level counts and
    columns (n, qₖ)."""
    rows, cols, vals, offs, off = [], [], [], [], 0
    for cd, lk, Z in zip(codes, nlev, Zs):
        Z = np.asarray(Z, dtype=float)
        q = Z.shape[1]
        rows.append(np.repeat(np.arange(n), q))
        cols.append((off + np.asarray(cd, dtype=np.int64)[:, None] * q + np.arange(q)[None, :]).ravel())
        vals.append(Z.ravel())
        offs.append(off)
        off += int(lk) * q
    if not rows:
        return sp.csr_matrix((n, 0)), offs
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, off)), offs


def sparse_lambda(theta, tl: ThetaLayout, nlev) -> sp.csr_matrix:
    """Λ (scipy CSR) for θ; every θ position is stored (a θ of 0 stays a stored zero, as in lme4's
    Lambdat)."""
    lams = lambdas_np(np.asarray(theta, dtype=float), tl)
    rows, cols, vals, off = [], [], [], 0
    for lam, r, c, lk, q in zip(lams, tl.rows, tl.cols, nlev, tl.q):
        r, c = np.asarray(r, dtype=np.int64), np.asarray(c, dtype=np.int64)
        starts = off + np.arange(int(lk), dtype=np.int64)[:, None] * q
        rows.append((starts + r[None, :]).ravel())
        cols.append((starts + c[None, :]).ravel())
        vals.append(np.tile(lam[r, c], int(lk)))
        off += int(lk) * q
    if not rows:
        return sp.csr_matrix((0, 0))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(off, off))
