"""Treatment centres: per-centre least squares, one pooled line, and a mixed model.

40 simulated subjects in 4 centres (jaxmix.datasets.simulate_centres): in three centres `return`
falls with `use`, in the fourth it rises.  A single pooled line hides this; the mixed model
``return ~ use + (use | centre)`` gives every centre its own line, shrunk towards the average.

    python examples/centres.py [seed]

The mixed model from the command line (with a parametric bootstrap): ``jaxmix run configs/centres.toml``.
"""
import sys

import numpy as np
import pandas as pd

import jaxmix
from jaxmix.datasets import CENTRE_LINES


def main(seed: int = 0) -> None:
    data = jaxmix.datasets.simulate_centres(n_per_centre=10, seed=seed)

    rows = {}
    for centre, d in data.groupby("centre"):
        slope, intercept = np.polyfit(d["use"], d["return"], 1)
        rows[centre] = (intercept, slope)
    ols = pd.DataFrame(rows, index=["Intercept", "use"]).T

    pooled = jaxmix.fit("return ~ use", data)           # no bar term: least squares
    mixed = jaxmix.fit("return ~ use + (use | centre)", data, method="REML")

    truth = pd.DataFrame(CENTRE_LINES, index=["Intercept", "use"]).T
    table = pd.concat({"true": truth, "per-centre OLS": ols, "mixed model": mixed.coef()["centre"]}, axis=1)
    print(mixed.summary())
    print()
    print(f"pooled least-squares line: return = {pooled.fixef['Intercept']:.2f} "
          f"{pooled.fixef['use']:+.2f} * use")
    print("\ncentre lines (intercept, slope):")
    print(table.round(2).to_string())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
