"""The main job from Python: nine AMI endpoints, three-level logistic models vs single-level ones.

``jaxmix.datasets.simulate_ami``: patients nested in physicians nested in hospitals, patient
(age, sex, diabetes, shock), physician (cardiologist, volume) and hospital (teaching, rural)
covariates, and nine binary endpoints (30-day and 1-year death, reinfarction, readmission for heart
failure and for AMI, beta-blocker, aspirin and ACE-inhibitor at discharge, catheterisation), a few
per cent missing in the non-fatal and process endpoints.

Each endpoint is fitted twice (Austin, Tu & Alter 2003):

* the three-level logistic model  ``endpoint ~ covariates + (1 | hospital) + (1 | physician)``
  (Laplace), all nine as **one** compiled, batched program (``jaxmix.fit_many``), each on its own
  non-missing rows;
* the "traditional" single-level logistic regression with the same covariates.

For every physician- and hospital-level covariate the comparison lists estimate, SE and p under both
analyses and whether the conclusion at the 5% level differs.  Ignoring the clustering understates the
SEs of the group-level covariates (SE ratio single / multilevel below 1), so some conclusions flip.

    python examples/ami_nine_endpoints.py [--small] [--n-patients N] [--out DIR]

``--small`` uses 3,000 patients (the smoke test).  The same job from the command line:
``jaxmix run configs/ami.toml`` (the README's first command).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import jaxmix
from jaxmix.compare import compare_sweeps, comparison_report, plot_comparison
from jaxmix.datasets.ami import AMI_COVARIATES, AMI_ENDPOINTS, AMI_FORMULA

NAME = "ami_nine_endpoints"


def main(small: bool = False, out: str | None = None, n_patients: int = 50_000, seed: int = 1) -> dict:
    """Simulate, fit both analyses of the nine endpoints, print the comparison; save CSV and plot.

    Args:
      small: 3,000 patients instead of ``n_patients``.
      out: folder for ``comparison.csv`` and ``comparison.png`` (default ``out/examples/ami_nine_endpoints``).
      n_patients: patients to simulate (default 50,000, as in ``configs/ami.toml``).
      seed: the simulator's seed.

    Returns:
      a dict: ``multilevel`` and ``single`` (the two :class:`jaxmix.Sweep` results), ``comparison``
      (the table), ``report`` (text), ``seconds`` (wall time of the two sweeps), ``plot`` (path or None).
    """
    n = 3_000 if small else int(n_patients)
    out_dir = Path(out or f"out/examples/{NAME}")
    data = jaxmix.datasets.simulate_ami(n, seed=seed)
    outcomes = list(AMI_ENDPOINTS)
    print(f"{len(data):,} patients, {data['physician'].nunique():,} physicians, "
          f"{data['hospital'].nunique():,} hospitals; endpoints: {', '.join(outcomes)}")

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxmix.JaxmixWarning)  # e.g. boundary fits at small n; see .messages
        multi = jaxmix.fit_many(AMI_FORMULA, data, outcomes=outcomes, family="binomial")
        single = jaxmix.fit_many("~ " + " + ".join(AMI_COVARIATES), data, outcomes=outcomes, family="binomial")
    seconds = time.perf_counter() - t0
    print(f"\nboth analyses of {len(outcomes)} endpoints in {seconds:.1f} s "
          f"({multi.compile_seconds:.1f} s compiling the batched three-level program)")

    table = compare_sweeps(multi, single)
    report = comparison_report(table, multi, single)
    print("\n" + report)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "comparison.csv", index=False)
    png = out_dir / "comparison.png"
    plot = str(png) if plot_comparison(table, png) else None
    print(f"\nwritten: {out_dir / 'comparison.csv'}" + (f", {plot}" if plot else ""))
    return {"multilevel": multi, "single": single, "comparison": table, "report": report, "seconds": seconds,
            "plot": plot}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="3,000 patients (smoke test)")
    ap.add_argument("--n-patients", type=int, default=50_000)
    ap.add_argument("--out", help="output folder")
    args = ap.parse_args()
    main(small=args.small, out=args.out, n_patients=args.n_patients)
    sys.exit(0)
