"""Text summary close to lmerTest's ``summary(lmerMod)`` print (lme4's for GLMMs, ``summary(lm)`` for OLS fits
and ``summary(glm)`` for fixed-only GLMs).

For mixed models it shows the quantiles (R's type 7) of the scaled Pearson residuals
rᵢ = √wᵢ (yᵢ − μᵢ)/σ (σ = 1 for GLMMs; lme4's ``residuals(m, "pearson", scaled = TRUE)``), the fixed-effects
table with the denominator df and p-values of ``ddf`` (Satterthwaite by default for an LMM, as lmerTest),
and the correlation of the fixed effects Φᵢⱼ/√(ΦᵢᵢΦⱼⱼ) (shown up to 12 coefficients, as lme4).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from ..results.mixed import register_extension

__all__ = ["format_summary", "scaled_residual_quantiles", "fixef_correlation"]


def _fmt_table(df: pd.DataFrame, digits: int = 4) -> str:
    return df.to_string(float_format=lambda v: f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.{digits}f}")


def structure_lines(res, info) -> list[str]:
    """The structured fit's own covariance parameters (nlme-like), with SEs."""
    out = []
    if info.get("variance") or info.get("correlation"):
        what = ", ".join(f"{k} = {info[k]}" for k in ("variance", "correlation") if info.get(k))
        out.append(f"Residual structure: {what}")
        if info.get("sd_by_stratum"):
            sds = info["sd_by_stratum"]
            first = next(iter(sds.values()))
            tab = pd.DataFrame({"SD": list(sds.values()), "ratio": [v / first for v in sds.values()]},
                               index=pd.Index(list(sds), name="level"))
            out.append(" residual SD per level (ratio to the first level):")
            out.append(_fmt_table(tab))
        if info.get("rho") is not None:
            out.append(f" residual correlation rho: {info['rho']:.4f}")
    if not res.is_mixed and info is not None:
        out.append(f"Residual standard error (first level): {res.sigma:.4g}; number of obs: {res.nobs}")
    tab = res.covparm_table()[["group", "var1", "kind", "estimate", "se"]].fillna("")
    out.append("Covariance parameters (each structure's own):")
    out.append(tab.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    out.append("")
    return out


_DDF_LABEL = {"satterthwaite": "Satterthwaite's method", "kenward-roger": "Kenward-Roger's method",
              "containment": "containment df", "between-within": "between-within df", "residual": "residual df"}
MAX_CORR = 12  # lme4 prints the correlation of the fixed effects up to 12 coefficients


def scaled_residual_quantiles(res) -> pd.Series:
    """Min, 1Q, Median, 3Q, Max of the Pearson residuals divided by σ (lme4's "Scaled residuals")."""
    r = np.asarray(res.residuals_of("pearson"), dtype=float)
    if res.family == "gaussian":
        r = r / res.sigma
    return pd.Series(np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0]), index=["Min", "1Q", "Median", "3Q", "Max"])


def fixef_correlation(res) -> pd.DataFrame:
    """Correlation of the fixed-effect estimates, Φᵢⱼ/√(ΦᵢᵢΦⱼⱼ)."""
    V = np.asarray(res.vcov_beta, dtype=float)
    sd = np.sqrt(np.diag(V))
    return pd.DataFrame(V / np.outer(sd, sd), index=res.x_names, columns=res.x_names)


def _corr_text(res) -> list[str]:
    p = len(res.beta)
    if p < 2:
        return []
    if p > MAX_CORR:
        return ["", f"Correlation matrix not shown by default, as p = {p} > {MAX_CORR}."]
    C = fixef_correlation(res).to_numpy()
    names = list(res.x_names)
    short = [nm[:6] for nm in names[:-1]]
    rows = [[f"{C[i, j]:.3f}" if j < i else "" for j in range(p - 1)] for i in range(1, p)]
    tab = pd.DataFrame(rows, index=names[1:], columns=short)
    return ["", "Correlation of Fixed Effects:", tab.to_string()]


