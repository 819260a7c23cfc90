"""Many outcomes at once: ``jaxmix.fit_many`` (its result: :mod:`jaxmix.results.sweep`).

``fit_many("~ x + (1 | g)", data, outcomes=["y1", "y2", ...])`` fits the same right-hand side to every
outcome through the path of ``jaxmix.fit`` (which is its one-outcome case): one compiled program per
model class evaluates the criterion and its exact gradient at a batch of points (every outcome's
step of an iteration in one call, sharded over several devices), and the host optimiser
(:mod:`jaxmix.core.newton`) runs the outcomes' iterations side by side (:mod:`jaxmix.fitting.lmm`,
:mod:`jaxmix.fitting.glmm`).

Each outcome uses exactly its own non-missing rows: the design is built once from the rows with
complete covariates, and an outcome's missing rows get weight 0 (their response is set to 0 before it
enters any arithmetic, since NaN·0 = NaN).  A grouping level with no rows for an outcome then adds
nothing to the likelihood and gets b = 0, so every outcome gets the numbers of ``jaxmix.fit`` on its
complete rows.  Outcomes that cannot be fitted (no rows, a constant response, too few rows, fixed
effects aliased on their rows, invalid values) are screened first and reported with a failure status;
they never raise and never change the other outcomes' results.
"""
from __future__ import annotations

import warnings
import time

import numpy as np
import pandas as pd

from ..spec.design import drop_aliased, as_data_frame, build_design
from .. import runtime
from ..status import status_message
from ..errors import JaxmixError, JaxmixWarning
from ..spec.formula import parse_formula
from ..spec.options import check_fit_options, parse_dtype
from ..spec.re_structure import check_plain_terms, needs_structured_fit
from ..spec.residual import parse_correlation, parse_variance, spec_columns
from ..results.sweep import SWEEP_STATUS, Problem, Sweep

__all__ = ["fit_many", "fit_problem", "Sweep", "SWEEP_STATUS", "status_message"]


def _method(family: str, method, nagq: int) -> tuple[str, int]:
    if family == "gaussian":
        m = "REML" if method is None else str(method).upper()
        if m not in ("REML", "ML"):
            raise JaxmixError(f"method must be 'REML' or 'ML' for a Gaussian model, got {method!r}")
        return m, 1
    m = "LAPLACE" if method is None else str(method).upper()
    nagq = int(nagq)
    if m not in ("LAPLACE", "AGQ"):
        raise JaxmixError(f"method must be 'Laplace' or 'AGQ' for family {family!r}, got {method!r}")
    if nagq < 1:
        raise JaxmixError(f"nagq must be a positive integer, got {nagq}")
    if m == "AGQ" and nagq == 1:
        nagq = 9
    return ("AGQ" if nagq > 1 else "Laplace"), nagq


