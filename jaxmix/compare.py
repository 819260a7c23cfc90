"""Multilevel vs single-level ("traditional") fits of many outcomes: the comparison table, report, plot.

For every outcome and every compared covariate the table holds the estimate, SE and p under the
model with random effects and under the same fixed effects without them, whether the conclusion at
level α differs, and the ratio of the SEs.  A covariate's *level* is the grouping factor with the
fewest levels within which it is constant (a hospital characteristic is constant within hospitals),
or ``"patient"``/``"row"`` when it varies within every group.  Ignoring the clustering mostly shrinks
the SEs of the group-level covariates, which is what makes conclusions differ (Austin, Tu & Alter
2003).

With a marginal fit (:func:`jaxmix.fit_gee` of the same fixed effects, :class:`jaxmix.GEEFits`) the table
gains its estimate, robust SE and p (``*_marginal``), its conclusion and whether it differs from the
multilevel one (``differs_marginal``).  The marginal (population-averaged) log odds ratios are
attenuated relative to the multilevel (cluster-specific) ones, so compare SEs and conclusions rather
than the estimates themselves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .results.sweep import Sweep
from .dists import norm_ppf

__all__ = ["covariate_levels", "expand_terms", "compare_sweeps", "comparison_report", "plot_comparison",
           "COMPARISON_COLUMNS", "MARGINAL_COLUMNS"]

COMPARISON_COLUMNS = ["outcome", "term", "level", "estimate_multilevel", "se_multilevel", "p_multilevel",
                      "estimate_single", "se_single", "p_single", "significant_multilevel",
                      "significant_single", "differs", "se_ratio"]
MARGINAL_COLUMNS = ["estimate_marginal", "se_marginal", "p_marginal", "significant_marginal", "differs_marginal"]


def covariate_levels(sweep: Sweep) -> dict[str, str]:
    """term -> the grouping factor it is constant within (fewest levels first), or ``"row"``."""
    d = sweep.problem.design
    terms = sorted([t for t in d.terms if t.q == 1 and np.allclose(t.Z, 1.0)], key=lambda t: t.nlevels)
    out = {}
    for j, name in enumerate(d.x_names):
        x = d.X[:, j]
        level = "row"
        if np.ptp(x) == 0:
            level = "constant"
        else:
            for t in terms:
                lo = np.full(t.nlevels, np.inf)
                hi = np.full(t.nlevels, -np.inf)
                np.minimum.at(lo, t.codes, x)
                np.maximum.at(hi, t.codes, x)
                if np.all(hi - lo <= 1e-12 * (1.0 + np.abs(hi))):
                    level = t.group
                    break
        out[name] = level
    return out


def expand_terms(design, terms) -> list[str]:
    """Coefficient names for ``terms``: a coefficient name stays, a fixed TERM name (a factor ``"C(site)"``
    or ``"site"``, an interaction ``"a:b"``) becomes all its coefficients, in X's order."""
    from .inference.wald import fixed_term_columns

    if isinstance(terms, str):
        terms = [terms]
    names = list(design.x_names)
    by_term = fixed_term_columns(design) if design.fixed_spec is not None else {}
    out: list[str] = []
    for t in terms:
        t = str(t)
        if t in names:
            cols = [t]
        elif t in by_term:
            cols = [names[j] for j in by_term[t]]
        else:
            alias = next((k for k in by_term if k.replace(" ", "") in (f"C({t})", t.replace(" ", ""))), None)
            cols = [names[j] for j in by_term[alias]] if alias is not None else [t]
        out.extend(c for c in cols if c not in out)
    return out


