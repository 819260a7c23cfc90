"""Many outcomes at once: ``jaxmix.fit_many`` and the :class:`Sweep` result.

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

import dataclasses
import warnings
import time
from typing import Callable

import numpy as np
import pandas as pd

from .covariance import theta_layout
from .design import Design, drop_aliased, as_data_frame, build_design
from . import runtime
from .status import MESSAGES, SCREENING, status_message
from .errors import JaxmixError, JaxmixWarning
from .formula import parse_formula
from .dispersion import reject_in_fit_many
from .options import check_fit_options
from .results import MixedResults, make_unique

__all__ = ["fit_many", "Sweep", "SWEEP_STATUS", "status_message"]

#: Status codes of outcomes that were screened out before the fit (the optimiser's are 0-5).
SWEEP_STATUS = {int(c): MESSAGES[c] for c in sorted(SCREENING)}


# ---- the problem: one design, k responses ----------------------------------------------------
@dataclasses.dataclass
class Problem:
    design: Design  # rows with complete covariates; y is None
    Y: np.ndarray  # (n, k) responses on the design's rows, NaN = missing
    names: list[str]
    family: str  # "gaussian", "binomial", "poisson"
    link: str
    fam: object  # jaxmix.families.Family (None for gaussian)
    method: str  # REML / ML / Laplace / AGQ
    nagq: int
    ntr: np.ndarray  # binomial trials per row (1 for 0/1 data)
    rhs: str  # the formula's right-hand side
    has_trials: bool = False
    offset_column: str | None = None
    data: pd.DataFrame | None = None  # the data as given (for outcomes fitted on their own)
    args: dict = dataclasses.field(default_factory=dict)  # weights, offset, trials as given


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


def _setup(formula, data, outcomes, Y, names, family, link, method, nagq, weights, offset, trials) -> Problem:
    from .families import get_family

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
        from .model_glmm import prepare_glmm

        parsed, data, trials, offset = prepare_glmm(formula, data, trials, offset, fam.name)
    elif isinstance(trials, str) and trials not in data.columns:
        raise JaxmixError(f"trials column {trials!r} is not in the data")
    extra = (trials,) if isinstance(trials, str) else ()
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
                    offset_column=offset if isinstance(offset, str) else None, data=given[0], args=given[1])


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
    """(mask (n, k), status (k,), nobs (k,)): status 0 = fit it, else a code of SWEEP_STATUS."""
    d, Y = pb.design, pb.Y
    mask = ~np.isnan(Y)
    k = Y.shape[1]
    p = d.X.shape[1]
    status = np.zeros(k, dtype=np.int64)
    nobs = mask.sum(axis=0)
    seen: dict[bytes, tuple[bool, bool]] = {}
    for j in range(k):
        m = mask[:, j]
        y = Y[m, j]
        ntr = pb.ntr[m]
        if nobs[j] == 0:
            status[j] = 10
        elif not np.isfinite(y).all() or _invalid(pb, y, ntr):
            status[j] = 14
        elif _constant(pb, y, ntr):
            status[j] = 11
        elif nobs[j] <= p:
            status[j] = 12
        else:
            key = np.packbits(m).tobytes()
            if key not in seen:
                aliased = bool(drop_aliased(d.X[m], list(d.x_names))[2]) if p else False
                levels_bad = False
                for t in d.terms:
                    nl = np.unique(t.codes[m]).shape[0]
                    # lme4 check.nobs.vs.nRE (jaxmix.design.check_nobs_vs_nre): nobs > levels * q
                    levels_bad |= nl < 2 or (pb.family == "gaussian" and nl * t.q >= nobs[j])
                seen[key] = (aliased, levels_bad)
            aliased, levels_bad = seen[key]
            status[j] = 13 if aliased else (15 if levels_bad else 0)
    return mask, status, nobs


def _invalid(pb: Problem, y, ntr) -> bool:
    if pb.family == "binomial":
        if pb.has_trials:
            return bool((y < 0).any() or (y > ntr).any())
        return bool((~np.isin(y, (0.0, 1.0))).any())
    if pb.family == "poisson":
        return bool((y < 0).any())
    return False


def _constant(pb: Problem, y, ntr) -> bool:
    if pb.family == "binomial":
        return bool((y == 0).all() or (y == ntr).all())
    if pb.family == "poisson":
        return bool((y == 0).all())
    return bool(np.ptp(y) == 0.0)


# ---- per-outcome design (for sweep[name]) ------------------------------------------------------
def outcome_design(design: Design, mask: np.ndarray, y: np.ndarray, name: str, rhs: str):
    """The design restricted to ``mask`` rows with response ``y``; levels without rows removed.

    Returns (design, used): ``used[t]`` are the kept level indices of term t in the full design.
    """
    terms, used = [], []
    for t in design.terms:
        keep = np.unique(t.codes[mask])
        remap = np.full(t.nlevels, -1, dtype=np.int64)
        remap[keep] = np.arange(keep.shape[0])
        terms.append(dataclasses.replace(t, levels=[t.levels[i] for i in keep],
                                         keys=None if t.keys is None else [t.keys[i] for i in keep],
                                         codes=remap[t.codes[mask]].astype(t.codes.dtype), Z=t.Z[mask]))
        used.append(keep)
    label = name if name.isidentifier() else f"`{name}`"
    parsed = dataclasses.replace(design.parsed, response=label, formula=f"{label} ~ {rhs}")
    sub = dataclasses.replace(design, parsed=parsed, y=y[mask], X=design.X[mask], terms=terms,
                              weights=design.weights[mask], offset=design.offset[mask],
                              rows=design.rows[mask], positions=design.positions[mask], n_dropped=design.n_dropped + int((~mask).sum()))
    return sub, used


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
        :func:`jaxmix.fit` (checked by the same :func:`jaxmix.options.check_fit_options`); the same for
        every outcome.
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
    if variance is not None or correlation is not None:
        raise JaxmixError("fit_many does not fit residual structures (variance=, correlation=) yet; "
                          "fit each outcome with jaxmix.fit(..., variance=..., correlation=...)")
    runtime.start()
    t0 = time.perf_counter()
    opts = check_fit_options(family, nagq=nagq, trials=trials, max_iter=max_iter, gtol=gtol, batch_size=batch_size)
    reject_in_fit_many(family)
    nagq, max_iter, gtol = opts["nagq"], opts["max_iter"], opts["gtol"]
    pb = _setup(formula, data, outcomes, Y, names, family, link, method, nagq, weights, offset, trials)
    return fit_problem(pb, dtype=dtype, max_iter=max_iter, gtol=gtol, devices=devices,
                        batch_size=batch_size, progress=progress, t0=t0)


def fit_problem(pb: Problem, dtype=None, max_iter=500, gtol=1e-4, devices=None, batch_size=None,
                 progress=None, t0=None, start=None, desc="fitting") -> "Sweep":
    t0 = time.perf_counter() if t0 is None else t0
    from .re_structure import check_plain_terms

    check_plain_terms(pb.design.terms, "fit_many")
    mask, status, nobs = _screen(pb)
    if not pb.design.terms:
        from .sweep_fit import fit_fixed_only

        out = fit_fixed_only(pb, mask, status, nobs, progress)
    elif pb.family == "gaussian":
        from .sweep_fit import fit_lmm_batch

        out = fit_lmm_batch(pb, mask, status, nobs, dtype, max_iter, gtol, devices, batch_size, progress,
                            desc=desc)
    else:
        from .sweep_fit import fit_glmm_batch

        out = fit_glmm_batch(pb, mask, status, nobs, dtype, max_iter, gtol, devices, batch_size, progress,
                             start=start, desc=desc)
    if (status == 13).any():
        _fit_aliased(pb, out, mask, np.flatnonzero(status == 13), dtype, max_iter, gtol)
    if pb.design.terms:
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
    from .model import fit

    if pb.data is None:
        return
    x_names = list(pb.design.x_names)
    pos_all = pb.data.index.get_indexer(pb.design.rows)
    fits: dict = {}
    for j in which:
        name = pb.names[j]
        pos = pos_all[mask[:, j]]
        dj = pb.data.iloc[pos].copy()
        y = pb.Y[mask[:, j], j]
        # the outcome under its own name, unless that name is a data column holding something else
        own = name not in dj.columns or np.array_equal(
            pd.to_numeric(dj[name], errors="coerce").to_numpy(dtype=float), y, equal_nan=True)
        label = name if name.isidentifier() and own else "__outcome"
        dj[label] = y
        kw = {k: (v if v is None or isinstance(v, str) else np.asarray(v)[pos]) for k, v in pb.args.items()}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", JaxmixWarning)
                res = fit(f"{label} ~ {pb.rhs}", dj, method=pb.method, family=pb.family, link=pb.link,
                          nagq=pb.nagq, dtype=dtype, max_iter=max_iter, gtol=gtol, **kw)
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
        out.status_[j] = 0 if res.converged else (res.optim.status if res.optim is not None else 1)
        out.singular_[j] = res.singular
        out.warnings.setdefault(name, []).append(
            f"fixed-effect column(s) {', '.join(dropped)} aliased on this outcome's rows: dropped, as "
            "jaxmix.fit (and lme4) does; fitted on its own")
        fits[int(j)] = res
    if fits:
        build = out._build
        out._build = lambda i, build=build: fits[i] if i in fits else build(i)


# ---- the result --------------------------------------------------------------------------------
@dataclasses.dataclass
class Sweep:
    """Per-outcome results of :func:`fit_many` (rows = outcomes).

    Attributes:
      names: the outcomes, in order.
      fixef, se: DataFrames, rows = outcomes, columns = fixed-effect terms (NaN for failed outcomes).
      theta: DataFrame of the relative covariance parameters; sigma, loglik, objective, converged,
        nobs, status, messages: Series indexed by outcome.
      varcorr: long table (outcome, group, var1, var2, vcov, sdcor).
      seconds, compile_seconds: wall time of the whole sweep and the part spent compiling.
      warnings: outcome -> notes (separation, a Hessian that is not positive definite, ...).
    """

    problem: Problem = dataclasses.field(repr=False)
    mask: np.ndarray = dataclasses.field(repr=False)
    beta: np.ndarray = dataclasses.field(repr=False)  # (k, p)
    vcov_beta: np.ndarray = dataclasses.field(repr=False)  # (k, p, p)
    theta_: np.ndarray = dataclasses.field(repr=False)  # (k, nθ)
    sigma_: np.ndarray = dataclasses.field(repr=False)
    loglik_: np.ndarray = dataclasses.field(repr=False)
    objective_: np.ndarray = dataclasses.field(repr=False)
    status_: np.ndarray = dataclasses.field(repr=False)
    nobs_: np.ndarray = dataclasses.field(repr=False)
    singular_: np.ndarray = dataclasses.field(repr=False)
    n_params: int = dataclasses.field(repr=False)
    _build: Callable[[int], MixedResults] = dataclasses.field(repr=False)
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    seconds: float = 0.0
    warnings: dict = dataclasses.field(default_factory=dict, repr=False)
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    # ---- identity ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.problem.names)

    @property
    def formula(self) -> str:
        return "~ " + self.problem.rhs

    @property
    def family(self) -> str:
        return self.problem.family

    @property
    def method(self) -> str:
        if not self.problem.design.terms:
            return "OLS" if self.family == "gaussian" else "ML"
        return self.problem.method

    @property
    def x_names(self) -> list[str]:
        return list(self.problem.design.x_names)

    def __len__(self) -> int:
        return len(self.problem.names)

    def __iter__(self):
        return iter(self.problem.names)

    def __contains__(self, name) -> bool:
        return name in self.problem.names

    def _index(self, name) -> int:
        if isinstance(name, (int, np.integer)):
            return int(name)
        try:
            return self.problem.names.index(name)
        except ValueError:
            raise KeyError(f"no outcome {name!r} in this sweep (outcomes: {', '.join(self.problem.names[:10])}"
                           f"{', ...' if len(self) > 10 else ''})") from None

    def __getitem__(self, name) -> MixedResults:
        """The :class:`MixedResults` of one outcome (as ``jaxmix.fit`` on its complete rows returns)."""
        j = self._index(name)
        code = int(self.status_[j])
        if code in SWEEP_STATUS:
            raise JaxmixError(f"outcome {self.problem.names[j]!r} was not fitted: {SWEEP_STATUS[code]}")
        if j not in self._cache:
            self._cache[j] = self._build(j)
        return self._cache[j]

    # ---- tables ----------------------------------------------------------------------------
    def _series(self, values, name) -> pd.Series:
        return pd.Series(values, index=pd.Index(self.names, name="outcome"), name=name)

    @property
    def fixef(self) -> pd.DataFrame:
        return pd.DataFrame(self.beta, index=pd.Index(self.names, name="outcome"), columns=self.x_names)

    @property
    def se(self) -> pd.DataFrame:
        se = np.sqrt(np.einsum("kii->ki", self.vcov_beta))
        return pd.DataFrame(se, index=pd.Index(self.names, name="outcome"), columns=self.x_names)

    @property
    def theta(self) -> pd.DataFrame:
        return pd.DataFrame(self.theta_, index=pd.Index(self.names, name="outcome"))

    @property
    def sigma(self) -> pd.Series:
        return self._series(self.sigma_, "sigma")

    @property
    def loglik(self) -> pd.Series:
        return self._series(self.loglik_, "loglik")

    @property
    def objective(self) -> pd.Series:
        return self._series(self.objective_, "objective")

    @property
    def converged(self) -> pd.Series:
        return self._series(self.status_ == 0, "converged")

    @property
    def singular(self) -> pd.Series:
        return self._series(self.singular_, "singular")

    @property
    def status(self) -> pd.Series:
        return self._series(self.status_, "status")

    @property
    def messages(self) -> pd.Series:
        return self._series([status_message(c) for c in self.status_], "message")

    @property
    def nobs(self) -> pd.Series:
        return self._series(self.nobs_, "nobs")

    @property
    def failed(self) -> list[str]:
        """Outcomes that did not give a converged fit."""
        return [n for n, c in zip(self.names, self.status_) if c != 0]

    @property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))`` for every outcome, with an ``outcome`` column first."""
        return _varcorr_long(self)

    def coef_table(self, ddf=None, level: float = 0.95) -> pd.DataFrame:
        """Fixed effects of every outcome: outcome, term, estimate, se, df, statistic, p, ci_low, ci_high.

        ``ddf`` as for ``MixedResults.coef_table``.  The default is that of a single fit:
        Satterthwaite for linear mixed models (computed outcome by outcome, one compiled program for
        all), n − rank(X) for least squares, z (``"asymptotic"``) for GLM(M)s.  ``"residual"`` (t on
        n − p df) and ``"asymptotic"`` are computed for all outcomes at once — the fast choice for
        thousands of outcomes.  Outcomes that failed have NaN rows.
        """
        from scipy import stats
        mixed = bool(self.problem.design.terms)
        gauss = self.family == "gaussian"
        if ddf is None:
            ddf = "satterthwaite" if (gauss and mixed) else ("residual" if gauss else "asymptotic")
        key = str(ddf).lower().replace("_", "-")
        if key not in ("residual", "asymptotic"):
            return self._coef_table_each(ddf, level)
        k, p = self.beta.shape
        est = self.beta.reshape(-1)
        se = np.sqrt(np.einsum("kii->ki", self.vcov_beta)).reshape(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            stat = est / se
        q = 0.5 + level / 2.0
        if key == "residual":
            df = np.repeat(self.nobs_ - p, p).astype(float)
            pval = 2 * stats.t.sf(np.abs(stat), df)
            crit = stats.t.ppf(q, df)
        else:
            df = np.full(k * p, np.inf)
            pval = 2 * stats.norm.sf(np.abs(stat))
            crit = stats.norm.ppf(q)
        return pd.DataFrame({"outcome": np.repeat(self.names, p), "term": np.tile(self.x_names, k),
                             "estimate": est, "se": se, "df": df, "statistic": stat, "p": pval,
                             "ci_low": est - crit * se, "ci_high": est + crit * se})

    def _coef_table_each(self, ddf, level: float) -> pd.DataFrame:
        cols = ["term", "estimate", "se", "df", "statistic", "p", "ci_low", "ci_high"]
        parts = []
        for j, name in enumerate(self.names):
            if np.all(np.isfinite(self.beta[j])) and np.isfinite(self.loglik_[j]):
                tab = self[name].coef_table(ddf=ddf, level=level).reset_index()
                tab = tab.rename(columns={tab.columns[0]: "term"})[cols] if "term" not in tab else tab[cols]
            else:
                tab = pd.DataFrame({"term": self.x_names, **{c: np.nan for c in cols[1:]}})
            tab.insert(0, "outcome", name)
            parts.append(tab)
        return pd.concat(parts, ignore_index=True)

    def to_frame(self, ddf=None) -> pd.DataFrame:
        """Tidy long table: outcome, term, estimate, se, statistic, p (``ddf``: see :meth:`coef_table`)."""
        return self.coef_table(ddf=ddf)[["outcome", "term", "estimate", "se", "statistic", "p"]]

    def summary(self) -> str:
        lines = [f"Sweep of {len(self)} outcomes: {self.formula}  [{self.family}, {self.method}]",
                 f"converged {int((self.status_ == 0).sum())} of {len(self)}; "
                 f"{self.seconds:.1f} s ({self.compile_seconds:.1f} s compiling)"]
        tab = pd.DataFrame({"nobs": self.nobs_, "loglik": self.loglik_, "status": self.messages.to_numpy()},
                           index=self.names)
        lines.append(tab.to_string(float_format=lambda v: f"{v:.3f}"))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Sweep({len(self)} outcomes, formula={self.formula!r}, family={self.family!r}, "
                f"method={self.method!r}, converged={int((self.status_ == 0).sum())}/{len(self)})")


def _varcorr_long(sw: Sweep) -> pd.DataFrame:
    """The per-outcome varcorr tables stacked (the same rows as MixedResults.varcorr, vectorised)."""
    terms = sw.problem.design.terms
    tl = theta_layout([t.q for t in terms])
    gauss = sw.family == "gaussian"
    lams = lambda_batch(sw.theta_, tl)
    scale = sw.sigma_**2 if gauss else np.ones(len(sw))
    groups = make_unique([t.group for t in terms])
    cols: dict[str, list] = {"group": [], "var1": [], "var2": [], "vcov": [], "sdcor": []}
    for g, t, lam in zip(groups, terms, lams):
        om = scale[:, None, None] * np.einsum("kab,kcb->kac", lam, lam)
        sd = np.sqrt(np.einsum("kii->ki", om))
        for i, c in enumerate(t.columns):
            cols["group"].append(g), cols["var1"].append(c), cols["var2"].append(None)
            cols["vcov"].append(om[:, i, i]), cols["sdcor"].append(sd[:, i])
        for j in range(t.q):
            for i in range(j + 1, t.q):
                den = sd[:, i] * sd[:, j]
                with np.errstate(invalid="ignore", divide="ignore"):
                    corr = np.where(den > 0, om[:, i, j] / np.where(den > 0, den, 1.0), np.nan)
                cols["group"].append(g), cols["var1"].append(t.columns[j]), cols["var2"].append(t.columns[i])
                cols["vcov"].append(om[:, i, j]), cols["sdcor"].append(corr)
    if gauss:
        cols["group"].append("Residual"), cols["var1"].append(None), cols["var2"].append(None)
        cols["vcov"].append(sw.sigma_**2), cols["sdcor"].append(sw.sigma_)
    r, k = len(cols["group"]), len(sw)
    if r == 0:
        return pd.DataFrame(columns=["outcome", "group", "var1", "var2", "vcov", "sdcor"])
    return pd.DataFrame({
        "outcome": np.repeat(sw.names, r),
        "group": np.tile(np.asarray(cols["group"], dtype=object), k),
        "var1": np.tile(np.asarray(cols["var1"], dtype=object), k),
        "var2": np.tile(np.asarray(cols["var2"], dtype=object), k),
        "vcov": np.stack(cols["vcov"], axis=1).reshape(-1),
        "sdcor": np.stack(cols["sdcor"], axis=1).reshape(-1),
    })


def lambda_batch(theta: np.ndarray, tl) -> list[np.ndarray]:
    """Λ_k for every term and outcome: a list of (k, q, q) numpy arrays."""
    theta = np.asarray(theta, dtype=float)
    out = []
    for qk, r, c, s in zip(tl.q, tl.rows, tl.cols, tl.starts):
        lam = np.zeros((theta.shape[0], qk, qk))
        lam[:, np.asarray(r, dtype=int), np.asarray(c, dtype=int)] = theta[:, s : s + len(r)]
        out.append(lam)
    return out


def ranef_batch(u1: np.ndarray, uR: np.ndarray, theta: np.ndarray, tl, layout) -> list[np.ndarray]:
    """b = Λu per term for every outcome: a list of (k, levels, q) arrays."""
    lams = lambda_batch(theta, tl)
    out = [np.einsum("kjc,kac->kja", u1, lams[0])]
    for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], layout.nlev[1:]):
        uk = uR[:, off : off + lk * qk].reshape(-1, lk, qk)
        out.append(np.einsum("kjc,kac->kja", uk, lam))
    return out