def _setup(formula, data, outcomes, Y, names, family, link, method, nagq, weights, offset, trials,
           variance=None, correlation=None) -> Problem:
    from ..spec.families import get_family

    parsed = parse_formula(formula)
    if parsed.response:
        raise JaxmixError(f"fit_many takes a formula without a response (e.g. '~ x + (1 | g)'); "
                          f"got {parsed.response!r} on the left of '~': pass the responses as outcomes=[...] or Y=")
    data = as_data_frame(data)
    if Y is not None:
        Y = _outcome_matrix(Y, data)
    if not data.index.is_unique:
        data = data.reset_index(drop=True)
    fam_name = str(family).lower()
    if fam_name == "gaussian":
        if link not in (None, "identity"):
            raise JaxmixError(f"unknown link {link!r} for family 'gaussian'; only 'identity'")
        fam, link_name = None, "identity"
    else:
        fam = get_family(fam_name, link)
        link_name = fam.link
    meth, nagq = _method(fam_name, method, nagq)
    # the outcome matrix, aligned with the data's rows
    if (outcomes is None) == (Y is None):
        raise JaxmixError("give exactly one of outcomes=[column names] or Y= (an n x k array)")
    if outcomes is not None:
        outcomes = [outcomes] if isinstance(outcomes, str) else list(outcomes)
        if not outcomes:
            raise JaxmixError("outcomes is empty")
        missing = [c for c in outcomes if c not in data.columns]
        if missing:
            raise JaxmixError(f"outcome column(s) {', '.join(map(repr, missing))} not in the data")
        Yfull = np.column_stack([pd.to_numeric(data[c], errors="coerce").to_numpy(dtype=float) for c in outcomes])
        bad_type = [c for c in outcomes if not (pd.api.types.is_numeric_dtype(data[c])
                                                or pd.api.types.is_bool_dtype(data[c]))]
        for c in bad_type:  # non-numeric column: every value invalid, reported per outcome
            Yfull[:, outcomes.index(c)] = np.inf
        names = list(outcomes) if names is None else list(names)
    else:
        Yfull = Y
        if Yfull.ndim == 1:
            Yfull = Yfull[:, None]
        if Yfull.ndim != 2 or Yfull.shape[0] != len(data):
            raise JaxmixError(f"Y must be an array of shape (n rows of data = {len(data)}, k outcomes), "
                              f"got {np.shape(Y)}")
        names = [f"y{j}" for j in range(Yfull.shape[1])] if names is None else list(map(str, names))
    if len(names) != Yfull.shape[1]:
        raise JaxmixError(f"{len(names)} names for {Yfull.shape[1]} outcomes")
    if len(set(names)) != len(names):
        raise JaxmixError("outcome names must be unique")
    has_trials = trials is not None
    given = data, {"weights": weights, "offset": offset, "trials": trials}
    if fam is not None:
        from .generalized import prepare_glmm

        parsed, data, trials, offset = prepare_glmm(formula, data, trials, offset, fam.name)
    elif isinstance(trials, str) and trials not in data.columns:
        raise JaxmixError(f"trials column {trials!r} is not in the data")
    extra = ((trials,) if isinstance(trials, str) else ()) + spec_columns(parse_variance(variance),
                                                                          parse_correlation(correlation))
    design = build_design(parsed, data, weights=weights, offset=offset, require_response=False,
                          check_nlevels=False, extra_columns=extra)
    pos = data.index.get_indexer(design.rows)
    if trials is None:
        ntr = np.ones(design.nobs)
    elif isinstance(trials, str):
        ntr = data[trials].to_numpy(dtype=float)[pos]
    else:
        ntr = np.asarray(trials, dtype=float)[pos]
    rhs = formula.split("~", 1)[1].strip()
    return Problem(design=design, Y=Yfull[pos], names=names, family=fam_name, link=link_name, fam=fam,
                    method=meth, nagq=nagq, ntr=ntr, rhs=rhs, has_trials=has_trials,
                    offset_column=offset if isinstance(offset, str) else None, data=given[0], args=given[1],
                    variance=variance, correlation=correlation)


