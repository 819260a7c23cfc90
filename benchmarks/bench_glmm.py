"""Three-level logistic model: jaxmix vs lme4 ``glmer`` on the same simulated data, in one run.

Patients nested in physicians nested in hospitals, 8 covariates at three levels (patient: age, female,
diabetes, shock; physician: cardiologist, volume; hospital: teaching, rural), model
``y ~ covariates + (1 | hospital) + (1 | physician)`` by Laplace.

    python benchmarks/bench_glmm.py [--n 100000] [--physicians 2000] [--hospitals 170] [--no-r]

Prints a table (whole-process wall seconds, log-likelihood, difference from lme4).  jaxmix is run in a
fresh process twice: with an empty compilation cache (cold) and again with the cache it left (warm).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
FORMULA = ("y ~ age + female + diabetes + shock + cardiologist + volume + teaching + rural"
           " + (1 | hospital) + (1 | physician)")


def simulate(n=100_000, n_phys=2000, n_hosp=170, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hosp_of_phys = rng.integers(0, n_hosp, n_phys)
    phys = rng.integers(0, n_phys, n)
    hosp = hosp_of_phys[phys]
    df = pd.DataFrame({"hospital": hosp, "physician": phys})
    df["age"] = rng.normal(0, 1, n)
    df["female"] = rng.integers(0, 2, n)
    df["diabetes"] = rng.integers(0, 2, n)
    df["shock"] = (rng.uniform(size=n) < 0.1).astype(int)
    card, vol = rng.integers(0, 2, n_phys), rng.normal(0, 1, n_phys)
    teach, rural = rng.integers(0, 2, n_hosp), rng.integers(0, 2, n_hosp)
    df["cardiologist"], df["volume"] = card[phys], vol[phys]
    df["teaching"], df["rural"] = teach[hosp], rural[hosp]
    eta = (-2 + 0.5 * df.age + 0.1 * df.female + 0.3 * df.diabetes + 1.5 * df.shock - 0.2 * df.cardiologist
           - 0.1 * df.volume - 0.15 * df.teaching + 0.1 * df.rural
           + rng.normal(0, 0.3, n_hosp)[hosp] + rng.normal(0, 0.4, n_phys)[phys])
    df["y"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    return df


JAXMIX_SCRIPT = """
import sys, time, json
t0 = time.perf_counter()
import pandas as pd, jaxmix
df = pd.read_csv(sys.argv[1])
r = jaxmix.fit({formula!r}, df, family="binomial")
print(json.dumps(dict(loglik=r.loglik, fixef=list(r.beta), theta=list(r.theta), converged=r.converged,
                      compile=r.optim.compile_seconds, fit=r.optim.fit_seconds, inproc=time.perf_counter() - t0)))
"""

R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
d <- read.csv(commandArgs(TRUE)[1])
t0 <- proc.time()[["elapsed"]]
m <- glmer({formula}, data = d, family = binomial)
el <- proc.time()[["elapsed"]] - t0
cat(sprintf('{{"loglik": %.10f, "glmer": %.3f, "theta": [%s]}}\\n', as.numeric(logLik(m)), el,
            paste(sprintf('%.8f', getME(m, 'theta')), collapse=',')))
"""


def run(cmd, env=None):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        return wall, {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--physicians", type=int, default=2000)
    ap.add_argument("--hospitals", type=int, default=170)
    ap.add_argument("--no-r", action="store_true")
    a = ap.parse_args(argv)
    WORK.mkdir(exist_ok=True)
    csv = WORK / f"ami3_{a.n}.csv"
    simulate(a.n, a.physicians, a.hospitals).to_csv(csv, index=False)
    rows = []
    cache = tempfile.mkdtemp(prefix="jaxmix-cache-")
    env = dict(os.environ, JAXMIX_CACHE_DIR=cache)
    script = JAXMIX_SCRIPT.format(formula=FORMULA)
    for label in ("jaxmix (cold cache)", "jaxmix (warm cache)"):
        wall, res = run([sys.executable, "-c", script, str(csv)], env)
        rows.append((label, wall, res))
    shutil.rmtree(cache, ignore_errors=True)
    if not a.no_r and shutil.which("Rscript"):
        rfile = WORK / "glmer_fit.R"
        rfile.write_text(R_SCRIPT.format(formula=FORMULA))
        wall, res = run(["Rscript", str(rfile), str(csv)])
        rows.append(("lme4 glmer", wall, res))
    ref = next((r for lbl, _, r in rows if lbl == "lme4 glmer" and "loglik" in r), None)
    print(f"n = {a.n}, physicians = {a.physicians}, hospitals = {a.hospitals}; load: {os.getloadavg()[0]:.2f}")
    print(f"{'program':22s} {'process s':>10s} {'compile s':>10s} {'logLik':>16s} {'vs lme4':>10s}")
    for label, wall, res in rows:
        ll = res.get("loglik", float("nan"))
        diff = ll - ref["loglik"] if ref else float("nan")
        print(f"{label:22s} {wall:10.2f} {res.get('compile', float('nan')):10.2f} {ll:16.6f} {diff:+10.2e}"
              + (f"  ({res['error']})" if "error" in res else ""))
        if label == "lme4 glmer" and "glmer" in res:
            print(f"{'':22s} glmer() call alone: {res['glmer']:.2f} s")
    if ref:
        jm = rows[1][1]
        print(f"speed-up, whole process, warm cache: {rows[-1][1] / jm:.1f}x; cold cache: {rows[-1][1] / rows[0][1]:.1f}x")


if __name__ == "__main__":
    main()
