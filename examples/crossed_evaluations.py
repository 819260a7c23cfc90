"""A large crossed design: students rating lecturers in departments (like lme4's InstEval).

``jaxmix.datasets.simulate_evaluations``: about 73,000 ratings (1-5) by 3,000 students of 1,100
lecturers in 14 departments; students and lecturers are crossed, lecturers nested in departments.
The model is lme4's ``y ~ service + (1 | s) + (1 | d) + (1 | dept)``: one random intercept per
student, per lecturer and per department.  jaxmix never forms the n rows inside the optimiser: one
objective evaluation works on the blocked cross-products (a diagonal block for students, a dense one
for lecturers and departments), so the fit takes seconds.

    python examples/crossed_evaluations.py [--small] [--out DIR]

``--small`` uses a tenth of the size (the smoke test).

The same model from the command line: ``jaxmix run configs/crossed_evaluations.toml`` (the small
size by default; ``--set data.args.n_ratings=...`` and friends for more).
"""
from __future__ import annotations

import argparse
import sys
import time

import jaxmix
from jaxmix.datasets.evaluations import EVALUATIONS_TRUTH

NAME = "crossed_evaluations"
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"


def main(small: bool = False, out: str | None = None, seed: int = 0) -> dict:
    """Simulate, fit, time and print the crossed model; save the caterpillar plots.

    Args:
      small: 300 students, 110 lecturers, 14 departments, 7,300 ratings instead of the full size.
      out: folder for the plots (default ``out/examples/crossed_evaluations``).
      seed: the simulator's seed.

    Returns:
      a dict: ``nobs``, ``ngroups``, ``fixef``, ``se``, ``sd`` (per group and Residual), ``truth``,
      ``simulate_seconds``, ``fit_seconds`` (wall time of ``jaxmix.fit``), ``compile_seconds``,
      ``converged`` and ``plots``.
    """
    out = out or f"out/examples/{NAME}"
    size = (dict(n_students=300, n_lecturers=110, n_departments=14, n_ratings=7300) if small else
            dict(n_students=3000, n_lecturers=1100, n_departments=14, n_ratings=73000))
    t0 = time.perf_counter()
    data = jaxmix.datasets.simulate_evaluations(**size, seed=seed)
    t_sim = time.perf_counter() - t0
    print(f"{len(data):,} ratings by {data['s'].nunique():,} students of {data['d'].nunique():,} lecturers "
          f"in {data['dept'].nunique()} departments (simulated in {t_sim:.1f} s)")

    t0 = time.perf_counter()
    res = jaxmix.fit(FORMULA, data, method="REML")
    t_fit = time.perf_counter() - t0
    print(res.summary())
    compile_s = res.optim.compile_seconds if res.optim is not None else float("nan")
    print(f"\nfit: {t_fit:.1f} s wall ({compile_s:.1f} s of it compiling, {res.optim.iterations} iterations; "
          "a second run of the same shapes reuses the compiled program from the cache)")

    vc = res.varcorr
    sd = dict(zip(vc["group"], vc["sdcor"]))
    truth = {"s": EVALUATIONS_TRUTH["sd_student"], "d": EVALUATIONS_TRUTH["sd_lecturer"],
             "dept": EVALUATIONS_TRUTH["sd_dept"], "Residual": EVALUATIONS_TRUTH["sd_residual"]}
    print("SDs, estimate (latent truth before rounding to 1-5):",
          ", ".join(f"{g} {sd[g]:.3f} ({truth[g]:.2f})" for g in truth))

    paths = []
    try:
        from jaxmix import plots

        paths = plots.save_all(res, out, group="d")
        print("plots:", ", ".join(str(p) for p in paths))
    except jaxmix.JaxmixError as e:  # matplotlib not installed
        print(f"(no plots: {e})")
    return dict(nobs=res.nobs, ngroups=res.ngroups, fixef=res.fixef, se=res.se, sd=sd, truth=truth,
                simulate_seconds=t_sim, fit_seconds=t_fit, compile_seconds=compile_s,
                converged=bool(res.converged), plots=paths)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a tenth of the size (the smoke test)")
    ap.add_argument("--out", default=None, help=f"folder for the plots (default out/examples/{NAME})")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(sys.argv[1:])
    main(small=a.small, out=a.out, seed=a.seed)