def format_summary(res, ddf=None) -> str:
    from .wald import ddf_method

    lines = []
    method = ddf_method(res, ddf)
    fixed_glm = res.family != "gaussian" and not res.is_mixed
    if res.method == "OLS":
        lines.append("Linear model fit by least squares")
    elif res.family == "gaussian" and not res.is_mixed:
        crit = "REML" if res.method == "REML" else "maximum likelihood"
        lines.append(f"Generalized least squares fit by {crit} ['gls'-like, jaxmix]")
    elif res.family == "gaussian":
        crit = "REML" if res.method == "REML" else "maximum likelihood"
        how = f". t-tests use {_DDF_LABEL[method]}" if method in _DDF_LABEL else ""
        lines.append(f"Linear mixed model fit by {crit}{how} ['lmerModLmerTest'-like, jaxmix]")
    elif fixed_glm:
        lines.append("Generalized linear model fit by maximum likelihood ['glm'-like, jaxmix]")
        lines.append(f" Family: {res.family}  ( {res.link} )")
    else:
        how = "Laplace approximation" if res.method.upper() == "LAPLACE" else \
            f"adaptive Gauss-Hermite quadrature (nAGQ = {res.extra.get('nagq', 1)})"
        lines.append(f"Generalized linear mixed model fit by maximum likelihood ({how}) ['glmerMod'-like, jaxmix]")
        lines.append(f" Family: {res.family}  ( {res.link} )")
    lines.append(f"Formula: {res.formula}")
    if res.design.n_dropped:
        lines.append(f"({res.design.n_dropped} rows with missing values dropped)")
    lines.append("")
    if res.method == "REML":
        lines.append(f"REML criterion at convergence: {res.objective:.4f}")
    else:
        tab = pd.DataFrame({"AIC": [res.aic], "BIC": [res.bic], "logLik": [res.loglik],
                            "deviance": [-2.0 * res.loglik], "df.resid": [res.nobs - (len(res.beta) if res.method == "OLS" else res.n_params)]})
        lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if res.method == "OLS":
        lines.append(f"Residual standard error: {res.sigma:.4g} on {res.nobs - len(res.beta)} degrees of freedom")
        lines.append(f"R-squared: {res.r_squared:.4f}")
    if fixed_glm:
        lines.append(f"Residual deviance: {res.deviance:.4f} on {res.nobs - len(res.beta)} degrees of freedom")
    lines.append("")
    if res.is_mixed:
        q = scaled_residual_quantiles(res)
        lines.append("Scaled residuals:")
        lines.append(q.to_frame().T.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        lines.append("")
    if res.is_mixed:
        lines.append("Random effects:")
        vc = res.varcorr
        shown = []
        for _, r in vc.iterrows():
            if pd.isna(r["var2"]):
                shown.append((r["group"], "" if pd.isna(r["var1"]) else r["var1"], f"{r['vcov']:.4g}",
                              f"{r['sdcor']:.4g}", ""))
            else:
                shown.append((r["group"], f"corr({r['var1']}, {r['var2']})", "", "", f"{r['sdcor']:.3f}"))
        tab = pd.DataFrame(shown, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])
        lines.append(tab.to_string(index=False))
        groups = "; ".join(f"{g}, {n}" for g, n in res.ngroups.items())
        lines.append(f"Number of obs: {res.nobs}, groups:  {groups}")
        lines.append("")
    info = res.extra.get("structure") if isinstance(res.extra, dict) else None
    if info is not None:
        lines += structure_lines(res, info)
    if res.dispersion is not None:
        d = res.dispersion_table.iloc[0]
        lines.append(f"Dispersion: {d['parameter']} = {d['estimate']:.4g} (SE {d['se']:.3g})")
        lines.append("")
    lines.append("Fixed effects:")
    ct = res.coef_table(ddf=method)
    if res.method == "OLS":
        tab = ct[["estimate", "se", "statistic", "p"]].set_axis(["Estimate", "Std. Error", "t value", "Pr(>|t|)"], axis=1)
    elif np.all(np.isfinite(ct["df"])):
        tab = ct[["estimate", "se", "df", "statistic", "p"]].set_axis(
            ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"], axis=1)
    else:
        tab = ct[["estimate", "se", "statistic", "p"]].set_axis(["Estimate", "Std. Error", "z value", "Pr(>|z|)"], axis=1)
    lines.append(_fmt_table(tab))
    if res.is_mixed:
        lines.extend(_corr_text(res))
    if res.optim is not None:
        lines.append("")
        conv = "converged" if res.converged else "NOT converged"
        gmax = float(np.max(np.abs(res.optim.grad))) if res.optim.grad.size else 0.0
        lines.append(f"Optimizer: {conv} ({res.optim.message}); iterations {res.optim.iterations}, "
                     f"max|gradient| {gmax:.2e}")
        if res.singular:
            lines.append("boundary (singular) fit: a variance is exactly 0 or a correlation is +-1")
    return "\n".join(lines)


# the results' methods of these names (jaxmix.results.mixed.register_extension)
register_extension("format_summary", format_summary)
