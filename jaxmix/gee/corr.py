"""GEE working correlations: the per-cluster algebra and statsmodels' moment estimators.

Rows are sorted by cluster (and within a cluster by ``time``, else kept in data order); every
quantity is a segment sum over that order (``np.add.reduceat``) or, for ``unstructured``, a padded
(cluster x time) block of at most the number of time points.  No n x n matrix is formed.  All
arrays carry a leading outcome axis K: ``m`` (K, n) is 1 where the outcome is observed, and the
scaled quantities ``u = D / √V(μ)`` (K, n, p) and ``e = (y − μ) / √V(μ)`` (K, n) are zero elsewhere.

For cluster i with working correlation R_i (the working covariance is φ A_i^½ R_i A_i^½, A_i =
diag V(μ)), :func:`quad_forms` returns the cluster scores g_i = u_iᵀ R_i⁻¹ e_i and the bread
B = Σ_i u_iᵀ R_i⁻¹ u_i:

* ``independence``: R_i = I.
* ``exchangeable``: R_i = (1 − ρ) I + ρ 11ᵀ, R_i⁻¹ = I/(1 − ρ) − c_i 11ᵀ with
  c_i = ρ / ((1 − ρ)(1 + ρ (k_i − 1))).
* ``ar1``: R_i[s, t] = ρ^|s−t| (consecutive rows one step apart); R_i⁻¹ is tridiagonal with
  (1 + ρ²)/(1 − ρ²) inside the diagonal, 1/(1 − ρ²) at its ends and −ρ/(1 − ρ²) beside it.
* ``unstructured``: R_i = R[t_i, t_i], the rows and columns of R at the cluster's time points.

:func:`estimate_dependence` gives statsmodels' (0.14/0.15, ``statsmodels.genmod.cov_struct``)
moment estimators from the Pearson residuals r = (y − μ)/√V(μ), with N rows, p coefficients and
k_i rows in cluster i:

* exchangeable: φ̂ = Σ r² / (N − p);  ρ̂ = [Σ_i Σ_{s<t} r_is r_it / φ̂] / (Σ_i k_i(k_i − 1)/2 − p).
* ar1 (``Autoregressive(grid=True)``): ρ̂ = Σ_i [Σ_t r_it r_i,t+1 / (k_i − 1)] / Σ_i [Σ_t r_it² / k_i]
  over clusters with k_i > 1.
* unstructured: C[s, t] = Σ_i r_is r_it / (n_st − p) (n_st: clusters observed at both s and t),
  then R = C[s, t] / √(C[s, s] C[t, t]).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import JaxmixError

__all__ = ["CORSTRS", "Clusters", "make_clusters", "seg_sum", "quad_forms", "estimate_dependence",
           "initial_dependence", "gram"]

CORSTRS = ("independence", "exchangeable", "ar1", "unstructured")


@dataclass(frozen=True)
class Clusters:
    """The cluster layout of the rows (after sorting by ``order``)."""

    order: np.ndarray  # sorted row j is data row order[j]
    starts: np.ndarray  # (G,) first sorted row of each cluster
    index: np.ndarray  # (n,) cluster of each sorted row
    labels: list  # (G,) cluster labels, sorted
    adjacent: np.ndarray  # (n,) sorted rows j and j + 1 are in the same cluster (False for the last)
    time: np.ndarray | None = None  # (n,) time-point code of each sorted row (unstructured)
    time_levels: list | None = None

    @property
    def n_clusters(self) -> int:
        return len(self.starts)


def make_clusters(groups: np.ndarray, time: np.ndarray | None = None, unique_times: bool = False,
                  time_name: str = "time") -> Clusters:
    """Sort rows by cluster (labels sorted, as ``np.unique``), then by ``time``, then by data order.

    ``unique_times`` (unstructured): each time point at most once per cluster, else an error.
    """
    labels, codes = np.unique(np.asarray(groups), return_inverse=True)
    codes = codes.reshape(-1)
    n = codes.shape[0]
    pos = np.arange(n)
    tcodes, tlevels = None, None
    if time is not None:
        tlevels, tcodes = np.unique(np.asarray(time), return_inverse=True)
        tcodes = tcodes.reshape(-1)
        order = np.lexsort((pos, tcodes, codes))
    else:
        order = np.argsort(codes, kind="stable")
    index = codes[order]
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    adjacent = np.r_[index[1:] == index[:-1], False]
    if unique_times:
        if tcodes is None:  # statsmodels' default time: the position within the cluster
            t = pos - starts[index]
            tlevels = np.arange(int(t.max()) + 1 if n else 0)
        else:
            t = tcodes[order]
            dup = adjacent[:-1] & (t[1:] == t[:-1])
            if dup.any():
                j = int(np.flatnonzero(dup)[0])
                raise JaxmixError(
                    f"corstr='unstructured' needs each value of {time_name!r} at most once per cluster; "
                    f"cluster {labels[index[j]]!r} has {time_name} = {tlevels[t[j]]!r} twice")
        tcodes = t
    return Clusters(order=order, starts=starts, index=index, labels=list(labels), adjacent=adjacent,
                    time=tcodes, time_levels=None if tlevels is None else list(tlevels))


def seg_sum(x: np.ndarray, cl: Clusters) -> np.ndarray:
    """Σ over each cluster's rows along axis 1: (K, n, ...) -> (K, G, ...)."""
    return np.add.reduceat(x, cl.starts, axis=1)


