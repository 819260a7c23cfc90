"""Bayesian sleepstudy benchmark: jaxmix.sample (numpyro NUTS, random effects integrated out) beside bambi (PyMC).

    python benchmarks/bench_bayes.py [--chains 4 --draws 1000 --warmup 1000] [--no-bambi] [--out FILE.json]

Model: Reaction ~ Days + (Days | Subject), 4 chains x 1,000 draws after 1,000 warm-up.  Targets (issue 16):
r_hat <= 1.01 and bulk ESS >= 400 for every parameter.  Prints the summary, the wall time (compilation
included, and a second run of the same model with the compiled sampler reused), divergences, and the
same for bambi when it is installed (its default priors; diagnostics by arviz on its draws).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # this checkout's jaxmix

FORMULA = "Reaction ~ Days + (Days | Subject)"


def run_jaxmix(chains, draws, warmup, seed=1):
    import jaxmix
    from jaxmix.bayes import Sampler

    d = jaxmix.datasets.load("sleepstudy")
    t0 = time.perf_counter()
    s = Sampler(FORMULA, d, chains=chains, draws=draws, warmup=warmup, progress=False)
    post = s.run(seed=seed)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    post2 = s.run(seed=seed + 1)
    second = time.perf_counter() - t0
    summ = post.summary()
    print(post)
    ml = jaxmix.fit(FORMULA, d)
    return {"first_run_s": first, "second_run_s": second, "divergences": post.divergences,
            "divergences_second": post2.divergences, "max_r_hat": float(summ["r_hat"].max()),
            "min_ess_bulk": float(summ["ess_bulk"].min()), "min_ess_tail": float(summ["ess_tail"].min()),
            "max_r_hat_second": float(post2.summary()["r_hat"].max()),
            "min_ess_bulk_second": float(post2.summary()["ess_bulk"].min()),
            "summary": summ.round(4).reset_index().to_dict("records"),
            "reml_fixef": ml.fixef.round(4).to_dict(), "reml_se": ml.se.round(4).to_dict(),
            "chain_method": post.extra["chain_method"]}


def run_bambi(chains, draws, warmup, seed=1):
    import arviz as az
    import bambi as bmb

    import jaxmix

    d = jaxmix.datasets.load("sleepstudy")
    d["Subject"] = d["Subject"].astype(str)
    t0 = time.perf_counter()
    model = bmb.Model("Reaction ~ Days + (Days | Subject)", d)
    idata = model.fit(draws=draws, tune=warmup, chains=chains, random_seed=seed, progressbar=False)
    wall = time.perf_counter() - t0
    names = [v for v in idata.posterior.data_vars if "Subject" not in v or "sigma" in v]
    summ = az.summary(idata, var_names=names)
    print(summ)
    div = int(idata.sample_stats["diverging"].sum())
    return {"wall_s": wall, "divergences": div, "max_r_hat": float(summ["r_hat"].max()),
            "min_ess_bulk": float(summ["ess_bulk"].min()), "summary": summ.reset_index().to_dict("records"),
            "bambi_version": bmb.__version__}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--no-bambi", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    load = os.getloadavg()[0]
    res = {"load_1min": load, "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                         text=True).stdout.strip()}
    res["jaxmix"] = run_jaxmix(a.chains, a.draws, a.warmup)
    j = res["jaxmix"]
    ok = j["max_r_hat"] <= 1.01 and j["min_ess_bulk"] >= 400
    print(f"\njaxmix: first run {j['first_run_s']:.1f} s (compile included), second {j['second_run_s']:.1f} s; "
          f"max r_hat {j['max_r_hat']:.4f}, min bulk ESS {j['min_ess_bulk']:.0f}, divergences {j['divergences']} "
          f"-> targets {'met' if ok else 'NOT met'}")
    if not a.no_bambi:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res["bambi"] = run_bambi(a.chains, a.draws, a.warmup)
            b = res["bambi"]
            print(f"bambi: {b['wall_s']:.1f} s; max r_hat {b['max_r_hat']:.3f}, min bulk ESS {b['min_ess_bulk']:.0f}, "
                  f"divergences {b['divergences']}")
        except Exception as e:  # noqa: BLE001 - report, do not fail the jaxmix half
            res["bambi"] = {"error": f"{type(e).__name__}: {e}"}
            print(f"bambi: not run ({res['bambi']['error']})", file=sys.stderr)
    res["load_1min_after"] = os.getloadavg()[0]
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=2, default=float)
    return res


if __name__ == "__main__":
    main()
