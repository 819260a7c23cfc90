"""Comparing fitted models: the likelihood-ratio (deviance) table and the homogeneity-of-slopes χ² test.

* :func:`anova` — lme4's ``anova(m0, m1, ...)``: models sorted by number of parameters k, and for each
  model after the first χ² = d_{i−1} − d_i on k_i − k_{i−1} df, d = −2 log L.  When the two models
  differ only in their random effects and the larger one adds exactly one variance (which the null
  puts on its boundary, 0), the null distribution is the mixture ½χ²_{df−1} + ½χ²_{df}
  (Self & Liang 1987; Stram & Lee 1994), reported as ``p_mixture``.
* :func:`homogeneity_test` — Bryk & Raudenbush's (2002, eq. 3.103) test that a level-1 coefficient is
  the same in every group, from per-group least squares.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import JaxmixError
from ..dists import chi2_sf

__all__ = ["anova", "homogeneity_test", "HomogeneityTest"]


def _same_data(models) -> None:
    m0 = models[0]
    for i, m in enumerate(models[1:], start=2):
        if m.nobs != m0.nobs:
            raise JaxmixError(f"model {i} was fitted to {m.nobs} rows but model 1 to {m0.nobs}; likelihood-ratio "
                              "tests need the same rows (check missing values dropped by one formula)")
        same_rows = np.array_equal(np.asarray(m.design.rows), np.asarray(m0.design.rows))
        y0, y1 = m0.design.y, m.design.y
        same_y = y0 is not None and y1 is not None and np.allclose(y0, y1, rtol=1e-12, atol=0, equal_nan=True)
        if not (same_rows and same_y):
            raise JaxmixError(f"model {i} and model 1 were fitted to different data (different rows or response); "
                              "likelihood-ratio tests need the same data")
        if m.family != m0.family:
            raise JaxmixError(f"model {i} is {m.family!r} but model 1 is {m0.family!r}")


def _same_fixed(a, b) -> bool:
    """The same fixed-effects matrix (a reparameterised X counts as different: refit by ML to be safe)."""
    Xa, Xb = a.design.X, b.design.X
    return Xa.shape == Xb.shape and bool(np.allclose(Xa, Xb))


def _n_variances(m) -> int:
    return int(sum(t.q for t in m.design.terms))


def anova(*models, refit: bool | None = True, names=None) -> pd.DataFrame:
    """Likelihood-ratio table for nested models fitted to the same data.

    Columns: ``npar`` (k), ``AIC`` = d + 2k, ``BIC`` = d + k log n, ``logLik``, ``deviance`` (d = −2 log L),
    ``Chisq`` = d_{i−1} − d_i, ``Df`` = k_i − k_{i−1}, ``p`` = P(χ²_Df > Chisq), ``p_mixture`` (see the module
    docstring) and ``criterion`` (ML, REML, or "ML (refitted)").

    Args:
      *models: two or more :class:`jaxmix.MixedResults`.
      refit: for Gaussian REML fits. ``True`` (default, as lme4's ``anova(m0, m1)``): refit every REML
        fit by ML and compare ML log-likelihoods; the table's ``criterion`` is "ML (refitted)" and its
        note says "refitted with ML". ``False`` (lme4's ``refit = FALSE``): compare the REML criteria (an
        error when the fixed parts differ: those REML likelihoods are not comparable). ``None``: refit
        only when the fixed parts differ.
      names: row labels (default: the formulas).

    Returns:
      A DataFrame, rows sorted by ``npar``; ``attrs["note"]`` says what was refitted.
    """
    from ..inference.intervals import ml_refit

    if len(models) == 1 and isinstance(models[0], (list, tuple)):
        models = tuple(models[0])
    if len(models) < 2:
        raise JaxmixError("anova needs at least two fitted models")
    from ..results.mixed import MixedResults

    for i, m in enumerate(models, start=1):
        if not isinstance(m, MixedResults):
            raise JaxmixError(f"argument {i} is a {type(m).__name__}, not a fitted model")
    _same_data(models)
    labels = list(names) if names is not None else [m.formula for m in models]
    if len(labels) != len(models):
        raise JaxmixError(f"{len(labels)} names for {len(models)} models")
    if len(set(labels)) < len(labels):
        labels = [f"{lab} [{i + 1}]" for i, lab in enumerate(labels)]
    reml = [m.method == "REML" for m in models]
    fixed_same = all(_same_fixed(models[0], m) for m in models[1:])
    if any(reml):
        if refit is None:
            do_refit = not (all(reml) and fixed_same)
        else:
            do_refit = bool(refit)
        if not do_refit and not (all(reml) and fixed_same):
            raise JaxmixError("REML likelihoods of models with different fixed effects (or mixed with ML fits) are "
                              "not comparable; use refit=True (refit by ML)")
    else:
        do_refit = False
    rows = []
    for lab, m in zip(labels, models):
        if m.method == "REML" and do_refit:
            ll, crit = ml_refit(m)["loglik"], "ML (refitted)"
        else:
            ll, crit = m.loglik, m.method
        rows.append(dict(model=lab, npar=m.n_params, logLik=ll, criterion=crit, _m=m))
    order = sorted(range(len(rows)), key=lambda i: rows[i]["npar"])  # stable: ties keep argument order
    rows = [rows[i] for i in order]
    n = models[0].nobs
    out = []
    for i, r in enumerate(rows):
        dev = -2.0 * r["logLik"]
        rec = dict(npar=r["npar"], AIC=dev + 2 * r["npar"], BIC=dev + np.log(n) * r["npar"], logLik=r["logLik"],
                   deviance=dev, Chisq=np.nan, Df=np.nan, p=np.nan, p_mixture=np.nan, criterion=r["criterion"])
        if i > 0:
            prev = rows[i - 1]
            chisq = -2.0 * prev["logLik"] - dev
            df = r["npar"] - prev["npar"]
            rec["Chisq"], rec["Df"] = chisq, df
            if df > 0:
                rec["p"] = float(chi2_sf(max(chisq, 0.0), df))
                m0, m1 = prev["_m"], r["_m"]
                if _same_fixed(m0, m1) and _n_variances(m1) - _n_variances(m0) == 1:
                    lower = 1.0 if chisq <= 0 else float(chi2_sf(chisq, df - 1)) if df > 1 else 0.0
                    rec["p_mixture"] = 0.5 * lower + 0.5 * float(chi2_sf(max(chisq, 0.0), df))
        out.append(rec)
    table = pd.DataFrame(out, index=[r["model"] for r in rows])
    if do_refit:
        table.attrs["note"] = "REML fits refitted with ML before comparing (their fixed effects differ)" \
            if refit is None else "REML fits refitted with ML before comparing (lme4's default; refit=False " \
            "compares the REML criteria)"
    elif any(reml):
        table.attrs["note"] = "compared on the REML criterion (same fixed effects)"
    else:
        table.attrs["note"] = ""
    return table


@dataclass
class HomogeneityTest:
    """Bryk & Raudenbush's χ² homogeneity test of one coefficient across groups."""

    statistic: float
    df: int
    p: float
    estimate: float  # precision-weighted mean γ̂ of the per-group estimates
    sigma2: float  # pooled within-group residual variance
    n_groups: int  # groups used (n_j > p and X_j of full rank)
    n_groups_total: int
    term: str
    groups: pd.DataFrame = field(repr=False, default=None)


def homogeneity_test(formula: str, data, group: str, term: str) -> HomogeneityTest:
    """χ² test that the coefficient of ``term`` is the same in every level of ``group``.

    Per group j with n_j > p rows and X_j of full rank: OLS β̂_j and RSS_j; σ̂² = Σ RSS_j / Σ (n_j − p);
    V̂_j = σ̂² [(X_j′X_j)⁻¹]_tt; γ̂ = Σ (β̂_j/V̂_j) / Σ (1/V̂_j) and

        H = Σ_j (β̂_j − γ̂)² / V̂_j  ~  χ²_{J − 1}

    (Bryk & Raudenbush 2002, eq. 3.103; J the groups used).  Random-effect terms in ``formula`` are
    ignored: only its fixed part defines the per-group regressions.
    """
    from ..spec.design import build_design
    from ..spec.formula import ParsedFormula, parse_formula

    parsed = parse_formula(formula)
    data = (data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)).reset_index(drop=True)
    if group not in data.columns:
        raise JaxmixError(f"group column {group!r} is not in the data")
    fixed_only = ParsedFormula(formula=formula, response=parsed.response, fixed=parsed.fixed, random=())
    sub = data[data[group].notna()]
    design = build_design(fixed_only, sub)
    names = list(design.x_names)
    key = "Intercept" if term == "(Intercept)" else term
    if key not in names:
        raise JaxmixError(f"unknown term {term!r}; the coefficients are {', '.join(map(repr, names))}")
    t = names.index(key)
    X, y = design.X, design.y
    w = design.weights
    g = sub.loc[design.rows, group].to_numpy()
    n, p = X.shape
    rows = []
    rss_tot, dof_tot = 0.0, 0
    levels = pd.unique(g)
    for lev in levels:
        sel = g == lev
        Xj, yj, wj = X[sel], y[sel], w[sel]
        nj = Xj.shape[0]
        if nj <= p or np.linalg.matrix_rank(Xj) < p:
            continue
        sw = np.sqrt(wj)
        Q, R = np.linalg.qr(Xj * sw[:, None])
        bj = np.linalg.solve(R, Q.T @ (yj * sw))
        rss = float(np.sum(wj * (yj - Xj @ bj) ** 2))
        Rinv = np.linalg.inv(R)
        rows.append((lev, nj, bj[t], float((Rinv @ Rinv.T)[t, t])))
        rss_tot += rss
        dof_tot += nj - p
    if len(rows) < 2:
        raise JaxmixError(f"only {len(rows)} group(s) of {group!r} have more rows than the {p} coefficients; "
                          "the homogeneity test needs at least two")
    tab = pd.DataFrame(rows, columns=[group, "n", "estimate", "xtx_inv"]).set_index(group)
    s2 = rss_tot / dof_tot
    V = s2 * tab["xtx_inv"].to_numpy()
    b = tab["estimate"].to_numpy()
    gamma = float(np.sum(b / V) / np.sum(1.0 / V))
    H = float(np.sum((b - gamma) ** 2 / V))
    df = len(rows) - 1
    tab["variance"] = V
    tab = tab.drop(columns="xtx_inv")
    return HomogeneityTest(statistic=H, df=df, p=float(chi2_sf(H, df)), estimate=gamma, sigma2=s2,
                           n_groups=len(rows), n_groups_total=len(levels), term=key, groups=tab)
