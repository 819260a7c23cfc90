"""What a Bayesian fit samples: the design of :func:`jaxmix.fit` plus the centring of X (no numpyro here).

The formula, data, weights, offset and trials go through the same pieces as :func:`jaxmix.fit`
(:func:`jaxmix.spec.formula.parse_formula`, :func:`jaxmix.spec.design.build_design`, cbind/trials handling of
:func:`jaxmix.api.generalized.prepare_glmm`, :func:`jaxmix.spec.families.get_family`).  With an intercept (formulaic's ``Intercept`` column), the other
columns of X are centred (x̃ⱼ = xⱼ − x̄ⱼ) as rstanarm and brms do, so that the sampled intercept α̃ is
nearly uncorrelated with the slopes; the intercept of the original columns is α = α̃ − Σⱼ x̄ⱼ βⱼ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spec.design import Design, as_data_frame, build_design, check_nobs_vs_nre, row_values
from ..errors import JaxmixError
from ..spec.families import Family, get_family
from ..spec.formula import parse_formula
from ..results.mixed import make_unique

#: how formulaic (and lme4) name the intercept column
INTERCEPT_NAMES = ("Intercept", "(Intercept)")

__all__ = ["INTERCEPT_NAMES", "BayesSpec", "build_spec", "parameter_names", "check_response"]


@dataclass
class BayesSpec:
    """Everything the sampler needs from the data (numpy arrays, rows actually used)."""

    formula: str
    family: Family
    design: Design
    y: np.ndarray  # response (successes for binomial)
    ntr: np.ndarray  # binomial trials (ones otherwise)
    Xc: np.ndarray  # X with its non-intercept columns centred (when there is an intercept)
    xbar: np.ndarray  # the column means removed (0 for the intercept and without one)
    intercept: int | None  # position of "(Intercept)" in X, or None

    @property
    def gaussian(self) -> bool:
        return self.family.name == "gaussian"

    @property
    def x_names(self) -> list[str]:
        return list(self.design.x_names)


def check_response(fam: Family, y: np.ndarray, ntr: np.ndarray, name: str, has_trials: bool) -> None:
    """Binomial: 0/1 (or 0 ≤ successes ≤ trials); poisson: non-negative whole counts; all finite."""
    if not np.isfinite(y).all():
        raise JaxmixError(f"response {name!r} contains inf")
    if fam.name == "binomial":
        if has_trials and ((ntr <= 0).any() or not np.isfinite(ntr).all()):
            raise JaxmixError("trials must be positive and finite")
        bad = (y < 0) | (y > ntr) if has_trials else ~np.isin(y, (0.0, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            need = "between 0 and the trials" if has_trials else "0/1 (or give trials=)"
            raise JaxmixError(f"binomial response {name!r} must be {need}: row {i} has {y[i]:g}")
    elif fam.name == "poisson":
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise JaxmixError(f"poisson response {name!r} must be non-negative whole counts: row {i} has {y[i]:g}")


def build_spec(formula: str, data, family: str = "gaussian", link: str | None = None, weights=None,
               offset=None, trials=None) -> BayesSpec:
    """Parse, build the design, check the response, centre X."""
    fam = get_family(family, link)
    data = as_data_frame(data)
    orig_resp = parse_formula(formula).response
    if fam.name == "gaussian":
        if trials is not None:
            raise JaxmixError(f"trials= is only for the binomial family, not 'gaussian' (got trials={trials!r})")
        parsed = parse_formula(formula)
        design = build_design(parsed, data, weights=weights, offset=offset)
        if parsed.is_mixed:
            check_nobs_vs_nre(design)
        y = np.asarray(design.y, dtype=float)
        if not np.isfinite(y).all():
            raise JaxmixError(f"response {orig_resp!r} contains inf")
        ntr = np.ones_like(y)
    else:
        from ..api.generalized import prepare_glmm

        parsed, data, trials, offset = prepare_glmm(formula, data, trials, offset, fam.name)
        extra = (trials,) if isinstance(trials, str) else ()
        design = build_design(parsed, data, weights=weights, offset=offset, check_nlevels=False,
                              extra_columns=extra)
        y = np.asarray(design.y, dtype=float)
        ntr = np.ones_like(y) if trials is None else row_values(trials, data, "trials")[design.positions]
        check_response(fam, y, ntr, orig_resp, trials is not None)
    X = np.asarray(design.X, dtype=float)
    names = list(design.x_names)
    icpt = next((names.index(c) for c in INTERCEPT_NAMES if c in names), None)
    xbar = np.zeros(X.shape[1])
    if icpt is not None and X.shape[0]:
        xbar = X.mean(axis=0)
        xbar[icpt] = 0.0
    return BayesSpec(formula=formula, family=fam, design=design, y=y, ntr=np.asarray(ntr, dtype=float),
                     Xc=X - xbar, xbar=xbar, intercept=icpt)


def parameter_names(spec: BayesSpec) -> dict[str, list[str]]:
    """Row names of the summary, by class, named as the ML fit's tables.

    ``fixef``: the fixed-effect names (``fit(...).fixef``); ``sd``: ``"sd Subject: Days"`` for each
    column of each term (``varcorr``'s group and var1); ``cor``: ``"cor Subject: (Intercept), Days"``
    (group, var1, var2, in ``varcorr``'s order); ``sigma``: ``["sigma"]`` (Gaussian only; the
    ``Residual`` row of ``varcorr``).
    """
    terms = spec.design.terms
    groups = make_unique([t.group for t in terms])
    sd, cor = [], []
    for g, t in zip(groups, terms):
        sd.append([f"sd {g}: {c}" for c in t.columns])
        cor.append([f"cor {g}: {t.columns[j]}, {t.columns[i]}" for j in range(t.q) for i in range(j + 1, t.q)])
    return {"fixef": spec.x_names, "sd": sd, "cor": cor, "sigma": ["sigma"] if spec.gaussian else []}
