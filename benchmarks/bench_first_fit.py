"""First fits: what a new user meets.  Each reference model in a fresh process with an empty cache.

For every model of ``tests/data/lme4_reference.json`` a worker process (this file with ``--worker``)
starts with an empty ``JAXMIX_CACHE_DIR`` and reports:

* ``import``: ``import jaxmix`` (not part of the first fit);
* ``first``: the first ``jaxmix.fit`` (design, compiling, fitting), and its ``compile_seconds``;
* ``new data``: the same model class on new data in the same process — the rows of ¾ of the levels
  of the first grouping factor (other n, other level counts) — and its ``compile_seconds``;
* ``refit``: the first data again (nothing to compile).

Then a second worker runs the same model with the cache the first one filled (``warm cache``: a new
process that should compile nothing).  The log-likelihood of each fit is printed, so the numbers can
be checked against lme4's.

    python benchmarks/bench_first_fit.py                 # all reference models
    python benchmarks/bench_first_fit.py --models sleepstudy_slope cbpp_binomial
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
TAG = "FIRSTFIT "


def _case(name: str) -> dict:
    return json.loads((DATA / "lme4_reference.json").read_text())["cases"][name]


def _kwargs(case: dict) -> dict:
    kw = {}
    if case["family"] != "gaussian":
        kw["family"] = case["family"]
    if case.get("trials"):
        kw["trials"] = case["trials"]
    if case.get("nAGQ", 1) > 1:
        kw["nagq"] = case["nAGQ"]
        kw["method"] = "AGQ"
    return kw


def worker(name: str) -> None:
    t0 = time.perf_counter()
    import warnings

    import pandas as pd

    import jaxmix

    t_import = time.perf_counter() - t0
    case = _case(name)
    data = pd.read_csv(DATA / Path(case["data"]).name)
    kw = _kwargs(case)
    warnings.simplefilter("ignore")
    out = {"model": name, "import": t_import}
    t = time.perf_counter()
    res = jaxmix.fit(case["formula_python"], data, **kw)
    out.update(first=time.perf_counter() - t, first_compile=res.optim.compile_seconds, loglik=res.loglik)
    g = res.design.terms[0].group if hasattr(res.design.terms[0], "group") else None
    factor = g if g in data.columns else _first_factor(case["formula_python"], data)
    levels = sorted(data[factor].astype(str).unique())
    keep = set(levels[: max(2, (3 * len(levels)) // 4)])
    sub = data[data[factor].astype(str).isin(keep)].reset_index(drop=True)
    t = time.perf_counter()
    res2 = jaxmix.fit(case["formula_python"], sub, **kw)
    out.update(new_data=time.perf_counter() - t, new_data_compile=res2.optim.compile_seconds,
               new_data_rows=len(sub))
    t = time.perf_counter()
    jaxmix.fit(case["formula_python"], data, **kw)
    out["refit"] = time.perf_counter() - t
    print(TAG + json.dumps(out), flush=True)


def _first_factor(formula: str, data) -> str:
    bar = formula.split("|", 1)[1]
    for tok in bar.replace(")", " ").replace("/", " ").replace(":", " ").split():
        if tok in data.columns:
            return tok
    raise ValueError(formula)


def run(name: str, cache: str) -> dict:
    env = dict(os.environ, JAXMIX_CACHE_DIR=cache)
    proc = subprocess.run([sys.executable, __file__, "--worker", name], capture_output=True, text=True,
                          env=env, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith(TAG):
            return json.loads(line[len(TAG):])
    raise RuntimeError(proc.stderr[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--models", nargs="*")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    names = args.models or list(json.loads((DATA / "lme4_reference.json").read_text())["cases"])
    print(f"load before: {os.getloadavg()[0]:.2f}")
    print("| model | import s | first fit s (compile) | new data s (compile) | refit s | warm-cache process: first fit s (compile) | loglik |")
    print("|---|---|---|---|---|---|---|")
    firsts = []
    for name in names:
        with tempfile.TemporaryDirectory() as cache:
            a = run(name, cache)
            b = run(name, cache)
        firsts.append(a["first"])
        print(f"| {name} | {a['import']:.2f} | {a['first']:.2f} ({a['first_compile']:.2f}) | "
              f"{a['new_data']:.3f} ({a['new_data_compile']:.2f}) | {a['refit']:.3f} | "
              f"{b['first']:.2f} ({b['first_compile']:.2f}) | {a['loglik']:.4f} |", flush=True)
    print(f"\nmedian first fit {statistics.median(firsts):.2f} s, max {max(firsts):.2f} s; "
          f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
