"""Residual covariance structures W⁻¹ = σ² Σ: nlme's varIdent, corAR1 and corCompSymm.

Σ = S C S with S = diag(δ_{s(i)} / √wᵢ) (δ per stratum of ``variance="ident(f)"``, δ = 1 for the first
level; wᵢ the prior weights) and C block diagonal over the groups of ``correlation=``:

* ``ar1(g)`` / ``ar1(t | g)``: rows of a group ordered by t (data order without t); consecutive rows
  i → j a gap d = t_j − t_i apart (d = 1 in data order) have φ_d = ρ^d, and C⁻¹ is tridiagonal:

      x′C⁻¹x = x_first² + Σ_pairs (x_j² + φ_d² x_i² − 2φ_d x_i x_j) / (1 − φ_d²),
      log|C|  = Σ_pairs log(1 − φ_d²)

  (the process x_{j} | x_i ~ N(φ_d x_i, 1 − φ_d²), so that corr = ρ^|t_i − t_j| as nlme's corAR1 with
  an integer covariate).
* ``cs(g)``: C_g = (1 − ρ)I + ρJ for a group of m rows, C_g⁻¹ = [I − c_m J]/(1 − ρ) with
  c_m = ρ/(1 + (m − 1)ρ), log|C_g| = (m − 1) log(1 − ρ) + log(1 + (m − 1)ρ); with strata,
  x′C_g⁻¹x = [Σᵢ xᵢ²/δᵢ² − c_m Σ_{s,s'} S_s S_s'/(δ_s δ_s')]/(1 − ρ), S_s the sum of the group's rows in
  stratum s: the J part comes from per-group sums (grouped by group size), not from the m² pairs.

Every quadratic form a′Σ⁻¹b is therefore Σ_k coef_k(δ, ρ) · P_k(a, b), where each *piece* P_k is a
fixed sum over pairs of rows of ½(aᵢbⱼ + aⱼbᵢ)·√(wᵢwⱼ) (i = j for the diagonal pieces), keyed by its
kind, its gap (AR(1)) or group size (CS) and the strata of its two rows; the CS pieces of J are
½(S_a S_b′ + S_b S_a′) summed over groups (``sums``, :func:`jaxmix.core.pairs.sum_cross_products`).  The pieces are formed once
(:mod:`jaxmix.core.pairs`); one evaluation combines them with the coefficients: cost independent of n.
log|W| = −log|Σ| = Σ log wᵢ − 2 Σᵢ log δ_{s(i)} − log|C| enters the criterion.

Parameters φ (unconstrained, the optimiser's): log δ_s for s ≥ 2, then η with ρ = tanh η (AR(1)) or
ρ = ℓ + (1 − ℓ)·logistic(η), ℓ = −1/(m_max − 1) (CS, so that every C_g is positive definite).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import JaxmixError

__all__ = ["ResidualSpec", "parse_variance", "parse_correlation", "spec_columns", "ResidualPieces",
           "residual_pieces", "coefficients", "log_det_sigma", "phi_init", "phi_natural", "phi_names"]

_NAME = r"[^\W\d][\w.]*|`[^`]+`"


@dataclass(frozen=True)
class ResidualSpec:
    """Parsed ``variance=`` / ``correlation=``: kind (``ident``, ``ar1``, ``cs``), its factor columns, and
    the time column of ``ar1(t | g)`` (None in data order)."""

    kind: str
    factors: tuple[str, ...]
    time: str | None = None
    text: str = ""


def _names(text: str, whole: str, what: str) -> tuple[str, ...]:
    out = []
    for n in (p.strip() for p in text.split(":")):
        if not re.fullmatch(_NAME, n):
            raise JaxmixError(f"{what} {whole!r}: {n!r} is not a column name (use `backticks` around other names)")
        out.append(n.strip("`"))
    return tuple(out)


def parse_variance(text) -> ResidualSpec | None:
    """``"ident(Sex)"`` (or ``"ident(a:b)"``) -> ResidualSpec; None -> None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise JaxmixError(f"variance must be a string such as 'ident(Sex)', got {type(text).__name__}")
    m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
    if not m or m.group(1) != "ident":
        raise JaxmixError(f"variance={text!r}: the supported residual variance structure is 'ident(f)' "
                          "(a residual SD per level of the factor f, nlme's varIdent(form = ~1 | f))")
    return ResidualSpec("ident", _names(m.group(2), text, "variance"), None, text.strip())


