"""Responses simulated from a structured Gaussian fit: y = Xβ + offset + Σ_k Z_k b_k + e (numpy).

b_k ~ N(0, σ²Λ_kΛ_k′) per level (Λ from the fit's θ = g(ψ̂), whatever the term's structure) and
e = σ S C^{1/2} z, S = diag(δ_{s(i)}/√wᵢ), z ~ N(0, I):

* AR(1) in time t within a group: e_first = z, e_j = φ_d e_i + √(1 − φ_d²) z_j for consecutive rows
  i → j a gap d apart (φ_d = ρ^d), which gives corr = ρ^|t_i − t_j|;
* CS in a group of m rows: C^{1/2} z = √(1 − ρ) (z − z̄) + √(1 + (m − 1)ρ) z̄ (z̄ the group mean), the
  symmetric square root of (1 − ρ)I + ρJ.

Replicate r draws from ``numpy.random.default_rng((seed, r))``, so replicates are reproducible one
by one.
"""
from __future__ import annotations

import numpy as np

from ..spec.covariance import lambdas_np, theta_layout

__all__ = ["simulate_structured"]


def _ar1(z: np.ndarray, groups: np.ndarray, times: np.ndarray, rho: float) -> np.ndarray:
    """AR(1) errors (reps, n) from white noise z, row by row position within each group (vectorised
    over replicates and groups)."""
    order = np.lexsort((times, groups))
    g, t = groups[order], times[order]
    first = np.concatenate([[True], g[1:] != g[:-1]])
    starts = np.flatnonzero(first)
    pos = np.arange(g.shape[0]) - np.repeat(starts, np.diff(np.append(starts, g.shape[0])))
    e = np.empty_like(z)
    e[:, order[first]] = z[:, order[first]]
    for k in range(1, int(pos.max()) + 1 if pos.size else 1):
        at = np.flatnonzero(pos == k)
        cur, prev = order[at], order[at - 1]
        phi = rho ** (t[at] - t[at - 1]).astype(float)
        e[:, cur] = phi * e[:, prev] + np.sqrt(1.0 - phi**2) * z[:, cur]
    return e


def _cs(z: np.ndarray, groups: np.ndarray, rho: float) -> np.ndarray:
    sizes = np.bincount(groups).astype(float)
    mean = np.stack([np.bincount(groups, weights=zr, minlength=sizes.shape[0]) for zr in z]) / sizes
    zbar = mean[:, groups]
    m = sizes[groups]
    return np.sqrt(1.0 - rho) * (z - zbar) + np.sqrt(1.0 + (m - 1.0) * rho) * zbar


def simulate_structured(res, n: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """(nobs, n) responses, replicates ``start .. start + n − 1`` (module docstring)."""
    d = res.design
    info = res.extra["structure"]
    reps = range(int(start), int(start) + int(n))
    gens = [np.random.default_rng((int(seed), r)) for r in reps]
    eta = d.X @ res.beta + d.offset
    y = np.tile(eta, (len(gens), 1))
    if d.terms:
        lams = lambdas_np(np.asarray(res.theta, float), theta_layout([t.q for t in d.terms]))
        for t, lam in zip(d.terms, lams):
            u = np.stack([gen.standard_normal((t.nlevels, t.q)) for gen in gens])  # (reps, levels, q)
            b = res.sigma * u @ lam.T
            y += np.einsum("nq,rnq->rn", t.Z, b[:, t.codes, :])
    z = np.stack([gen.standard_normal(d.nobs) for gen in gens])
    kind, rho = info.get("cor_kind"), info.get("rho")
    if kind == "ar1":
        z = _ar1(z, info["cor_groups"], info["cor_times"], rho)
    elif kind == "cs":
        z = _cs(z, info["cor_groups"], rho)
    scale = res.sigma * np.asarray(info.get("row_ratio", 1.0)) / np.sqrt(d.weights)
    return (y + z * scale).T
