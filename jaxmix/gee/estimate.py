"""``jaxmix.fit_gee``: marginal models by generalized estimating equations (GEE).

The fixed-effects formula and the data go through jaxmix's own pieces (:func:`jaxmix.spec.formula.parse_formula`,
:func:`jaxmix.spec.design.build_design`: the same columns, codings, offsets and missing-row rules as
``jaxmix.fit``); the clusters come from ``groups=``, not from bar terms.  The estimating equations,
working correlations and sandwich follow statsmodels' ``GEE`` (:mod:`jaxmix.gee.solve`,
:mod:`jaxmix.gee.corr`), so the numbers are statsmodels' to its convergence tolerance.
"""
from __future__ import annotations

import difflib
import time as _time
import warnings

import numpy as np
import pandas as pd

from ..spec.design import as_data_frame, build_design, row_values
from ..errors import JaxmixError, JaxmixWarning
from ..spec.formula import parse_formula
from .corr import CORSTRS, make_clusters
from .family import gee_family
from .results import GEEFits, GEEResults
from .solve import solve_gee

__all__ = ["fit_gee", "CORSTRS", "MAX_TIME_POINTS"]

MAX_TIME_POINTS = 100  # unstructured: the padded (cluster x time x time) blocks stay small


def _need_column(data: pd.DataFrame, name, what: str) -> None:
    if not isinstance(name, str):
        raise JaxmixError(f"{what} must be a column name (a string), not {type(name).__name__}")
    if name not in data.columns:
        close = difflib.get_close_matches(name, [str(c) for c in data.columns], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise JaxmixError(f"{what} column {name!r} is not in the data{hint}")


def _check_response(fam, name: str, y: np.ndarray, observed: np.ndarray, trials: np.ndarray | None) -> None:
    v = y[observed]
    if not np.isfinite(v).all():
        raise JaxmixError(f"response {name!r} has infinite values")
    if trials is not None:
        n = trials[observed]
        bad = (v < 0) | (v > n) | (v != np.round(v))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise JaxmixError(f"response {name!r} must count successes out of the trials (0..n); "
                              f"it has {v[j]:g} of {n[j]:g}")
    elif fam.name == "binomial":
        bad = v[(v != 0.0) & (v != 1.0)]
        if len(bad):
            raise JaxmixError(f"family='binomial' in fit_gee needs a 0/1 response (or trials=); {name!r} has the "
                              f"value {bad[0]:g}")
    elif fam.name == "poisson":
        bad = v[v < 0.0]
        if len(bad):
            raise JaxmixError(f"family='poisson' needs a non-negative response; {name!r} has the value {bad[0]:g}")


def _warn_failures(sol, names: list[str], maxiter: int) -> None:
    """A JaxmixWarning per outcome whose estimates are not finite or whose iteration did not converge."""
    for b, name in enumerate(names):
        if not (np.isfinite(sol.beta[b]).all() and np.isfinite(sol.cov_robust[b]).all()):
            sol.converged[b] = False
            warnings.warn(f"fit_gee: outcome {name!r}: the estimates are not finite (NaN in fixef and se); "
                          "a covariate may separate the outcome completely", JaxmixWarning, stacklevel=3)
        elif not sol.converged[b]:
            warnings.warn(f"fit_gee: outcome {name!r} did not converge in {maxiter} iterations "
                          f"(‖U(β)‖ = {sol.score_norm[b]:.3g}); raise maxiter or check the model",
                          JaxmixWarning, stacklevel=3)


def _starts(start, names: list, x_names: list):
    """``fit_gee``'s ``start`` as a (outcomes, coefficients) array, or None."""
    if start is None:
        return None
    if isinstance(start, pd.DataFrame):
        missing = [c for c in x_names if c not in start.columns]
        if missing:
            raise JaxmixError(f"start= has no column for coefficient(s) {', '.join(map(repr, missing))}")
        return start.reindex(index=names, columns=x_names).to_numpy(dtype=float)
    B = np.asarray(start, dtype=float)
    B = B.reshape(1, -1) if B.ndim == 1 else B
    if B.shape != (len(names), len(x_names)):
        raise JaxmixError(f"start= has shape {B.shape}; expected ({len(names)}, {len(x_names)}): one row of "
                          f"{len(x_names)} coefficients ({', '.join(x_names)}) per outcome")
    return B


def fit_gee(formula: str, data, groups: str, family: str = "gaussian", corstr: str = "exchangeable", *,
            link: str | None = None, time: str | None = None, offset=None, trials=None, outcomes=None,
            maxiter: int = 60, ctol: float = 1e-6, start=None):
    """Fit a marginal model by GEE with a working correlation within the clusters of ``groups``.

    Args:
      formula: ``"y ~ x1 + x2"`` (no bar terms: the clusters are ``groups``); ``"~ x1 + x2"`` with
        ``outcomes``.  Offsets as in ``jaxmix.fit`` (``offset(log(t))`` terms or ``offset=``).
      data: a pandas DataFrame.
      groups: the column whose values define the clusters.
      family, link: ``gaussian`` (identity), ``binomial`` (0/1 response, or successes of ``trials``;
        logit, probit, cloglog), ``poisson`` (log).
      corstr: ``independence``, ``exchangeable``, ``ar1`` (consecutive rows of a cluster one step
        apart: the data order, or the order of ``time``), ``unstructured`` (one correlation per pair of
        ``time`` values; without ``time`` the position within the cluster).
      time: a column ordering the rows within clusters (ar1) or naming their time points (unstructured).
      trials: binomial only: a column (or array) of trial counts; the response counts successes and
        enters as the proportion with variance μ(1 − μ)/n (the GLM's prior weights).
      outcomes: response columns to fit with the same right-hand side, all in one vectorised solve
        (rows with a missing outcome are left out of that outcome's fit only).
      maxiter, ctol: statsmodels' iteration limit and its stopping rule ‖U(β)‖₂ < ctol.
      start: β to start the iterations from — one row of coefficients (in the design's column order) per
        outcome, or a DataFrame indexed by outcome with the coefficients' names as columns (a sweep's
        ``single.fixef``: the GLM of the same right-hand side, the default start, already fitted); rows
        with a missing value start from the GLM fit.

    Returns:
      :class:`jaxmix.gee.results.GEEResults`, or with ``outcomes`` a :class:`GEEFits` of them.
    """
    t0 = _time.perf_counter()
    data = as_data_frame(data)
    corstr = str(corstr).lower()
    if corstr not in CORSTRS:
        raise JaxmixError(f"unknown corstr {corstr!r}; choose one of {', '.join(CORSTRS)}")
    fam = gee_family(family, link)
    parsed = parse_formula(formula)
    if parsed.is_mixed:
        raise JaxmixError(f"fit_gee's formula {formula!r} has random-effect term(s) "
                          f"{', '.join(t.text for t in parsed.random)}; a marginal model takes its clusters "
                          "from groups= and has no bar terms")
    _need_column(data, groups, "groups")
    extra = (groups,)
    if trials is not None:
        if fam.name != "binomial":
            raise JaxmixError(f"trials= is for family='binomial', not {fam.name!r}")
        if isinstance(trials, str):
            _need_column(data, trials, "trials")
            extra += (trials,)
        tr_all = row_values(trials, data, "trials")
    if time is not None:
        _need_column(data, time, "time")
        extra += (time,)
    if outcomes is not None:
        if parsed.response is not None:
            raise JaxmixError(f"give either a response in the formula ({parsed.response!r}) or outcomes=, not both")
        outcomes = [outcomes] if isinstance(outcomes, str) else list(outcomes)
        if not outcomes:
            raise JaxmixError("outcomes= is empty")
        for name in outcomes:
            _need_column(data, name, "outcome")
            if not pd.api.types.is_numeric_dtype(data[name]) and not pd.api.types.is_bool_dtype(data[name]):
                raise JaxmixError(f"outcome column {name!r} is not numeric (dtype {data[name].dtype})")
    design = build_design(parsed, data, offset=offset, require_response=outcomes is None, check_nlevels=False,
                          extra_columns=extra)
    pos = design.positions
    if outcomes is None:
        names = [parsed.response]
        Y = design.y[None, :]
    else:
        names = outcomes
        Y = data[outcomes].to_numpy(dtype=float)[pos].T
    M = np.isfinite(Y) * 1.0
    tr = None
    if trials is not None:
        tr = tr_all[pos]
        if not (np.isfinite(tr).all() and (tr > 0).all()):
            raise JaxmixError(f"trials must be positive and finite; found {tr[~(np.isfinite(tr) & (tr > 0))][0]:g}")
    for j, name in enumerate(names):
        if M[j].sum() <= design.X.shape[1]:
            raise JaxmixError(f"outcome {name!r} has {int(M[j].sum())} complete rows for {design.X.shape[1]} coefficients")
        _check_response(fam, name, Y[j], M[j] > 0, tr)
    Y = np.where(M > 0, Y, 0.0)
    prior = np.ones(len(pos)) if tr is None else tr
    if tr is not None:
        Y = Y / tr
    gvals = data[groups].to_numpy()[pos]
    tvals = None if time is None else data[time].to_numpy()[pos]
    if corstr == "ar1":  # clusters need each outcome's own rows: one solve per pattern of missing rows
        pattern_keys = [M[j].tobytes() for j in range(len(names))]
        batches = [[j for j, k in enumerate(pattern_keys) if k == key] for key in dict.fromkeys(pattern_keys)]
    else:
        batches = [list(range(len(names)))]
    B0 = _starts(start, names, list(design.x_names))
    results = {}
    for batch in batches:
        rows = np.flatnonzero(M[batch[0]] > 0) if corstr == "ar1" else np.arange(len(pos))
        cl = make_clusters(gvals[rows], None if tvals is None else tvals[rows], unique_times=corstr == "unstructured",
                           time_name=time or "time")
        if corstr == "unstructured" and len(cl.time_levels) > MAX_TIME_POINTS:
            raise JaxmixError(f"corstr='unstructured' estimates one correlation per pair of time points; "
                              f"{time or 'the positions within clusters'} has {len(cl.time_levels)} "
                              f"(at most {MAX_TIME_POINTS}); use 'exchangeable' or 'ar1'")
        order = rows[cl.order]
        with np.errstate(all="ignore"):  # a diverging outcome is reported below, not by NumPy
            sol = solve_gee(fam, corstr, cl, design.X[order], design.offset[order], Y[batch][:, order],
                            M[batch][:, order], maxiter=maxiter, ctol=ctol, prior=prior[order],
                            start=None if B0 is None else B0[batch])
        _warn_failures(sol, [names[j] for j in batch], maxiter)
        for b, j in enumerate(batch):
            sizes = np.add.reduceat(M[j][order], cl.starts)
            sizes = sizes[sizes > 0]
            results[names[j]] = GEEResults(
                formula=formula if outcomes is None else "~ " + parsed.fixed, response=names[j], family=fam.name,
                link=fam.link, corstr=corstr, groups=groups, x_names=list(design.x_names), beta=sol.beta[b],
                cov_robust=sol.cov_robust[b], cov_naive=sol.cov_naive[b], dep=sol.dep[b], scale=float(sol.scale[b]),
                converged=bool(sol.converged[b]), n_iter=int(sol.n_iter[b]), nobs=int(sol.nobs[b]),
                n_clusters=len(sizes), cluster_sizes=(int(sizes.min()), int(sizes.max())), time_levels=cl.time_levels)
    if outcomes is None:
        return results[names[0]]
    return GEEFits({n: results[n] for n in names}, seconds=_time.perf_counter() - t0)
