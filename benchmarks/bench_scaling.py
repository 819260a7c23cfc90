"""How a crossed LMM fit's cost grows with the number of rows: setup linear in n, evaluations flat.

The InstEval-like design of ``benchmarks/data.py`` (``y ~ service + (1 | s) + (1 | d) + (1 | dept)``,
2,972 x 1,128 x 14 levels) with every row repeated r times (r = 1, 4, 16 by default) and fresh
residual noise on the copies: the levels and the pairs of levels stay the same, so once the
cross-products are formed one evaluation of the REML criterion costs the same at every r.  Each size
runs in its own process (``--worker``), which reports:

  first_fit_s  first fit in the process (compilation included; empty compilation cache)
  fit_s        jaxmix.fit wall time (second fit in the process: compiled)
  setup_s      design + blocked structure + cross-products on the device, alone
  evals        the optimiser's evaluations (value + exact gradient each)
  per_eval_ms  one value + gradient of the REML criterion as the fit evaluates it (the optimiser's
               function during the second fit, per point; the median of its calls)
  peak_mb      the process's peak resident memory (ru_maxrss), data frame included
  reml         the REML criterion at the optimum

    python benchmarks/bench_scaling.py [--reps 1 4 16] [--students 2972 --lecturers 1128]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"


def replicated(students: int, lecturers: int, r: int):
    """The simulated frame with every row repeated r times; copies get fresh N(0, sd_e²) noise."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from data import TRUE, simulate

    df = simulate(students, lecturers)
    if r == 1:
        return df
    rng = np.random.default_rng(r)
    out = pd.concat([df] * r, ignore_index=True)
    noise = rng.normal(0.0, TRUE["sd_e"], len(out))
    noise[: len(df)] = 0.0
    out["y"] = out["y"].to_numpy() + noise
    return out


def worker(students: int, lecturers: int, r: int) -> dict:
    import resource

    df = replicated(students, lecturers, r)
    import jaxmix

    t = time.perf_counter()
    res1 = jaxmix.fit(FORMULA, df)
    first = time.perf_counter() - t
    calls = []
    with _timed_objective(calls):
        t = time.perf_counter()
        res = jaxmix.fit(FORMULA, df)
        wall = time.perf_counter() - t
    o = res.optim
    setup = _setup(df)
    per_eval = sorted(calls)[len(calls) // 2]
    return dict(rows=len(df), r=r, first_fit_s=round(first, 3), fit_s=round(wall, 3), setup_s=round(setup, 3),
                per_eval_ms=round(1e3 * per_eval, 1),
                compile_s=round(res1.optim.compile_seconds, 3), evals=int(o.evaluations), status=int(o.status),
                reml=float(-2 * res.loglik), peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _setup(df) -> float:
    """Seconds for the design, the blocked structure and the cross-products on the device, alone."""
    import jax
    import jax.numpy as jnp

    from jaxmix.fitting.lmm import lmm_arrays
    from jaxmix.spec.design import build_design
    from jaxmix.spec.formula import parse_formula

    t = time.perf_counter()
    d = build_design(parse_formula(FORMULA), df)
    jax.block_until_ready(lmm_arrays(d, jnp.float64)[2])
    return time.perf_counter() - t


@contextlib.contextmanager
def _timed_objective(calls: list):
    """Within: the seconds per point of every call of the fit's objective (value and exact gradient,
    as the optimiser calls it) appended to ``calls``."""
    import jaxmix.fitting.lmm as fitting_lmm

    real = fitting_lmm.minimize_batch

    def minimize(vg, *a, **k):
        def timed(P, which):
            t = time.perf_counter()
            out = vg(P, which)
            calls.append((time.perf_counter() - t) / max(len(P), 1))
            return out

        return real(timed, *a, **k)

    fitting_lmm.minimize_batch = minimize
    try:
        yield
    finally:
        fitting_lmm.minimize_batch = real


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--students", type=int, default=2972)
    ap.add_argument("--lecturers", type=int, default=1128)
    ap.add_argument("--worker", type=int, default=None)
    a = ap.parse_args(argv)
    if a.worker is not None:
        print(json.dumps(worker(a.students, a.lecturers, a.worker)))
        return
    rows = []
    for r in a.reps:
        env = dict(os.environ, JAXMIX_CACHE_DIR=tempfile.mkdtemp(prefix="jaxmix-scaling-"))
        t = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--worker", str(r), "--students", str(a.students),
                              "--lecturers", str(a.lecturers)], capture_output=True, text=True, env=env)
        whole = time.perf_counter() - t
        if out.returncode != 0:
            print(out.stderr[-2000:])
            raise SystemExit(f"worker r={r} failed")
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        rec["process_s"] = round(whole, 2)
        rows.append(rec)
        print(json.dumps(rec), flush=True)
    print("\n| rows | r | process s | first fit s (compile) | fit s | setup s | evaluations | ms per evaluation "
          "| peak MB | REML criterion |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        print(f"| {x['rows']:,} | {x['r']} | {x['process_s']} | {x['first_fit_s']} ({x['compile_s']}) | {x['fit_s']} | "
              f"{x['setup_s']} | {x['evals']} | {x['per_eval_ms']} | {x['peak_mb']} | {x['reml']:.6f} |")


if __name__ == "__main__":
    main()
