"""Binomial responses in the forms R's ``glm``/``glmer`` accept.

* A two-level response column: a string/object column, a pandas categorical or a bool.  As R's
  ``factor``, the first level (sorted text, or the categorical's own order; ``False`` for a bool) is a
  failure (0) and the other level a success (1).  Three or more levels are an error naming the column.
* A proportion response with ``weights=`` the number of trials (``glmer(k/n ~ ..., weights = n)``):
  successes kᵢ = yᵢ·wᵢ out of nᵢ = wᵢ trials, no other prior weights.  The likelihood is then
  Σ log C(nᵢ, kᵢ) + kᵢ log μᵢ + (nᵢ − kᵢ) log(1 − μᵢ), the same as with ``trials=n`` on counts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import JaxmixError

__all__ = ["binary_response_column", "proportion_to_trials"]


def binary_response_column(data: pd.DataFrame, response: str | None) -> pd.DataFrame:
    """``data`` with a non-numeric two-level response column recoded 0/1 (first level = failure).

    A numeric column, or a response that is an expression rather than a column, is returned unchanged.
    """
    if response is None or response not in data.columns:
        return data
    col = data[response]
    if pd.api.types.is_bool_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
        return data
    if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
        return data
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = [v for v in col.cat.categories if (col == v).any()]
    else:
        levels = sorted(pd.unique(col.dropna()), key=str)
    if len(levels) > 2:
        shown = ", ".join(repr(v) for v in levels[:6]) + (" ..." if len(levels) > 6 else "")
        raise JaxmixError(f"binomial response column {response!r} has {len(levels)} levels ({shown}); "
                          "a binomial model needs two (the first is 'failure', as R's factor)")
    if len(levels) < 2:
        raise JaxmixError(f"binomial response column {response!r} has a single level {levels!r}")
    out = data.copy()
    vals = np.where(col.isna(), np.nan, (col.astype(object) == levels[1]).astype(float))
    out[response] = vals
    return out


def proportion_to_trials(y: np.ndarray, weights: np.ndarray, has_trials: bool):
    """(successes, trials, prior weights) for a proportion response with ``weights=`` trials, else None.

    Applies when no ``trials=`` was given, weights were, and some yᵢ lies strictly between 0 and 1
    (R reads every binomial response in [0, 1] with weights that way; for 0/1 responses it is the
    same likelihood as prior weights, so those keep their meaning).
    """
    if has_trials or weights is None:
        return None
    y = np.asarray(y, dtype=float)
    if not np.any((y > 0) & (y < 1)):
        return None
    w = np.asarray(weights, dtype=float)
    if (y < 0).any() or (y > 1).any():
        raise JaxmixError("a binomial proportion response (with weights = trials) must lie in [0, 1]")
    k = y * w
    if not np.allclose(k, np.round(k), atol=1e-7):
        i = int(np.flatnonzero(~np.isclose(k, np.round(k), atol=1e-7))[0])
        raise JaxmixError(f"proportion response times weights is not a whole number of successes "
                          f"(row {i}: {y[i]:g} * {w[i]:g}); give weights = the number of trials")
    return np.round(k), w, np.ones_like(w)
