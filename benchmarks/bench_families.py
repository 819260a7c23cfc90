"""Negative-binomial and Gamma GLMM fit times: jaxmix (first fit with compilation, then warm) vs glmmTMB.

    python benchmarks/bench_families.py            # from the repository root; needs Rscript + glmmTMB

Data: tests/data/grouseticks_nb.csv (403 rows, 63 locations) and tests/data/gamma_sim.csv (600 rows,
30 groups).  Each timing is the minimum of ``--repeats`` runs; glmmTMB's is ``system.time`` of the fit
inside one R process (package loading excluded).
"""
from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import pandas as pd

import jaxmix

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CASES = [  # name, formula, data, family, link, glmmTMB family
    ("grouseticks NB", "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", "grouseticks_nb.csv", "negative_binomial", None,
     "nbinom2()"),
    ("Gamma log", "y ~ x + (1 | g)", "gamma_sim.csv", "gamma", "log", 'Gamma(link = "log")'),
    ("Gamma inverse", "y ~ x + (1 | g)", "gamma_sim.csv", "gamma", "inverse", 'Gamma(link = "inverse")'),
]


def load(name):
    d = pd.read_csv(DATA / name)
    for c in ("YEAR", "LOCATION"):
        if c in d:
            d[c] = d[c].astype(str)
    return d


def glmmtmb_seconds(formula, data_file, fam, repeats):
    start = ', start = list(beta = c(0.3, 0))' if "inverse" in fam else ""
    code = (f'suppressMessages(library(glmmTMB)); d <- read.csv("{DATA / data_file}"); '
            'if ("YEAR" %in% names(d)) d$YEAR <- as.character(d$YEAR); '
            f'cat(min(sapply(1:{repeats}, function(i) system.time(glmmTMB({formula}, data = d, family = {fam}{start}))[["elapsed"]])))')
    out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name, formula, data_file, fam, link, tmb_fam in CASES:
        d = load(data_file)
        t0 = time.perf_counter()
        r = jaxmix.fit(formula, d, family=fam, link=link)
        first = time.perf_counter() - t0
        warm = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jaxmix.fit(formula, d, family=fam, link=link)
            warm.append(time.perf_counter() - t0)
        rows.append({"model": name, "rows": r.nobs, "jaxmix first fit s": round(first, 2),
                     "jaxmix warm fit s": round(min(warm), 3),
                     "glmmTMB fit s": glmmtmb_seconds(formula, data_file, tmb_fam, args.repeats),
                     "logLik": round(r.loglik, 6)})
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
