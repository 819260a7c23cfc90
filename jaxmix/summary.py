"""Text summary close to lme4's ``summary(merMod)`` print (and to ``summary(lm)`` for OLS fits)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def _fmt_table(df: pd.DataFrame, digits: int = 4) -> str:
    return df.to_string(float_format=lambda v: f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.{digits}f}")


def format_summary(res) -> str:
    lines = []
    if res.method == "OLS":
        lines.append("Linear model fit by least squares")
    elif res.family == "gaussian":
        crit = "REML" if res.method == "REML" else "maximum likelihood"
        lines.append(f"Linear mixed model fit by {crit} ['lmerMod'-like, jaxmix]")
    elif not res.is_mixed:
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
    if res.dispersion is not None:
        d = res.dispersion_table.iloc[0]
        lines.append(f"Dispersion: {d['parameter']} = {d['estimate']:.4g} (SE {d['se']:.3g})")
        lines.append("")
    lines.append("Fixed effects:")
    # lme4's print shows no df, so the cheap residual df serve here (Satterthwaite needs a compile)
    ct = res.coef_table(ddf="residual" if res.family == "gaussian" else None)
    if res.method == "OLS":
        tab = ct[["estimate", "se", "statistic", "p"]].set_axis(["Estimate", "Std. Error", "t value", "Pr(>|t|)"], axis=1)
    elif res.family == "gaussian":
        tab = ct[["estimate", "se", "statistic"]].set_axis(["Estimate", "Std. Error", "t value"], axis=1)
    else:
        tab = ct[["estimate", "se", "statistic", "p"]].set_axis(["Estimate", "Std. Error", "z value", "Pr(>|z|)"], axis=1)
    lines.append(_fmt_table(tab))
    if res.optim is not None:
        lines.append("")
        conv = "converged" if res.converged else "NOT converged"
        gmax = float(np.max(np.abs(res.optim.grad))) if res.optim.grad.size else 0.0
        lines.append(f"Optimizer: {conv} ({res.optim.message}); iterations {res.optim.iterations}, "
                     f"max|gradient| {gmax:.2e}")
        if res.singular:
            lines.append("boundary (singular) fit: a variance is exactly 0 or a correlation is +-1")
    return "\n".join(lines)