def gram(u: np.ndarray) -> np.ndarray:
    """uᵀu per outcome: (K, n, p) -> (K, p, p) (BLAS)."""
    return np.matmul(np.swapaxes(u, 1, 2), u)


def _pad(x: np.ndarray, cl: Clusters, q: int) -> np.ndarray:
    """(K, n, ...) -> (K, G, q, ...): each row at its (cluster, time point); zeros elsewhere."""
    out = np.zeros((x.shape[0], cl.n_clusters, q) + x.shape[2:])
    out[:, cl.index, cl.time] = x
    return out


def initial_dependence(corstr: str, K: int, cl: Clusters) -> np.ndarray:
    """The identity working correlation (statsmodels' starting state)."""
    if corstr == "unstructured":
        return np.broadcast_to(np.eye(len(cl.time_levels)), (K, len(cl.time_levels), len(cl.time_levels))).copy()
    return np.zeros(K)


def quad_forms(corstr: str, rho: np.ndarray, cl: Clusters, m: np.ndarray, u: np.ndarray,
               e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cluster scores g (K, G, p) = u_iᵀ R_i⁻¹ e_i and bread B (K, p, p) = Σ_i u_iᵀ R_i⁻¹ u_i."""
    if corstr in ("independence", "exchangeable"):
        a = 1.0 / (1.0 - rho)
        g = a[:, None, None] * seg_sum(u * e[..., None], cl)
        B = a[:, None, None] * gram(u)
        if corstr == "exchangeable":
            k = seg_sum(m, cl)
            c = (rho / (1.0 - rho))[:, None] / (1.0 + rho[:, None] * (k - 1.0))
            su, te = seg_sum(u, cl), seg_sum(e, cl)
            g -= (c * te)[..., None] * su
            B -= np.einsum("kg,kgp,kgq->kpq", c, su, su)
        return g, B
    if corstr == "ar1":
        r = rho[:, None]
        d = 1.0 - r * r
        k = np.diff(np.r_[cl.starts, len(cl.index)])[cl.index]  # rows in each row's cluster
        first = np.r_[True, ~cl.adjacent[:-1]]
        end = first | ~cl.adjacent
        w = np.where(end, 1.0 / d, (1.0 + r * r) / d)
        w = np.where(k == 1, 1.0, w)
        c2 = (-r / d)[..., None]  # (K, 1, 1)
        adj = cl.adjacent[:-1].astype(float)
        ue_pair = np.zeros_like(u)
        ue_pair[:, :-1] = adj[:, None] * (u[:, :-1] * e[:, 1:, None] + u[:, 1:] * e[:, :-1, None])
        g = seg_sum(w[..., None] * u * e[..., None] + c2 * ue_pair, cl)
        cross = np.matmul(np.swapaxes(u[:, :-1] * adj[:, None], 1, 2), u[:, 1:])
        B = np.matmul(np.swapaxes(u * w[..., None], 1, 2), u) + c2 * (cross + np.swapaxes(cross, 1, 2))
        return g, B
    # unstructured
    q = rho.shape[-1]
    mq = _pad(m, cl, q)
    Rg = rho[:, None] * (mq[..., :, None] * mq[..., None, :]) + np.eye(q) * (1.0 - mq)[..., None]
    Up, Ep = _pad(u, cl, q), _pad(e, cl, q)
    g = np.einsum("kgtp,kgt->kgp", Up, np.linalg.solve(Rg, Ep[..., None])[..., 0])
    B = np.einsum("kgtp,kgtq->kpq", Up, np.linalg.solve(Rg, Up))
    return g, B


def estimate_dependence(corstr: str, cl: Clusters, m: np.ndarray, r: np.ndarray, p: int) -> np.ndarray:
    """statsmodels' moment estimate of the dependence parameter(s) from Pearson residuals r (K, n)."""
    K = r.shape[0]
    if corstr == "independence":
        return np.zeros(K)
    if corstr == "exchangeable":
        k = seg_sum(m, cl)
        ssr = seg_sum(r * r, cl)
        t = seg_sum(r, cl)
        scale = ssr.sum(1) / (m.sum(1) - p)
        pairs = 0.5 * (t * t - ssr).sum(1)
        npairs = 0.5 * (k * (k - 1.0)).sum(1)
        return pairs / scale / (npairs - p)
    if corstr == "ar1":
        k = seg_sum(m, cl)
        lag = np.zeros_like(r)
        lag[:, :-1] = cl.adjacent[:-1] * r[:, :-1] * r[:, 1:]
        many = k > 1
        kk = np.where(many, k, 2.0)
        lag1 = np.where(many, seg_sum(lag, cl) / (kk - 1.0), 0.0).sum(1)
        lag0 = np.where(many, seg_sum(r * r, cl) / kk, 0.0).sum(1)
        return lag1 / lag0
    q = len(cl.time_levels)
    rp, mp = _pad(r, cl, q), _pad(m, cl, q)
    cov = np.einsum("kgs,kgt->kst", rp, rp) / (np.einsum("kgs,kgt->kst", mp, mp) - p)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    return cov / (sd[:, :, None] * sd[:, None, :])