def compare_sweeps(multilevel: Sweep, single: Sweep, terms: list[str] | None = None,
                   alpha: float = 0.05, marginal=None) -> pd.DataFrame:
    """One row per (outcome, covariate): estimates, SEs and p under both fits, and whether they differ.

    Args:
      multilevel, single: sweeps of the same outcomes with and without the random effects.
      terms: the covariates (default: those constant within a grouping factor): coefficient names or
        fixed term names (a factor term expands to its coefficients; :func:`expand_terms`).
      alpha: significance level of the conclusions.
      marginal: optional :class:`jaxmix.GEEFits` of the same outcomes: adds :data:`MARGINAL_COLUMNS`.
    """
    levels = covariate_levels(multilevel)
    if terms is None:
        terms = [t for t, lv in levels.items() if lv not in ("row", "constant")]
    else:
        terms = expand_terms(multilevel.problem.design, terms)
    missing = [t for t in terms if t not in multilevel.x_names or t not in single.x_names]
    if missing:
        from .errors import JaxmixError

        raise JaxmixError(f"compare_terms {missing} are not fixed-effect terms of both fits "
                          f"(terms: {', '.join(multilevel.x_names)})")
    a = multilevel.to_frame().set_index(["outcome", "term"])
    b = single.to_frame().set_index(["outcome", "term"])
    idx = pd.MultiIndex.from_product([multilevel.names, terms], names=["outcome", "term"])
    out = pd.DataFrame(index=idx).reset_index()
    out["level"] = [levels.get(t, "row") for t in out["term"]]
    for tag, src in (("multilevel", a), ("single", b)):
        sub = src.reindex(idx)
        out[f"estimate_{tag}"] = sub["estimate"].to_numpy()
        out[f"se_{tag}"] = sub["se"].to_numpy()
        out[f"p_{tag}"] = sub["p"].to_numpy()
    ok = np.isfinite(out["p_multilevel"]) & np.isfinite(out["p_single"])
    out["significant_multilevel"] = (out["p_multilevel"] < alpha).where(ok)
    out["significant_single"] = (out["p_single"] < alpha).where(ok)
    out["differs"] = (out["significant_multilevel"] != out["significant_single"]).where(ok)
    out["se_ratio"] = out["se_single"] / out["se_multilevel"]
    if marginal is None:
        return out[COMPARISON_COLUMNS]
    sub = marginal.to_frame().set_index(["outcome", "term"]).reindex(idx)
    out["estimate_marginal"] = sub["estimate"].to_numpy()
    out["se_marginal"] = sub["se"].to_numpy()
    out["p_marginal"] = sub["p"].to_numpy()
    okm = np.isfinite(out["p_multilevel"]) & np.isfinite(out["p_marginal"])
    out["significant_marginal"] = (out["p_marginal"] < alpha).where(okm)
    out["differs_marginal"] = (out["significant_multilevel"] != out["significant_marginal"]).where(okm)
    return out[COMPARISON_COLUMNS + MARGINAL_COLUMNS]


NO_TERMS_MESSAGE = ("No covariate compared: none of the fixed effects is constant within a grouping factor\n"
                    "(the default choice). Name the covariates with [sweep] compare_terms.")


def _share(mask: pd.Series) -> str:
    m = mask.dropna().astype(bool)
    return f"{int(m.sum())} of {len(m)} ({100.0 * m.mean():.0f}%)" if len(m) else "none compared"


