"""Structured residuals: the cost of one criterion evaluation does not grow with the number of rows.

50 subjects, m = 20, 200, 2000 rows each (n = 10³ … 10⁵) at integer times 0..m−1 (every 7th time
missing: gaps), y = 1 + 0.5 x + b_subject + e with AR(1) errors (ρ = 0.6); fitted with
``(1 | Subject)`` and ``correlation="ar1(t | Subject)"``, then without the random intercept (which
CS within Subject would duplicate) as a gls with ``"cs(Subject)"``.  Reports the numpy
set-up of the pieces (once, O(n)), the compile, the optimiser's seconds per evaluation (value and
gradient), and the estimates.  Usage: python benchmarks/bench_structures.py
"""
import sys
import time

import numpy as np
import pandas as pd

import jaxmix


def simulate(m: int, groups: int = 50, rho: float = 0.6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for g in range(groups):
        t = np.arange(m)
        e = np.empty(m)
        e[0] = rng.normal()
        for i in range(1, m):
            e[i] = rho * e[i - 1] + np.sqrt(1 - rho**2) * rng.normal()
        x = rng.normal(size=m)
        keep = t % 7 != 3
        frames.append(pd.DataFrame({"Subject": f"s{g:03d}", "t": t[keep], "x": x[keep],
                                    "y": 1 + 0.5 * x[keep] + rng.normal() + e[keep]}))
    return pd.concat(frames, ignore_index=True)


def main(sizes=(20, 200, 2000)):
    print("| rows | correlation | pieces s | compile s | evaluations | ms / evaluation | fit s | rho | x coef |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in sizes:
        d = simulate(m)
        for form, cor in (("y ~ x + (1 | Subject)", "ar1(t | Subject)"), ("y ~ x", "cs(Subject)")):
            t0 = time.perf_counter()
            res = jaxmix.fit(form, d, correlation=cor)
            wall = time.perf_counter() - t0
            tm = res.extra["structure"]["timings"]
            print(f"| {len(d)} | {cor} | {tm['pieces']:.2f} | {tm['compile']:.2f} | {tm['evaluations']} | "
                  f"{1000 * tm['optimise'] / max(tm['evaluations'], 1):.2f} | {wall:.2f} | "
                  f"{res.extra['structure']['rho']:.3f} | {res.fixef['x']:.4f} |", flush=True)


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (20, 200, 2000))
