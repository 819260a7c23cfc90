"""One-row-per-combination t tests of linear combinations of the fixed effects (lmerTest's ``contest1D``).

For each row l of L (and right-hand side c, default 0):

    estimate = l′β̂,   se = √(l′Φl),   t = (l′β̂ − c)/se,   p = 2 P(T_ν > |t|),
    interval l′β̂ ± t_{ν,(1+level)/2} se,

with Φ = Var(β̂) (Kenward–Roger: pbkrtest's adjusted Φ_A) and ν from ``ddf`` (Satterthwaite by
default for an LMM, ∞ — a z test — for a GLMM; see :mod:`jaxmix.inference.wald`).  A joint test of all rows
is :meth:`MixedResults.wald_test` (lmerTest's ``contestMD``).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import JaxmixError
from ..spec.formula import split_top
from .wald import contrast_df, contrast_matrix, contrast_vcov, ddf_method, fixed_term_columns
from ..results.mixed import register_extension
from ..dists import t_test

__all__ = ["contrast", "hypothesis_rows", "t_table"]


def _coef_key(names: list[str], key: str) -> int:
    k = "Intercept" if key == "(Intercept)" else key
    if k not in names:
        raise JaxmixError(f"unknown coefficient {key!r} in the hypothesis; the fixed effects are "
                          f"{', '.join(map(repr, names))}")
    return names.index(k)


def hypothesis_rows(res, hypothesis) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(L, c, labels) with one row per linear combination.

    ``hypothesis`` may be a vector (one row) or a matrix over the coefficients; a dict
    ``{coefficient: weight}`` (one row); a string of comma-separated pieces, each a fixed TERM name
    (one row per coefficient of the term: ``"Sex"``, ``"age:Sex"``, ``"period"`` for ``C(period)``) or a
    linear expression in the coefficient names (``"Days"``, ``"a - b"``, ``"Intercept + 5*Days"``,
    ``"Days = 10"``); or a list of any of these.
    """
    names = list(res.x_names)
    p = len(names)
    if isinstance(hypothesis, Mapping):
        if not hypothesis:
            raise JaxmixError("empty hypothesis dict")
        row = np.zeros(p)
        for k, w in hypothesis.items():
            try:
                wf = float(w)
            except (TypeError, ValueError):
                raise JaxmixError(f"weight of {k!r} in the hypothesis is {w!r}, not a number") from None
            if not np.isfinite(wf):
                raise JaxmixError(f"weight of {k!r} in the hypothesis is not finite: {w!r}")
            row[_coef_key(names, str(k))] += wf
        label = " + ".join(f"{v:g}*{nm}" for v, nm in zip(row, names) if v)
        return row[None, :], np.zeros(1), [label]
    if isinstance(hypothesis, str):
        terms = fixed_term_columns(res.design) if res.design.fixed_spec is not None else {}
        Ls, cs, labels = [], [], []
        for piece in split_top(hypothesis, ","):
            piece = piece.strip()
            if not piece:
                continue
            key = piece.replace(" ", "")
            term = next((t for t in terms if t.replace(" ", "") == key), None)
            if term is None and piece not in names:  # "period" for the term C(period)
                term = next((t for t in terms if t.replace(" ", "") == f"C({key})"), None)
            if term is not None and not (len(terms[term]) == 1 and names[terms[term][0]] == piece):
                for j in terms[term]:
                    row = np.zeros(p)
                    row[j] = 1.0
                    Ls.append(row)
                    cs.append(0.0)
                    labels.append(names[j])
                continue
            L1, c1, lab1 = contrast_matrix(res, piece)
            Ls.extend(L1)
            cs.extend(c1)
            labels.extend(lab1)
        if not Ls:
            raise JaxmixError("empty hypothesis")
        return np.vstack(Ls), np.asarray(cs, dtype=float), labels
    if isinstance(hypothesis, (list, tuple)) and hypothesis and all(isinstance(h, (str, Mapping)) for h in hypothesis):
        parts = [hypothesis_rows(res, h) for h in hypothesis]
        return (np.vstack([q[0] for q in parts]), np.concatenate([q[1] for q in parts]),
                [lab for q in parts for lab in q[2]])
    try:
        L = np.asarray(hypothesis, dtype=float)
    except (TypeError, ValueError):
        raise JaxmixError("hypothesis must be a vector, matrix, dict or string, got "
                          f"{type(hypothesis).__name__}") from None
    return contrast_matrix(res, L)


def t_table(est, se, df, rhs, level: float, labels) -> pd.DataFrame:
    """estimate, se, df, statistic = (estimate − rhs)/se, p (two-sided t, z where df = ∞), ci_low, ci_high."""
    est, se, df, rhs = (np.asarray(a, dtype=float) for a in (est, se, df, rhs))
    stat = (est - rhs) / se
    p, crit = t_test(stat, df, level)
    return pd.DataFrame({"estimate": est, "se": se, "df": df, "statistic": stat, "p": p,
                         "ci_low": est - crit * se, "ci_high": est + crit * se}, index=list(labels))


def contrast(res, hypothesis, ddf=None, level: float = 0.95, rhs=None) -> pd.DataFrame:
    """lmerTest's ``contest1D``, one row per linear combination (module docstring for the formulas).

    Args:
      hypothesis: see :func:`hypothesis_rows` (vector, matrix, ``{coef: weight}``, coefficient
        expressions or term names).
      ddf: ``"satterthwaite"`` (LMM default), ``"kenward-roger"`` (REML fits; se from Φ_A),
        ``"containment"``, ``"between-within"``, ``"residual"`` or ``"asymptotic"`` (z; GLMM default).
      level: confidence level of the intervals.
      rhs: the value(s) c each row is tested against (overrides an ``= c`` in a string).

    Returns:
      DataFrame indexed by the combinations with estimate, se, df, statistic, p, ci_low, ci_high;
      ``attrs["ddf"]`` names the df method and ``attrs["L"]`` holds the rows.
    """
    if not 0 < level < 1:
        raise JaxmixError(f"level must be between 0 and 1, got {level}")
    method = ddf_method(res, ddf)
    L, c, labels = hypothesis_rows(res, hypothesis)
    if rhs is not None:
        try:
            c = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],)).copy()
        except ValueError:
            raise JaxmixError(f"rhs has {np.size(rhs)} values for {L.shape[0]} hypothesis rows") from None
    V = contrast_vcov(res, method)
    var = np.einsum("ri,ij,rj->r", L, V, L)
    if np.any(var <= 0):
        bad = [lab for lab, v in zip(labels, var) if v <= 0]
        raise JaxmixError(f"combination(s) {bad} have zero variance (no fixed effect involved)")
    out = t_table(L @ res.beta, np.sqrt(var), contrast_df(res, L, method), c, level, labels)
    out.attrs["ddf"] = method
    out.attrs["L"] = L
    return out


# the results' methods of these names (jaxmix.results.mixed.register_extension)
register_extension("contrast", contrast)
