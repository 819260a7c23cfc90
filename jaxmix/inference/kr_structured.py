"""Kenward–Roger pieces without any n x n matrix: Σ⁻¹ applied through the Woodbury identity.

With Σ = σ²(ZΛΛ′Z′ + W⁻¹) (W the prior weights, Λ block-diagonal I_ℓ ⊗ Λ_k, Z sparse n x m),
C = Z′WZ (m x m), M = Λ′CΛ + I and T = I − ΛM⁻¹Λ′C:

    S = Σ⁻¹ = σ⁻²(W − WZΛM⁻¹Λ′Z′W),     X_r = X − ZΛM⁻¹Λ′Z′WX,
    SX = σ⁻² W X_r,   X′SX = σ⁻² X′WX_r,   B = Z′SX = σ⁻² Z′WX_r,   A = Z′SZ = σ⁻² C T,
    Z′SW⁻¹SX = σ⁻² T′B,   Z′SW⁻¹SZ = σ⁻⁴ T′CT,   X′SW⁻¹SX = σ⁻⁴ X_r′WX_r,
    X′SW⁻¹SW⁻¹SX = σ⁻⁴ X_r′SX_r,
    tr(SW⁻¹SW⁻¹) = σ⁻⁴ [n − 2 tr K + tr K²],  K = M⁻¹Λ′CΛ.

For the variance parameters γ_r (the entries (i, j) of each Ω_k, G_r = Z E_r Z′, and σ², G = W⁻¹)
these give pbkrtest's P_r = −X′SG_rSX, Q_rs = X′SG_rSG_sSX and I_rs = tr(SG_rSG_s) − 2tr(ΦQ_rs) +
tr(ΦP_rΦP_s) (:func:`jaxmix.inference.wald.kenward_roger_parts`), in O(n m p + m³) time and O(n p + m²)
memory.  Refused (by the caller) above ``max_columns`` random-effect columns m.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..core.sparse import sparse_lambda
from ..core.sparse import sparse_z as core_sparse_z
from ..spec.covariance import theta_layout

__all__ = ["kr_pieces", "re_columns", "sparse_z"]


def re_columns(design) -> int:
    """m = Σ ℓ_k q_k, the number of random-effect columns."""
    return int(sum(t.nlevels * t.q for t in design.terms))


def sparse_z(design) -> tuple[sp.csr_matrix, list[int]]:
    """Z (n x m, scipy.sparse), term blocks level-major (lme4's order), and each block's first column."""
    terms = design.terms
    return core_sparse_z([t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms], design.nobs)


def _entries(design, offs, tl):
    """Per θ position (term k, entry (i, j)): the index pairs (a, b) of E_r in Z's columns."""
    ent = []
    for k, t in enumerate(design.terms):
        base = offs[k] + np.arange(t.nlevels) * t.q
        for i, j in zip(tl.rows[k], tl.cols[k]):
            a, b = base + i, base + j
            ent.append((np.concatenate([a, b]), np.concatenate([b, a])) if i != j else (a, a))
    return ent


def kr_pieces(res):
    """(P, Q, I_E, Φ) for pbkrtest's ``vcovAdj`` (module docstring), the variance parameters ordered
    as the varcorr entries per term then σ²."""
    d = res.design
    n = d.nobs
    X = np.asarray(d.X, dtype=float)
    w = np.asarray(d.weights, dtype=float)
    tl = theta_layout([t.q for t in d.terms])
    Z, offs = sparse_z(d)
    m = Z.shape[1]
    s2 = float(res.sigma) ** 2
    lam = sparse_lambda(res.theta, tl, [t.nlevels for t in d.terms]).toarray()
    ZW = (Z.multiply(w[:, None])).tocsr()  # W Z
    C = (Z.T @ ZW).toarray()
    C = (C + C.T) / 2
    LCL = lam.T @ C @ lam
    M = LCL + np.eye(m)
    cf = sla.cho_factor(M, lower=True)
    ZtWX = ZW.T @ X  # Z′WX (m x p)
    Xr = X - Z @ (lam @ sla.cho_solve(cf, lam.T @ ZtWX))
    XtSX = X.T @ (w[:, None] * Xr) / s2
    Phi = np.linalg.inv((XtSX + XtSX.T) / 2)
    B = (ZW.T @ Xr) / s2
    T = np.eye(m) - lam @ sla.cho_solve(cf, lam.T @ C)
    A = C @ T / s2
    A = (A + A.T) / 2
    Kzz = T.T @ C @ T / s2**2
    Kzz = (Kzz + Kzz.T) / 2
    Ksx = T.T @ B / s2  # Z′SW⁻¹SX
    XrWXr = Xr.T @ (w[:, None] * Xr)
    ZtWXr = ZW.T @ Xr
    XrSXr = (XrWXr - ZtWXr.T @ lam @ sla.cho_solve(cf, lam.T @ ZtWXr)) / s2
    K = sla.cho_solve(cf, LCL)
    trSWSW = (n - 2.0 * np.trace(K) + np.sum(K * K.T)) / s2**2

    ent = _entries(d, offs, tl)
    kr = len(ent)
    k = kr + 1
    P = [-(B[a].T @ B[b]) for a, b in ent] + [-XrWXr / s2**2]
    Q = [[None] * k for _ in range(k)]
    IE = np.zeros((k, k))

    def finish(r, s, q, ktr):
        Q[r][s] = q
        Q[s][r] = q.T
        IE[r, s] = IE[s, r] = ktr - 2.0 * np.sum(Phi * q.T) + np.sum((Phi @ P[r]) * (P[s] @ Phi))

    for r in range(kr):
        ar, br = ent[r]
        for s in range(r, kr):
            as_, bs = ent[s]
            Abc = A[np.ix_(br, as_)]
            finish(r, s, B[ar].T @ Abc @ B[bs], float(np.sum(Abc * A[np.ix_(bs, ar)].T)))
        finish(r, kr, B[ar].T @ Ksx[br], float(np.sum(Kzz[br, ar])))
    finish(kr, kr, XrSXr / s2**2, trSWSW)
    return P, Q, IE, Phi

