"""One table of fit status codes, shared by :func:`jaxmix.fit` (``res.optim.status``) and
:func:`jaxmix.fit_many` (``Sweep.status``).

0–5 are the host optimiser's (:mod:`jaxmix.core.newton`, for fits and
sweeps), 10–15 the screening of a sweep's outcomes before any fit, 16 an outcome of a sweep whose own
fit raised an error (outcomes fitted one by one: residual structures), 20 a GLMM whose fixed effects are
separated.  0 alone means converged.
"""
from __future__ import annotations

from enum import IntEnum

__all__ = ["Status", "MESSAGES", "OPTIMIZER", "SCREENING", "status_message"]


class Status(IntEnum):
    CONVERGED = 0
    ITERATION_LIMIT = 1
    NON_FINITE = 2
    ABOVE_TOLERANCE = 3
    SADDLE = 4
    IMPRECISE = 5
    NO_ROWS = 10
    CONSTANT_RESPONSE = 11
    TOO_FEW_ROWS = 12
    ALIASED = 13
    INVALID_RESPONSE = 14
    TOO_FEW_LEVELS = 15
    FIT_FAILED = 16
    SEPARATION = 20


MESSAGES = {
    Status.CONVERGED: "converged",
    Status.ITERATION_LIMIT: "iteration limit reached",
    Status.NON_FINITE: "non-finite objective",
    Status.ABOVE_TOLERANCE: "gradient or Newton decrement above tolerance",
    Status.SADDLE: "stopped at a saddle point (Hessian not positive semi-definite)",
    Status.IMPRECISE: "objective's values disagree with its derivatives at the end (rounding noise above the "
                      "tolerance, or no minimum there)",
    Status.NO_ROWS: "no non-missing rows",
    Status.CONSTANT_RESPONSE: "constant response",
    Status.TOO_FEW_ROWS: "too few rows for the fixed effects",
    Status.ALIASED: "fixed effects are aliased on this outcome's rows",
    Status.INVALID_RESPONSE: "invalid response values",
    Status.TOO_FEW_LEVELS: "a grouping factor has fewer than two levels, or (LMM) no fewer random effects "
                           "than rows (lme4's check.nobs.vs.nRE), on this outcome's rows",
    Status.FIT_FAILED: "the fit of this outcome raised an error (the message is in sweep.warnings)",
    Status.SEPARATION: "fixed effects (quasi-)completely separated: estimates infinite, standard errors NaN",
}

#: the optimiser's codes and the sweep's screening codes
OPTIMIZER = frozenset(s for s in Status if s < 10)
SCREENING = frozenset(s for s in Status if 10 <= s < 20)


def status_message(code: int) -> str:
    """The message of a status code."""
    try:
        return MESSAGES[Status(int(code))]
    except ValueError:
        return f"unknown status {code}"
