"""fit_many with the NB / Gamma families and with residual structures, and the bootstrap of such fits
(issue 14): wall time, the optimiser's evaluations and the number of XLA compiles, against a loop of
``jaxmix.fit`` over the same outcomes.

    PYTHONPATH=. python benchmarks/bench_fitmany_families.py [--repeats 2]

Outcomes: the grouseticks NB design (tests/data/grouseticks_nb.csv, 403 rows, 63 locations) with k
responses simulated from NB2 (θ = 2, a location SD of 0.7); the gamma_sim design (600 rows, 30
groups) with Gamma(log) responses (shape 3); Orthodont (108 rows) with Gaussian responses and
``variance="ident(Sex)"``.  Each figure is the minimum over ``--repeats`` runs in one process (the
first run of each pays the compiles, later ones reuse the in-process cache; both are shown).
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("JAXMIX_CACHE_DIR", "off")
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import jaxmix  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
COMPILES = [0]


def _count(event, *a, **k):
    if event == "/jax/core/compile/backend_compile_duration":
        COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


def nb_data(k, seed=1):
    d = pd.read_csv(DATA / "grouseticks_nb.csv").astype({"YEAR": str, "LOCATION": str})
    rng = np.random.default_rng(seed)
    codes = pd.factorize(d["LOCATION"])[0]
    h = (d["cHEIGHT"] / d["cHEIGHT"].std()).to_numpy()
    for j in range(k):
        mu = np.exp(0.5 - 0.4 * h + rng.normal(0, 0.7, codes.max() + 1)[codes])
        d[f"y{j}"] = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    return d


def gamma_data(k, seed=2):
    d = pd.read_csv(DATA / "gamma_sim.csv")
    rng = np.random.default_rng(seed)
    codes = pd.factorize(d["g"])[0]
    for j in range(k):
        mu = np.exp(1.0 + 0.5 * d["x"].to_numpy() + rng.normal(0, 0.4, codes.max() + 1)[codes])
        d[f"y{j}"] = rng.gamma(3.0, mu / 3.0)
    return d


def ortho_data(k, seed=3):
    d = pd.read_csv(DATA / "Orthodont.csv")
    rng = np.random.default_rng(seed)
    sd = np.where(d["Sex"] == "Male", 1.6, 0.8)
    subj = pd.factorize(d["Subject"])[0]
    for j in range(k):
        d[f"y{j}"] = 17 + 0.6 * d["age"] + rng.normal(0, 1.8, subj.max() + 1)[subj] + rng.normal(0, 1, len(d)) * sd
    return d


def timed(f):
    c0, t0 = COMPILES[0], time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0, COMPILES[0] - c0


def run(label, make, rhs, k, repeats, **kw):
    d = make(k)
    names = [f"y{j}" for j in range(k)]
    rows = []
    for r in range(repeats):
        sw, t_many, c_many = timed(lambda: jaxmix.fit_many(rhs, d, outcomes=names, **kw))
        fits, t_loop, c_loop = timed(lambda: [jaxmix.fit(f"{n} {rhs}", d, **kw) for n in names])
        ev_many = sum(sw[n].optim.evaluations for n in names if sw.status[n] == 0)
        ev_loop = sum(f.optim.evaluations for f in fits)
        dll = max(abs(sw.loglik[n] - f.loglik) for n, f in zip(names, fits))
        rows.append((r, t_many, c_many, ev_many, t_loop, c_loop, ev_loop, dll, int(sw.converged.sum())))
    for r, tm, cm, em, tl, cl, el, dll, conv in rows:
        print(f"| {label} | {k} | {'cold' if r == 0 else 'warm'} | {tm:.2f} | {cm} | {em} | {tl:.2f} | {cl} | {el} | "
              f"{dll:.1e} | {conv}/{k} |", flush=True)


def boot(label, res, n, repeats):
    for r in range(repeats):
        bs, t, c = timed(lambda: jaxmix.bootstrap(res, n=n, seed=1, progress=False))
        print(f"| {label} | {n} | {'cold' if r == 0 else 'warm'} | {t:.2f} | {c} | {bs.n_failed} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    jaxmix.runtime.start()
    print("| model | k | run | fit_many s | compiles | evaluations | loop of fit s | compiles | evaluations | max abs dlogLik | converged |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k in (3, 9):
        run("NB GLMM, grouseticks", nb_data, "~ YEAR + cHEIGHT + (1 | LOCATION)", k, a.repeats, family="negative_binomial")
        run("Gamma(log) GLMM", gamma_data, "~ x + (1 | g)", k, a.repeats, family="gamma", link="log")
        run("LMM + varIdent(Sex)", ortho_data, "~ age + Sex + (1 | Subject)", k, a.repeats, variance="ident(Sex)")
    print()
    print("| bootstrap of | replicates | run | s | compiles | failed |")
    print("|---|---|---|---|---|---|")
    g = gamma_data(1)
    boot("Gamma(log) GLMM", jaxmix.fit("y0 ~ x + (1 | g)", g, family="gamma", link="log"), 100, a.repeats)
    o = ortho_data(1)
    boot("LMM + varIdent(Sex)", jaxmix.fit("y0 ~ age + Sex + (1 | Subject)", o, variance="ident(Sex)"), 20, a.repeats)


if __name__ == "__main__":
    main()