def comparison_report(table: pd.DataFrame, multilevel: Sweep, single: Sweep, alpha: float = 0.05,
                      notes: list[str] | None = None, marginal=None) -> str:
    """A short plain-text report of :func:`compare_sweeps`' table (and of the marginal fits, if given)."""
    lines = [
        "Multilevel vs single-level regression of the same outcomes",
        "=" * 58,
        f"multilevel:   {multilevel.formula}  [{multilevel.family}, {multilevel.method}]",
        f"single-level: {single.formula}  [{single.family}, {single.method}]",
        f"outcomes: {len(multilevel)}; rows per outcome: {int(np.nanmin(multilevel.nobs_))}"
        f"-{int(np.nanmax(multilevel.nobs_))}; converged: multilevel "
        f"{int((multilevel.status_ == 0).sum())}/{len(multilevel)}, single-level "
        f"{int((single.status_ == 0).sum())}/{len(single)}",
        "",
        f"Conclusions at the {alpha:g} level that differ between the two analyses: {_share(table['differs'])}",
    ]
    if not len(table):
        lines.append("  " + NO_TERMS_MESSAGE.replace("\n", " "))
    for lv, sub in table.groupby("level", sort=False):
        ratio = np.nanmedian(sub["se_ratio"])
        lines.append(f"  {lv}-level covariates: {_share(sub['differs'])} differ; median SE ratio "
                     f"single/multilevel {ratio:.2f}")
    for term, sub in table.groupby("term", sort=False):
        lines.append(f"  {term}: {_share(sub['differs'])} differ")
    has_marginal = marginal is not None and "differs_marginal" in table
    if has_marginal:
        first = next(iter(marginal))
        lines += ["", f"marginal:     {first.formula}  [GEE, {first.family}, {first.corstr} working correlation "
                      f"within {first.groups}; robust SEs]",
                  f"Conclusions that differ between the multilevel and the marginal analysis: "
                  f"{_share(table['differs_marginal'])}"]
        for lv, sub in table.groupby("level", sort=False):
            ratio = np.nanmedian(sub["se_marginal"] / sub["se_multilevel"])
            lines.append(f"  {lv}-level covariates: {_share(sub['differs_marginal'])} differ; median SE ratio "
                         f"marginal/multilevel {ratio:.2f}")
    diff = table[table["differs"] == True]  # noqa: E712 (nullable)
    if has_marginal:
        diff = table[(table["differs"] == True) | (table["differs_marginal"] == True)]  # noqa: E712
    lines.append("")
    if len(diff):
        lines.append("Differing conclusions (estimate, SE, p):")
        for _, r in diff.iterrows():
            line = (f"  {r['outcome']:<14} {r['term']:<14} multilevel {r['estimate_multilevel']:+.3f} "
                    f"({r['se_multilevel']:.3f}, p={r['p_multilevel']:.3g})   single-level "
                    f"{r['estimate_single']:+.3f} ({r['se_single']:.3f}, p={r['p_single']:.3g})")
            if has_marginal:
                line += (f"   marginal {r['estimate_marginal']:+.3f} ({r['se_marginal']:.3f}, "
                         f"p={r['p_marginal']:.3g})")
            lines.append(line)
    else:
        lines.append("No conclusion differs.")
    vc = multilevel.varcorr
    if len(vc):
        lines += ["", "Random-effect standard deviations (multilevel fits):"]
        wide = vc[vc["var2"].isna()].pivot_table(index="outcome", columns="group", values="sdcor", sort=False)
        lines += ["  " + ln for ln in wide.to_string(float_format=lambda v: f"{v:.3f}").splitlines()]
    for note in notes or []:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot_comparison(table: pd.DataFrame, path: Path, alpha: float = 0.05) -> bool:
    """Estimates ± z·SE under both analyses, one panel per covariate; False when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False

    z = norm_ppf(1.0 - alpha / 2.0)
    terms = list(dict.fromkeys(table["term"]))
    if not terms:  # nothing compared: say why instead of an empty canvas
        fig = Figure(figsize=(7.0, 2.4), layout="constrained")
        fig.text(0.5, 0.5, NO_TERMS_MESSAGE, ha="center", va="center", wrap=True, fontsize=10)
        fig.savefig(path, dpi=120)
        return True
    outcomes = list(dict.fromkeys(table["outcome"]))
    ncol = min(len(terms), 4) or 1
    nrow = -(-len(terms) // ncol) or 1
    # margins in inches, set by hand (matplotlib's constrained layout draws the figure twice: 0.4 of the
    # picture's 0.75 s): the outcome names on the left, the suptitle and panel titles above, the x
    # labels and the legend below, a panel title and x label between rows
    what = "Multilevel, single-level and marginal (GEE)" if "se_marginal" in table else "Multilevel vs single-level"
    title = f"{what} estimates (shaded: the multilevel and single-level {alpha:g}-level conclusions differ)"
    panel_w, panel_h = 3.6, 0.42 * len(outcomes)
    left = 0.25 + 0.075 * max(len(str(o)) for o in outcomes)
    right, bottom, gap_w, gap_h = 0.2, 0.85, 0.25, 0.85
    width = left + right + ncol * panel_w + (ncol - 1) * gap_w
    lines = -(-len(title) // max(int(width * 11), 1))  # the title wrapped to the figure's width (11 pt)
    top = 0.45 + 0.2 * lines
    height = top + bottom + nrow * panel_h + (nrow - 1) * gap_h
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1.0 - right / width, bottom=bottom / height,
                        top=1.0 - top / height, wspace=gap_w / panel_w, hspace=gap_h / panel_h)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, sharey=True, squeeze=False)).reshape(-1)
    ypos = np.arange(len(outcomes))[::-1]
    for ax, term in zip(axes, terms):
        sub = table[table["term"] == term].set_index("outcome").reindex(outcomes)
        series = [("multilevel", 0.15, "tab:blue", "multilevel"), ("single", -0.15, "tab:orange", "single-level")]
        if "se_marginal" in sub:
            series = [("multilevel", 0.22, "tab:blue", "multilevel"), ("single", 0.0, "tab:orange", "single-level"),
                      ("marginal", -0.22, "tab:green", "marginal (GEE)")]
        for tag, off, colour, label in series:
            est = sub[f"estimate_{tag}"].to_numpy(dtype=float)
            se = sub[f"se_{tag}"].to_numpy(dtype=float)
            ax.errorbar(est, ypos + off, xerr=z * se, fmt="o", ms=4, color=colour, capsize=2, label=label)
        differs = sub["differs"].fillna(False).to_numpy(dtype=bool)
        for y in ypos[differs]:
            ax.axhspan(y - 0.45, y + 0.45, color="0.88", zorder=0)
        ax.axvline(0.0, color="0.4", lw=0.8)
        level = sub["level"].dropna().iloc[0] if sub["level"].notna().any() else ""
        ax.set_title(f"{term} ({level} level)", fontsize=10)
        ax.set_xlabel(f"log odds ratio ± {z:.2f} SE" if "p_multilevel" in sub else "estimate")
    for ax in axes[len(terms):]:
        ax.set_visible(False)
    for ax in axes[::ncol]:
        ax.set_yticks(ypos, outcomes)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), frameon=False)
    fig.suptitle(title, fontsize=11, wrap=True)
    fig.savefig(path, dpi=120)
    return True
