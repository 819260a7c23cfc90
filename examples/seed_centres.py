"""The seed's treatment-centre story, step by step, on simulated data.

40 subjects in 4 treatment centres (``jaxmix.datasets.simulate_centres``): ``return`` against
``use``.  In three centres return falls with use, in the fourth it rises.  The sequence:

1. one least-squares line through everything (the "traditional solution");
2. 0-1 design variables: a common slope, one intercept per centre (``return ~ use + C(centre)``);
3. the centre-4 interaction: centre 4's own slope (``+ use:c4``);
4. a random intercept per centre, ``(1 | centre)`` (4 and 5 fitted by ML, so that their deviances compare);
5. a random intercept and slope, ``(use | centre)``: 6 parameters however many centres there are
   (2 fixed effects, 3 covariance parameters, the residual variance), where per-centre lines by
   least squares cost 2k + 1;
6. the centre-specific lines β + b, and how far they are shrunk from each centre's own least squares;
7. deviance comparison of 4 and 5 by ML log-likelihoods: χ² = d₄ − d₅ on 2 df.

    python examples/seed_centres.py [--small] [--out DIR]

The plots (caterpillar, the four centre lines over the data, shrinkage) go to ``out/examples/seed_centres``.

The same models from the command line: ``jaxmix run configs/seed_centres.toml`` (named models
and the likelihood-ratio table ``lrt.csv``).
"""
from __future__ import annotations

import argparse
import sys

from scipy import stats

import jaxmix
from jaxmix.datasets import CENTRE_LINES
from jaxmix.plots import shrinkage_table  # needs no matplotlib

NAME = "seed_centres"


def _fmt(tab) -> str:
    return tab.to_string(float_format=lambda v: f"{v:.4f}", formatters={"p": lambda v: f"{v:.2g}"})


def _line(res, title: str) -> None:
    tab = res.coef_table()
    print(f"\n== {title}: {res.formula}  (R² = {res.r_squared:.3f}, {res.n_params} parameters)")
    print(_fmt(tab[["estimate", "se", "df", "statistic", "p"]]))


def _save_plots(res, out: str, data) -> list:
    try:
        from jaxmix import plots

        return plots.save_all(res, out, x="use", group="centre", data=data)
    except jaxmix.JaxmixError as e:  # matplotlib not installed
        print(f"(no plots: {e})")
        return []


def main(small: bool = False, out: str | None = None, seed: int = 0) -> dict:
    """Run the sequence, print each step and return its key numbers.

    Args:
      small: accepted for a uniform interface; the data (40 rows) are small already.
      out: folder for the plots (default ``out/examples/seed_centres``).
      seed: the simulator's seed.

    Returns:
      a dict: ``pooled_slope``, ``common_slope``, ``c4_extra_slope``, ``mixed_slope`` (fixed effect of
      use in model 5), ``n_params`` (model 5), ``n_params_fixed_lines`` (2k + 1), ``centre_lines``
      (β + b), ``shrinkage`` (the table), ``chisq``, ``df``, ``p`` and ``plots`` (paths).
    """
    out = out or f"out/examples/{NAME}"
    data = jaxmix.datasets.simulate_centres(n_per_centre=10, seed=seed)
    data["c4"] = (data["centre"] == "C4").astype(int)
    k = data["centre"].nunique()
    print(f"{len(data)} subjects in {k} centres; true lines:",
          ", ".join(f"{c}: {a:.1f} {b:+.1f}·use" for c, (a, b) in CENTRE_LINES.items()))

    # 1-3: least squares, the traditional solution
    pooled = jaxmix.fit("return ~ use", data)
    _line(pooled, "1. one line")
    dummies = jaxmix.fit("return ~ use + C(centre)", data)
    _line(dummies, "2. 0-1 design variables (common slope)")
    inter = jaxmix.fit("return ~ use + C(centre) + use:c4", data)
    _line(inter, "3. centre-4 interaction")
    full = jaxmix.fit("return ~ C(centre) * use", data)
    print(f"   (separate lines in all {k} centres by least squares: {full.n_params} parameters = 2k + 1)")

    # 4-5: random effects
    m_int = jaxmix.fit("return ~ use + (1 | centre)", data, method="ML")
    m_slope = jaxmix.fit("return ~ use + (use | centre)", data, method="ML")
    for i, m in ((4, m_int), (5, m_slope)):
        print(f"\n== {i}. {m.formula}  (ML, {m.n_params} parameters)")
        print(_fmt(m.coef_table()[["estimate", "se", "df", "statistic", "p"]]))
        print(m.varcorr.round(3).fillna("").to_string(index=False))
    print(f"\nmodel 5 has {m_slope.n_params} parameters whatever the number of centres: 2 fixed effects, "
          f"3 covariance parameters, 1 residual variance (separate lines: 2k + 1 = {2 * k + 1} with k = {k})")

    # 6: centre-specific lines and shrinkage
    shrink = shrinkage_table(m_slope, x="use", group="centre", data=data)
    print("\n== 6. centre-specific lines: own least squares vs mixed model β + b")
    print(shrink.round(3).to_string())
    if hasattr(jaxmix, "homogeneity_test"):
        h = jaxmix.homogeneity_test("return ~ use", data, group="centre", term="use")
        print(f"same slope in every centre? Bryk-Raudenbush χ² = {h.statistic:.1f} on {h.df} df, p = {h.p:.2g}")

    # 7: deviance comparison by ML log-likelihoods
    chisq = 2.0 * (m_slope.loglik - m_int.loglik)
    dof = m_slope.n_params - m_int.n_params
    p = float(stats.chi2.sf(chisq, dof))
    print(f"\n== 7. deviance comparison (ML): d4 = {m_int.deviance:.2f}, d5 = {m_slope.deviance:.2f}, "
          f"χ² = {chisq:.2f} on {dof} df, p = {p:.3g}")
    if hasattr(jaxmix, "anova"):
        table = jaxmix.anova(m_int, m_slope)[["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p"]]
        print(_fmt(table))

    paths = _save_plots(m_slope, out, data)
    if paths:
        print("\nplots:", ", ".join(str(p) for p in paths))
    return dict(pooled_slope=float(pooled.fixef["use"]), common_slope=float(dummies.fixef["use"]),
                c4_extra_slope=float(inter.fixef["use:c4"]), mixed_slope=float(m_slope.fixef["use"]),
                n_params=int(m_slope.n_params), n_params_fixed_lines=int(full.n_params),
                centre_lines=m_slope.coef()["centre"], shrinkage=shrink, chisq=chisq, df=dof, p=p,
                plots=paths)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small data (the smoke-test size)")
    ap.add_argument("--out", default=None, help=f"folder for the plots (default out/examples/{NAME})")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(sys.argv[1:])
    main(small=a.small, out=a.out, seed=a.seed)