def _outcome_matrix(Y, data: pd.DataFrame) -> np.ndarray:
    """``Y=`` as a float array in the rows of ``data``: a DataFrame or Series is aligned on the data's
    index (the same labels, in any order); anything else is taken by position."""
    if isinstance(Y, (pd.DataFrame, pd.Series)):
        idx = Y.index
        if not idx.equals(data.index):
            if not (idx.is_unique and data.index.is_unique and len(idx) == len(data.index)
                    and idx.isin(data.index).all()):
                extra = [v for v in idx[~idx.isin(data.index)][:3]]
                lacking = [v for v in data.index[~data.index.isin(idx)][:3]]
                what = (f"Y has row label(s) {extra} that are not in the data's index" if extra else
                        f"the data's row label(s) {lacking} are not in Y's index" if lacking else
                        "Y's or the data's index has repeated labels")
                raise JaxmixError(f"the index of Y (a pandas {type(Y).__name__}) does not match the data's index: "
                                  f"{what}; align them, or pass Y.to_numpy() to take the rows by position")
            Y = Y.reindex(data.index)
    try:
        return np.asarray(Y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise JaxmixError(f"Y must be a rectangular (n rows of data) x k array of numbers: {exc}") from None


# ---- per-outcome screening -------------------------------------------------------------------
def _screen(pb: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask (n, k), status (k,), nobs (k,)): status 0 = fit it, else a code of SWEEP_STATUS.

    In order: no rows (10), a non-finite or invalid response (14), a constant response (11), no more
    rows than fixed effects (12), then per pattern of rows (computed once for the outcomes that share
    it): fixed effects aliased on the rows (13) or too few levels for the random effects (15)."""
    d, Y = pb.design, pb.Y
    mask = ~np.isnan(Y)
    k = Y.shape[1]
    p = d.X.shape[1]
    full = bool(mask.all())  # no missing response (the common case: no masking passes below)
    nobs = np.full(k, Y.shape[0]) if full else mask.sum(axis=0)
    safe = Y if full else np.where(mask, Y, 0.0)  # the missing rows take no part below
    status = np.zeros(k, dtype=np.int64)
    status[nobs == 0] = 10
    bad = ~np.all(np.isfinite(safe), axis=0) | _invalid(pb, safe, mask)
    status[(status == 0) & bad] = 14
    status[(status == 0) & _constant(pb, safe, mask)] = 11
    status[(status == 0) & (nobs <= p)] = 12
    todo = np.flatnonzero(status == 0)
    # lme4's check.nobs.vs.nRE is for lme4's models; jaxmix.fit skips it for cs/ar1/diag terms (fewer parameters)
    nre_check = pb.family == "gaussian" and not needs_structured_fit(d.terms)
    if todo.size:
        packed = None if full else np.ascontiguousarray(np.packbits(mask[:, todo], axis=0).T)
        groups: dict[bytes, list[int]] = {}
        if full or (packed == packed[:1]).all():
            groups[b""] = list(todo)
        else:
            for j, row in zip(todo, packed):
                groups.setdefault(row.tobytes(), []).append(j)
        for cols in groups.values():
            cols = np.asarray(cols)
            m = mask[:, cols[0]]
            aliased = bool(drop_aliased(d.X[m], list(d.x_names))[2]) if p else False
            levels_bad = False
            for t in d.terms:
                nl = np.unique(t.codes[m]).shape[0]
                # lme4 check.nobs.vs.nRE (jaxmix.spec.design.check_nobs_vs_nre): nobs > levels * q
                levels_bad |= nl < 2 or (nre_check and nl * t.q >= nobs[cols[0]])
            status[cols] = 13 if aliased else (15 if levels_bad else 0)
    return mask, status, nobs


def _invalid(pb: Problem, Y, mask) -> np.ndarray:
    """Per column of Y (n, k), whether a value on its rows is outside the family's range."""
    if pb.family == "binomial":
        if pb.has_trials:
            out = (Y < 0) | (Y > pb.ntr[:, None])
        else:
            out = (Y != 0.0) & (Y != 1.0)
        return np.any(out & mask, axis=0)
    if pb.family in ("poisson", "negative_binomial"):
        return np.any((Y < 0) & mask, axis=0)
    if pb.family == "gamma":
        return np.any((Y <= 0) & mask, axis=0)
    return np.zeros(Y.shape[1], dtype=bool)


def _constant(pb: Problem, Y, mask) -> np.ndarray:
    """Per column of Y (n, k), whether the response is constant on its rows (all 0 or all at the
    trials for binomial, all 0 for Poisson)."""
    if pb.family == "binomial":
        return np.all((Y == 0) | ~mask, axis=0) | np.all((Y == pb.ntr[:, None]) | ~mask, axis=0)
    if pb.family in ("poisson", "negative_binomial"):
        return np.all((Y == 0) | ~mask, axis=0)
    if mask.all():
        return np.max(Y, axis=0) == np.min(Y, axis=0)
    hi = np.max(np.where(mask, Y, -np.inf), axis=0)
    lo = np.min(np.where(mask, Y, np.inf), axis=0)
    return hi == lo


# ---- fitting ---------------------------------------------------------------------------------
def fit_many(formula: str, data, outcomes=None, *, Y=None, names=None, family: str = "gaussian",
             link: str | None = None, method: str | None = None, nagq: int = 1, weights=None, offset=None,
             trials=None, dtype=None, max_iter: int = 500, gtol: float = 1e-4, devices=None,
             batch_size: int | None = None, progress: bool | None = None, variance=None,
             correlation=None) -> "Sweep":
    """Fit one right-hand side to many outcomes as one batched, compiled program.

    Args:
      formula: a formula without a response, e.g. ``"~ age + female + (1 | hospital) + (1 | physician)"``.
        Without a bar term every outcome gets a least-squares (Gaussian) or GLM fit.
      data: a pandas DataFrame with the covariates (and the outcome columns).
      outcomes: column names of the responses, or
      Y: an (n rows of ``data``) x k array of responses (NaN = missing), named by ``names``
        (default ``y0, y1, ...``); a pandas DataFrame or Series is aligned on the data's index (the
        same labels, in any order; other labels are an error).
      family, link, method, nagq, weights, offset, trials, dtype, max_iter, gtol: as for
        :func:`jaxmix.fit` (checked by the same :func:`jaxmix.spec.options.check_fit_options`); the same for
        every outcome.  ``family="negative_binomial"`` / ``"gamma"``: each outcome's θ / shape in
        ``sweep.dispersion`` and ``sweep.dispersion_table``.
      variance, correlation: residual structures of a Gaussian model, as for :func:`jaxmix.fit`; with them
        (or cs/ar1/diag-over-a-factor random terms) every outcome is fitted on its own rows by
        ``jaxmix.fit``'s structured driver (compiled once per model class); an outcome whose fit raises an
        error gets status 16 (the message in ``sweep.warnings``); ``sweep.structure_table`` holds the
        outcomes' covariance parameters.
      devices: the devices to shard the outcome axis over (default ``jax.devices()``).
      batch_size: fit in chunks of this many outcomes (one compiled shape; a progress bar shows).
      progress: force the progress bar on or off.
      Outcomes with the same rows share the blocks of Z′Z, Z′X and X′X; only the response's blocks
      are formed per outcome.  LMM points are vmapped together; GLMM points on the CPU run one at a
      time (the calls of one step overlapping), all together on accelerators.

    Returns:
      :class:`Sweep`: per-outcome tables; ``sweep[name]`` is the :class:`MixedResults` of one outcome,
      with the numbers ``jaxmix.fit`` gives on that outcome's complete rows.  An outcome whose rows
      make fixed-effect columns aliased is fitted on its own by ``jaxmix.fit``, which drops them (as
      lme4 does): NaN in ``fixef``/``se``, a note in ``warnings``.

    Examples:
      >>> sw = jaxmix.fit_many("~ age10 + teaching + (1 | hospital)", ami, outcomes=["death30", "cath"],
      ...                      family="binomial")
      >>> sw.fixef, sw.se, sw.to_frame()
    """
    runtime.start()
    if (variance is not None or correlation is not None) and str(family).lower() != "gaussian":
        raise JaxmixError(f"variance= and correlation= are for Gaussian models; family is {family!r}")
    t0 = time.perf_counter()
    opts = check_fit_options(family, nagq=nagq, trials=trials, max_iter=max_iter, gtol=gtol, batch_size=batch_size)
    nagq, max_iter, gtol = opts["nagq"], opts["max_iter"], opts["gtol"]
    pb = _setup(formula, data, outcomes, Y, names, family, link, method, nagq, weights, offset, trials,
                variance, correlation)
    return fit_problem(pb, dtype=dtype, max_iter=max_iter, gtol=gtol, devices=devices,
                        batch_size=batch_size, progress=progress, t0=t0)


def fit_problem(pb: Problem, dtype=None, max_iter=500, gtol=1e-4, devices=None, batch_size=None,
                 progress=None, t0=None, start=None, desc="fitting") -> "Sweep":
    t0 = time.perf_counter() if t0 is None else t0
    structured = pb.family == "gaussian" and (pb.variance is not None or pb.correlation is not None
                                              or needs_structured_fit(pb.design.terms))
    if not structured:
        check_plain_terms(pb.design.terms, f"a {pb.family} GLMM (fit_many)")
    elif np.dtype(parse_dtype(dtype)) != np.float64:
        raise JaxmixError("structured covariances are fitted in float64 only")
    mask, status, nobs = _screen(pb)
    if structured:  # outcome by outcome through jaxmix.fit's structured driver
        from .paths import fit_each

        out = fit_each(pb, mask, status, nobs, dtype, max_iter, gtol, progress, desc=desc)
    elif not pb.design.terms:
        from .paths import fit_fixed_only

        out = fit_fixed_only(pb, mask, status, nobs, progress)
    elif pb.family == "gaussian":
        from .paths import fit_lmm_batch

        out = fit_lmm_batch(pb, mask, status, nobs, dtype, max_iter, gtol, devices, batch_size, progress,
                            desc=desc)
    else:
        from .paths import fit_glmm_batch

        out = fit_glmm_batch(pb, mask, status, nobs, dtype, max_iter, gtol, devices, batch_size, progress,
                             start=start, desc=desc)
    if (status == 13).any():
        _fit_aliased(pb, out, mask, np.flatnonzero(status == 13), dtype, max_iter, gtol)
    if pb.design.terms or structured:
        _warn_unconverged(pb.names, out.status_)
    out.seconds = time.perf_counter() - t0
    return out


def _warn_unconverged(names, st):
    bad = [f"{n!r} ({status_message(c)})" for n, c in zip(names, st) if c != 0]
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        warnings.warn(f"{len(bad)} of {len(names)} outcomes not converged or not fitted: {shown} "
                      "(see sweep.status)", JaxmixWarning, stacklevel=4)


def _fit_aliased(pb: Problem, out: "Sweep", mask, which, dtype, max_iter, gtol) -> None:
    """Outcomes whose rows make fixed-effect columns aliased: ``jaxmix.fit`` on each (it drops the
    later aliased columns, as lme4 does); their dropped columns are NaN in the tables.

    The batched program has one X for all outcomes, so these few outcomes are fitted (and compiled)
    one by one.  An outcome that still cannot be fitted keeps status 13.
    """
    from .paths import fit_outcome_alone, fit_status

    if pb.data is None:
        return
    x_names = list(pb.design.x_names)
    fits: dict = {}
    for j in which:
        name = pb.names[j]
        try:
            res = fit_outcome_alone(pb, mask, int(j), dtype, max_iter, gtol)
        except JaxmixError as exc:
            out.warnings.setdefault(name, []).append(f"jaxmix.fit on this outcome's rows failed: {exc}")
            continue
        kept = [x_names.index(n) for n in res.design.x_names]
        dropped = [n for n in x_names if n not in res.design.x_names]
        out.beta[j] = np.nan
        out.beta[j, kept] = res.beta
        out.vcov_beta[j] = np.nan
        out.vcov_beta[j][np.ix_(kept, kept)] = res.vcov_beta
        out.theta_[j] = res.theta
        out.sigma_[j], out.loglik_[j], out.objective_[j] = res.sigma, res.loglik, res.objective
        out.status_[j] = fit_status(res)
        out.singular_[j] = res.singular
        if out.dispersion_ is not None and res.dispersion is not None:
            out.dispersion_[0][j] = res.dispersion
            out.dispersion_[1][j] = res.dispersion_table["se"].iloc[0]
        out.warnings.setdefault(name, []).append(
            f"fixed-effect column(s) {', '.join(dropped)} aliased on this outcome's rows: dropped, as "
            "jaxmix.fit (and lme4) does; fitted on its own")
        fits[int(j)] = res
    if fits:
        build = out._build
        out._build = lambda i, build=build: fits[i] if i in fits else build(i)


# ---- the result --------------------------------------------------------------------------------
