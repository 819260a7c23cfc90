"""The fitted-model object shared by linear, generalised and least-squares fits.

Names follow lme4 and statsmodels: ``fixef``, ``se``, ``vcov``, ``varcorr``, ``theta``, ``sigma``,
``loglik``, ``aic``, ``bic``, ``ranef``, ``coef()``, ``predict()``, ``summary()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..spec.design import Design, fixed_matrix_new, offset_new, term_matrix_new
from ..errors import JaxmixError

__all__ = ["register_extension", "extension", "MixedResults", "OptimSummary", "Residuals", "RESIDUAL_TYPES"]


#: Methods provided by the layers above this one (inference tables and intervals, the summary, refits,
#: the bootstrap), registered by those layers when they are imported (:func:`register_extension`), so
#: that the results layer imports none of them; ``import jaxmix`` imports them all.
EXTENSIONS: dict = {}


def register_extension(name: str, fn):
    """Make ``fn`` the implementation of the results' method ``name`` (called by the providing layer)."""
    EXTENSIONS[name] = fn
    return fn


def extension(name: str):
    """The registered implementation of ``name``."""
    try:
        return EXTENSIONS[name]
    except KeyError:
        raise JaxmixError(f"{name!r} is provided by a part of jaxmix that is not loaded (import jaxmix)") from None

RESIDUAL_TYPES = ("response", "pearson", "deviance", "working")


@dataclass
class OptimSummary:
    """Everything about the optimisation (MixedModels.jl's OptSummary)."""

    theta_init: np.ndarray
    iterations: int
    evaluations: int
    grad: np.ndarray
    grad_norm: float
    hess_min_eig: float
    status: int
    message: str
    optimizer: str = "projected quasi-Newton (jaxmix.core.newton)"
    fit_seconds: float = float("nan")
    compile_seconds: float = float("nan")

    def __repr__(self) -> str:
        return (f"OptimSummary(status={self.status} '{self.message}', iterations={self.iterations}, "
                f"evaluations={self.evaluations}, max|grad|={np.max(np.abs(self.grad)) if self.grad.size else 0:.2e}, "
                f"min eig(H)={self.hess_min_eig:.3g})")


