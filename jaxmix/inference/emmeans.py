"""Estimated marginal means over a reference grid and their pairwise differences (R's emmeans package).

Reference grid (emmeans' defaults): every level of every factor of the fixed part, each numeric
covariate at its mean over the rows used by the fit, and ``at={"var": value or list}`` overriding
either.  With X_g the fixed-effects rows of the grid, the marginal mean of level a of ``term`` is the
equally weighted average over the grid rows with that level,

    l_a = mean_{g: term(g) = a} X_g,   emmean_a = l_a′β̂,   se_a = √(l_a′Φl_a),

on ν_a df (Satterthwaite or Kenward–Roger as in :mod:`jaxmix.inference.contrasts`; Φ is pbkrtest's adjusted
Φ_A for Kenward–Roger, as emmeans uses it), interval emmean ± t_{ν,(1+level)/2} se.  Means are on the
link scale (emmeans' default for GLMMs; ν = ∞).

Pairwise differences l_a − l_b (a before b in level order), t = estimate/se; ``adjust="tukey"``
(emmeans' default for pairs) gives p = P(Q_{k,ν} > √2 |t|) with Q the studentized range of the k
means (``scipy.stats.studentized_range``); ``adjust="none"`` the unadjusted two-sided t p-value.
Note: emmeans' default df for an lmer fit is Kenward–Roger (pbkrtest installed); jaxmix's default is
Satterthwaite, as everywhere else: pass ``ddf="kenward-roger"`` for emmeans' numbers.
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from .contrasts import t_table
from ..spec.design import fixed_matrix_new
from ..errors import JaxmixError
from .wald import contrast_df, contrast_vcov, ddf_method
from ..results.mixed import register_extension

__all__ = ["reference_grid", "emmeans", "pairs", "ADJUST"]

ADJUST = ("tukey", "none")
_PLAIN = re.compile(r"\s*(?:C\(\s*)?`?([A-Za-z_.][A-Za-z0-9_.]*)`?\s*(?:,[^)]*)?\)?\s*")


def _grid_variables(design) -> tuple[dict, list[str]]:
    """({categorical data column: its levels}, [numeric data columns]) of the fixed part."""
    spec = design.fixed_spec
    if spec is None:
        raise JaxmixError("this fit has no fixed-effects formula to build a reference grid from")
    cats: dict[str, list] = {}
    for expr, (kind, state) in (spec.encoder_state or {}).items():
        if getattr(kind, "value", kind) != "categorical":
            continue
        m = _PLAIN.fullmatch(str(expr))
        if not m or "categories" not in state:
            raise JaxmixError(f"emmeans: the categorical factor {expr!r} is not a plain column (or C(column)); "
                              "add the derived column to the data and use it in the formula")
        cats[m.group(1)] = list(state["categories"])
    nums = sorted(set(spec.required_variables) - set(cats))
    return cats, nums


def _numeric_mean(res, var: str, data) -> float:
    if data is not None:
        if var not in data.columns:
            raise JaxmixError(f"emmeans: column {var!r} is not in data=")
        pos = res.design.positions
        col = data[var].iloc[pos] if pos is not None else data[var].loc[res.design.rows]
        vals = pd.to_numeric(col, errors="coerce")
        return float(np.mean(vals))
    names = list(res.x_names)
    if var in names:
        return float(np.mean(res.design.X[:, names.index(var)]))
    raise JaxmixError(f"emmeans: the mean of covariate {var!r} cannot be read off the fixed-effects matrix "
                      f"(it enters only through a transformation); pass data= (the fitted data frame) or "
                      f"at={{{var!r}: value}}")


def reference_grid(res, at: dict | None = None, data=None) -> pd.DataFrame:
    """The reference grid: all combinations of the factor levels and the covariate values (module docstring)."""
    cats, nums = _grid_variables(res.design)
    at = dict(at or {})
    unknown = [k for k in at if k not in cats and k not in nums]
    if unknown:
        raise JaxmixError(f"at= names {unknown}, which are not variables of the fixed part "
                          f"({', '.join(map(repr, list(cats) + nums))})")
    values: dict[str, list] = {}
    for v in list(cats) + nums:
        if v in at:
            got = at[v]
            vals = list(got) if isinstance(got, (list, tuple, np.ndarray, pd.Series)) else [got]
            if v in cats:
                bad = [x for x in vals if x not in cats[v]]
                if bad:
                    raise JaxmixError(f"at={{{v!r}: ...}}: level(s) {bad} not among the fitted levels {cats[v]}")
            if not vals:
                raise JaxmixError(f"at={{{v!r}: ...}} is empty")
            values[v] = vals
        else:
            values[v] = cats[v] if v in cats else [_numeric_mean(res, v, data)]
    combos = list(itertools.product(*values.values())) if values else [()]
    grid = pd.DataFrame(combos, columns=list(values))
    for v in cats:
        grid[v] = pd.Series(pd.Categorical(grid[v], categories=cats[v]))
    return grid


def _term_vars(term, cats, nums) -> list[str]:
    vars_ = term if isinstance(term, (list, tuple)) else [s.strip() for s in str(term).split(":")]
    out = []
    for v in vars_:
        m = _PLAIN.fullmatch(str(v))
        name = m.group(1) if m else str(v)
        if name not in cats and name not in nums:
            raise JaxmixError(f"emmeans: {v!r} is not a variable of the fixed part "
                              f"({', '.join(map(repr, list(cats) + nums))})")
        out.append(name)
    return out


def _means_rows(res, term, at, data):
    """(levels frame, L): one row of L per combination of the ``term`` variables in the grid."""
    cats, nums = _grid_variables(res.design)
    vars_ = _term_vars(term, cats, nums)
    grid = reference_grid(res, at, data)
    X = fixed_matrix_new(res.design, grid)
    keys = grid[vars_].astype(object)
    levels = keys.drop_duplicates().reset_index(drop=True)
    tuples = list(keys.itertuples(index=False, name=None))
    L = np.vstack([X[[t == lev for t in tuples]].mean(axis=0) for lev in levels.itertuples(index=False, name=None)])
    return levels, L


def emmeans(res, term, ddf=None, at: dict | None = None, level: float = 0.95, data=None,
            pairwise: bool = False, adjust: str = "tukey") -> pd.DataFrame:
    """Estimated marginal means of ``term`` (a factor or covariate name, ``"A:B"`` or a list), emmeans-style.

    Args:
      ddf: ``"satterthwaite"`` (LMM default), ``"kenward-roger"`` (emmeans' own default for lmer),
        ``"asymptotic"`` (GLMM default) or another :mod:`jaxmix.inference.wald` method.
      at: ``{variable: value or list of values}`` overriding the grid (covariates are otherwise at their mean).
      data: the fitted data frame; needed only when a covariate enters through a transformation.
      pairwise: return the pairwise differences (:func:`pairs`) instead of the means.
      adjust: p-value adjustment of the pairs: ``"tukey"`` (default, as emmeans) or ``"none"``.

    Returns:
      One row per level: the term's variables, emmean, se, df, ci_low, ci_high (``attrs["L"]``: the rows).
    """
    if pairwise:
        return pairs(res, term, ddf=ddf, at=at, adjust=adjust, data=data)
    if not 0 < level < 1:
        raise JaxmixError(f"level must be between 0 and 1, got {level}")
    method = ddf_method(res, ddf)
    levels, L = _means_rows(res, term, at, data)
    V = contrast_vcov(res, method)
    se = np.sqrt(np.einsum("ri,ij,rj->r", L, V, L))
    tab = t_table(L @ res.beta, se, contrast_df(res, L, method), np.zeros(len(L)), level, range(len(L)))
    out = pd.concat([levels, tab[["estimate", "se", "df", "ci_low", "ci_high"]].reset_index(drop=True)], axis=1)
    out = out.rename(columns={"estimate": "emmean"})
    out.attrs.update(ddf=method, L=L)
    return out


def pairs(res, term, ddf=None, at: dict | None = None, adjust: str = "tukey", data=None) -> pd.DataFrame:
    """Pairwise differences of the marginal means of ``term``: estimate, se, df, statistic, p (module docstring)."""
    from scipy import stats

    adjust = str(adjust).lower()
    if adjust not in ADJUST:
        raise JaxmixError(f"adjust must be one of {ADJUST}, got {adjust!r}")
    method = ddf_method(res, ddf)
    levels, Lm = _means_rows(res, term, at, data)
    k = len(levels)
    if k < 2:
        raise JaxmixError(f"pairwise differences need at least two levels of {term!r}")
    lab = [" ".join(str(x) for x in row) for row in levels.itertuples(index=False)]
    idx = list(itertools.combinations(range(k), 2))
    L = np.vstack([Lm[a] - Lm[b] for a, b in idx])
    V = contrast_vcov(res, method)
    se = np.sqrt(np.einsum("ri,ij,rj->r", L, V, L))
    df = contrast_df(res, L, method)
    tab = t_table(L @ res.beta, se, df, np.zeros(len(L)), 0.95, [f"{lab[a]} - {lab[b]}" for a, b in idx])
    tab = tab[["estimate", "se", "df", "statistic", "p"]].copy()
    if adjust == "tukey" and k > 2:
        q = np.sqrt(2.0) * np.abs(tab["statistic"].to_numpy())
        tab["p"] = [float(stats.studentized_range.sf(qi, k, d if np.isfinite(d) else 1e7)) for qi, d in zip(q, df)]
    tab.index.name = "contrast"
    tab.attrs.update(ddf=method, adjust=adjust if k > 2 else "none (2 means)", L=L)
    return tab


# the results' methods of these names (jaxmix.results.mixed.register_extension)
register_extension("emmeans", emmeans)
register_extension("pairs", pairs)
