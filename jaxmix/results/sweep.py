"""The result of :func:`jaxmix.fit_many`: the :class:`Sweep` (per-outcome tables, ``sweep[name]``), the
problem it solved (one design, k responses) and each outcome's own design."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pandas as pd

from ..spec.covariance import theta_layout
from ..spec.design import Design
from ..status import MESSAGES, SCREENING, status_message
from ..errors import JaxmixError
from .mixed import MixedResults, make_unique
from ..dists import t_test

__all__ = ["Sweep", "Problem", "outcome_design", "SWEEP_STATUS", "status_message", "lambda_batch", "ranef_batch"]

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
    fam: object  # jaxmix.spec.families.Family (None for gaussian)
    method: str  # REML / ML / Laplace / AGQ
    nagq: int
    ntr: np.ndarray  # binomial trials per row (1 for 0/1 data)
    rhs: str  # the formula's right-hand side
    has_trials: bool = False
    offset_column: str | None = None
    data: pd.DataFrame | None = None  # the data as given (for outcomes fitted on their own)
    args: dict = dataclasses.field(default_factory=dict)  # weights, offset, trials as given
    variance: str | None = None  # residual structures (jaxmix.spec.residual), as given
    correlation: str | None = None


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
      dispersion, dispersion_table: each outcome's negative-binomial θ or Gamma shape (families with a
        dispersion parameter; None / no rows otherwise).
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
    #: (estimates, standard errors), each (k,), of a negative-binomial θ / Gamma shape; None otherwise
    dispersion_: tuple | None = dataclasses.field(default=None, repr=False)

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
        if not self.problem.design.terms and self.problem.variance is None and self.problem.correlation is None:
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
    def dispersion(self) -> pd.Series | None:
        """Each outcome's dispersion parameter (negative binomial θ, Var y = μ + μ²/θ; Gamma shape α,
        Var y = μ²/α), as ``sweep[name].dispersion``; None for families without one."""
        if self.dispersion_ is None:
            return None
        return self._series(self.dispersion_[0], "dispersion")

    @property
    def dispersion_table(self) -> pd.DataFrame:
        """outcome, parameter, estimate, se (se = φ·se(log φ), as ``MixedResults.dispersion_table``);
        no rows for families without a dispersion parameter."""
        cols = ["outcome", "parameter", "estimate", "se"]
        if self.dispersion_ is None:
            return pd.DataFrame(columns=cols)
        name = self.problem.fam.dispersion
        return pd.DataFrame({"outcome": self.names, "parameter": name, "estimate": self.dispersion_[0],
                             "se": self.dispersion_[1]})[cols]

    @property
    def structure_table(self) -> pd.DataFrame:
        """Each fitted outcome's covariance-parameter table of a structured fit (``variance=``,
        ``correlation=``, cs/ar1/diag terms; ``res.extra["structure"]["table"]``) with an ``outcome``
        column first: group, var1, var2, kind, estimate, se.  No rows for other sweeps."""
        parts = []
        for j, name in enumerate(self.names):
            if int(self.status_[j]) in SWEEP_STATUS:
                continue
            info = self[name].extra.get("structure")
            if info is not None:
                parts.append(info["table"].assign(outcome=name))
        cols = ["outcome", "group", "var1", "var2", "kind", "estimate", "se"]
        return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)

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
        df = np.repeat(self.nobs_ - p, p).astype(float) if key == "residual" else np.full(k * p, np.inf)
        pval, crit = t_test(stat, df, level)
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
        if self.dispersion_ is not None:
            tab.insert(2, self.problem.fam.dispersion, self.dispersion_[0])
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
