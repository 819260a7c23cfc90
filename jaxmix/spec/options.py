"""The checks of the fitting arguments shared by :func:`jaxmix.fit` and :func:`jaxmix.fit_many`.

Each bad value raises a :class:`jaxmix.JaxmixError` that names the argument and the value.
"""
from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
import numpy as np

from ..errors import JaxmixError

__all__ = ["check_fit_options", "MAX_NAGQ", "parse_dtype"]

#: the most Gauss-Hermite points per axis lme4's ``glmer`` accepts (``nAGQ <= 25``)
MAX_NAGQ = 25


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _nagq(value) -> int:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not _is_int(value):
        if math.isfinite(value) and float(value).is_integer():  # 5.0 is 5
            value = int(value)
    if not _is_int(value) or value < 1:
        raise JaxmixError(f"nagq must be a positive integer (the number of Gauss-Hermite points), got {value!r}")
    if value > MAX_NAGQ:
        raise JaxmixError(f"nagq must be at most {MAX_NAGQ} (as lme4's glmer nAGQ), got {value!r}")
    return int(value)


def check_fit_options(family: str = "gaussian", *, nagq=1, trials=None, max_iter=500, gtol=1e-4,
                      batch_size=None) -> dict:
    """Check the arguments of :func:`jaxmix.fit` / :func:`jaxmix.fit_many` that do not depend on the data.

    ``nagq`` a whole number 1..25 (:data:`MAX_NAGQ`); with ``family="gaussian"`` neither ``nagq`` (other
    than 1) nor ``trials`` (they apply to GLMMs and to the binomial family); ``trials`` only with the
    binomial family; ``max_iter`` a positive integer; ``gtol`` a finite number >= 0; ``batch_size`` None
    or a positive integer.

    Returns the values to use: ``{"nagq": int, "max_iter": int, "gtol": float}``.
    """
    fam = str(family).lower()
    nagq = _nagq(nagq)
    if fam == "gaussian" and nagq != 1:
        raise JaxmixError(f"nagq={nagq} applies to binomial and poisson GLMMs (adaptive Gauss-Hermite "
                          "quadrature), not to family 'gaussian'")
    if trials is not None and fam != "binomial":
        raise JaxmixError(f"trials= is only for the binomial family, not {fam!r} (got trials={trials!r})")
    if not _is_int(max_iter) or max_iter < 1:
        raise JaxmixError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(gtol, numbers.Real) and not isinstance(gtol, bool) and math.isfinite(gtol) and gtol >= 0):
        raise JaxmixError(f"gtol must be a finite number >= 0 (the gradient tolerance), got {gtol!r}")
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise JaxmixError(f"batch_size must be None or a positive integer, got {batch_size!r}")
    return {"nagq": nagq, "max_iter": int(max_iter), "gtol": float(gtol)}


def parse_dtype(dtype):
    """jnp.float64 (default, None) or jnp.float32 from a dtype argument; anything else is an error."""
    if dtype is None or dtype in ("float64", np.float64, jnp.float64):
        return jnp.float64
    if dtype in ("float32", np.float32, jnp.float32):
        return jnp.float32
    raise JaxmixError(f"dtype must be 'float64' (default) or 'float32', got {dtype!r}")