def make_unique(names: list[str]) -> list[str]:
    """R's make.unique: later duplicates get '.1', '.2', ..."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}.{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


class Residuals(np.ndarray):
    """``res.residuals``: the residuals of lme4's default type (an ordinary array in every use), and
    callable for another type: ``res.residuals(type="pearson")`` (lme4's ``residuals(m, type=)``)."""

    def __new__(cls, values, results):
        obj = np.asarray(values, dtype=float).view(cls)
        obj._results = results
        return obj

    def __array_finalize__(self, obj):
        self._results = None  # a slice or copy is plain data, not tied to the fit

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = lambda xs: tuple(x.view(np.ndarray) if isinstance(x, Residuals) else x for x in xs)  # noqa: E731
        if "out" in kwargs:
            kwargs["out"] = plain(kwargs["out"])
        return getattr(ufunc, method)(*plain(inputs), **kwargs)

    def __reduce__(self):
        return (np.asarray, (self.view(np.ndarray),))

    def __call__(self, type: str | None = None) -> np.ndarray:
        if self._results is None:
            raise JaxmixError("residuals of another type come from the results object: res.residuals(type=...)")
        return self._results.residuals_of(type)


@dataclass
class MixedResults:
    """A fitted (generalised) linear mixed model, or a least-squares fit when there is no bar term."""

    formula: str
    family: str
    link: str
    method: str
    design: Design = field(repr=False)
    beta: np.ndarray = field(repr=False)
    vcov_beta: np.ndarray = field(repr=False)
    theta: np.ndarray
    sigma: float
    loglik: float
    objective: float
    n_params: int
    converged: bool
    singular: bool
    optim: OptimSummary | None
    b: list = field(repr=False, default_factory=list)  # per term (levels, q)
    _condvar_fn: Callable | None = field(repr=False, default=None)
    extra: dict = field(repr=False, default_factory=dict)
    _ranef_cache: Any = field(repr=False, default=None)

    # ---- fixed effects -------------------------------------------------------------------
    @property
    def x_names(self) -> list[str]:
        return self.design.x_names

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.beta, index=self.x_names, name="fixef")

    params = fixef

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov_beta)), index=self.x_names, name="se")

    bse = se

    @property
    def vcov(self) -> pd.DataFrame:
        return pd.DataFrame(self.vcov_beta, index=self.x_names, columns=self.x_names)

    # ---- sizes and likelihood ----------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def ngroups(self) -> dict:
        out: dict[str, int] = {}
        for t in self.design.terms:
            out.setdefault(t.group, t.nlevels)
        return out

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.n_params

    @property
    def deviance(self) -> float:
        """lme4's ``deviance()``: for a GLMM (and a GLM, as R's) the sum of squared deviance residuals
        at the conditional modes, not −2 log L; for a REML fit the REML criterion; for an ML fit
        −2 log L; for least squares the weighted residual sum of squares (R's ``deviance.lm``)."""
        if self.family != "gaussian":
            return float(np.sum(self.residuals_of("deviance") ** 2))
        if self.method == "OLS":
            return float(np.sum(self.residuals_of("pearson") ** 2))
        return float(self.objective)

    @property
    def is_mixed(self) -> bool:
        return len(self.design.terms) > 0

    # ---- variance components ---------------------------------------------------------------
    def term_covariances(self) -> list[np.ndarray]:
        from ..spec.covariance import covariances, theta_layout

        tl = theta_layout([t.q for t in self.design.terms])
        scale = self.sigma**2 if self.family == "gaussian" else 1.0
        return covariances(self.theta, tl, scale)

    @property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))``: group, var1, var2, vcov, sdcor."""
        rows = []
        groups = make_unique([t.group for t in self.design.terms])
        for g, t, om in zip(groups, self.design.terms, self.term_covariances()):
            sd = np.sqrt(np.diag(om))
            for i, c in enumerate(t.columns):
                rows.append((g, c, None, om[i, i], sd[i]))
            for j in range(t.q):
                for i in range(j + 1, t.q):
                    den = sd[i] * sd[j]
                    corr = om[i, j] / den if den > 0 else np.nan
                    rows.append((g, t.columns[j], t.columns[i], om[i, j], corr))
        if self.family == "gaussian":
            rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    # ---- dispersion (negative binomial θ, Gamma shape) ---------------------------------------
    @property
    def dispersion(self) -> float | None:
        """The estimated dispersion parameter of a negative-binomial (θ, Var y = μ + μ²/θ; glmmTMB's
        ``sigma()``, MASS's ``theta``) or Gamma (shape α, Var y = μ²/α; glmmTMB: 1/``sigma()``²) fit;
        None for other families.  Its name and standard error: :attr:`dispersion_table`."""
        d = self.extra.get("dispersion")
        return None if d is None else d["estimate"]

    @property
    def dispersion_table(self) -> pd.DataFrame:
        """parameter, estimate, se (se(φ) = φ·se(log φ), from the Hessian of the deviance in (θ, log φ, β))
        of the dispersion parameter; no rows for families without one."""
        d = self.extra.get("dispersion")
        rows = [] if d is None else [(d["name"], d["estimate"], d["se"])]
        return pd.DataFrame(rows, columns=["parameter", "estimate", "se"])

    # ---- random effects --------------------------------------------------------------------
    @property
    def ranef(self) -> pd.DataFrame:
        """Conditional modes and conditional SDs: group, term, level, mode, condsd."""
        if self._ranef_cache is None:
            cv = self._condvar_fn() if self._condvar_fn is not None else None
            frames = []
            for k, t in enumerate(self.design.terms):
                for a, col in enumerate(t.columns):
                    sd = np.sqrt(np.maximum(cv[k][:, a, a], 0.0)) if cv is not None else np.nan
                    frames.append(pd.DataFrame({"group": t.group, "term": col, "level": t.levels,
                                                "mode": self.b[k][:, a], "condsd": sd}))
            cols = ["group", "term", "level", "mode", "condsd"]
            self._ranef_cache = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
        return self._ranef_cache

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients β + b for every grouping factor (lme4's ``coef()``)."""
        out: dict[str, pd.DataFrame] = {}
        for k, t in enumerate(self.design.terms):
            df = out.get(t.group)
            if df is None:
                df = pd.DataFrame(np.tile(self.beta, (t.nlevels, 1)), index=pd.Index(t.levels, name=t.group),
                                  columns=self.x_names)
            for a, col in enumerate(t.columns):
                if col not in df.columns:
                    df[col] = 0.0
                df[col] = df[col].to_numpy() + self.b[k][:, a]
            out[t.group] = df
        return out

    # ---- predictions -----------------------------------------------------------------------
    def _linear_predictor(self, newdata, include_re: bool) -> np.ndarray:
        d = self.design
        if newdata is None:
            eta = d.X @ self.beta + d.offset
            if include_re:
                for k, t in enumerate(d.terms):
                    eta = eta + np.einsum("nq,nq->n", t.Z, self.b[k][t.codes])
            return eta
        if not isinstance(newdata, pd.DataFrame):
            newdata = pd.DataFrame(newdata)
        X = fixed_matrix_new(d, newdata)
        eta = X @ self.beta + offset_new(d, newdata)
        if include_re:
            for k, t in enumerate(d.terms):
                Z, codes = term_matrix_new(t, newdata)
                bk = np.where((codes >= 0)[:, None], self.b[k][np.maximum(codes, 0)], 0.0)
                eta = eta + np.einsum("nq,nq->n", Z, bk)
        return eta

    def predict(self, newdata=None, include_re: bool = True, type: str = "response", re_form=None,
                interval: str | None = None, level: float = 0.95):
        """Predictions (lme4's ``predict``); see :mod:`jaxmix.results.predict`.

        ``re_form``: None (all random terms), ``"NA"``/``"~0"`` (fixed part only; also
        ``include_re=False``) or a formula naming some random terms (``"~(1|Subject)"``).  Unseen group
        levels get b = 0 with a warning; an unseen fixed-effect category is an error.  ``interval``
        ``"confidence"`` or ``"prediction"`` returns a DataFrame fit, se, lower, upper.
        """
        from .predict import predict_frame

        if not include_re and re_form is None:
            re_form = "NA"
        return predict_frame(self, newdata, re_form=re_form, interval=interval, level=level, type=type,
                             condvar_fn=self._condvar_fn)

    def simulate(self, nsim: int = 1, seed=None) -> pd.DataFrame:
        """Responses simulated with new random effects (lme4's ``simulate(m, use.u = FALSE)``): an
        n × nsim DataFrame ``sim_1 …``; see :mod:`jaxmix.results.simulate`."""
        from .simulate import simulate_responses

        return simulate_responses(self, nsim=nsim, seed=seed)

    def refit(self, y) -> "MixedResults":
        """The same model fitted to a new response (lme4's ``refit``); see :mod:`jaxmix.results.refit`."""
        fit = extension("fit")
        from .refit import refit_model

        return refit_model(self, y, fit)

    def update(self, formula: str | None = None, data=None, **kwargs) -> "MixedResults":
        """The model fitted again with changed pieces (lme4's ``update``): ``formula`` in R's update syntax
        (``". ~ . - Days"``, ``". ~ . + (1 | g)"``), new ``data`` or other :func:`jaxmix.fit` arguments."""
        fit = extension("fit")
        from .refit import update_model

        return update_model(self, fit, formula=formula, data=data, **kwargs)

    def getme(self, name: str):
        """lme4's ``getME``: ``"X"``, ``"Z"``, ``"Lambda"``, ``"theta"``, ``"b"``, ``"u"``, ``"beta"``,
        ``"sigma"``, ``"flist"``; see :mod:`jaxmix.results.getme`."""
        from .getme import getme

        return getme(self, name)

    def condvar(self, group: str) -> np.ndarray:
        """(levels, q, q) conditional covariances of ``group``'s random effects (lme4's ``postVar``)."""
        from .condvar import condvar

        return condvar(self, group)

    @property
    def fitted(self) -> np.ndarray:
        return self.predict()

    @property
    def residuals(self) -> Residuals:
        """Residuals of lme4's default type: ``"deviance"`` for a GLMM (or GLM), ``"response"`` for a
        Gaussian model; call it for another: ``res.residuals(type="pearson")``."""
        return Residuals(self.residuals_of(None), self)

    def residuals_of(self, type: str | None = None) -> np.ndarray:
        """Residuals as lme4's ``residuals(m, type)`` (conditional on the modes, offset included).

        With y the response (for a binomial with trials n the proportion k/n), μ the fitted mean and w
        the prior weights (times n for a binomial with trials), V(μ) the variance function and
        dμ/dη the link's derivative:

        * ``"response"``: y − μ;
        * ``"pearson"``: (y − μ)·√(w / V(μ)) (Gaussian: √w (y − μ), not divided by σ; with
          ``variance="ident(f)"`` also divided by the row's SD ratio δ, as nlme's; negative binomial
          V(μ) = μ + μ²/θ̂; Gamma V(μ) = μ², not divided by the shape, as R's ``Gamma()``);
        * ``"deviance"``: sign(y − μ)·√dᵢ with dᵢ the family's deviance contribution (Gaussian: as
          Pearson);
        * ``"working"``: (y − μ)/(dμ/dη) (Gaussian: y − μ).
        """
        gaussian = self.family == "gaussian"
        if type is None:
            type = "response" if gaussian else "deviance"
        if type not in RESIDUAL_TYPES:
            raise JaxmixError(f"residual type must be one of {', '.join(map(repr, RESIDUAL_TYPES))}, got {type!r}")
        eta = self._linear_predictor(None, True)
        d = self.design
        w = np.asarray(d.weights, dtype=float)
        if gaussian:
            r = d.y - eta
            ratio = self.extra.get("structure", {}).get("row_ratio", 1.0)  # varIdent's δ per row
            return r * np.sqrt(w) / ratio if type in ("pearson", "deviance") else r
        from scipy.special import xlogy

        from ..spec.families import get_family

        mu = np.asarray(get_family(self.family, self.link).linkinv(eta), dtype=float)
        y = np.asarray(d.y, dtype=float)
        if self.family == "binomial":
            ntr = np.asarray(self.extra.get("trials", np.ones_like(y)), dtype=float)
            y, w = y / ntr, w * ntr
            var = mu * (1.0 - mu)
            dev = 2.0 * w * (xlogy(y, y / mu) + xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
        elif self.dispersion is not None:  # negative binomial, Gamma
            from ..fitting.dispersion import deviance_contributions, variance

            var = variance(self.family, mu, self.dispersion)
            dev = deviance_contributions(self.family, y, mu, w, self.dispersion)
        else:  # poisson
            var = mu
            dev = 2.0 * w * (xlogy(y, y / mu) - (y - mu))
        if type == "response":
            return y - mu
        if type == "pearson":
            return (y - mu) * np.sqrt(w / var)
        if type == "deviance":
            return np.where(y > mu, 1.0, -1.0) * np.sqrt(np.maximum(dev, 0.0))
        import jax

        mu_eta = np.asarray(jax.vmap(jax.grad(get_family(self.family, self.link).linkinv))(eta), dtype=float)
        return (y - mu) / mu_eta

    # ---- tables and printing -----------------------------------------------------------------
    def coef_table(self, ddf=None, level: float = 0.95) -> pd.DataFrame:
        """estimate, se, df, statistic, p, ci_low, ci_high for the fixed effects.

        t = β̂/se on ν df with p = 2 P(T_ν > |t|) and interval β̂ ± t_{ν,(1+level)/2} se.  ``ddf``:
        ``"satterthwaite"`` (LMM default, lmerTest's), ``"kenward-roger"`` (REML, pbkrtest's; se from
        the adjusted covariance), ``"containment"``, ``"between-within"`` (SAS), ``"residual"``
        (n − rank X; least-squares default) or ``"asymptotic"`` (z; GLMM default).  See
        :mod:`jaxmix.inference.wald`.
        """
        coef_table = extension("coef_table")
        return coef_table(self, ddf=ddf, level=level)

    def wald_test(self, hypothesis, ddf=None, rhs=None):
        """Joint Wald F (or χ²) test of H0: Lβ = c, from ``"Days = 0, x1 - x2 = 0"`` or a matrix L.

        F = (Lβ̂ − c)′(LΦL′)⁻¹(Lβ̂ − c)/q on (q, ν) df; see :func:`jaxmix.inference.wald.wald_test`.
        """
        wald_test = extension("wald_test")
        return wald_test(self, hypothesis, ddf=ddf, rhs=rhs)

    def contrast(self, hypothesis, ddf=None, level: float = 0.95, rhs=None) -> pd.DataFrame:
        """t test per linear combination l′β (lmerTest's ``contest1D``): estimate, se, df, statistic, p,
        ci_low, ci_high; ``hypothesis`` a vector/matrix, ``{coef: weight}``, ``"a - b"`` or a term name.
        See :func:`jaxmix.inference.contrasts.contrast`."""
        contrast = extension("contrast")
        return contrast(self, hypothesis, ddf=ddf, level=level, rhs=rhs)

    def emmeans(self, term, ddf=None, at=None, level: float = 0.95, data=None, pairwise: bool = False,
                adjust: str = "tukey") -> pd.DataFrame:
        """Estimated marginal means of ``term`` over emmeans' reference grid (or, with ``pairwise=True``,
        their pairwise differences, Tukey-adjusted by default).  See :mod:`jaxmix.inference.emmeans`."""
        emmeans = extension("emmeans")
        return emmeans(self, term, ddf=ddf, at=at, level=level, data=data, pairwise=pairwise, adjust=adjust)

    def pairs(self, term, ddf=None, at=None, adjust: str = "tukey", data=None) -> pd.DataFrame:
        """Pairwise differences of the marginal means of ``term`` (emmeans' ``pairs``)."""
        pairs = extension("pairs")
        return pairs(self, term, ddf=ddf, at=at, adjust=adjust, data=data)

    def anova(self, ddf=None) -> pd.DataFrame:
        """Type III F test per fixed term, lmerTest-style (multi-column factors in one row).

        For comparing several models by likelihood ratio use :func:`jaxmix.anova`.
        """
        type3_anova = extension("type3_anova")
        return type3_anova(self, ddf=ddf)

    def covparm_table(self) -> pd.DataFrame:
        """Variances and covariances with delta-method SEs: group, var1, var2, estimate, se, z, p."""
        covparm_table = extension("covparm_table")
        return covparm_table(self)

    @property
    def vcov_covparms(self) -> pd.DataFrame:
        """Asymptotic covariance matrix of the ``covparm_table`` estimates (inverse Hessian, delta method)."""
        vcov_covparms = extension("vcov_covparms")
        return vcov_covparms(self)

    def confint(self, method: str = "profile", level: float = 0.95, parm=None, **kwargs) -> pd.DataFrame:
        """Intervals for lme4's ``.sig01 …``, ``.sigma`` and β: ``"profile"``, ``"wald"`` or ``"boot"``.

        Profile: where ζ(ψ) = sign(ψ − ψ̂)√(d(ψ) − d̂) = ∓z_{(1+level)/2} (ML deviance, as lme4).
        """
        confint = extension("confint")
        return confint(self, method=method, level=level, parm=parm, **kwargs)

    def bootstrap(self, n: int = 1000, seed: int = 0, **kwargs):
        """Parametric bootstrap: ``n`` simulated responses refitted in one batched program; see
        :func:`jaxmix.api.bootstrap.bootstrap` (``.ci(level)`` gives percentile intervals)."""
        bootstrap = extension("bootstrap")
        return bootstrap(self, n=n, seed=seed, **kwargs)

    def icc(self) -> pd.DataFrame:
        """Intraclass correlation per grouping factor: v_g / (Σ v + σ²_ε) (Nakagawa et al. 2017)."""
        icc = extension("icc")
        return icc(self)

    def r2(self) -> pd.Series:
        """Marginal σ²_f/(σ²_f + Σv + σ²_ε) and conditional (σ²_f + Σv)/(…) R² (Nakagawa & Schielzeth)."""
        r2 = extension("r2")
        return r2(self)

    @property
    def r_squared(self) -> float:
        """R² of a least-squares fit (1 − RSS/TSS about the mean, or about 0 without intercept)."""
        y = self.design.y
        rss = np.sum(self.design.weights * self.residuals**2)
        has_int = any(np.allclose(c, 1.0) for c in self.design.X.T)
        centre = np.average(y, weights=self.design.weights) if has_int else 0.0
        return 1.0 - rss / np.sum(self.design.weights * (y - centre) ** 2)

    def summary(self, ddf=None) -> str:
        """lmerTest-style text summary: scaled residuals, random effects, fixed effects with ``ddf`` df and
        p-values (Satterthwaite by default for an LMM), correlation of the fixed effects.  See
        :mod:`jaxmix.inference.summary`."""
        format_summary = extension("format_summary")
        return format_summary(self, ddf=ddf)

    def __str__(self) -> str:
        return self.summary()
