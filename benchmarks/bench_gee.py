"""GEE on the nine-endpoint AMI data: jaxmix.fit_gee(outcomes=[all nine]) vs statsmodels' GEE looped.

Exchangeable working correlation within hospitals, logistic, the physician- and hospital-level
covariates of configs/ami.toml (the marginal column of the main job's report).  Checks that both give
the same numbers, then reports the best of ``--reps`` wall times of each.

    python benchmarks/bench_gee.py [--patients 50000] [--reps 3] [--corstr exchangeable]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import jaxmix
from jaxmix.datasets import AMI_ENDPOINTS, simulate_ami

RHS = "age10 + female + diabetes + shock + cardiologist + volume + teaching + rural"


def run_statsmodels(data, corstr):
    import statsmodels.api as sm

    cov = {"exchangeable": sm.cov_struct.Exchangeable, "independence": sm.cov_struct.Independence}[corstr]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y in AMI_ENDPOINTS:
            sub = data.dropna(subset=[y])
            out[y] = sm.GEE.from_formula(f"{y} ~ {RHS}", groups="hospital", data=sub, family=sm.families.Binomial(),
                                         cov_struct=cov()).fit()
    return out


def best_of(fn, reps):
    times, result = [], None
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=50000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--corstr", default="exchangeable")
    a = ap.parse_args()
    data = simulate_ami(n_patients=a.patients, seed=1)
    print(f"load {os.getloadavg()[0]:.2f}; {len(data)} patients, {data['hospital'].nunique()} hospitals, "
          f"{len(AMI_ENDPOINTS)} outcomes, corstr={a.corstr}")
    t_jm, fits = best_of(lambda: jaxmix.fit_gee("~ " + RHS, data, groups="hospital", family="binomial",
                                                 corstr=a.corstr, outcomes=list(AMI_ENDPOINTS)), a.reps)
    t_sm, ref = best_of(lambda: run_statsmodels(data, a.corstr), a.reps)
    worst = 0.0
    for y in AMI_ENDPOINTS:
        for ours, theirs in ((fits[y].fixef, ref[y].params), (fits[y].se, ref[y].bse),
                             (fits[y].se_naive, ref[y].standard_errors("naive"))):
            worst = max(worst, float(np.max(np.abs(np.asarray(ours) / np.asarray(theirs) - 1.0))))
    print(f"jaxmix.fit_gee, all nine in one call: {t_jm:.3f} s")
    print(f"statsmodels GEE, looping the nine:    {t_sm:.3f} s  ({t_sm / t_jm:.1f}x)")
    print(f"largest relative difference (estimates, robust and naive SEs): {worst:.1e}")


if __name__ == "__main__":
    main()