def parse_correlation(text) -> ResidualSpec | None:
    """``"ar1(g)"``, ``"ar1(t | g)"``, ``"cs(g)"`` -> ResidualSpec; None -> None."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise JaxmixError(f"correlation must be a string such as 'ar1(Subject)', got {type(text).__name__}")
    m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
    if not m or m.group(1) not in ("ar1", "cs"):
        raise JaxmixError(f"correlation={text!r}: use 'ar1(g)', 'ar1(t | g)' or 'cs(g)' (AR(1) or compound "
                          "symmetry within the groups of g)")
    kind, body = m.group(1), m.group(2)
    parts = body.split("|")
    time = None
    if len(parts) == 2:
        if kind != "ar1":
            raise JaxmixError(f"correlation={text!r}: a time column ('t | g') is for ar1 only")
        t = parts[0].strip()
        if t != "1":
            time = _names(t, text, "correlation")
            if len(time) != 1:
                raise JaxmixError(f"correlation={text!r}: the time must be one column")
            time = time[0]
        body = parts[1]
    elif len(parts) > 2:
        raise JaxmixError(f"correlation={text!r} has more than one '|'")
    return ResidualSpec(kind, _names(body, text, "correlation"), time, text.strip())


def spec_columns(*specs) -> tuple[str, ...]:
    """The data columns the specs use (their missing values drop rows like the model's columns)."""
    out = []
    for s in specs:
        if s is not None:
            out += list(s.factors) + ([s.time] if s.time else [])
    return tuple(dict.fromkeys(out))


def _codes(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    from .design import grouping_factor

    labels, codes, _ = grouping_factor(frame, factors)
    return labels, np.asarray(codes, dtype=np.int64)


@dataclass
class ResidualPieces:
    """The pieces of Σ⁻¹ and what their coefficients need (all numpy, formed once).

    ia, ib, wfix: per piece, the row pairs and fixed weights √(wᵢwⱼ); keys: per piece
    (kind, gap-or-size, stratum a, stratum b), kind one of ``diag`` (no correlation), ``first``, ``next``,
    ``prev``, ``cross`` (AR(1)), ``csdiag`` (CS).  sums / sum_keys: the CS group-sum pieces
    (rows_a, group_a, √w_a, rows_b, group_b, √w_b, number of groups), kind ``csouter``.
    """

    ia: list
    ib: list
    wfix: list
    keys: list
    n_strata: int
    strata_labels: list
    stratum_counts: np.ndarray  # rows per stratum
    cor_kind: str | None
    gap_counts: dict  # AR(1): pairs per gap; CS: groups per size
    max_size: int
    group_codes: np.ndarray | None
    spec_text: dict
    strata: np.ndarray  # (n,) stratum code of each row
    sums: list
    sum_keys: list
    times: np.ndarray | None = None  # (n,) AR(1) time of each row (its position in its group in data order)


def residual_pieces(frame: pd.DataFrame, w: np.ndarray, variance: ResidualSpec | None,
                    correlation: ResidualSpec | None) -> ResidualPieces:
    """Row pairs of every piece of Σ⁻¹ for the model's rows ``frame`` (after missing-value drops)."""
    n = len(frame)
    if np.any(w <= 0):
        raise JaxmixError("weights must be positive with a residual variance or correlation structure")
    if variance is not None:
        slabels, strata = _codes(frame, variance.factors)
    else:
        slabels, strata = ["(all)"], np.zeros(n, dtype=np.int64)
    S = len(slabels)
    u = np.sqrt(w)
    groups: dict = {}
    gcodes = None
    times = None
    sums, sum_keys = [], []
    if correlation is None:
        groups[("diag", 0)] = (np.arange(n), np.arange(n))
    else:
        _, gcodes = _codes(frame, correlation.factors)
        order = np.argsort(gcodes, kind="stable")
        if correlation.time is not None:
            t = pd.to_numeric(frame[correlation.time], errors="coerce").to_numpy(dtype=float)
            if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
                bad = frame[correlation.time].iloc[int(np.flatnonzero(~np.isfinite(t) | (t != np.round(t)))[0])]
                raise JaxmixError(f"correlation={correlation.text!r}: time column {correlation.time!r} must hold "
                                  f"integers (AR(1) at integer lags, as nlme's corAR1); found {bad!r}")
            order = np.lexsort((t, gcodes))
        g_sorted = gcodes[order]
        same = g_sorted[1:] == g_sorted[:-1]
        if correlation.time is not None:
            times = t.astype(np.int64)
        else:  # data order: the row's position within its group
            times = np.empty(n, np.int64)
            starts = np.flatnonzero(np.concatenate([[True], ~same]))
            pos = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
            times[order] = pos
        if correlation.kind == "ar1":
            i, j = order[:-1][same], order[1:][same]
            if correlation.time is not None:
                d = (t[j] - t[i]).astype(np.int64)
                if np.any(d == 0):
                    k = int(np.flatnonzero(d == 0)[0])
                    raise JaxmixError(f"correlation={correlation.text!r}: time {t[i[k]]:g} occurs twice in group "
                                      f"{frame[list(correlation.factors)].iloc[i[k]].tolist()}; times must be "
                                      "unique within a group")
            else:
                d = np.ones(i.shape[0], dtype=np.int64)
            first = order[np.concatenate([[True], ~same])]
            groups[("first", 0)] = (first, first)
            for dd in np.unique(d):
                sel = d == dd
                groups[("next", int(dd))] = (j[sel], j[sel])
                groups[("prev", int(dd))] = (i[sel], i[sel])
                groups[("cross", int(dd))] = (i[sel], j[sel])
            gap_counts = {int(dd): int(np.sum(d == dd)) for dd in np.unique(d)}
        else:
            sizes = np.bincount(gcodes)
            gap_counts = {int(m): int(np.sum(sizes == m)) for m in np.unique(sizes[sizes > 0])}
            groups[("csdiag", 0)] = (np.arange(n), np.arange(n))
            m_row = sizes[gcodes]
            for m in gap_counts:
                if m > 1:
                    for sa in range(S):
                        for sb in range(sa, S):
                            ra = np.flatnonzero((m_row == m) & (strata == sa))
                            rb = np.flatnonzero((m_row == m) & (strata == sb))
                            if ra.size and rb.size:
                                sums.append((ra, gcodes[ra], u[ra], rb, gcodes[rb], u[rb], int(gcodes.max()) + 1))
                                sum_keys.append(("csouter", m, sa, sb))
    if correlation is None:
        gap_counts = {}
    ia, ib, wfix, keys = [], [], [], []
    for (kind, d), (a, b) in groups.items():
        sa, sb = strata[a], strata[b]
        lo, hi = np.minimum(sa, sb), np.maximum(sa, sb)
        for key in np.unique(lo * S + hi):
            sel = (lo * S + hi) == key
            ia.append(a[sel])
            ib.append(b[sel])
            wfix.append(u[a[sel]] * u[b[sel]])
            keys.append((kind, d, int(key // S), int(key % S)))
    max_size = int(np.max(np.bincount(gcodes))) if gcodes is not None else 1
    if correlation is not None and correlation.kind == "cs" and max_size < 2:
        raise JaxmixError(f"correlation={correlation.text!r}: every group has one row; nothing is correlated")
    return ResidualPieces(ia, ib, wfix, keys, S, slabels, np.bincount(strata, minlength=S), 
                          correlation.kind if correlation is not None else None, gap_counts, max_size, gcodes,
                          {"variance": variance.text if variance else None,
                           "correlation": correlation.text if correlation else None}, strata, sums, sum_keys, times)


def n_phi(rp: ResidualPieces) -> int:
    return (rp.n_strata - 1) + (1 if rp.cor_kind else 0)


def rho_of(phi, rp: ResidualPieces):
    """The correlation parameter ρ from φ's last entry."""
    eta = phi[-1]
    if rp.cor_kind == "ar1":
        return jnp.tanh(eta)
    lo = -1.0 / (rp.max_size - 1)
    return lo + (1.0 - lo) / (1.0 + jnp.exp(-eta))


def log_delta(phi, rp: ResidualPieces):
    """log δ per stratum (0 for the first)."""
    return jnp.concatenate([jnp.zeros((1,), phi.dtype), phi[: rp.n_strata - 1]])


def coefficients(phi, rp: ResidualPieces):
    """coef_k(δ, ρ) of every piece (module docstring), as a jnp vector: the pair pieces, then the sums."""
    ld = log_delta(phi, rp)
    rho = rho_of(phi, rp) if rp.cor_kind else None
    out = []
    for kind, d, sa, sb in list(rp.keys) + list(rp.sum_keys):
        scale = jnp.exp(-ld[sa] - ld[sb])
        if kind in ("diag", "first"):
            f = 1.0
        elif kind in ("next", "prev", "cross"):
            ph = rho**d
            den = 1.0 - ph**2
            f = {"next": 1.0 / den, "prev": ph**2 / den, "cross": -2.0 * ph / den}[kind]
        elif kind == "csdiag":
            f = 1.0 / (1.0 - rho)
        else:  # csouter: −c_m/(1 − ρ), twice for two strata (S_a S_b′ and S_b S_a′)
            f = -(rho / (1.0 + (d - 1) * rho)) / (1.0 - rho) * (1.0 if sa == sb else 2.0)
        out.append(f * scale)
    return jnp.stack([jnp.asarray(o, dtype=phi.dtype) for o in out])


def log_det_sigma(phi, rp: ResidualPieces):
    """log|S C S| without the prior weights' part: 2 Σᵢ log δ_{s(i)} + log|C|."""
    ld = log_delta(phi, rp)
    out = 2.0 * jnp.sum(jnp.asarray(rp.stratum_counts, phi.dtype) * ld)
    if rp.cor_kind == "ar1":
        rho = rho_of(phi, rp)
        for d, cnt in rp.gap_counts.items():
            out = out + cnt * jnp.log(1.0 - rho ** (2 * d))
    elif rp.cor_kind == "cs":
        rho = rho_of(phi, rp)
        for m, cnt in rp.gap_counts.items():
            out = out + cnt * ((m - 1) * jnp.log(1.0 - rho) + jnp.log(1.0 + (m - 1) * rho))
    return out


def phi_init(rp: ResidualPieces) -> np.ndarray:
    """δ = 1, ρ = 0."""
    out = np.zeros(n_phi(rp))
    if rp.cor_kind == "cs":
        out[-1] = np.log(1.0 / (rp.max_size - 1))  # logistic(η) = −ℓ/(1 − ℓ): ρ = 0
    return out


def phi_natural(phi, rp: ResidualPieces):
    """(δ₂ … δ_S, ρ): the SD ratios to the first level and the correlation."""
    out = [jnp.exp(phi[: rp.n_strata - 1])]
    if rp.cor_kind:
        out.append(jnp.reshape(rho_of(phi, rp), (1,)))
    return jnp.concatenate(out)


def phi_names(rp: ResidualPieces) -> list[tuple]:
    """(group, var1, var2, kind) rows for :func:`phi_natural`."""
    out = [("Residual", f"SD ratio {lab}/{rp.strata_labels[0]}", None, "ratio") for lab in rp.strata_labels[1:]]
    if rp.cor_kind:
        out.append(("Residual", f"{rp.cor_kind} rho", None, "rho"))
    return out
