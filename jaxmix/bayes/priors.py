"""Prior distributions of a Bayesian fit: weakly informative defaults scaled to the data, and overrides.

Defaults (rstanarm's / brms's autoscaling; s_y = sd(y − offset) for Gaussian models, 1 for binomial
and poisson models, whose linear predictor is on the link scale):

==============  ===============================================================================
class           default prior
==============  ===============================================================================
``intercept``   α̃ ~ Normal(m, 2.5 s_y) on the intercept of the centred predictors (m = mean(y − o)
                for Gaussian models, 0 otherwise)
``fixef``       βⱼ ~ Normal(0, 2.5 s_y / sd(xⱼ))  (sd(xⱼ) = 1 for a constant column)
``sd``          τ ~ HalfNormal(2.5 s_y / rms(z)) for each random-effect column z of each term
``cor``         the term's correlation matrix ~ LKJ(2) (numpyro's ``LKJCholesky``), terms with q ≥ 2
``sigma``       σ ~ Exponential(1 / s_y) (Gaussian models)
==============  ===============================================================================

Override per class with ``priors={"fixef": ..., "sd": ..., "cor": ..., "sigma": ..., "intercept": ...}``;
each value is a numpyro distribution or a spec ``{"normal": [0, 5]}`` (names and arguments in
:data:`SPEC_ARGS`).  ``"cor"`` takes ``{"lkj": η}``, a number η or ``LKJCholesky``.  ``"fixef"`` may
also map coefficient names to priors (``{"Days": {"normal": [10, 5]}}``; the others keep the
default).  A class's prior applies to each of its parameters (a distribution with batch shape () is
expanded).  ``intercept``, ``fixef`` need real support; ``sd``, ``sigma`` positive support.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from ..errors import did_you_mean
from ..errors import JaxmixError
from .spec import BayesSpec

__all__ = ["Priors", "PRIOR_CLASSES", "SPEC_ARGS", "default_priors", "resolve_priors", "parse_spec",
           "describe_priors"]

PRIOR_CLASSES = ("intercept", "fixef", "sd", "cor", "sigma")

#: spec name -> (numpyro class, argument names)
SPEC_ARGS = {
    "normal": (dist.Normal, ("loc", "scale")),
    "student_t": (dist.StudentT, ("df", "loc", "scale")),
    "cauchy": (dist.Cauchy, ("loc", "scale")),
    "half_normal": (dist.HalfNormal, ("scale",)),
    "half_cauchy": (dist.HalfCauchy, ("scale",)),
    "half_student_t": (None, ("df", "scale")),
    "exponential": (dist.Exponential, ("rate",)),
    "gamma": (dist.Gamma, ("concentration", "rate")),
    "lognormal": (dist.LogNormal, ("loc", "scale")),
    "uniform": (dist.Uniform, ("low", "high")),
    "lkj": (None, ("concentration",)),
}


@dataclass
class Priors:
    """One distribution per sampled block: intercept (scalar or None), slopes (batch (p − 1,) or (p,)),
    per term sd (batch (q_k,)) and cor (``LKJCholesky(q_k)`` or None), sigma (scalar or None)."""

    intercept: object
    slopes: object
    sd: list
    cor: list
    sigma: object
    text: dict  # class -> human-readable description


def _scales(spec: BayesSpec):
    yc = spec.y - spec.design.offset
    s_y = float(np.std(yc, ddof=1)) if spec.gaussian and yc.size > 1 else 1.0
    if not np.isfinite(s_y) or s_y <= 0:
        s_y = 1.0
    return yc, s_y


def _slope_cols(spec: BayesSpec) -> np.ndarray:
    return np.array([j for j in range(spec.Xc.shape[1]) if j != spec.intercept], dtype=int)


def default_priors(spec: BayesSpec, cor_eta: float = 2.0) -> Priors:
    """The defaults of the table above, as numpyro distributions."""
    yc, s_y = _scales(spec)
    m = float(np.mean(yc)) if spec.gaussian and yc.size else 0.0
    cols = _slope_cols(spec)
    sx = np.std(spec.Xc[:, cols], axis=0, ddof=1) if len(cols) and spec.Xc.shape[0] > 1 else np.ones(len(cols))
    sx = np.where(np.isfinite(sx) & (sx > 0), sx, 1.0)
    intercept = dist.Normal(m, 2.5 * s_y) if spec.intercept is not None else None
    slopes = dist.Normal(np.zeros(len(cols)), 2.5 * s_y / sx) if len(cols) else None
    sd, cor = [], []
    for t in spec.design.terms:
        rms = np.sqrt(np.mean(np.asarray(t.Z, dtype=float) ** 2, axis=0))
        rms = np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)
        sd.append(dist.HalfNormal(2.5 * s_y / rms))
        cor.append(dist.LKJCholesky(t.q, cor_eta) if t.q > 1 else None)
    sigma = dist.Exponential(1.0 / s_y) if spec.gaussian else None
    text = {"intercept": f"normal({m:.4g}, {2.5 * s_y:.4g})" if intercept is not None else "",
            "fixef": f"normal(0, 2.5·{s_y:.4g}/sd(x))", "sd": f"half_normal(2.5·{s_y:.4g}/rms(z))",
            "cor": f"lkj({cor_eta:g})", "sigma": f"exponential(1/{s_y:.4g})" if spec.gaussian else ""}
    return Priors(intercept, slopes, sd, cor, sigma, text)


def _half_student_t(df, scale):
    return dist.FoldedDistribution(dist.StudentT(df, 0.0, scale))


def parse_spec(value, what: str):
    """A numpyro distribution from a distribution or a spec ``{"name": [args]}`` (or ``{"name": arg}``)."""
    if isinstance(value, dist.Distribution):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise JaxmixError(f"prior for {what!r} must be a numpyro distribution or one spec like "
                          f"{{'normal': [0, 5]}}, got {value!r}")
    (name, args), = value.items()
    key = str(name).lower().replace("-", "_")
    if key not in SPEC_ARGS:
        raise JaxmixError(f"unknown prior distribution {name!r} for {what!r}{did_you_mean(key, SPEC_ARGS)}; "
                          f"choose one of {', '.join(SPEC_ARGS)}")
    cls, names = SPEC_ARGS[key]
    args = list(args) if isinstance(args, (list, tuple)) else [args]
    if len(args) != len(names) or not all(isinstance(a, numbers.Real) and not isinstance(a, bool)
                                          and np.isfinite(a) for a in args):
        raise JaxmixError(f"prior {name!r} for {what!r} takes {len(names)} finite number(s) "
                          f"({', '.join(names)}), got {value[name]!r}")
    args = [float(a) for a in args]
    for a, n in zip(args, names):
        if n in ("scale", "rate", "concentration", "df") and a <= 0:
            raise JaxmixError(f"prior {name!r} for {what!r}: {n} must be positive, got {a:g}")
    if key == "uniform" and not args[0] < args[1]:
        raise JaxmixError(f"prior 'uniform' for {what!r} needs low < high, got {args}")
    if key == "lkj":
        return ("lkj", args[0])
    if key == "half_student_t":
        return _half_student_t(*args)
    return cls(*args)


def _is_positive(d) -> bool:
    lb = getattr(d.support, "lower_bound", None)
    try:
        return lb is not None and float(np.min(np.asarray(lb))) >= 0.0 and not d.support.is_discrete
    except (TypeError, ValueError):
        return False


def _check(d, what: str, support: str, shape: tuple):
    if isinstance(d, tuple):
        raise JaxmixError(f"prior 'lkj' is for correlations ('cor'), not {what!r}")
    if support == "real" and d.support is not constraints.real:
        raise JaxmixError(f"prior for {what!r} must have real support (e.g. normal, student_t), got "
                          f"{type(d).__name__} with support {d.support}")
    if support == "positive" and not _is_positive(d):
        raise JaxmixError(f"prior for {what!r} must be on positive values (e.g. half_normal, exponential), got "
                          f"{type(d).__name__} with support {d.support}")
    if d.event_shape != ():
        raise JaxmixError(f"prior for {what!r} must be univariate (event shape ()), got event shape {d.event_shape}")
    if d.batch_shape == shape:
        return d
    if d.batch_shape == ():
        return d.expand(shape) if shape else d
    raise JaxmixError(f"prior for {what!r} has batch shape {d.batch_shape}; expected () or {shape}")


def _describe(value) -> str:
    if isinstance(value, dist.Distribution):
        return type(value).__name__
    return str(value)


def resolve_priors(spec: BayesSpec, priors=None) -> Priors:
    """The default priors with the classes in ``priors`` replaced (checked; errors name the class)."""
    if priors is None:
        priors = {}
    if not isinstance(priors, dict):
        raise JaxmixError(f"priors must be a dict with keys among {', '.join(PRIOR_CLASSES)}, got {type(priors).__name__}")
    for k in priors:
        if k not in PRIOR_CLASSES:
                raise JaxmixError(f"unknown prior class {k!r}{did_you_mean(k, PRIOR_CLASSES)}; "
                              f"choose among {', '.join(PRIOR_CLASSES)}")
    cor_eta = 2.0
    if "cor" in priors:
        c = priors["cor"]
        if isinstance(c, numbers.Real) and not isinstance(c, bool):
            c = {"lkj": c}
        if isinstance(c, dist.LKJCholesky):
            cor_eta = float(np.asarray(c.concentration))
        else:
            parsed = parse_spec(c, "cor")
            if not (isinstance(parsed, tuple) and parsed[0] == "lkj"):
                raise JaxmixError(f"prior for 'cor' must be LKJ: {{'lkj': eta}}, a number eta > 0 or "
                                  f"numpyro's LKJCholesky, got {c!r}")
            cor_eta = parsed[1]
    out = default_priors(spec, cor_eta)
    text = dict(out.text)
    if "cor" in priors:
        text["cor"] = f"lkj({cor_eta:g})"
    if "intercept" in priors:
        if spec.intercept is None:
            raise JaxmixError("prior for 'intercept' given, but the model has no intercept")
        out.intercept = _check(parse_spec(priors["intercept"], "intercept"), "intercept", "real", ())
        text["intercept"] = _describe(priors["intercept"])
    if "fixef" in priors:
        out.slopes = _fixef(spec, priors["fixef"], out.slopes)
        text["fixef"] = _describe(priors["fixef"])
    if "sd" in priors:
        if not spec.design.terms:
            raise JaxmixError("prior for 'sd' given, but the model has no random-effect term")
        d = parse_spec(priors["sd"], "sd")
        out.sd = [_check(d, "sd", "positive", (t.q,)) for t in spec.design.terms]
        text["sd"] = _describe(priors["sd"])
    if "sigma" in priors:
        if not spec.gaussian:
            raise JaxmixError(f"prior for 'sigma' given, but a {spec.family.name} model has no residual SD")
        out.sigma = _check(parse_spec(priors["sigma"], "sigma"), "sigma", "positive", ())
        text["sigma"] = _describe(priors["sigma"])
    out.text = text
    return out


def _fixef(spec: BayesSpec, value, default):
    cols = _slope_cols(spec)
    names = [spec.x_names[j] for j in cols]
    if not len(cols):
        raise JaxmixError("prior for 'fixef' given, but the model has no fixed effects besides the intercept")
    if isinstance(value, dict) and value and all(k in spec.x_names for k in value):
        locs = np.asarray(default.loc, dtype=float).copy()
        scales = np.asarray(default.scale, dtype=float).copy()
        per = {}
        for k, v in value.items():
            if spec.intercept is not None and k == spec.x_names[spec.intercept]:
                raise JaxmixError("give the intercept's prior as priors['intercept'], not under 'fixef'")
            per[names.index(k)] = _check(parse_spec(v, f"fixef {k}"), f"fixef {k}", "real", ())
        if all(isinstance(d, dist.Normal) for d in per.values()):
            for i, d in per.items():
                locs[i], scales[i] = float(d.loc), float(d.scale)
            return dist.Normal(locs, scales)
        return ("per", [per.get(i, dist.Normal(locs[i], scales[i])) for i in range(len(cols))])
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) not in SPEC_ARGS \
            and next(iter(value)) not in spec.x_names and not isinstance(next(iter(value.values())), (list, tuple, numbers.Real)):
        k = next(iter(value))
        raise JaxmixError(f"prior for 'fixef' names {k!r}, which is not a fixed effect"
                          f"{did_you_mean(k, names)}; the fixed effects are {', '.join(names)}")
    return _check(parse_spec(value, "fixef"), "fixef", "real", (len(cols),))


def describe_priors(pri: Priors) -> dict:
    """class -> the prior used, as text (for the summary and the run's outputs)."""
    return {k: v for k, v in pri.text.items() if v}
