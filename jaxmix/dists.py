"""Tail probabilities and quantiles of the normal, t, χ² and F distributions, for tests and intervals.

The special functions that ``scipy.stats`` evaluates for these distributions — ``scipy.special``'s
ndtr / ndtri (normal), stdtr / stdtrit (Student's t; df = ∞ is the normal), chdtrc (χ²) and fdtrc
(F) — called directly: importing ``scipy.stats`` costs 0.6–0.9 s and ~40 MB, which a process would
otherwise pay at its first summary.  The same numbers as ``scipy.stats`` (tests/test_dists.py).
"""
from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["norm_sf", "norm_ppf", "t_sf", "t_ppf", "chi2_sf", "f_sf", "t_test"]


def norm_sf(z):
    """P(Z > z) = Φ(−z)."""
    return special.ndtr(-np.asarray(z, dtype=float))


def norm_ppf(p):
    """Φ⁻¹(p)."""
    return special.ndtri(np.asarray(p, dtype=float))


def t_sf(x, df):
    """P(T > x) for Student's t with ``df`` degrees of freedom (any positive real, ∞ the normal)."""
    return special.stdtr(np.asarray(df, dtype=float), -np.asarray(x, dtype=float))


def t_ppf(p, df):
    """The p-quantile of Student's t with ``df`` degrees of freedom."""
    return special.stdtrit(np.asarray(df, dtype=float), np.asarray(p, dtype=float))


def chi2_sf(x, df):
    """P(X > x) for χ² with ``df`` degrees of freedom."""
    return special.chdtrc(np.asarray(df, dtype=float), np.asarray(x, dtype=float))


def f_sf(x, df1, df2):
    """P(F > x) for F(df1, df2)."""
    return special.fdtrc(np.asarray(df1, dtype=float), np.asarray(df2, dtype=float), np.asarray(x, dtype=float))


def t_test(stat, df, level: float):
    """(p, crit) of two-sided t tests and intervals: p = 2 P(T_ν > |stat|) and crit the (1 + level)/2
    quantile of T_ν, elementwise; the normal's where ν = df is infinite (z tests)."""
    stat, df = np.asarray(stat, dtype=float), np.asarray(df, dtype=float)
    finite = np.isfinite(df)
    dfx = np.where(finite, df, 1.0)
    q = 0.5 + level / 2
    p = np.where(finite, 2 * t_sf(np.abs(stat), dfx), 2 * norm_sf(np.abs(stat)))
    crit = np.where(finite, t_ppf(q, dfx), norm_ppf(q))
    return p, crit
