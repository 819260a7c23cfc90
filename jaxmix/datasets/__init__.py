"""Built-in data: lme4's sleepstudy and simulators."""
from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["sleepstudy", "load", "list_datasets"]


def sleepstudy() -> pd.DataFrame:
    """Reaction times (ms) of 18 subjects over 10 days of sleep deprivation (lme4's sleepstudy)."""
    with resources.files(__package__).joinpath("data/sleepstudy.csv").open("r") as fh:
        return pd.read_csv(fh)


_LOADERS = {"sleepstudy": sleepstudy}


def list_datasets() -> list[str]:
    return sorted(_LOADERS)


def load(name: str, **kwargs) -> pd.DataFrame:
    from ..errors import JaxmixError

    if name not in _LOADERS:
        raise JaxmixError(f"unknown built-in dataset {name!r}; available: {', '.join(list_datasets())}")
    return _LOADERS[name](**kwargs)
