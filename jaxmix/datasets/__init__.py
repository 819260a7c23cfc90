"""Built-in data: lme4's sleepstudy and simulators (treatment centres; AMI patients in physicians in hospitals).

``load(name, **kwargs)`` returns a built-in data set by name (``list_datasets()`` lists them);
``describe(name)`` gives its one-line description.
"""
from __future__ import annotations

from importlib import resources
from typing import Callable

import numpy as np
import pandas as pd

from .ami import AMI_ENDPOINTS, AMI_FORMULA, simulate_ami

__all__ = ["sleepstudy", "simulate_centres", "simulate_ami", "load", "list_datasets", "describe", "CENTRE_LINES",
           "AMI_ENDPOINTS", "AMI_FORMULA"]

#: (intercept, slope) of ``return`` on ``use`` in each of the four treatment centres.
CENTRE_LINES: dict[str, tuple[float, float]] = {
    "C1": (80.8, -2.0),
    "C2": (77.9, -2.0),
    "C3": (72.0, -2.0),
    "C4": (36.6, 1.8),
}


def sleepstudy() -> pd.DataFrame:
    """Reaction times (ms) of 18 subjects over 10 days of sleep deprivation (lme4's sleepstudy)."""
    with resources.files(__package__).joinpath("data/sleepstudy.csv").open("r") as fh:
        return pd.read_csv(fh)


def simulate_centres(n_per_centre: int = 10, seed: int = 0, sd: float = 2.0) -> pd.DataFrame:
    """Simulated subjects in 4 treatment centres: ``return`` against ``use``, one line per centre.

    Each subject is one row: ``subject`` (1, 2, ... across all centres), ``centre`` (``"C1"`` ..
    ``"C4"``), ``use`` drawn uniformly on [0, 15] and ``return = a + b * use + e`` with the centre's
    line (a, b) from :data:`CENTRE_LINES` (80.8 - 2 use, 77.9 - 2 use, 72.0 - 2 use and
    36.6 + 1.8 use) and e ~ N(0, ``sd``²).  The same ``seed`` always gives the same table.
    """
    n = int(n_per_centre)
    if n < 1:
        from ..errors import JaxmixError

        raise JaxmixError(f"n_per_centre must be a positive integer, got {n_per_centre!r}")
    if not sd >= 0:
        from ..errors import JaxmixError

        raise JaxmixError(f"sd must be non-negative, got {sd!r}")
    rng = np.random.default_rng(seed)
    names = list(CENTRE_LINES)
    centre = np.repeat(names, n)
    a = np.repeat([CENTRE_LINES[c][0] for c in names], n)
    b = np.repeat([CENTRE_LINES[c][1] for c in names], n)
    use = rng.uniform(0.0, 15.0, size=centre.size)
    ret = a + b * use + rng.normal(0.0, sd, size=centre.size)
    return pd.DataFrame({"subject": np.arange(1, centre.size + 1), "centre": centre, "use": use,
                         "return": ret})


from .batting import simulate_batting  # noqa: E402
from .evaluations import simulate_evaluations  # noqa: E402

_LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "ami": simulate_ami,
    "batting": simulate_batting,
    "centres": simulate_centres,
    "evaluations": simulate_evaluations,
    "sleepstudy": sleepstudy,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_LOADERS)


def _check(name: str) -> Callable[..., pd.DataFrame]:
    from ..errors import JaxmixError

    if name not in _LOADERS:
        raise JaxmixError(f"unknown built-in dataset {name!r}; available: {', '.join(list_datasets())}")
    return _LOADERS[name]


def loader(name: str) -> Callable[..., pd.DataFrame]:
    """The function behind ``load(name)`` (its keyword arguments are what ``load`` accepts)."""
    return _check(name)


def describe(name: str) -> str:
    """The first line of the data set's docstring."""
    doc = _check(name).__doc__ or ""
    return doc.strip().splitlines()[0].replace("``", "") if doc.strip() else ""


def load(name: str, **kwargs) -> pd.DataFrame:
    """A built-in data set by name; keyword arguments go to its simulator (e.g. ``seed``)."""
    return _check(name)(**kwargs)
