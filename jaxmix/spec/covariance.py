"""θ <-> relative covariance factors Λ, and θ -> lme4's variance/correlation table.

For a term with q columns, Λ is q x q lower triangular and θ lists its lower triangle column by column
(lme4's order: for ``(Days | Subject)`` θ = (Λ₁₁, Λ₂₁, Λ₂₂)).  The term's covariance is
Ω = σ² ΛΛ′ for Gaussian models and Ω = ΛΛ′ for GLMMs.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

__all__ = ["ThetaLayout", "theta_layout", "lambdas", "normalize_theta", "column_signs", "flip_columns",
           "covariances", "is_singular", "lambdas_np"]


@dataclass(frozen=True)
class ThetaLayout:
    """Where each term's Λ entries sit in θ (static, hashable)."""

    q: tuple[int, ...]
    rows: tuple[tuple[int, ...], ...]
    cols: tuple[tuple[int, ...], ...]
    starts: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(len(r) for r in self.rows)

    def is_diagonal(self) -> np.ndarray:
        """Boolean mask over θ: True for Λ's diagonal entries (bounded below by 0 in lme4)."""
        return np.concatenate([np.asarray(r) == np.asarray(c) for r, c in zip(self.rows, self.cols)])

    def init(self) -> np.ndarray:
        """lme4's start: Λ = I."""
        return self.is_diagonal().astype(float)

    def mirrors(self) -> list[tuple[int, tuple[int, ...]]]:
        """The sign symmetries of Σ = ΛΛ′ everywhere: for each column j of each Λ, (position of θⱼⱼ,
        positions of θᵢⱼ for i > j, empty for a scalar term).  Negating column j (ΛD, D = diag(±1))
        leaves ΛΛ′ unchanged whatever θⱼⱼ is (:func:`jaxmix.core.newton.minimize_batch`'s ``mirror``)."""
        out = []
        for r, c, s in zip(self.rows, self.cols, self.starts):
            for j in sorted(set(c)):
                below = tuple(s + i for i, (ri, ci) in enumerate(zip(r, c)) if ci == j and ri > j)
                diag = [s + i for i, (ri, ci) in enumerate(zip(r, c)) if ci == j and ri == j]
                if diag:
                    out.append((diag[0], below))
        return out

    def flips(self) -> list[tuple[int, tuple[int, ...]]]:
        """The sign symmetries of Σ = ΛΛ′ at the bound: the :meth:`mirrors` of the columns with entries
        below their diagonal.  With θⱼⱼ = 0, negating column j (ΛD, D = diag(±1)) leaves ΛΛ′ unchanged
        and only the entries below it change sign (:func:`jaxmix.core.newton.minimize_batch`'s ``flips``)."""
        return [(j, below) for j, below in self.mirrors() if below]


def theta_layout(q: tuple[int, ...] | list[int]) -> ThetaLayout:
    rows, cols, starts, s = [], [], [], 0
    for qk in q:
        r, c = [], []
        for j in range(qk):
            for i in range(j, qk):
                r.append(i)
                c.append(j)
        rows.append(tuple(r))
        cols.append(tuple(c))
        starts.append(s)
        s += len(r)
    return ThetaLayout(tuple(q), tuple(rows), tuple(cols), tuple(starts))


def lambdas(theta, layout: ThetaLayout) -> list:
    """Λ_k for every term (jnp arrays, differentiable in θ)."""
    out = []
    for qk, r, c, s in zip(layout.q, layout.rows, layout.cols, layout.starts):
        lam = jnp.zeros((qk, qk), dtype=theta.dtype)
        lam = lam.at[np.asarray(r), np.asarray(c)].set(theta[s : s + len(r)])
        out.append(lam)
    return out


def column_signs(theta, layout: ThetaLayout) -> list:
    """Per term, the sign (±1) of each Λ column's diagonal entry (a (q_k,) array each)."""
    out = []
    for qk, r, c, s in zip(layout.q, layout.rows, layout.cols, layout.starts):
        r, c = np.asarray(r), np.asarray(c)
        diag = np.asarray([s + int(np.flatnonzero((r == j) & (c == j))[0]) for j in range(qk)], dtype=int)
        out.append(jnp.where(theta[diag] < 0, -1.0, 1.0).astype(theta.dtype))
    return out


def flip_columns(theta, layout: ThetaLayout):
    """Flip the sign of each Λ column whose diagonal is negative.

    The likelihood depends on Λ only through ΛΛ′ (and |Λ′Z′ZΛ + I|, unchanged by D = diag(±1) on the
    right), so this maps an unconstrained optimum onto lme4's parameter space (diagonal ≥ 0).
    """
    if not layout.q:
        return theta
    sign = [sg[np.asarray(c)] for sg, c in zip(column_signs(theta, layout), layout.cols)]
    return theta * jnp.concatenate(sign)


def normalize_theta(theta, layout: ThetaLayout) -> np.ndarray:
    """numpy version of :func:`flip_columns`."""
    return np.asarray(flip_columns(jnp.asarray(theta, dtype=jnp.float64), layout))


def lambdas_np(theta: np.ndarray, tl: ThetaLayout) -> list[np.ndarray]:
    """Λ_k for every term (numpy)."""
    out = []
    for qk, r, c, s in zip(tl.q, tl.rows, tl.cols, tl.starts):
        lam = np.zeros((qk, qk))
        lam[np.asarray(r, dtype=int), np.asarray(c, dtype=int)] = theta[s : s + len(r)]
        out.append(lam)
    return out


def covariances(theta: np.ndarray, layout: ThetaLayout, scale: float = 1.0) -> list[np.ndarray]:
    """Ω_k = scale · Λ_k Λ_k′ for every term (numpy)."""
    return [scale * lam @ lam.T for lam in lambdas_np(np.asarray(theta, dtype=float), layout)]


def is_singular(theta: np.ndarray, tl) -> bool:
    """lme4's isSingular: a diagonal θ within 1e-4 of its bound 0."""
    return bool(np.any(np.abs(theta[tl.is_diagonal()]) < 1e-4))
